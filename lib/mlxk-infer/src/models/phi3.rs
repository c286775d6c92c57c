//! Phi-3: fused `qkv_proj` and `gate_up_proj`, optional partial rotary dimensions.
use super::{Architecture, BlockSpec, Decoder, pre_norm_decoder};
use crate::config::ModelConfig;
use crate::error::{Result, unsupported};
use crate::layers::Activation;
use crate::weights::Weights;

pub const ARCH: Architecture = Architecture {
    model_types: &["phi3"],
    build,
};

fn build(cfg: &ModelConfig, w: &mut Weights) -> Result<Decoder> {
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
    let rope_dim = (cfg.head_dim as f32 * cfg.f32_or("partial_rotary_factor", 1.0)) as usize;
    let spec = BlockSpec {
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        fused: true,
        qk_norm: false,
        sandwich: false,
        one_plus_norms: false,
        act: Activation::Silu,
        scale: (cfg.head_dim as f64).powf(-0.5) as f32,
        softcap: None,
    };
    pre_norm_decoder(cfg, w, &spec, rope_dim, false)
}
