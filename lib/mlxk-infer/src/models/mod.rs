//! Decoder-only language models. Each architecture is one file that maps its config and tensor
//! names onto the shared [`Decoder`]; adding one touches only this list.
use crate::config::ModelConfig;
use crate::error::{Result, unsupported};
use crate::layers::{
    Activation, Attention, Block, BlockNorms, Embedding, KvCache, Linear, Mask, Mlp, Qkv, RmsNorm,
    Rope, base_freqs,
};
use crate::weights::Weights;
use mlx_rs::{Array, ops};

pub mod clip;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod idefics3;
pub mod llama;
pub mod llava;
pub mod mistral;
pub mod phi3;
pub mod qwen2;
pub mod qwen2_vl;
pub mod qwen3;
pub mod whisper;

/// An architecture: the `model_type` values it runs and how to build it.
pub struct Architecture {
    pub model_types: &'static [&'static str],
    pub build: fn(&ModelConfig, &mut Weights) -> Result<Decoder>,
}

/// Every architecture this build runs.
pub const ARCHITECTURES: &[Architecture] = &[
    llama::ARCH,
    mistral::ARCH,
    qwen2::ARCH,
    qwen3::ARCH,
    phi3::ARCH,
    gemma::ARCH,
    gemma2::ARCH,
    gemma3::ARCH,
];

/// All supported `model_type` values: the gate's list ([`mlxk::policy::TEXT_MODEL_TYPES`]),
/// which the tests hold equal to what [`ARCHITECTURES`] builds.
pub fn supported_model_types() -> &'static [&'static str] {
    mlxk::policy::TEXT_MODEL_TYPES
}

/// The architecture that builds `cfg.model_type`, or why none does.
pub fn architecture(cfg: &ModelConfig) -> Result<&'static Architecture> {
    let mt = cfg.model_type.as_str();
    ARCHITECTURES
        .iter()
        .find(|a| a.model_types.contains(&mt) && supported_model_types().contains(&mt))
        .ok_or_else(|| {
            unsupported(
                &cfg.path,
                format!(
                    "model_type `{mt}` is not supported; supported: {}",
                    supported_model_types().join(", ")
                ),
            )
        })
}

/// Builds the model `cfg.model_type` names from `weights`; every tensor must be used.
pub fn build(cfg: &ModelConfig, mut weights: Weights) -> Result<Decoder> {
    let arch = architecture(cfg)?;
    // Rotary tables some exporters save are recomputed, never read.
    weights.discard(|k| k.contains("rotary_emb.inv_freq"));
    let model = (arch.build)(cfg, &mut weights)?;
    weights.finish()?;
    Ok(model)
}

/// The output projection.
#[derive(Debug)]
pub enum Head {
    Tied,
    Linear(Linear),
}

/// Embedding → blocks → norm → logits, shared by all architectures.
#[derive(Debug)]
pub struct Decoder {
    pub embed: Embedding,
    /// Multiplier applied to embeddings (gemma: √hidden).
    pub embed_scale: Option<Array>,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    pub head: Head,
    pub final_softcap: Option<f32>,
    /// Whether masks must be explicit arrays (attention computed without the fused kernel).
    pub mask_as_array: bool,
}

impl Decoder {
    /// Hidden states after the final norm for `ids` of shape `[1, L]`, extending `caches`.
    pub fn hidden(&self, ids: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.hidden_from_embeddings(&self.embed.forward(ids)?, caches)
    }

    /// Like [`Decoder::hidden`] from token embeddings `[1, L, hidden]` instead of ids (a vision
    /// model's prompt, with image features in place of its image tokens); the embedding scale
    /// is applied here, as for ids.
    pub fn hidden_from_embeddings(&self, h: &Array, caches: &mut [KvCache]) -> Result<Array> {
        let mut h = h.clone();
        if let Some(s) = &self.embed_scale {
            h = ops::multiply(&h, s)?;
        }
        let n = h.shape()[1] as usize;
        let offset = caches.first().map_or(0, |c| c.offset);
        let mut masks: Vec<(Option<usize>, Mask)> = Vec::new();
        for (block, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            let w = block.attn.window.filter(|&w| offset + n > w);
            if !masks.iter().any(|(k, _)| *k == w) {
                masks.push((w, Mask::new(n, offset, w, self.mask_as_array)?));
            }
            let mask = &masks
                .iter()
                .find(|(k, _)| *k == w)
                .expect("inserted above")
                .1;
            h = block.forward(&h, mask, cache)?;
        }
        self.norm.forward(&h)
    }

    /// Logits `[1, L, vocab]` for hidden states.
    pub fn logits(&self, h: &Array) -> Result<Array> {
        let out = match &self.head {
            Head::Tied => self.embed.as_linear(h)?,
            Head::Linear(l) => l.forward(h)?,
        };
        Ok(match self.final_softcap {
            Some(cap) => {
                let c = Array::from_f32(cap);
                ops::multiply(&ops::tanh(&ops::divide(&out, &c)?)?, &c)?
            }
            None => out,
        })
    }

    /// Fresh per-layer caches.
    pub fn new_cache(&self) -> Vec<KvCache> {
        self.blocks.iter().map(|_| KvCache::new()).collect()
    }
}

/// The knobs that distinguish the architectures' blocks. Architectures start from
/// [`BlockSpec::llama`] and change what differs with struct-update syntax.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockSpec {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub fused: bool,
    pub qk_norm: bool,
    pub sandwich: bool,
    pub one_plus_norms: bool,
    pub act: Activation,
    pub scale: f32,
    pub softcap: Option<f32>,
}

impl BlockSpec {
    /// The llama block: pre-norm, split q/k/v and gate/up, SwiGLU, no attention biases, MLP
    /// biases as the config says, scores scaled by 1/√head_dim.
    pub fn llama(cfg: &ModelConfig) -> BlockSpec {
        BlockSpec {
            qkv_bias: false,
            o_bias: false,
            mlp_bias: cfg.mlp_bias,
            fused: false,
            qk_norm: false,
            sandwich: false,
            one_plus_norms: false,
            act: Activation::Silu,
            scale: (cfg.head_dim as f64).powf(-0.5) as f32,
            softcap: None,
        }
    }

    /// The llama block with biases on q/k/v and o as `attention_bias` says (llama, mistral).
    pub fn llama_with_attention_bias(cfg: &ModelConfig) -> BlockSpec {
        BlockSpec {
            qkv_bias: cfg.attention_bias,
            o_bias: cfg.attention_bias,
            ..BlockSpec::llama(cfg)
        }
    }
}

/// How a model's output head is stored when the config does not say (`tie_word_embeddings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadDefault {
    Tied,
    Separate,
}

/// Builds layer `i` named the Hugging Face way (`model.layers.{i}.…`).
pub(crate) fn block(
    cfg: &ModelConfig,
    w: &mut Weights,
    i: usize,
    spec: &BlockSpec,
    rope: Rope,
    window: Option<usize>,
) -> Result<Block> {
    let p = format!("model.layers.{i}");
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (nq, nkv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let qkv = if spec.fused {
        Qkv::Fused(w.linear(
            &format!("{p}.self_attn.qkv_proj"),
            d,
            nq + 2 * nkv,
            spec.qkv_bias,
        )?)
    } else {
        Qkv::Split {
            q: w.linear(&format!("{p}.self_attn.q_proj"), d, nq, spec.qkv_bias)?,
            k: w.linear(&format!("{p}.self_attn.k_proj"), d, nkv, spec.qkv_bias)?,
            v: w.linear(&format!("{p}.self_attn.v_proj"), d, nkv, spec.qkv_bias)?,
        }
    };
    let eps = cfg.rms_norm_eps;
    let opn = spec.one_plus_norms;
    let (q_norm, k_norm) = if spec.qk_norm {
        (
            Some(w.norm(&format!("{p}.self_attn.q_norm"), hd, eps, opn)?),
            Some(w.norm(&format!("{p}.self_attn.k_norm"), hd, eps, opn)?),
        )
    } else {
        (None, None)
    };
    let attn = Attention {
        qkv,
        o: w.linear(&format!("{p}.self_attn.o_proj"), nq, d, spec.o_bias)?,
        q_norm,
        k_norm,
        rope,
        n_heads: cfg.num_heads,
        n_kv_heads: cfg.num_kv_heads,
        head_dim: hd,
        scale: spec.scale,
        softcap: spec.softcap,
        window,
    };
    let f = cfg.intermediate_size;
    let mlp = if spec.fused {
        Mlp::Fused {
            gate_up: w.linear(&format!("{p}.mlp.gate_up_proj"), d, 2 * f, spec.mlp_bias)?,
            down: w.linear(&format!("{p}.mlp.down_proj"), f, d, spec.mlp_bias)?,
            act: spec.act,
        }
    } else {
        Mlp::Split {
            gate: w.linear(&format!("{p}.mlp.gate_proj"), d, f, spec.mlp_bias)?,
            up: w.linear(&format!("{p}.mlp.up_proj"), d, f, spec.mlp_bias)?,
            down: w.linear(&format!("{p}.mlp.down_proj"), f, d, spec.mlp_bias)?,
            act: spec.act,
        }
    };
    let mut norm = |name: &str| w.norm(&format!("{p}.{name}"), d, eps, opn);
    let norms = if spec.sandwich {
        BlockNorms::Sandwich {
            input: norm("input_layernorm")?,
            post_attention: norm("post_attention_layernorm")?,
            pre_feedforward: norm("pre_feedforward_layernorm")?,
            post_feedforward: norm("post_feedforward_layernorm")?,
        }
    } else {
        BlockNorms::Pre {
            input: norm("input_layernorm")?,
            post_attention: norm("post_attention_layernorm")?,
        }
    };
    Ok(Block { attn, mlp, norms })
}

/// The rotary embedding a config asks for (HF `rope_scaling`, or GGUF per-dimension factors).
pub(crate) fn rope_for(
    cfg: &ModelConfig,
    dims: usize,
    base: f32,
    scaling: Option<&serde_json::Value>,
) -> Result<Rope> {
    if let Some(factors) = cfg
        .raw
        .get("gguf_rope_freq_factors")
        .and_then(|v| v.as_array())
    {
        let f: Vec<f32> = factors
            .iter()
            .filter_map(|x| x.as_f64())
            .map(|x| x as f32)
            .collect();
        let freqs = ops::multiply(
            base_freqs(dims, base)?,
            Array::from_slice(&f, &[f.len() as i32]),
        )?;
        freqs.eval()?;
        return Ok(Rope {
            dims: dims as i32,
            traditional: cfg.rope_traditional,
            base: None,
            scale: 1.0,
            freqs: Some(freqs),
            mrope: None,
        });
    }
    Rope::from_scaling(dims, cfg.rope_traditional, base, scaling)
        .map_err(|msg| unsupported(&cfg.path, msg))
}

/// Embedding, final norm and (tied or separate) head, named the Hugging Face way.
pub(crate) fn ends(
    cfg: &ModelConfig,
    w: &mut Weights,
    tie_default: bool,
    one_plus: bool,
) -> Result<(Embedding, RmsNorm, Head)> {
    let embed = w.embedding("model.embed_tokens", cfg.vocab_size, cfg.hidden_size)?;
    let norm = w.norm("model.norm", cfg.hidden_size, cfg.rms_norm_eps, one_plus)?;
    let tie = cfg.tie_word_embeddings.unwrap_or(tie_default);
    let head = if tie {
        // mlx-lm drops a stored lm_head when the config ties embeddings.
        w.discard(|k| k.starts_with("lm_head."));
        Head::Tied
    } else {
        Head::Linear(w.linear("lm_head", cfg.hidden_size, cfg.vocab_size, false)?)
    };
    Ok((embed, norm, head))
}

/// The attention window of each layer from the config's `layer_types` (`sliding_attention`
/// layers see the last `sliding_window` positions, as mlx-lm's llama does); none without it.
pub(crate) fn layer_windows(cfg: &ModelConfig) -> Result<Vec<Option<usize>>> {
    #[derive(serde::Deserialize)]
    struct Args {
        #[serde(default)]
        sliding_window: Option<usize>,
    }
    let Some(types) = cfg.raw.get("layer_types").filter(|v| !v.is_null()) else {
        return Ok(vec![None; cfg.num_layers]);
    };
    let sliding_window = cfg.args::<Args>()?.sliding_window;
    let bad = |msg: String| crate::error::broken(&cfg.path, msg);
    let types = types
        .as_array()
        .filter(|t| t.len() == cfg.num_layers)
        .ok_or_else(|| {
            bad(format!(
                "`layer_types` must list one type for each of the {} layers",
                cfg.num_layers
            ))
        })?;
    types
        .iter()
        .map(|t| match t.as_str() {
            Some("full_attention") => Ok(None),
            Some("sliding_attention") => sliding_window.map(Some).ok_or_else(|| {
                bad("`layer_types` has sliding_attention layers but no `sliding_window`".into())
            }),
            _ => Err(unsupported(
                &cfg.path,
                format!("layer type {t} is not supported (full_attention, sliding_attention)"),
            )),
        })
        .collect()
}

/// Pre-norm blocks of `spec` with RoPE over `rope_dim` dimensions, windows from `layer_types`,
/// plain embeddings, and the head the config asks for (`head` when it does not say).
pub(crate) fn pre_norm_decoder(
    cfg: &ModelConfig,
    w: &mut Weights,
    spec: &BlockSpec,
    rope_dim: usize,
    head: HeadDefault,
) -> Result<Decoder> {
    let windows = layer_windows(cfg)?;
    let blocks = (0..cfg.num_layers)
        .map(|i| {
            let rope = rope_for(cfg, rope_dim, cfg.rope_theta, cfg.rope_scaling.as_ref())?;
            block(cfg, w, i, spec, rope, windows[i])
        })
        .collect::<Result<Vec<_>>>()?;
    let (embed, norm, head) = ends(cfg, w, head == HeadDefault::Tied, false)?;
    Ok(Decoder {
        embed,
        embed_scale: None,
        blocks,
        norm,
        head,
        final_softcap: None,
        mask_as_array: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_and_the_loader_know_the_same_architectures() {
        let built: Vec<&str> = ARCHITECTURES
            .iter()
            .flat_map(|a| a.model_types.iter().copied())
            .collect();
        for t in mlxk::policy::TEXT_MODEL_TYPES {
            assert!(
                built.contains(t),
                "the gate allows `{t}` but no architecture builds it"
            );
        }
        for t in &built {
            assert!(
                mlxk::policy::TEXT_MODEL_TYPES.contains(t),
                "`{t}` is built but the gate would block it"
            );
        }
        let mut sorted = built.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            built.len(),
            "a model_type in two architectures"
        );
    }
}
