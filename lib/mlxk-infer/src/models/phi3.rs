//! Phi-3: fused `qkv_proj` and `gate_up_proj`, optional partial rotary dimensions.
use super::{Architecture, BlockSpec, Decoder, HeadDefault, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::{Result, unsupported};
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["phi3"],
    build,
};

/// Phi-3's own config keys; absent (or null) ones take mlx-lm's `ModelArgs` defaults.
#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    partial_rotary_factor: Option<f32>,
}

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
    let args: Args = cfg.args()?;
    if let Some(kind) = cfg
        .rope_scaling
        .as_ref()
        .and_then(|s| s.get("type").or_else(|| s.get("rope_type")))
        .and_then(|t| t.as_str())
        && matches!(kind, "longrope" | "su")
    {
        return Err(unsupported(
            &cfg.path,
            "phi3 `longrope` scaling (128k-context variants) is not supported; use a 4k-context checkpoint",
        ));
    }
    let rope_dim = (cfg.head_dim as f32 * args.partial_rotary_factor.unwrap_or(1.0)) as usize;
    let spec = BlockSpec {
        mlp_bias: false,
        fused: true,
        ..BlockSpec::llama(cfg)
    };
    pre_norm_decoder(cfg, w, &spec, rope_dim, HeadDefault::Separate)
}
