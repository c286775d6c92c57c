//! Reading a GGUF file into the Hugging Face layout: a validated config from the metadata,
//! tensors renamed (llama's q/k rows un-permuted), and the tokenizer's metadata.
use crate::config::ModelConfig;
use crate::error::{Result, broken, unsupported};
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use std::path::Path;

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
fn unpermute_rows(a: &Array, n_heads: usize, path: &Path) -> Result<Array> {
    let s = a.shape().to_vec();
    let rows = s.first().copied().unwrap_or(0);
    if n_heads == 0 || rows <= 0 || rows % (2 * n_heads as i32) != 0 {
        return Err(broken(
            path,
            format!("a q/k projection of {rows} rows cannot split into {n_heads} rotary heads"),
        ));
    }
    let half = rows / n_heads as i32 / 2;
    let mut shape = vec![n_heads as i32, half, 2];
    shape.extend_from_slice(&s[1..]);
    let p = a.reshape(&shape)?.swap_axes(1, 2)?;
    Ok(p.reshape(&s)?)
}

/// Loads a GGUF model file.
pub fn load(path: &Path) -> Result<GgufModel> {
    let g = mlx_rs::io::GgufFile::load(path)
        .map_err(|e| broken(path, format!("cannot read GGUF: {e}")))?;
    let s = |k: &str| g.get_metadata_string(k).ok().flatten();
    let ss = |k: &str| g.get_metadata_strings(k).ok().flatten();
    let arch = s("general.architecture").ok_or_else(|| broken(path, "no general.architecture"))?;
    if !mlxk::gguf::TEXT_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(unsupported(
            path,
            format!(
                "GGUF architecture `{arch}` is not supported ({}); \
                 use the MLX safetensors checkpoint instead",
                mlxk::gguf::TEXT_ARCHITECTURES.join(", ")
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
    // The dimensions are checked (heads, sizes > 0) before any tensor is touched.
    ModelConfig::from_json(path, raw.clone())?;
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
            unpermute_rows(&a, n_heads, path)?
        } else if arch == "llama" && hf.contains("self_attn.k_proj.") && !hf.ends_with(".bias") {
            unpermute_rows(&a, n_kv, path)?
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
        let back = unpermute_rows(&permuted, h, Path::new("m.gguf")).unwrap();
        back.eval().unwrap();
        assert_eq!(back.as_slice::<f32>(), &hf[..]);
    }

    fn llama_gguf(dir: &Path, heads: u32) -> std::path::PathBuf {
        use mlxk::gguf::writer::{Meta, build};
        let bytes = build(
            &[
                ("general.architecture", Meta::Str("llama")),
                ("llama.embedding_length", Meta::U32(64)),
                ("llama.attention.head_count", Meta::U32(heads)),
                ("llama.block_count", Meta::U32(1)),
                ("llama.feed_forward_length", Meta::U32(128)),
                ("llama.context_length", Meta::U32(128)),
                ("tokenizer.ggml.tokens", Meta::StrArray(&["a", "b"])),
            ],
            &[("blk.0.attn_q.weight", &[64, 64], 0)],
        );
        let p = dir.join("m.gguf");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn zero_or_absurd_dimensions_are_broken_models_not_a_crash() {
        let d = tempfile::tempdir().unwrap();
        for heads in [0, 3] {
            let p = llama_gguf(d.path(), heads);
            let e = load(&p).err().expect("refused");
            assert!(
                matches!(e, crate::error::InferError::BrokenModel { .. }),
                "{heads} heads: {e}"
            );
            let m = e.to_string();
            assert!(m.contains("m.gguf"), "{m}");
        }
    }
}
