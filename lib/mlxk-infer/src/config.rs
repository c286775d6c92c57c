//! A model's `config.json`, read into what the architectures need. Architecture-specific keys
//! stay in [`ModelConfig::raw`] and are read by the architecture's own file.
use crate::error::{Result, broken};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Affine quantization of one layer: `group_size` values share a scale and bias; `bits` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantSpec {
    pub group_size: i32,
    pub bits: i32,
}

/// The checkpoint's `quantization` entry: a default plus per-layer overrides (`false` = dense).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quantization {
    pub default: Option<QuantSpec>,
    pub overrides: HashMap<String, Option<QuantSpec>>,
}

impl Quantization {
    /// Reads a config.json `quantization` entry; `None` if it is not an object.
    pub fn from_json(v: &Value) -> Option<Quantization> {
        let obj = v.as_object()?;
        let spec = |o: &serde_json::Map<String, Value>| -> Option<QuantSpec> {
            Some(QuantSpec {
                group_size: o.get("group_size")?.as_i64()? as i32,
                bits: o.get("bits")?.as_i64()? as i32,
            })
        };
        let mut q = Quantization {
            default: spec(obj),
            overrides: HashMap::new(),
        };
        for (k, v) in obj {
            match v {
                Value::Object(o) => {
                    q.overrides.insert(k.clone(), spec(o));
                }
                Value::Bool(false) => {
                    q.overrides.insert(k.clone(), None);
                }
                _ => {}
            }
        }
        Some(q)
    }

    /// The spec for the layer at `prefix` (e.g. `model.layers.0.mlp.down_proj`).
    pub fn for_layer(&self, prefix: &str) -> Option<QuantSpec> {
        match self.overrides.get(prefix) {
            Some(o) => *o,
            None => self.default,
        }
    }
}

/// The hyper-parameters shared by the decoder-only architectures.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub model_type: String,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_traditional: bool,
    pub rope_scaling: Option<Value>,
    pub vocab_size: usize,
    pub max_position_embeddings: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub quantization: Option<Quantization>,
    /// `eos_token_id` from config.json (an int or a list).
    pub eos_token_ids: Vec<u32>,
    pub raw: Value,
}

/// Reads `eos_token_id` whether it is an int or a list of ints.
pub fn eos_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl ModelConfig {
    /// Reads `config.json` in `dir`.
    pub fn load(dir: &Path) -> Result<ModelConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| broken(&path, format!("cannot read: {e}")))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| broken(&path, format!("not valid JSON: {e}")))?;
        Self::from_json(&path, raw)
    }

    /// Builds the config from parsed JSON; `path` names it in errors.
    pub fn from_json(path: &Path, mut raw: Value) -> Result<ModelConfig> {
        // Multimodal exporters nest the text model's keys; gemma3 text-only checkpoints do not.
        if let Some(text) = raw.get("text_config").cloned()
            && raw.get("hidden_size").is_none()
            && let (Some(t), Some(r)) = (text.as_object(), raw.as_object_mut())
        {
            for (k, v) in t {
                r.entry(k.clone()).or_insert(v.clone());
            }
        }
        let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let need = |k: &str| -> Result<usize> {
            get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| broken(path, format!("`{k}` is missing or not a number")))
        };
        let model_type = get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| broken(path, "`model_type` is missing"))?
            .to_string();
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        for k in [
            "hidden_size",
            "num_hidden_layers",
            "intermediate_size",
            "vocab_size",
        ] {
            if need(k)? == 0 {
                return Err(broken(path, format!("`{k}` is 0")));
            }
        }
        // Optional counts: absent takes the default, present must be a whole number.
        let count = |k: &str| -> Result<Option<usize>> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| broken(path, format!("`{k}` is not a whole number: {v}"))),
            }
        };
        let num_kv_heads = count("num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(broken(
                path,
                format!("{num_heads} attention heads cannot share {num_kv_heads} key/value heads"),
            ));
        }
        let head_dim = count("head_dim")?.unwrap_or(hidden_size / num_heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(broken(
                path,
                format!(
                    "head dimension {head_dim} (hidden {hidden_size} / {num_heads} heads) must be even and > 0"
                ),
            ));
        }
        // Present but of the wrong type is an error, not the default.
        let f = |k: &str, d: f64| -> Result<f32> {
            match get(k) {
                None => Ok(d as f32),
                Some(v) => v
                    .as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| broken(path, format!("`{k}` is not a number: {v}"))),
            }
        };
        let b = |k: &str| -> Result<Option<bool>> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| broken(path, format!("`{k}` is not true/false: {v}"))),
            }
        };
        let quantization = get("quantization")
            .or_else(|| get("quantization_config"))
            .and_then(Quantization::from_json);
        Ok(ModelConfig {
            path: path.to_path_buf(),
            hidden_size,
            num_layers: need("num_hidden_layers")?,
            intermediate_size: need("intermediate_size")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: f("rms_norm_eps", 1e-6)?,
            rope_theta: f("rope_theta", 10000.0)?,
            rope_traditional: b("rope_traditional")?.unwrap_or(false),
            rope_scaling: get("rope_scaling").cloned(),
            vocab_size: need("vocab_size")?,
            max_position_embeddings: count("max_position_embeddings")?,
            tie_word_embeddings: b("tie_word_embeddings")?,
            attention_bias: b("attention_bias")?.unwrap_or(false),
            mlp_bias: b("mlp_bias")?.unwrap_or(false),
            quantization,
            eos_token_ids: eos_ids(get("eos_token_id")),
            model_type,
            raw,
        })
    }

    /// The architecture-specific keys of config.json as a typed struct (mlx-lm's
    /// `ModelArgs`): absent keys take the struct's documented defaults, a key of the wrong type
    /// is an error naming it — never a silent default.
    pub fn args<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.raw.clone()).map_err(|e| {
            broken(
                &self.path,
                format!("invalid {} config: {e}", self.model_type),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_json(Path::new("config.json"), v)
    }

    fn base() -> Value {
        json!({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
               "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 100})
    }

    #[test]
    fn defaults_and_derived_values() {
        let c = cfg(base()).unwrap();
        assert_eq!(c.num_kv_heads, 4);
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_theta, 10000.0);
        assert!(c.quantization.is_none());
    }

    #[test]
    fn eos_may_be_int_or_list() {
        assert_eq!(eos_ids(Some(&json!(2))), vec![2]);
        assert_eq!(eos_ids(Some(&json!([1, 7]))), vec![1, 7]);
        assert!(eos_ids(None).is_empty());
    }

    #[test]
    fn quantization_with_per_layer_overrides() {
        let mut v = base();
        v["quantization"] = json!({"group_size": 64, "bits": 4,
            "model.embed_tokens": {"group_size": 32, "bits": 8}, "lm_head": false});
        let q = cfg(v).unwrap().quantization.unwrap();
        assert_eq!(
            q.for_layer("model.layers.0.mlp.up_proj"),
            Some(QuantSpec {
                group_size: 64,
                bits: 4
            })
        );
        assert_eq!(
            q.for_layer("model.embed_tokens"),
            Some(QuantSpec {
                group_size: 32,
                bits: 8
            })
        );
        assert_eq!(q.for_layer("lm_head"), None);
    }

    #[test]
    fn missing_and_inconsistent_keys_are_errors() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(
            cfg(v)
                .unwrap_err()
                .to_string()
                .contains("`hidden_size` is missing")
        );
        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        assert!(cfg(v).unwrap_err().to_string().contains("cannot share"));
        for (k, x) in [
            ("num_attention_heads", 0),
            ("hidden_size", 0),
            ("vocab_size", 0),
        ] {
            let mut v = base();
            v[k] = json!(x);
            assert!(cfg(v).is_err(), "{k} = {x}");
        }
        let mut v = base();
        v["head_dim"] = json!(16.5);
        assert!(
            cfg(v)
                .unwrap_err()
                .to_string()
                .contains("`head_dim` is not a whole number")
        );
        let mut v = base();
        v["rope_theta"] = json!("1e4");
        assert!(
            cfg(v)
                .unwrap_err()
                .to_string()
                .contains("`rope_theta` is not a number")
        );
        let mut v = base();
        v["num_attention_heads"] = json!(128);
        assert!(cfg(v).unwrap_err().to_string().contains("head dimension 0"));
    }
}
