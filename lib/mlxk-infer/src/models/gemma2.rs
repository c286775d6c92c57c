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

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let spec = BlockSpec {
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        fused: false,
        qk_norm: false,
        sandwich: true,
        one_plus_norms: true,
        act: Activation::GeluApprox,
        scale: (1.0 / (cfg.f32_or("query_pre_attn_scalar", cfg.head_dim as f32) as f64).sqrt())
            as f32,
        softcap: Some(cfg.f32_or("attn_logit_softcapping", 50.0)),
    };
    let softcap = cfg.f32_or("final_logit_softcapping", 30.0);
    super::gemma::decoder(cfg, w, &spec, Some(softcap), true)
}
