//! Loading a text model from a folder (config.json + safetensors + tokenizer files) or a GGUF
//! file, under the device's dtype policy, with everything evaluated before the clock stops.
use crate::config::{ModelConfig, QuantSpec};
use crate::error::{Result, broken};
use crate::models::{self, Decoder};
use crate::tokenizer::TextTokenizer;
use crate::weights::{self, DtypePolicy, WeightFormat, Weights};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A model ready to generate.
pub struct TextModel {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub decoder: Decoder,
    pub tokenizer: TextTokenizer,
    pub format: WeightFormat,
    /// What the dtype policy did (empty: stored dtypes kept).
    pub policy_applied: Vec<String>,
    /// The packed tensors' quantizations, most common first; empty for dense weights (also
    /// after `dequantize`).
    pub quantization: Vec<QuantSpec>,
    /// The dtype dense weights compute in after the dtype policy (`float32` on a CPU).
    pub float_dtype: Option<mlx_rs::Dtype>,
    /// Bytes of all weights in memory after the dtype policy.
    pub weight_bytes: usize,
    pub load_time_s: f64,
}

impl TextModel {
    /// Positions the model was trained for, if the checkpoint says.
    pub fn context_length(&self) -> Option<usize> {
        self.config.max_position_embeddings
    }

    /// `4-bit/g32, 8-bit/g32` or `dense` — for people, not for parsing.
    pub fn quantization_label(&self) -> String {
        if self.quantization.is_empty() {
            return "dense".into();
        }
        self.quantization
            .iter()
            .map(|q| format!("{}-bit/g{}", q.bits, q.group_size))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The single `.gguf` file of `path` (a file, or a folder holding exactly one).
fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "gguf")
            .then(|| path.to_path_buf()));
    }
    if path.join("config.json").is_file() {
        return Ok(None);
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| broken(path, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.len() {
        0 => Err(broken(
            path,
            "no config.json and no .gguf file: not a model folder",
        )),
        1 => Ok(ggufs.into_iter().next()),
        n => Err(broken(
            path,
            format!("{n} .gguf files in the folder; name the one to load"),
        )),
    }
}

/// Loads the text model at `path` (folder or `.gguf`) under `policy`.
pub fn load(path: &Path, policy: DtypePolicy) -> Result<TextModel> {
    load_with(path, policy, false)
}

/// Like [`load`]; `dequantize` unpacks quantized weights to f32.
pub fn load_with(path: &Path, policy: DtypePolicy, dequantize: bool) -> Result<TextModel> {
    let start = Instant::now();
    let (config, w, tokenizer, format) = match gguf_file(path)? {
        Some(file) => {
            let g = crate::gguf::load(&file)?;
            let dir = file.parent().unwrap_or(Path::new("."));
            // A tokenizer.json beside the file wins over the GGUF metadata.
            let tok = if dir.join("tokenizer.json").is_file() {
                TextTokenizer::from_dir(dir, &g.config.eos_token_ids)?
            } else {
                TextTokenizer::from_gguf(&g.tokenizer, &file)?
            };
            let w = Weights::new(file.clone(), g.weights, WeightFormat::Gguf);
            (g.config, w, tok, WeightFormat::Gguf)
        }
        None => {
            let config = ModelConfig::load(path)?;
            // An architecture this build cannot run is refused before any tensor is read.
            models::architecture(&config)?;
            let map = weights::load_safetensors_dir(path)?;
            let mut w = Weights::new(path.to_path_buf(), map, WeightFormat::Safetensors);
            w.set_quantization(config.quantization.clone());
            let tok = TextTokenizer::from_dir(path, &config.eos_token_ids)?;
            (config, w, tok, WeightFormat::Safetensors)
        }
    };
    let mut model = finish_text(path, config, w, tokenizer, policy, dequantize)?;
    model.format = format;
    model.load_time_s = start.elapsed().as_secs_f64();
    Ok(model)
}

/// Builds the text model of `config` from its weights `w` (safetensors; the caller sets
/// `format` and the load time otherwise): the dtype policy applied, everything evaluated.
pub fn finish_text(
    path: &Path,
    config: ModelConfig,
    mut w: Weights,
    tokenizer: TextTokenizer,
    policy: DtypePolicy,
    dequantize: bool,
) -> Result<TextModel> {
    let start = Instant::now();
    w.apply_policy(policy)?;
    let mut quantization = weights::quantizations(&w);
    if dequantize {
        w.dequantize_all()?;
        quantization.clear();
    }
    let float_dtype = w.float_dtype();
    w.materialize()?;
    let weight_bytes = w.nbytes();
    let policy_applied = w.policy_applied.clone();
    let decoder = models::build(&config, w)?;
    Ok(TextModel {
        path: path.to_path_buf(),
        config,
        decoder,
        tokenizer,
        format: WeightFormat::Safetensors,
        policy_applied,
        quantization,
        float_dtype,
        weight_bytes,
        load_time_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::InferError;

    #[test]
    fn an_unsupported_architecture_is_refused_before_any_tensor_is_read() {
        let d = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "mamba", "hidden_size": 64,
            "num_hidden_layers": 1, "intermediate_size": 128, "num_attention_heads": 4,
            "vocab_size": 10});
        std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
        // Not safetensors at all: reading it would fail with a different error.
        std::fs::write(d.path().join("model.safetensors"), b"garbage").unwrap();
        let e = load(d.path(), DtypePolicy::UpcastHalfToF32)
            .err()
            .expect("refused");
        assert!(matches!(e, InferError::Unsupported { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("model_type `mamba` is not supported"),
            "{e}"
        );
    }
}
