//! Llama 1/2/3 (incl. llama-3 `rope_scaling`) and SmolLM, which uses the llama layout.
use super::{Architecture, Decoder, llama_like};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["llama", "smollm", "smollm2"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    // mlx-lm's llama ties embeddings unless the config says otherwise.
    llama_like(cfg, w, cfg.attention_bias, cfg.attention_bias, false, true)
}
