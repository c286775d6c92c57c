//! Mistral: the llama layout with untied embeddings by default. Like mlx-lm (which maps
//! `mistral` onto its llama module) layers attend to the full cache unless `layer_types` marks
//! them `sliding_attention`; a bare `sliding_window` is ignored, as there.
use super::{Architecture, BlockSpec, Decoder, HeadDefault, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["mistral"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let spec = BlockSpec::llama_with_attention_bias(cfg);
    pre_norm_decoder(cfg, w, &spec, cfg.head_dim, HeadDefault::Separate)
}
