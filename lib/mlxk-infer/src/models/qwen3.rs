//! Qwen3: llama layout with per-head RMSNorm of queries and keys before RoPE.
use super::{Architecture, BlockSpec, Decoder, HeadDefault, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["qwen3"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let spec = BlockSpec {
        qk_norm: true,
        ..BlockSpec::llama_with_attention_bias(cfg)
    };
    pre_norm_decoder(cfg, w, &spec, cfg.head_dim, HeadDefault::Separate)
}
