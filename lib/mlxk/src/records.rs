//! The JSON Lines records the tools exchange (DESIGN.md, "Wire format"). Every record carries
//! `"type"`. Filters work on `serde_json::Value` so that fields they do not know pass through.

use serde::{Deserialize, Serialize};

/// `{"type":"model", …}` written by mlxk-probe and passed on (with `gate`) by mlxk-gate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRecord {
    #[serde(rename = "type")]
    pub kind: String,
    /// `org/name` for a cache entry, the folder name for a plain folder.
    pub id: String,
    pub path: String,
    /// Snapshot hash of a cache entry; null for a plain folder.
    pub revision: Option<String>,
    pub framework: Framework,
    /// `safetensors`, `gguf`, `pytorch_bin` or `none`: what the weights are stored as.
    pub weight_format: String,
    pub model_type: Option<String>,
    pub quantization: Quantization,
    pub size_bytes: u64,
    pub context_length: Option<u64>,
    /// Where `context_length` came from, e.g. `config.json:max_position_embeddings`, or
    /// `default` when nothing declared it.
    pub context_length_source: String,
    pub capabilities: Vec<Capability>,
    pub health: Health,
    pub memory: MemoryEstimate,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Mlx,
    Gguf,
    Pytorch,
    /// CTranslate2's `model.bin` (faster-whisper's Whisper files).
    Ctranslate2,
    Unknown,
}

impl Framework {
    pub fn label(self) -> &'static str {
        match self {
            Framework::Mlx => "MLX",
            Framework::Gguf => "GGUF",
            Framework::Pytorch => "PyTorch",
            Framework::Ctranslate2 => "CTranslate2",
            Framework::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Text,
    Chat,
    Vision,
    Audio,
    Embeddings,
}

impl Capability {
    pub fn label(self) -> &'static str {
        match self {
            Capability::Text => "text",
            Capability::Chat => "chat",
            Capability::Vision => "vision",
            Capability::Audio => "audio",
            Capability::Embeddings => "embeddings",
        }
    }
}

/// How the weights are stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Quantization {
    /// `affine` (MLX quantized), `gguf`, or `none`.
    pub method: String,
    pub bits: Option<u32>,
    pub group_size: Option<u32>,
    /// Layers whose quantization differs from the global setting (MLX per-layer overrides).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overrides: u32,
    /// The dtype holding most weight bytes (`bfloat16`, `float16`, `float32`, `uint32` packed).
    pub dtype: Option<String>,
    /// GGUF tensor types present, e.g. `["F32", "Q4_1", "Q8_0"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gguf_types: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Quantization {
    /// Short label for tables: `4bit/g64`, `Q4_1`, `bf16`, `-`.
    pub fn label(&self) -> String {
        match self.method.as_str() {
            "affine" => match (self.bits, self.group_size) {
                (Some(b), Some(g)) => format!("{b}bit/g{g}"),
                (Some(b), None) => format!("{b}bit"),
                _ => "affine".into(),
            },
            "gguf" => {
                // The most specific (quantized) type names the file; F32 norms are incidental.
                let quantized: Vec<&String> = self
                    .gguf_types
                    .iter()
                    .filter(|t| !t.starts_with('F') && *t != "BF16")
                    .collect();
                match quantized.as_slice() {
                    [] => self
                        .gguf_types
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "gguf".into()),
                    [one] => (*one).clone(),
                    many => many
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("+"),
                }
            }
            _ => match self.dtype.as_deref() {
                Some("bfloat16") => "bf16".into(),
                Some("float16") => "f16".into(),
                Some("float32") => "f32".into(),
                Some(other) => other.into(),
                None => "-".into(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Health {
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryEstimate {
    /// Bytes the weights take in memory once loaded under the dtype policy.
    pub estimate_bytes: u64,
    /// What the policy loads them as, e.g. `float32 (upcast from bfloat16 on CPU)`.
    pub dtype: String,
}

/// The `gate` object mlxk-gate adds to a model record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gate {
    pub decision: Decision,
    /// `text`, `vision` or `audio`; null when no backend can run the model.
    pub backend: Option<String>,
    pub reasons: Vec<String>,
    pub available_bytes: Option<u64>,
    pub ratio: Option<f64>,
    pub threshold: f64,
    /// The memory facts behind `available_bytes`.
    pub memory: Option<crate::sys::MemorySnapshot>,
    /// Why a `block` blocks: `unusable` (no backend can run the model here: broken files, an
    /// unsupported architecture or format) or `memory` (the memory gate alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<BlockCause>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlockCause {
    Unusable,
    Memory,
}

impl Gate {
    /// The failure a consumer reports for this gate's decision: none unless it blocks; exit 4
    /// when the model is unusable here, 5 when only memory blocks it (DESIGN.md). A block
    /// from a gate that did not say why counts as the memory gate's.
    pub fn refusal(&self) -> Option<crate::cli::Failure> {
        use crate::cli::{Exit, Failure};
        if self.decision != Decision::Block {
            return None;
        }
        let message = format!("blocked by the gate: {}", self.reasons.join("; "));
        Some(match self.blocked_by {
            Some(BlockCause::Unusable) => Failure::new(Exit::Unusable, "unusable", message),
            _ => Failure::new(Exit::Blocked, "blocked", message),
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Warn,
    Block,
}

impl Decision {
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Warn => "warn",
            Decision::Block => "block",
        }
    }
}

/// `{"type":"error", …}`: any tool, in JSON mode, for a failure tied to one input.
pub fn error_record(code: &str, message: &str, model: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"type": "error", "code": code, "message": message});
    if let Some(m) = model {
        v["model"] = serde_json::Value::String(m.to_string());
    }
    v
}

/// One line of a record stream (`mlxk-probe | mlxk-gate | …`), as the consuming tools read it.
#[derive(Debug)]
pub enum RecordLine {
    /// A model record (the JSON as read, and parsed).
    Model(serde_json::Value, Box<ModelRecord>),
    /// Any other record, to pass on or act upon by its `type`.
    Other(serde_json::Value),
    /// Not a record: the message names line `n`; `model` is the id if the line had one.
    Malformed {
        message: String,
        model: Option<String>,
    },
}

/// Reads line `n` (1-based, for messages) of a record stream.
pub fn parse_record_line(line: &str, n: usize) -> RecordLine {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return RecordLine::Malformed {
                message: format!("stdin line {n}: not a JSON object"),
                model: None,
            };
        }
        Err(e) => {
            return RecordLine::Malformed {
                message: format!("stdin line {n}: not valid JSON ({e})"),
                model: None,
            };
        }
    };
    if value["type"] != "model" {
        return RecordLine::Other(value);
    }
    match serde_json::from_value(value.clone()) {
        Ok(r) => RecordLine::Model(value, Box::new(r)),
        Err(e) => RecordLine::Malformed {
            message: format!(
                "stdin line {n}: model record is incomplete ({e}); produce it with mlxk-probe"
            ),
            model: value["id"].as_str().map(str::to_string),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_are_told_apart() {
        assert!(matches!(
            parse_record_line("{nope", 1),
            RecordLine::Malformed { message, model: None } if message.starts_with("stdin line 1: not valid JSON")
        ));
        assert!(matches!(
            parse_record_line("[1]", 2),
            RecordLine::Malformed { message, .. } if message == "stdin line 2: not a JSON object"
        ));
        assert!(matches!(
            parse_record_line(r#"{"type":"error","message":"x"}"#, 3),
            RecordLine::Other(_)
        ));
        assert!(matches!(
            parse_record_line(r#"{"type":"model","id":"m"}"#, 4),
            RecordLine::Malformed { message, model: Some(id) }
                if id == "m" && message.contains("model record is incomplete")
        ));
    }

    #[test]
    fn quantization_labels() {
        let q = Quantization {
            method: "affine".into(),
            bits: Some(4),
            group_size: Some(64),
            ..Default::default()
        };
        assert_eq!(q.label(), "4bit/g64");
        let g = Quantization {
            method: "gguf".into(),
            gguf_types: vec!["F32".into(), "Q4_1".into(), "Q8_0".into()],
            ..Default::default()
        };
        assert_eq!(g.label(), "Q4_1+Q8_0");
        let f = Quantization {
            method: "none".into(),
            dtype: Some("bfloat16".into()),
            ..Default::default()
        };
        assert_eq!(f.label(), "bf16");
    }

    #[test]
    fn error_record_shape() {
        let e = error_record("not_found", "no model matches 'x'", Some("x"));
        assert_eq!(e["type"], "error");
        assert_eq!(e["code"], "not_found");
        assert_eq!(e["model"], "x");
    }
}
