//! Loading a checkpoint into named MLX arrays: safetensors (single or sharded with an index)
//! and GGUF (tensor names mapped to the Hugging Face layout). Applies the dtype policy and hands
//! the architectures typed layers ([`Linear`], [`Embedding`]) with strict bookkeeping: a missing
//! tensor and a tensor nobody used are both errors, as in mlx-lm's strict load.
use crate::config::{ModelConfig, QuantSpec, Quantization};
use crate::error::{Result, broken, unsupported};
use crate::layers::{Embedding, Linear, RmsNorm};
use mlx_rs::{Array, Dtype, ops};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where tensors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    Gguf,
}

/// How stored dtypes are turned into compute dtypes on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypePolicy {
    /// CPU: bf16/f16 arrays (incl. quantization scales and biases) become f32, because MLX's
    /// half-precision kernels are an order of magnitude slower there.
    UpcastHalfToF32,
    /// GPU: keep stored dtypes.
    Keep,
}

impl DtypePolicy {
    /// The policy for MLX's default device.
    pub fn for_default_device() -> DtypePolicy {
        if crate::runtime::default_device_is_cpu() {
            DtypePolicy::UpcastHalfToF32
        } else {
            DtypePolicy::Keep
        }
    }
}

/// Named arrays of one checkpoint, handed out once each.
pub struct Weights {
    path: PathBuf,
    map: HashMap<String, Array>,
    quantization: Option<Quantization>,
    format: WeightFormat,
    /// What the dtype policy did, e.g. `bf16 → f32: 290 arrays`.
    pub policy_applied: Vec<String>,
}

impl Weights {
    pub fn new(path: PathBuf, map: HashMap<String, Array>, format: WeightFormat) -> Weights {
        Weights {
            path,
            map,
            quantization: None,
            format,
            policy_applied: Vec::new(),
        }
    }

    pub fn set_quantization(&mut self, q: Option<Quantization>) {
        self.quantization = q;
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Takes a tensor; missing is a broken checkpoint.
    pub fn take(&mut self, name: &str) -> Result<Array> {
        self.map
            .remove(name)
            .ok_or_else(|| broken(&self.path, format!("tensor `{name}` is missing")))
    }

    pub fn take_opt(&mut self, name: &str) -> Option<Array> {
        self.map.remove(name)
    }

    /// Drops tensors the model does not use by design (e.g. precomputed rotary tables).
    pub fn discard(&mut self, pred: impl Fn(&str) -> bool) {
        self.map.retain(|k, _| !pred(k));
    }

    fn quant_spec(&self, prefix: &str, weight: &Array, scales: &Array) -> Result<QuantSpec> {
        if self.format == WeightFormat::Gguf {
            // GGUF blocks hold 32 values; MLX packs `bits` per value into u32 words.
            let packed = *weight.shape().last().unwrap_or(&0);
            let groups = *scales.shape().last().unwrap_or(&1);
            return Ok(QuantSpec {
                group_size: 32,
                bits: packed / groups.max(1),
            });
        }
        self.quantization
            .as_ref()
            .and_then(|q| q.for_layer(prefix))
            .ok_or_else(|| {
                broken(
                    &self.path,
                    format!(
                        "`{prefix}` is quantized (it has scales) but config.json has no \
                         `quantization` entry for it"
                    ),
                )
            })
    }

    fn check_dims(&self, prefix: &str, got: (i32, i32), want: (usize, usize)) -> Result<()> {
        if got != (want.0 as i32, want.1 as i32) {
            return Err(broken(
                &self.path,
                format!(
                    "`{prefix}` is {}×{} but the config implies {}×{}",
                    got.0, got.1, want.0, want.1
                ),
            ));
        }
        Ok(())
    }

    /// A linear layer `prefix.{weight,scales,biases,bias}` mapping `in_dim` → `out_dim`.
    pub fn linear(
        &mut self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = self.take(&format!("{prefix}.weight"))?;
        let b = if bias {
            Some(self.take(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        match self.take_opt(&format!("{prefix}.scales")) {
            None => {
                let s = weight.shape();
                if s.len() != 2 {
                    return Err(broken(
                        &self.path,
                        format!("`{prefix}.weight` is not a matrix"),
                    ));
                }
                self.check_dims(prefix, (s[0], s[1]), (out_dim, in_dim))?;
                Ok(Linear::Dense { weight, bias: b })
            }
            Some(scales) => {
                let biases = self.take(&format!("{prefix}.biases"))?;
                let spec = self.quant_spec(prefix, &weight, &scales)?;
                let (rows, groups) = (scales.shape()[0], *scales.shape().last().unwrap_or(&0));
                self.check_dims(prefix, (rows, groups * spec.group_size), (out_dim, in_dim))?;
                Ok(Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    bias: b,
                    spec,
                })
            }
        }
    }

    /// The token embedding `prefix.{weight,scales,biases}` of `vocab` × `dim`.
    pub fn embedding(&mut self, prefix: &str, vocab: usize, dim: usize) -> Result<Embedding> {
        match self.linear(prefix, dim, vocab, false)? {
            Linear::Dense { weight, .. } => Ok(Embedding::Dense(weight)),
            Linear::Quantized {
                weight,
                scales,
                biases,
                spec,
                ..
            } => Ok(Embedding::Quantized {
                weight,
                scales,
                biases,
                spec,
            }),
        }
    }

    /// An RMSNorm weight of `dim` values.
    pub fn norm(&mut self, name: &str, dim: usize, eps: f32, one_plus: bool) -> Result<RmsNorm> {
        let w = self.take(&format!("{name}.weight"))?;
        if w.shape() != [dim as i32] {
            return Err(broken(
                &self.path,
                format!(
                    "`{name}.weight` has shape {:?}, expected [{dim}]",
                    w.shape()
                ),
            ));
        }
        if one_plus {
            RmsNorm::one_plus(w, eps)
        } else {
            Ok(RmsNorm::new(w, eps))
        }
    }

    /// Every tensor must have been used: leftovers mean the checkpoint is not what the config says.
    pub fn finish(self) -> Result<()> {
        if self.map.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
        Err(broken(
            &self.path,
            format!(
                "{} tensor(s) do not belong to the architecture in config.json: {}{}",
                names.len(),
                shown.join(", "),
                if names.len() > 5 { ", …" } else { "" }
            ),
        ))
    }

    /// Converts arrays under `policy` and records what was done.
    pub fn apply_policy(&mut self, policy: DtypePolicy) -> Result<()> {
        if policy == DtypePolicy::Keep {
            return Ok(());
        }
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for a in self.map.values_mut() {
            let from = match a.dtype() {
                Dtype::Bfloat16 => "bf16",
                Dtype::Float16 => "f16",
                _ => continue,
            };
            *a = a.as_dtype(Dtype::Float32)?;
            *counts.entry(from).or_default() += 1;
        }
        for (from, n) in counts {
            self.policy_applied.push(format!(
                "{from} → f32 for {n} arrays (CPU: MLX's half-precision kernels are slow there)"
            ));
        }
        Ok(())
    }

    /// Unpacks every quantized matrix to dense f32 (`--dequantize`): 4–8× the memory; the
    /// matmuls then take the dense f32 paths instead of the quantized kernels (for comparisons).
    pub fn dequantize_all(&mut self) -> Result<()> {
        let prefixes: Vec<String> = self
            .map
            .keys()
            .filter_map(|k| k.strip_suffix(".scales").map(String::from))
            .collect();
        let n = prefixes.len();
        for p in prefixes {
            let w = self.take(&format!("{p}.weight"))?;
            let s = self.take(&format!("{p}.scales"))?;
            let b = self.take(&format!("{p}.biases"))?;
            let spec = self.quant_spec(&p, &w, &s)?;
            let d = ops::dequantize(&w, &s, &b, spec.group_size, spec.bits)?
                .as_dtype(Dtype::Float32)?;
            self.map.insert(format!("{p}.weight"), d);
        }
        if n > 0 {
            self.policy_applied.push(format!(
                "--dequantize: {n} quantized matrices unpacked to f32"
            ));
        }
        Ok(())
    }

    /// Evaluates every array so loading really happens now, not during the first token.
    pub fn materialize(&self) -> Result<()> {
        let all: Vec<&Array> = self.map.values().collect();
        mlx_rs::transforms::eval(all)?;
        Ok(())
    }

    /// Total bytes of the arrays.
    pub fn nbytes(&self) -> usize {
        self.map.values().map(Array::nbytes).sum()
    }
}

/// Reads all safetensors of a folder: `model.safetensors`, or the shards an index names, or
/// every `*.safetensors` file.
pub fn load_safetensors_dir(dir: &Path) -> Result<HashMap<String, Array>> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| broken(&index, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| broken(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| broken(&index, "no `weight_map` object"))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| broken(dir, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        f.sort();
        f
    };
    if files.is_empty() {
        return Err(broken(
            dir,
            "no *.safetensors or *.gguf weights in the folder",
        ));
    }
    let mut all = HashMap::new();
    for f in files {
        if !f.is_file() {
            return Err(broken(
                &f,
                "shard named by model.safetensors.index.json is missing",
            ));
        }
        let arrays = Array::load_safetensors(&f)
            .map_err(|e| broken(&f, format!("cannot read safetensors: {e}")))?;
        all.extend(arrays);
    }
    Ok(all)
}

/// GGUF metadata the tokenizer needs.
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerData {
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

/// A GGUF file read into the Hugging Face layout: a config, renamed tensors, tokenizer data.
pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: HashMap<String, Array>,
    pub tokenizer: GgufTokenizerData,
}

fn meta_num(g: &mlx_rs::io::GgufFile, key: &str) -> Result<Option<f64>> {
    let a = g
        .get_metadata_array(key)
        .map_err(|e| crate::error::InferError::Mlx(format!("GGUF metadata `{key}`: {e}")))?;
    Ok(match a {
        Some(a) if a.size() == 1 => {
            let a = a.as_dtype(Dtype::Float64).unwrap_or(a);
            a.eval().ok();
            Some(a.item_cast::<f64>())
        }
        _ => None,
    })
}

/// The Hugging Face name of a GGUF tensor (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`).
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let hf = if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, part) = rest.split_once('.')?;
        let part = match part {
            "attn_norm" => "input_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => return None,
        };
        format!("model.layers.{layer}.{part}")
    } else {
        match stem {
            "token_embd" => "model.embed_tokens".into(),
            "output_norm" => "model.norm".into(),
            "output" => "lm_head".into(),
            _ => return None,
        }
    };
    Some(format!("{hf}.{suffix}"))
}

/// llama.cpp stores llama's q/k rows permuted for its interleaved RoPE; undo it so the
/// Hugging Face (half-split) RoPE applies. Rows are output features, so packed weights,
/// scales and biases permute alike.
fn unpermute_rows(a: &Array, n_heads: usize) -> Result<Array> {
    let s = a.shape().to_vec();
    let rows = s[0];
    let half = rows / n_heads as i32 / 2;
    let mut shape = vec![n_heads as i32, half, 2];
    shape.extend_from_slice(&s[1..]);
    let p = a.reshape(&shape)?.swap_axes(1, 2)?;
    Ok(p.reshape(&s)?)
}

/// Loads a GGUF model file.
pub fn load_gguf(path: &Path) -> Result<GgufModel> {
    let g = mlx_rs::io::GgufFile::load(path)
        .map_err(|e| broken(path, format!("cannot read GGUF: {e}")))?;
    let s = |k: &str| g.get_metadata_string(k).ok().flatten();
    let ss = |k: &str| g.get_metadata_strings(k).ok().flatten();
    let arch = s("general.architecture").ok_or_else(|| broken(path, "no general.architecture"))?;
    if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3") {
        return Err(unsupported(
            path,
            format!(
                "GGUF architecture `{arch}` is not supported (llama, qwen2, qwen3); \
                 use the MLX safetensors checkpoint instead"
            ),
        ));
    }
    let num = |k: &str| meta_num(&g, &format!("{arch}.{k}"));
    let need = |k: &str| -> Result<usize> {
        num(k)?
            .map(|x| x as usize)
            .ok_or_else(|| broken(path, format!("GGUF metadata `{arch}.{k}` is missing")))
    };
    let tokens = ss("tokenizer.ggml.tokens").unwrap_or_default();
    let hidden = need("embedding_length")?;
    let n_heads = need("attention.head_count")?;
    let n_kv = num("attention.head_count_kv")?
        .map(|x| x as usize)
        .unwrap_or(n_heads);
    let mut raw = serde_json::json!({
        "model_type": arch,
        "hidden_size": hidden,
        "num_hidden_layers": need("block_count")?,
        "intermediate_size": need("feed_forward_length")?,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "rms_norm_eps": num("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "rope_theta": num("rope.freq_base")?.unwrap_or(10000.0),
        "vocab_size": num("vocab_size")?.map(|x| x as usize).unwrap_or(tokens.len()),
        "max_position_embeddings": num("context_length")?.map(|x| x as usize),
    });
    if let Some(hd) = num("attention.key_length")? {
        raw["head_dim"] = serde_json::json!(hd as usize);
    }
    let mut arrays = g
        .arrays()
        .map_err(|e| broken(path, format!("cannot read GGUF tensors: {e}")))?;
    let mut weights = HashMap::new();
    let rope_freqs = arrays.remove("rope_freqs.weight");
    for (name, a) in arrays.drain() {
        let hf = gguf_to_hf_name(&name).ok_or_else(|| {
            unsupported(
                path,
                format!("GGUF tensor `{name}` has no place in the `{arch}` model"),
            )
        })?;
        let a = if arch == "llama" && hf.contains("self_attn.q_proj.") && !hf.ends_with(".bias") {
            unpermute_rows(&a, n_heads)?
        } else if arch == "llama" && hf.contains("self_attn.k_proj.") && !hf.ends_with(".bias") {
            unpermute_rows(&a, n_kv)?
        } else {
            a
        };
        weights.insert(hf, a);
    }
    raw["tie_word_embeddings"] = serde_json::json!(!weights.contains_key("lm_head.weight"));
    if let Some(f) = rope_freqs {
        // llama-3 GGUFs carry the scaling as per-dimension divisors of the base frequencies.
        let f = f.as_dtype(Dtype::Float32)?;
        f.eval()?;
        let v: Vec<f32> = f.as_slice::<f32>().to_vec();
        raw["gguf_rope_freq_factors"] = serde_json::json!(v);
    }
    let cfg_path = path.to_path_buf();
    let mut config = ModelConfig::from_json(&cfg_path, raw)?;
    let eos = meta_num(&g, "tokenizer.ggml.eos_token_id")?.map(|x| x as u32);
    config.eos_token_ids = eos.into_iter().collect();
    let add_bos = g
        .get_metadata_array("tokenizer.ggml.add_bos_token")
        .ok()
        .flatten()
        .map(|a| {
            a.eval().ok();
            a.as_dtype(Dtype::Int32)
                .map(|x| x.item_cast::<i32>() != 0)
                .unwrap_or(false)
        })
        .unwrap_or(false);
    let token_types = g
        .get_metadata_array("tokenizer.ggml.token_type")
        .ok()
        .flatten()
        .and_then(|a| {
            let a = a.as_dtype(Dtype::Int32).ok()?;
            a.eval().ok()?;
            Some(a.as_slice::<i32>().to_vec())
        })
        .unwrap_or_default();
    let tokenizer = GgufTokenizerData {
        model: s("tokenizer.ggml.model").unwrap_or_default(),
        pre: s("tokenizer.ggml.pre"),
        merges: ss("tokenizer.ggml.merges").unwrap_or_default(),
        token_types,
        bos: meta_num(&g, "tokenizer.ggml.bos_token_id")?.map(|x| x as u32),
        eos,
        add_bos,
        chat_template: s("tokenizer.chat_template"),
        tokens,
    };
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
    })
}

/// Quantized tensors in a map, for the model record (`4-bit group 32`, …), most common first.
pub fn describe_quantization(weights: &Weights) -> Option<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, w) in &weights.map {
        if let Some(prefix) = k.strip_suffix(".weight")
            && let Some(scales) = weights.map.get(&format!("{prefix}.scales"))
            && let Ok(spec) = weights.quant_spec(prefix, w, scales)
        {
            *seen
                .entry(format!("{}-bit/g{}", spec.bits, spec.group_size))
                .or_default() += 1;
        }
    }
    if seen.is_empty() {
        return None;
    }
    let mut v: Vec<(String, usize)> = seen.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Some(v.into_iter().map(|(k, _)| k).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_layout() {
        assert_eq!(
            gguf_to_hf_name("blk.12.attn_q.scales").as_deref(),
            Some("model.layers.12.self_attn.q_proj.scales")
        );
        assert_eq!(
            gguf_to_hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(
            gguf_to_hf_name("output.weight").as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(gguf_to_hf_name("blk.0.mystery.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(h, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (h, d, cols) = (2usize, 4usize, 3usize);
        let rows = h * d;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let a = Array::from_slice(&hf, &[rows as i32, cols as i32]);
        let permuted = a
            .reshape(&[h as i32, 2, (d / 2) as i32, cols as i32])
            .unwrap()
            .swap_axes(1, 2)
            .unwrap()
            .reshape(&[rows as i32, cols as i32])
            .unwrap();
        let back = unpermute_rows(&permuted, h).unwrap();
        back.eval().unwrap();
        assert_eq!(back.as_slice::<f32>(), &hf[..]);
    }
}
