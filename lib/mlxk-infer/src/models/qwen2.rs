//! Qwen2 / Qwen2.5: llama layout with biases on the q, k and v projections.
use super::{Architecture, BlockSpec, Decoder, HeadDefault, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["qwen2"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let spec = BlockSpec {
        qkv_bias: true,
        ..BlockSpec::llama(cfg)
    };
    pre_norm_decoder(cfg, w, &spec, cfg.head_dim, HeadDefault::Tied)
}
