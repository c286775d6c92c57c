//! Qwen3: llama layout with per-head RMSNorm of queries and keys before RoPE.
use super::{Architecture, Decoder, llama_like};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["qwen3"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    llama_like(cfg, w, cfg.attention_bias, cfg.attention_bias, true, false)
}
