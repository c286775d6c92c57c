//! Decoding one 30-second window, as mlx-whisper's `DecodingTask` does: the initial tokens
//! (previous text after `<|startofprev|>`, then `<|startoftranscript|>`, language, task), the
//! logit filters (blank suppression at the start, suppressed tokens, timestamp rules), greedy
//! or sampled tokens up to half the text context, and the window's average log-probability,
//! no-speech probability and compression ratio.
use super::tokenizer::WhisperTokenizer;
use crate::error::Result;
use crate::models::whisper::{DecoderCache, Whisper};
use mlx_rs::Array;
use mlx_rs::ops::indexing::IndexOp;

/// transcribe or translate (to English).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Transcribe,
    Translate,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

/// How one window is decoded.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub task: Task,
    /// Language code; `None` on an English-only model.
    pub language: Option<String>,
    pub temperature: f32,
    /// Previous text, as tokens (after `<|startofprev|>`).
    pub prompt: Vec<u32>,
    pub without_timestamps: bool,
    /// The first timestamp may be at most this many seconds in.
    pub max_initial_timestamp: Option<f32>,
    pub suppress_blank: bool,
    /// Extra ids to suppress besides the non-speech symbols and the task/control tokens.
    pub suppress_tokens: Vec<u32>,
    pub seed: u64,
    /// Beam search with this many beams at temperature 0 (1: greedy).
    pub beam_size: usize,
    /// Beam search stops once `beam_size × patience` hypotheses have ended.
    pub patience: f32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            task: Task::Transcribe,
            language: None,
            temperature: 0.0,
            prompt: Vec::new(),
            without_timestamps: false,
            max_initial_timestamp: Some(1.0),
            suppress_blank: true,
            suppress_tokens: Vec::new(),
            seed: 0,
            beam_size: 1,
            patience: 1.0,
        }
    }
}

/// What decoding a window gave.
#[derive(Debug, Clone)]
pub struct DecodingResult {
    /// Sampled tokens, without the initial ones and without `<|endoftext|>`.
    pub tokens: Vec<u32>,
    pub text: String,
    pub avg_logprob: f64,
    pub no_speech_prob: f64,
    pub temperature: f32,
    pub compression_ratio: f64,
    /// Whether the sampled text ended by itself (`<|endoftext|>`) rather than at the limit.
    pub ended: bool,
}

/// The initial tokens: `[<|startofprev|> prompt…] <|startoftranscript|> [lang] [task]
/// [<|notimestamps|>]`; and the index of `<|startoftranscript|>` in them.
pub fn initial_tokens(
    tok: &WhisperTokenizer,
    n_text_ctx: usize,
    o: &DecodeOptions,
) -> (Vec<u32>, usize) {
    let s = &tok.specials;
    let mut t = Vec::new();
    if !o.prompt.is_empty() {
        t.push(s.sot_prev);
        let keep = n_text_ctx / 2 - 1;
        let start = o.prompt.len().saturating_sub(keep);
        t.extend_from_slice(&o.prompt[start..]);
    }
    let sot_index = t.len();
    t.push(s.sot);
    if tok.multilingual {
        let lang = o.language.as_deref().unwrap_or("en");
        if let Some(l) = s.language_token(lang) {
            t.push(l);
        }
        t.push(match o.task {
            Task::Transcribe => s.transcribe,
            Task::Translate => s.translate,
        });
    }
    if o.without_timestamps {
        t.push(s.no_timestamps);
    }
    (t, sot_index)
}

/// The logit filters of one decoding, in mlx-whisper's order.
pub struct LogitFilters {
    sample_begin: usize,
    blank: Option<Vec<u32>>,
    suppress: Vec<u32>,
    timestamps: Option<TimestampRules>,
}

struct TimestampRules {
    timestamp_begin: u32,
    eot: u32,
    no_timestamps: u32,
    max_initial_index: Option<usize>,
}

impl LogitFilters {
    pub fn new(
        tok: &WhisperTokenizer,
        sample_begin: usize,
        o: &DecodeOptions,
        n_audio_ctx: usize,
    ) -> Result<LogitFilters> {
        let s = &tok.specials;
        let blank = if o.suppress_blank {
            let mut b = tok.encode(" ")?;
            b.push(s.eot);
            Some(b)
        } else {
            None
        };
        let mut suppress = tok.non_speech_tokens()?;
        suppress.extend_from_slice(&o.suppress_tokens);
        suppress.extend([
            s.transcribe,
            s.translate,
            s.sot,
            s.sot_prev,
            s.sot_lm,
            s.no_speech,
        ]);
        suppress.sort_unstable();
        suppress.dedup();
        let timestamps = (!o.without_timestamps).then(|| {
            let precision = 30.0 / n_audio_ctx as f64;
            TimestampRules {
                timestamp_begin: s.timestamp_begin,
                eot: s.eot,
                no_timestamps: s.no_timestamps,
                max_initial_index: o
                    .max_initial_timestamp
                    .filter(|&m| m > 0.0)
                    .map(|m| (m as f64 / precision).round() as usize),
            }
        });
        Ok(LogitFilters {
            sample_begin,
            blank,
            suppress,
            timestamps,
        })
    }

    /// Applies every filter to `logits` (one row) given all `tokens` so far.
    pub fn apply(&self, logits: &mut [f32], tokens: &[u32]) {
        let n = logits.len();
        if let Some(b) = &self.blank
            && tokens.len() == self.sample_begin
        {
            for &t in b {
                if (t as usize) < n {
                    logits[t as usize] = f32::NEG_INFINITY;
                }
            }
        }
        for &t in &self.suppress {
            if (t as usize) < n {
                logits[t as usize] = f32::NEG_INFINITY;
            }
        }
        if let Some(r) = &self.timestamps {
            r.apply(
                logits,
                &tokens[self.sample_begin.min(tokens.len())..],
                tokens.len() == self.sample_begin,
            );
        }
    }
}

impl TimestampRules {
    /// mlx-whisper's `ApplyTimestampRules`: timestamps come in pairs, never go back, the first
    /// is near the start; and when the timestamps together are likelier than any text token, a
    /// timestamp it is.
    fn apply(&self, logits: &mut [f32], seq: &[u32], at_start: bool) {
        let n = logits.len();
        let tb = self.timestamp_begin as usize;
        let eot = self.eot as usize;
        let mut mask = vec![0.0f32; n];
        mask[self.no_timestamps as usize] = f32::NEG_INFINITY;
        let last_ts = seq.last().is_some_and(|&t| t >= self.timestamp_begin);
        let penult_ts = seq.len() < 2 || seq[seq.len() - 2] >= self.timestamp_begin;
        if last_ts {
            if penult_ts {
                mask[tb..].fill(f32::NEG_INFINITY);
            } else {
                mask[..eot].fill(f32::NEG_INFINITY);
            }
        }
        // openai-whisper also forbids timestamps before the last one here; mlx-whisper 0.4.3
        // slices its mask with the last timestamp's *position* (`mask[k, timestamp_begin:i]`,
        // always empty), so the rule does nothing there — left out to decode as it does.
        if at_start {
            mask[..tb].fill(f32::NEG_INFINITY);
            if let Some(m) = self.max_initial_index {
                let last_allowed = tb + m;
                if last_allowed + 1 < n {
                    mask[last_allowed + 1..].fill(f32::NEG_INFINITY);
                }
            }
        }
        let lse = logsumexp(logits);
        let ts_lp = logsumexp(&logits[tb..]) - lse;
        let max_text = logits[..tb]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            - lse;
        if ts_lp > max_text {
            mask[..tb].fill(f32::NEG_INFINITY);
        }
        for (l, m) in logits.iter_mut().zip(&mask) {
            *l += m;
        }
    }
}

/// `log Σ exp(x)`, stable; `-inf` for an all `-inf` row.
pub fn logsumexp(x: &[f32]) -> f32 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    let s: f32 = x.iter().map(|v| (v - m).exp()).sum();
    m + s.ln()
}

/// gzip-style compression ratio of the text (mlx-whisper's repetition measure).
pub fn compression_ratio(text: &str) -> f64 {
    use std::io::Write;
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    let _ = e.write_all(bytes);
    let z = e.finish().map(|v| v.len()).unwrap_or(bytes.len());
    bytes.len() as f64 / z.max(1) as f64
}

/// A tiny deterministic generator for temperature sampling (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

fn row(logits: &Array, i: usize) -> Result<Vec<f32>> {
    let r = logits.index((0, i as i32, ..));
    r.eval()?;
    Ok(r.as_slice::<f32>().to_vec())
}

/// Decodes one window whose encoder output is `audio`.
pub fn decode_window(
    model: &Whisper,
    tok: &WhisperTokenizer,
    audio: &Array,
    o: &DecodeOptions,
) -> Result<DecodingResult> {
    if o.beam_size > 1 && o.temperature == 0.0 {
        return decode_beam(model, tok, audio, o);
    }
    let n_ctx = model.dims.n_text_ctx;
    let sample_len = n_ctx / 2;
    let (initial, sot_index) = initial_tokens(tok, n_ctx, o);
    let filters = LogitFilters::new(tok, initial.len(), o, model.dims.n_audio_ctx)?;
    let mut cache: DecoderCache = model.start(audio)?;
    let mut tokens = initial.clone();
    let mut rng = Rng(o.seed ^ 0x9E37_79B9_7F4A_7C15 | 1);
    let eot = tok.specials.eot;
    let mut sum_logprob = 0.0f64;
    let mut no_speech_prob = f64::NAN;
    let mut ended = false;
    let mut input = initial.clone();
    for step in 0..sample_len {
        if tokens.len() > n_ctx {
            break;
        }
        let ids = Array::from_slice(
            &input.iter().map(|&t| t as i32).collect::<Vec<_>>(),
            &[1, input.len() as i32],
        );
        let (logits, _) = model.decode(&ids, &mut cache, false)?;
        if step == 0 {
            let at_sot = row(&logits, sot_index)?;
            let lse = logsumexp(&at_sot);
            no_speech_prob = ((at_sot[tok.specials.no_speech as usize] - lse) as f64).exp();
        }
        let mut last = row(&logits, input.len() - 1)?;
        filters.apply(&mut last, &tokens);
        let next = if o.temperature == 0.0 {
            argmax(&last)
        } else {
            sample(&last, o.temperature, &mut rng)
        };
        let lse = logsumexp(&last);
        sum_logprob += (last[next] - lse) as f64;
        tokens.push(next as u32);
        if next as u32 == eot {
            ended = true;
            break;
        }
        input = vec![next as u32];
    }
    let sampled: Vec<u32> = tokens[initial.len()..]
        .iter()
        .copied()
        .take_while(|&t| t != eot)
        .collect();
    let text = tok.decode(&sampled)?.trim().to_string();
    Ok(DecodingResult {
        avg_logprob: sum_logprob / (sampled.len() + 1) as f64,
        compression_ratio: compression_ratio(&text),
        tokens: sampled,
        text,
        no_speech_prob,
        temperature: o.temperature,
        ended,
    })
}

/// Beam search as openai-whisper's `BeamSearchDecoder` (which mlx-whisper leaves out): each
/// hypothesis proposes its `beam + 1` likeliest next tokens, the best `beam` unfinished ones
/// go on, ended ones are kept until `beam × patience` have ended; the winner has the best
/// log-probability per token.
fn decode_beam(
    model: &Whisper,
    tok: &WhisperTokenizer,
    audio: &Array,
    o: &DecodeOptions,
) -> Result<DecodingResult> {
    let n_ctx = model.dims.n_text_ctx;
    let sample_len = n_ctx / 2;
    let beam = o.beam_size;
    let max_candidates = ((beam as f32 * o.patience).round() as usize).max(1);
    let (initial, sot_index) = initial_tokens(tok, n_ctx, o);
    let filters = LogitFilters::new(tok, initial.len(), o, model.dims.n_audio_ctx)?;
    let eot = tok.specials.eot;
    let mut cache = model.start(audio)?;
    // Live hypotheses: all tokens so far and their summed log-probability.
    let mut live: Vec<(Vec<u32>, f64)> = vec![(initial.clone(), 0.0)];
    // Ended hypotheses; `true` when the model itself ended it with <|endoftext|>.
    let mut finished: Vec<(Vec<u32>, f64, bool)> = Vec::new();
    let mut no_speech_prob = f64::NAN;
    let mut input: Vec<Vec<u32>> = vec![initial.clone()];
    for step in 0..sample_len {
        if live[0].0.len() > n_ctx {
            break;
        }
        let (b, l) = (input.len(), input[0].len());
        let flat: Vec<i32> = input.iter().flatten().map(|&t| t as i32).collect();
        let ids = Array::from_slice(&flat, &[b as i32, l as i32]);
        let (logits, _) = model.decode(&ids, &mut cache, false)?;
        let last = logits.index((.., (l - 1) as i32, ..));
        last.eval()?;
        let rows = last.as_slice::<f32>();
        let vocab = rows.len() / b;
        if step == 0 {
            let at_sot = logits.index((0, sot_index as i32, ..));
            at_sot.eval()?;
            let at_sot = at_sot.as_slice::<f32>();
            let lse = logsumexp(at_sot);
            no_speech_prob = ((at_sot[tok.specials.no_speech as usize] - lse) as f64).exp();
        }
        let mut candidates: Vec<(f64, usize, u32)> = Vec::new();
        for (i, (toks, score)) in live.iter().enumerate() {
            let mut row = rows[i * vocab..(i + 1) * vocab].to_vec();
            filters.apply(&mut row, toks);
            let lse = logsumexp(&row);
            let mut idx: Vec<usize> = (0..vocab).filter(|&t| row[t].is_finite()).collect();
            let k = (beam + 1).min(idx.len());
            if k == 0 {
                continue;
            }
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            idx.truncate(k);
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            for t in idx {
                candidates.push((score + (row[t] - lse) as f64, i, t as u32));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut next: Vec<(Vec<u32>, f64)> = Vec::new();
        let mut sources: Vec<u32> = Vec::new();
        let mut newly: Vec<(Vec<u32>, f64)> = Vec::new();
        for (score, src, t) in candidates {
            let mut seq = live[src].0.clone();
            seq.push(t);
            if t == eot {
                newly.push((seq, score));
            } else {
                next.push((seq, score));
                sources.push(src as u32);
                if next.len() == beam {
                    break;
                }
            }
        }
        for f in newly {
            if finished.len() >= max_candidates {
                break;
            }
            finished.push((f.0, f.1, true));
        }
        if finished.len() >= max_candidates || next.is_empty() {
            break;
        }
        cache.select_rows(&sources)?;
        input = next
            .iter()
            .map(|(s, _)| vec![*s.last().expect("a token")])
            .collect();
        live = next;
    }
    // Not enough ended: the best live ones count as ended here.
    if finished.len() < beam {
        let mut rest = live.clone();
        rest.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (mut s, score) in rest {
            if finished.len() >= beam {
                break;
            }
            s.push(eot);
            finished.push((s, score, false));
        }
    }
    let strip = |s: &[u32]| -> Vec<u32> {
        s[initial.len()..]
            .iter()
            .copied()
            .take_while(|&t| t != eot)
            .collect()
    };
    let best = finished
        .iter()
        .max_by(|a, b| {
            let sa = a.1 / strip(&a.0).len().max(1) as f64;
            let sb = b.1 / strip(&b.0).len().max(1) as f64;
            sa.total_cmp(&sb)
        })
        .ok_or_else(|| {
            crate::error::InferError::Mlx("beam search ended without a hypothesis".into())
        })?;
    let sampled = strip(&best.0);
    let ended = best.2;
    let text = tok.decode(&sampled)?.trim().to_string();
    Ok(DecodingResult {
        avg_logprob: best.1 / (sampled.len() + 1) as f64,
        compression_ratio: compression_ratio(&text),
        tokens: sampled,
        text,
        no_speech_prob,
        temperature: 0.0,
        ended,
    })
}

/// A token drawn from `softmax(logits / t)`.
fn sample(logits: &[f32], t: f32, rng: &mut Rng) -> usize {
    let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
    let lse = logsumexp(&scaled);
    let mut u = rng.next_f64();
    for (i, &l) in scaled.iter().enumerate() {
        let p = ((l - lse) as f64).exp();
        if u < p {
            return i;
        }
        u -= p;
    }
    argmax(logits)
}

/// The language the first window sounds like: the likeliest language token after
/// `<|startoftranscript|>`, with every language's probability.
pub fn detect_language(
    model: &Whisper,
    tok: &WhisperTokenizer,
    audio: &Array,
) -> Result<(String, Vec<(String, f64)>)> {
    let mut cache = model.start(audio)?;
    let ids = Array::from_slice(&[tok.specials.sot as i32], &[1, 1]);
    let (logits, _) = model.decode(&ids, &mut cache, false)?;
    let l = row(&logits, 0)?;
    let langs = &tok.specials.languages;
    let vals: Vec<f32> = langs.iter().map(|&t| l[t as usize]).collect();
    let lse = logsumexp(&vals);
    let mut probs: Vec<(String, f64)> = langs
        .iter()
        .zip(&vals)
        .filter_map(|(&t, &v)| {
            Some((
                tok.specials.language_of_token(t)?.to_string(),
                ((v - lse) as f64).exp(),
            ))
        })
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = probs
        .first()
        .map(|p| p.0.clone())
        .unwrap_or_else(|| "en".into());
    Ok((best, probs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TimestampRules {
        TimestampRules {
            timestamp_begin: 10,
            eot: 8,
            no_timestamps: 9,
            max_initial_index: Some(2),
        }
    }

    #[test]
    fn the_first_token_is_an_early_timestamp() {
        let mut l = vec![0.0f32; 20];
        rules().apply(&mut l, &[], true);
        let allowed: Vec<usize> = (0..20).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, [10, 11, 12]);
    }

    #[test]
    fn timestamps_come_in_pairs() {
        // text, then a lone timestamp: the next closes the pair (a timestamp) or ends (eot).
        let mut l = vec![0.0f32; 20];
        // Text likelier than the timestamps together, so the last rule does not take over.
        l[..8].fill(5.0);
        rules().apply(&mut l, &[10, 3, 14], false);
        let allowed: Vec<usize> = (0..20).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, [8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
        // a pair of timestamps: text next (or eot), no timestamp.
        let mut l = vec![0.0f32; 20];
        l[3] = 5.0;
        rules().apply(&mut l, &[10, 3, 14, 14], false);
        assert!((10..20).all(|i| l[i] == f32::NEG_INFINITY));
        assert!(l[3].is_finite());
    }

    #[test]
    fn likelier_timestamps_exclude_text() {
        let mut l = vec![-10.0f32; 20];
        for v in &mut l[10..] {
            *v = 0.0;
        }
        rules().apply(&mut l, &[10, 3], false);
        assert!((0..10).all(|i| l[i] == f32::NEG_INFINITY));
    }

    #[test]
    fn repetition_compresses_well() {
        assert!(compression_ratio(&"the same words again ".repeat(20)) > 2.4);
        assert!(compression_ratio("The quick brown fox jumps over the lazy dog.") < 1.5);
    }
}
