//! Tokenization (the `tokenizers` crate) and chat templates (minijinja with Python-compatible
//! string/dict methods). A tokenizer comes from `tokenizer.json` + `tokenizer_config.json`
//! (+ `chat_template.jinja`) in the model folder, or is built from GGUF metadata.
use crate::config::eos_ids;
use crate::error::{InferError, Result};
use crate::gguf::GgufTokenizerData;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A model's tokenizer, chat template and end-of-sequence ids.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Every id that ends generation (config, generation_config, tokenizer).
    pub eos_ids: BTreeSet<u32>,
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> InferError {
    InferError::Tokenizer(format!("{what}: {e}"))
}

/// `"<s>"` or `{"content": "<s>", …}` as tokenizer_config.json writes special tokens.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

/// The pre-tokenizer of a GGUF `tokenizer.ggml.pre` name, in tokenizer.json form.
fn gguf_pre_tokenizer(pre: Option<&str>) -> Option<(Value, bool)> {
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" => (byte_level(true), false),
        "smollm" | "starcoder" | "refact" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "llama-bpe" | "llama3" | "smaug-bpe" => (
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]}),
            true,
        ),
        "qwen2" => (
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]}),
            false,
        ),
        _ => return None,
    })
}

impl TextTokenizer {
    /// Reads the tokenizer files of a model folder; `config_eos` are config.json's ids.
    pub fn from_dir(dir: &Path, config_eos: &[u32]) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| tok_err(&format!("{}", path.display()), e))?;
        let cfg: Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| {
                tok_err(
                    &format!("{}", dir.join("tokenizer_config.json").display()),
                    e,
                )
            })?,
            Err(_) => Value::Null,
        };
        let template_file = dir.join("chat_template.jinja");
        let chat_template = if template_file.is_file() {
            Some(
                std::fs::read_to_string(&template_file)
                    .map_err(|e| tok_err(&format!("{}", template_file.display()), e))?,
            )
        } else {
            match cfg.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                // A list of named templates: the one named "default".
                Some(Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str().map(String::from)),
                _ => None,
            }
        };
        let mut t = TextTokenizer {
            bos_token: token_text(cfg.get("bos_token")),
            eos_token: token_text(cfg.get("eos_token")),
            inner,
            chat_template,
            eos_ids: config_eos.iter().copied().collect(),
        };
        if let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            t.eos_ids.extend(eos_ids(v.get("eos_token_id")));
        }
        if let Some(id) = t.eos_token.as_deref().and_then(|e| t.inner.token_to_id(e)) {
            t.eos_ids.insert(id);
        }
        Ok(t)
    }

    /// Builds the tokenizer GGUF metadata describes (GPT-2-style byte-level BPE).
    pub fn from_gguf(d: &GgufTokenizerData, path: &Path) -> Result<TextTokenizer> {
        let unsupported = |msg: String| InferError::Unsupported {
            path: path.to_path_buf(),
            msg: format!("{msg}; place the model's tokenizer.json beside the .gguf file"),
        };
        if d.model != "gpt2" {
            return Err(unsupported(format!(
                "GGUF tokenizer model `{}` is not supported (only byte-level BPE, `gpt2`)",
                d.model
            )));
        }
        let (pre, ignore_merges) = gguf_pre_tokenizer(d.pre.as_deref()).ok_or_else(|| {
            unsupported(format!(
                "GGUF pre-tokenizer `{}` is not supported",
                d.pre.as_deref().unwrap_or("")
            ))
        })?;
        let vocab: serde_json::Map<String, Value> = d
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<Value> = d
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(d.token_types.get(*i), Some(3) | Some(4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": d.token_types[i] == 3})
            })
            .collect();
        let bos_token = d.bos.and_then(|i| d.tokens.get(i as usize).cloned());
        let post = match (&bos_token, d.add_bos) {
            (Some(b), true) => json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {b: {"id": b, "ids": [d.bos], "tokens": [b]}}}),
            _ => Value::Null,
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": null, "pre_tokenizer": pre,
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                      "vocab": vocab, "merges": d.merges},
        });
        let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(|e| {
            tok_err(
                &format!("{}: tokenizer from GGUF metadata", path.display()),
                e,
            )
        })?;
        Ok(TextTokenizer {
            inner,
            chat_template: d.chat_template.clone(),
            bos_token,
            eos_token: d.eos.and_then(|i| d.tokens.get(i as usize).cloned()),
            eos_ids: d.eos.into_iter().collect(),
        })
    }

    /// Token ids of `text`; `special` adds what the tokenizer adds around a sequence (BOS).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| tok_err("encoding the prompt", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` (special tokens included, as the reference prints them).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err("decoding tokens", e))
    }

    /// The id of a token given by its text (a special token), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Renders the chat template for `messages`, ending with the assistant's turn.
    pub fn render_chat(
        &self,
        messages: &[Message],
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        self.render_chat_values(messages, enable_thinking)
    }

    /// [`TextTokenizer::render_chat`] for messages of any shape the template reads (a vision
    /// prompt's `content` is a list of `{"type": "image"}` and `{"type": "text", …}` parts).
    pub fn render_chat_values(
        &self,
        messages: &(impl serde::Serialize + ?Sized),
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            InferError::Options(
                "the model has no chat template; pass --raw to send the prompt as is".into(),
            )
        })?;
        render_template(
            template,
            messages,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
            enable_thinking,
        )
    }
}

/// Renders a Hugging Face chat template with minijinja.
pub fn render_template(
    template: &str,
    messages: &(impl serde::Serialize + ?Sized),
    bos: Option<&str>,
    eos: Option<&str>,
    enable_thinking: Option<bool>,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_function("strftime_now", |fmt: String| -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        mlxk::report::markdown::format_utc(now, &fmt)
    });
    // transformers' `{% generation %}` marks the assistant's part for training masks; it
    // renders as its content.
    let mut template = template.to_string();
    for tag in ["generation", "endgeneration"] {
        for (open, close) in [("{%", "%}"), ("{%-", "%}"), ("{%", "-%}"), ("{%-", "-%}")] {
            template = template.replace(&format!("{open} {tag} {close}"), "");
        }
    }
    env.add_template_owned("chat", template)
        .map_err(|e| InferError::Tokenizer(format!("the chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").expect("added above");
    let mut ctx = json!({
        "messages": messages,
        "add_generation_prompt": true,
        "bos_token": bos.unwrap_or(""),
        "eos_token": eos.unwrap_or(""),
    });
    if let Some(t) = enable_thinking {
        ctx["enable_thinking"] = json!(t);
    }
    tmpl.render(ctx)
        .map_err(|e| InferError::Tokenizer(format!("rendering the chat template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_python_string_methods() {
        let t = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'].strip() }}<|im_end|>\n{% endfor %}\
                 {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let out = render_template(t, &[msg("user", "  Hi ")], None, None, None).unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn enable_thinking_reaches_the_template() {
        let t = "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>{% endif %}";
        assert_eq!(
            render_template(t, &[] as &[Message], None, None, Some(false)).unwrap(),
            "<think>\n\n</think>"
        );
        assert_eq!(
            render_template(t, &[] as &[Message], None, None, None).unwrap(),
            ""
        );
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = "{{ raise_exception('System role not supported') }}";
        let e = render_template(t, &[] as &[Message], None, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("System role not supported"), "{e}");
    }

    #[test]
    fn gguf_byte_level_bpe_with_digit_splitting() {
        // A tiny vocabulary: bytes used below, two merges, one control token.
        let tokens: Vec<String> = ["<|end|>", "h", "i", "Ġ", "1", "2", "hi", "Ġhi"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = GgufTokenizerData {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            merges: vec!["h i".into(), "Ġ hi".into()],
            token_types: vec![3, 1, 1, 1, 1, 1, 1, 1],
            tokens,
            eos: Some(0),
            ..Default::default()
        };
        let t = TextTokenizer::from_gguf(&d, Path::new("m.gguf")).unwrap();
        assert_eq!(
            t.encode("hi hi12<|end|>", false).unwrap(),
            vec![6, 7, 4, 5, 0]
        );
        assert_eq!(t.decode(&[6, 7, 4, 5]).unwrap(), "hi hi12");
        assert!(t.eos_ids.contains(&0));
    }

    #[test]
    fn unknown_gguf_tokenizers_are_refused_with_the_fix() {
        let d = GgufTokenizerData {
            model: "llama".into(),
            ..Default::default()
        };
        let e = TextTokenizer::from_gguf(&d, Path::new("m.gguf"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("tokenizer.json beside"), "{e}");
    }
}
