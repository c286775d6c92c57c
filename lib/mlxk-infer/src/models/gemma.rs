//! Gemma (1): `(1 + w)` RMSNorms, exact GELU gate, embeddings scaled by √hidden, tied head.
use super::{Architecture, BlockSpec, Decoder, Head, block, rope_for};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::Activation;
use crate::weights::Weights;
use mlx_rs::Array;

pub const ARCH: Architecture = Architecture {
    model_types: &["gemma"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let spec = BlockSpec {
        mlp_bias: false,
        one_plus_norms: true,
        act: Activation::Gelu,
        ..BlockSpec::llama(cfg)
    };
    decoder(cfg, w, &spec, None, false)
}

/// Gemma's decoder around blocks of `spec` (shared with gemma2): full attention, plain RoPE,
/// `(1 + w)` final norm, embeddings scaled by √hidden, tied head (a stored `lm_head` is dropped).
pub(super) fn decoder(
    cfg: &ModelConfig,
    w: &mut Weights,
    spec: &BlockSpec,
    final_softcap: Option<f32>,
    mask_as_array: bool,
) -> Result<Decoder> {
    let blocks = (0..cfg.num_layers)
        .map(|i| {
            let rope = rope_for(cfg, cfg.head_dim, cfg.rope_theta, None)?;
            block(cfg, w, i, spec, rope, None)
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = w.embedding("model.embed_tokens", cfg.vocab_size, cfg.hidden_size)?;
    let norm = w.norm("model.norm", cfg.hidden_size, cfg.rms_norm_eps, true)?;
    w.discard(|k| k.starts_with("lm_head."));
    Ok(Decoder {
        embed,
        embed_scale: Some(Array::from_f32((cfg.hidden_size as f32).sqrt())),
        blocks,
        norm,
        head: Head::Tied,
        final_softcap,
        mask_as_array,
    })
}
