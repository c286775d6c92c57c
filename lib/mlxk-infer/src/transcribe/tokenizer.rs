//! Whisper's tokenizer facts: the special tokens (their ids follow from the vocabulary size),
//! the languages, the non-speech symbols mlx-whisper suppresses, and text encode/decode through
//! Whisper's own tiktoken vocabulary (as mlx-whisper) or, for a grown vocabulary, the
//! checkpoint's `tokenizer.json`. Timestamp tokens lie beyond the text vocabulary and are
//! decoded here (`<|1.08|>`), never by the text tokenizer.
use super::tiktoken::Tiktoken;
use crate::error::{InferError, Result, broken};
use crate::models::whisper::WhisperDims;
use std::path::Path;

/// Whisper's languages in token order: (code, English name).
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
    ("yue", "cantonese"),
];
/// Other names mlx-whisper accepts for a language.
const LANGUAGE_ALIASES: &[(&str, &str)] = &[
    ("burmese", "my"),
    ("valencian", "ca"),
    ("flemish", "nl"),
    ("haitian", "ht"),
    ("letzeburgesch", "lb"),
    ("pushto", "ps"),
    ("panjabi", "pa"),
    ("moldavian", "ro"),
    ("moldovan", "ro"),
    ("sinhalese", "si"),
    ("castilian", "es"),
    ("mandarin", "zh"),
];

/// The code of a language given by code or English name (any case), as mlx-whisper accepts it.
pub fn language_code(name: &str) -> Option<&'static str> {
    let n = name.trim().to_lowercase();
    LANGUAGES
        .iter()
        .find(|(c, l)| *c == n || *l == n)
        .map(|(c, _)| *c)
        .or_else(|| {
            LANGUAGE_ALIASES
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, c)| *c)
        })
}

/// The English name of a language code.
pub fn language_name(code: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, l)| *l)
}

/// Special token ids of a Whisper vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specials {
    pub eot: u32,
    pub sot: u32,
    pub translate: u32,
    pub transcribe: u32,
    pub sot_lm: u32,
    pub sot_prev: u32,
    pub no_speech: u32,
    pub no_timestamps: u32,
    pub timestamp_begin: u32,
    /// `<|en|>`, … in [`LANGUAGES`] order, as many as the vocabulary has.
    pub languages: Vec<u32>,
}

impl Specials {
    /// The ids mlx-whisper's tiktoken encoding gives: the specials follow the text vocabulary
    /// (50256 tokens for `.en`, 50257 multilingual) in a fixed order.
    pub fn for_dims(d: &WhisperDims) -> Specials {
        let n_text: u32 = if d.is_multilingual() { 50257 } else { 50256 };
        let nl = d.num_languages() as u32;
        let eot = n_text;
        let sot = eot + 1;
        let after = sot + 1 + nl;
        Specials {
            eot,
            sot,
            languages: (0..nl).map(|i| sot + 1 + i).collect(),
            translate: after,
            transcribe: after + 1,
            sot_lm: after + 2,
            sot_prev: after + 3,
            no_speech: after + 4,
            no_timestamps: after + 5,
            timestamp_begin: after + 6,
        }
    }

    pub fn language_token(&self, code: &str) -> Option<u32> {
        let i = LANGUAGES.iter().position(|(c, _)| *c == code)?;
        self.languages.get(i).copied()
    }

    pub fn language_of_token(&self, t: u32) -> Option<&'static str> {
        let i = self.languages.iter().position(|&l| l == t)?;
        LANGUAGES.get(i).map(|(c, _)| *c)
    }
}

/// The text half of a Whisper tokenizer: the checkpoint's `tokenizer.json`, or Whisper's own
/// tiktoken vocabulary when the folder has none (mlx-whisper's layout).
enum Text {
    Json(Box<tokenizers::Tokenizer>),
    Tiktoken(&'static Tiktoken),
}

/// A Whisper checkpoint's tokenizer.
pub struct WhisperTokenizer {
    text: Text,
    pub specials: Specials,
    pub multilingual: bool,
}

impl WhisperTokenizer {
    /// Whisper's own vocabulary (gpt2 for English-only models, multilingual else, through
    /// tiktoken), as mlx-whisper tokenizes for every model; the folder's `tokenizer.json` only
    /// for a vocabulary of another size (a fine-tune that grew it). A checkpoint's
    /// tokenizer.json may split text otherwise than tiktoken (the multilingual one writes
    /// " the" as two tokens), so it is not preferred where Whisper's vocabulary fits.
    pub fn load(dir: &Path, dims: &WhisperDims) -> Result<WhisperTokenizer> {
        let path = dir.join("tokenizer.json");
        let specials = Specials::for_dims(dims);
        let builtin = Tiktoken::builtin(dims.is_multilingual());
        // Whisper's own layouts: its text tokens, then 99 languages (100 for large-v3), the
        // task and marker tokens and 1501 timestamps — 51864, 51865 or 51866 in all.
        if builtin.len() as u32 == specials.eot
            && (99..=LANGUAGES.len()).contains(&dims.num_languages())
        {
            return Ok(WhisperTokenizer {
                text: Text::Tiktoken(builtin),
                specials,
                multilingual: dims.is_multilingual(),
            });
        }
        if !path.is_file() {
            return Err(broken(
                dir,
                format!(
                    "a {}-token vocabulary is not Whisper's own, and there is no tokenizer.json \
                     beside the weights; copy the tokenizer.json of the model the weights came from \
                     into the folder",
                    dims.n_vocab
                ),
            ));
        }
        let json = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| broken(&path, format!("cannot read the tokenizer: {e}")))?;
        // The file must agree with the vocabulary the weights were trained on.
        if let Some(id) = json.token_to_id("<|endoftext|>")
            && id != specials.eot
        {
            return Err(broken(
                &path,
                format!(
                    "<|endoftext|> is {id} here but {} in a {}-token Whisper vocabulary: the tokenizer belongs to another model",
                    specials.eot, dims.n_vocab
                ),
            ));
        }
        Ok(WhisperTokenizer {
            text: Text::Json(Box::new(json)),
            specials,
            multilingual: dims.is_multilingual(),
        })
    }

    /// Where the text vocabulary comes from: `tokenizer.json` or Whisper's built-in one.
    pub fn source(&self) -> &'static str {
        match self.text {
            Text::Json(_) => "tokenizer.json",
            Text::Tiktoken(_) => "built-in tiktoken vocabulary",
        }
    }

    /// The text of text tokens (below `<|endoftext|>`; with `specials`, theirs written out).
    fn text_of(&self, ids: &[u32]) -> Result<String> {
        match &self.text {
            Text::Json(t) => t
                .decode(ids, false)
                .map_err(|e| InferError::Tokenizer(format!("cannot decode: {e}"))),
            Text::Tiktoken(t) => {
                // Specials are not in the rank table: written out by name, as tiktoken does.
                let mut out = String::new();
                let mut run = Vec::new();
                for &id in ids {
                    if id < self.specials.eot {
                        run.push(id);
                    } else {
                        out.push_str(&t.decode(&run));
                        run.clear();
                        out.push_str(&self.special_name(id));
                    }
                }
                out.push_str(&t.decode(&run));
                Ok(out)
            }
        }
    }

    /// `<|endoftext|>`, `<|en|>`, … for a special token id.
    fn special_name(&self, id: u32) -> String {
        let s = &self.specials;
        let name = match id {
            _ if id == s.eot => "endoftext".to_string(),
            _ if id == s.sot => "startoftranscript".into(),
            _ if id == s.translate => "translate".into(),
            _ if id == s.transcribe => "transcribe".into(),
            _ if id == s.sot_lm => "startoflm".into(),
            _ if id == s.sot_prev => "startofprev".into(),
            _ if id == s.no_speech => "nospeech".into(),
            _ if id == s.no_timestamps => "notimestamps".into(),
            _ => match s.language_of_token(id) {
                Some(code) => code.to_string(),
                None => format!("special_{id}"),
            },
        };
        format!("<|{name}|>")
    }

    /// Text to token ids, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.text {
            Text::Json(t) => Ok(t
                .encode(text, false)
                .map_err(|e| InferError::Tokenizer(format!("cannot encode: {e}")))?
                .get_ids()
                .to_vec()),
            Text::Tiktoken(t) => t.encode(text).map_err(InferError::Tokenizer),
        }
    }

    /// The text of the tokens below `<|endoftext|>` (specials and timestamps left out).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&t| t < self.specials.eot)
            .collect();
        self.text_of(&text)
    }

    /// The text of `ids` with special tokens written out (`<|endoftext|>`); timestamps too,
    /// as `<|1.08|>`.
    pub fn decode_with_specials(&self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        let mut run: Vec<u32> = Vec::new();
        let flush = |run: &mut Vec<u32>, out: &mut String| -> Result<()> {
            if !run.is_empty() {
                out.push_str(&self.text_of(run)?);
                run.clear();
            }
            Ok(())
        };
        for &t in ids {
            if t >= self.specials.timestamp_begin {
                flush(&mut run, &mut out)?;
                out.push_str(&format!(
                    "<|{:.2}|>",
                    (t - self.specials.timestamp_begin) as f64 * 0.02
                ));
            } else {
                run.push(t);
            }
        }
        flush(&mut run, &mut out)?;
        Ok(out)
    }

    /// Symbols mlx-whisper keeps the model from writing: speaker tags, music notes, brackets
    /// (its `non_speech_tokens`, from the same encoder).
    pub fn non_speech_tokens(&self) -> Result<Vec<u32>> {
        let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .chars()
            .map(String::from)
            .collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(String::from),
        );
        let miscellaneous: Vec<String> = "♩♪♫♬♭♮♯".chars().map(String::from).collect();
        let mut out = std::collections::BTreeSet::new();
        for s in [" -", " '"] {
            if let Some(&t) = self.encode(s)?.first() {
                out.insert(t);
            }
        }
        for (s, misc) in symbols
            .iter()
            .map(|s| (s, false))
            .chain(miscellaneous.iter().map(|s| (s, true)))
        {
            for ids in [self.encode(s)?, self.encode(&format!(" {s}"))?] {
                if (ids.len() == 1 || misc)
                    && let Some(&t) = ids.first()
                {
                    out.insert(t);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(n_vocab: usize) -> WhisperDims {
        WhisperDims {
            n_mels: 80,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_vocab,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
        }
    }

    #[test]
    fn special_ids_follow_the_vocabulary_size() {
        // tiny.en (TESTDATA.md: timestamps from 50363), multilingual (50364), large-v3 (50365).
        let en = Specials::for_dims(&dims(51864));
        assert_eq!(
            (en.eot, en.sot, en.no_timestamps, en.timestamp_begin),
            (50256, 50257, 50362, 50363)
        );
        let ml = Specials::for_dims(&dims(51865));
        assert_eq!(
            (ml.eot, ml.sot, ml.transcribe, ml.timestamp_begin),
            (50257, 50258, 50359, 50364)
        );
        assert_eq!(ml.language_token("en"), Some(50259));
        assert_eq!(ml.language_token("de"), Some(50261));
        let v3 = Specials::for_dims(&dims(51866));
        assert_eq!((v3.no_speech, v3.timestamp_begin), (50363, 50365));
        assert_eq!(v3.language_of_token(50358), Some("yue"));
    }

    #[test]
    fn languages_by_code_name_or_alias() {
        assert_eq!(language_code("de"), Some("de"));
        assert_eq!(language_code("German"), Some("de"));
        assert_eq!(language_code("castilian"), Some("es"));
        assert_eq!(language_code("klingon"), None);
        assert_eq!(LANGUAGES.len(), 100);
    }
}
