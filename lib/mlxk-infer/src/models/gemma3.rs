//! Gemma 3 (text): sandwich norms, `(1 + w)` q/k norms, sliding-window layers with their own
//! RoPE base (every `sliding_window_pattern`-th layer is global), embeddings scaled by √hidden
//! rounded to bf16 (as the reference does), head tied unless `lm_head` is stored.
use super::{Architecture, BlockSpec, Decoder, Head, block, rope_for};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::Activation;
use crate::weights::Weights;
use mlx_rs::{Array, Dtype};

pub const ARCH: Architecture = Architecture {
    model_types: &["gemma3_text"],
    build,
};

/// Gemma 3's own config keys; absent (or null) ones take mlx-lm's `ModelArgs` defaults.
#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    query_pre_attn_scalar: Option<f32>,
    #[serde(default)]
    sliding_window_pattern: Option<usize>,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    rope_local_base_freq: Option<f32>,
}

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let args: Args = cfg.args()?;
    let spec = BlockSpec {
        mlp_bias: false,
        qk_norm: true,
        sandwich: true,
        one_plus_norms: true,
        act: Activation::GeluApprox,
        scale: (args.query_pre_attn_scalar.unwrap_or(256.0) as f64).powf(-0.5) as f32,
        ..BlockSpec::llama(cfg)
    };
    let pattern = args.sliding_window_pattern.unwrap_or(6).max(1);
    let window = args.sliding_window.unwrap_or(512);
    let local_base = args.rope_local_base_freq.unwrap_or(10000.0);
    let blocks = (0..cfg.num_layers)
        .map(|i| {
            let sliding = (i + 1) % pattern != 0;
            let rope = if sliding {
                rope_for(cfg, cfg.head_dim, local_base, None)?
            } else {
                rope_for(cfg, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref())?
            };
            block(cfg, w, i, &spec, rope, sliding.then_some(window))
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = w.embedding("model.embed_tokens", cfg.vocab_size, cfg.hidden_size)?;
    let norm = w.norm("model.norm", cfg.hidden_size, cfg.rms_norm_eps, true)?;
    let head = if w.contains("lm_head.weight") {
        Head::Linear(w.linear("lm_head", cfg.hidden_size, cfg.vocab_size, false)?)
    } else {
        Head::Tied
    };
    let scale = Array::from_f32((cfg.hidden_size as f32).sqrt())
        .as_dtype(Dtype::Bfloat16)?
        .as_dtype(embed.dtype())?;
    Ok(Decoder {
        embed,
        embed_scale: Some(scale),
        blocks,
        norm,
        head,
        final_softcap: None,
        mask_as_array: false,
    })
}
