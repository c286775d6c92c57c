//! Gemma 2: sandwich norms, tanh soft-capped attention scores and logits, GELU (tanh) gate,
//! `query_pre_attn_scalar` attention scale. Like mlx-lm, all layers attend to the full cache.
use super::{Architecture, BlockSpec, Decoder};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::Activation;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["gemma2"],
    build,
};

/// Gemma 2's own config keys; absent (or null) ones take mlx-lm's `ModelArgs` defaults (the
/// query scale defaults to the head dimension).
#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    query_pre_attn_scalar: Option<f32>,
    #[serde(default)]
    attn_logit_softcapping: Option<f32>,
    #[serde(default)]
    final_logit_softcapping: Option<f32>,
}

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let args: Args = cfg.args()?;
    let scalar = args.query_pre_attn_scalar.unwrap_or(cfg.head_dim as f32);
    let spec = BlockSpec {
        mlp_bias: false,
        sandwich: true,
        one_plus_norms: true,
        act: Activation::GeluApprox,
        scale: (1.0 / (scalar as f64).sqrt()) as f32,
        softcap: Some(args.attn_logit_softcapping.unwrap_or(50.0)),
        ..BlockSpec::llama(cfg)
    };
    super::gemma::decoder(
        cfg,
        w,
        &spec,
        Some(args.final_logit_softcapping.unwrap_or(30.0)),
        true,
    )
}
