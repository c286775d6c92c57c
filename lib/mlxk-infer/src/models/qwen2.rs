//! Qwen2 / Qwen2.5: llama layout with biases on the q, k and v projections.
use super::{Architecture, Decoder, llama_like};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["qwen2"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    llama_like(cfg, w, true, false, false, true)
}
