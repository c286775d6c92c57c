//! Mistral: the llama layout with untied embeddings by default. Like mlx-lm (which maps
//! `mistral` onto its llama module) layers attend to the full cache unless `layer_types` marks
//! them `sliding_attention`; a bare `sliding_window` is ignored, as there.
use super::{Architecture, Decoder, llama_like};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["mistral"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    llama_like(cfg, w, cfg.attention_bias, cfg.attention_bias, false, false)
}
