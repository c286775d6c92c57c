//! Llama 1/2/3 (incl. llama-3 `rope_scaling`) and SmolLM, which uses the llama layout.
use super::{Architecture, BlockSpec, Decoder, HeadDefault, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["llama", "smollm", "smollm2"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    // mlx-lm's llama ties embeddings unless the config says otherwise.
    let spec = BlockSpec::llama_with_attention_bias(cfg);
    pre_norm_decoder(cfg, w, &spec, cfg.head_dim, HeadDefault::Tied)
}
