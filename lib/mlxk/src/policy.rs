//! Policy: which backend runs a model, and whether this machine can hold it now
//! (seeds/003, "Policy" and "Memory Gates"). No silent fallbacks: a model no backend supports
//! is blocked with the reason, never degraded to another mode.

use crate::gguf::MLX_LOADABLE_TYPES;
use crate::records::{BlockCause, Capability, Decision, Gate, ModelRecord};
use crate::sys::MemorySnapshot;
use crate::table::{human_bytes, round_to};

/// Text architectures the text backend (mlxk-gen) runs: the one list of them. The inference
/// core builds exactly these (`mlxk_infer::models` dispatches on it, and its tests fail when
/// an entry has no architecture or an architecture is missing here). Multimodal `gemma3`
/// checkpoints are vision models, not text ones.
pub const TEXT_MODEL_TYPES: &[&str] = &[
    "llama",
    "smollm",
    "smollm2",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3_text",
];
/// Vision architectures the vision backend (mlxk-see) runs: the one list of them, equal to
/// what `mlxk_infer::vision` builds (its tests hold the two together). Other vision models
/// are recognised by the probe and blocked here with the reason.
pub const VISION_MODEL_TYPES: &[&str] = &["llava", "idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl"];
/// Audio architectures the audio backend (mlxk-hear) is built for.
pub const AUDIO_MODEL_TYPES: &[&str] = &["whisper"];

pub const DEFAULT_THRESHOLD: f64 = 0.70;
/// PSI `some avg10` above this (percent) means the machine is already short of memory.
pub const PSI_WARN_PERCENT: f64 = 10.0;

#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// Largest allowed estimate ÷ available memory.
    pub threshold: f64,
    /// Turn memory blocks (vision/audio over the threshold) into warnings. Never lifts other blocks.
    pub allow_warn: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            threshold: DEFAULT_THRESHOLD,
            allow_warn: false,
        }
    }
}

/// The backend for a model's capabilities: vision and audio win over text, because running
/// those models as text only would be the silent degradation the seed forbids.
pub fn backend_for(record: &ModelRecord) -> Result<&'static str, String> {
    let caps = &record.capabilities;
    let mt = record.model_type.as_deref().unwrap_or("");
    let (backend, supported) = if caps.contains(&Capability::Vision) {
        ("vision", VISION_MODEL_TYPES)
    } else if caps.contains(&Capability::Audio) {
        ("audio", AUDIO_MODEL_TYPES)
    } else if caps.contains(&Capability::Text) {
        ("text", TEXT_MODEL_TYPES)
    } else if caps.contains(&Capability::Embeddings) {
        return Err("embedding model: mlxk has no embeddings backend yet".into());
    } else {
        return Err("no capability detected (not text, vision, audio or embeddings)".into());
    };
    if mt.is_empty() {
        return Err(format!(
            "model_type unknown: the {backend} backend cannot pick an architecture"
        ));
    }
    if !supported.contains(&mt) {
        return Err(format!(
            "model_type '{mt}' is not supported by the {backend} backend (supported: {})",
            supported.join(", ")
        ));
    }
    if record.weight_format == "gguf"
        && backend == "text"
        && !crate::gguf::TEXT_ARCHITECTURES.contains(&mt)
    {
        return Err(format!(
            "GGUF architecture '{mt}' is not supported (GGUF: {}); use the MLX safetensors checkpoint",
            crate::gguf::TEXT_ARCHITECTURES.join(", ")
        ));
    }
    Ok(backend)
}

/// Decides for one model with this machine's memory as it is now (read below `sys`).
pub fn decide_now(record: &ModelRecord, sys: &crate::sys::SysRoot, cfg: &GateConfig) -> Gate {
    let memory = sys.memory().map_err(|e| e.to_string());
    decide(record, memory.as_ref().map_err(Clone::clone), cfg)
}

/// Decides allow / warn / block for one model with the memory facts of this moment.
pub fn decide(
    record: &ModelRecord,
    memory: Result<&MemorySnapshot, String>,
    cfg: &GateConfig,
) -> Gate {
    let mut v = Verdict {
        decision: Decision::Allow,
        reasons: Vec::new(),
        blocked_by: None,
    };

    if !record.health.ok {
        v.unusable(format!("unhealthy: {}", record.health.problems.join("; ")));
    }
    let backend = match backend_for(record) {
        Ok(b) => Some(b.to_string()),
        Err(why) => {
            v.unusable(why);
            None
        }
    };
    // mlx-whisper's older folders keep their weights in weights.npz, which mlxk-hear reads;
    // no text backend does.
    if record.weight_format == "npz" && record.model_type.as_deref() != Some("whisper") {
        v.unusable(
            "weights.npz: convert it once to weights.safetensors: python -c \"import mlx.core as mx; \
             mx.save_safetensors('weights.safetensors', mx.load('weights.npz'))\""
                .into(),
        );
    }
    if record.weight_format == "pytorch_bin" {
        v.unusable(
            "PyTorch .bin weights: MLX loads safetensors or GGUF; convert with mlx_lm.convert"
                .into(),
        );
    }
    let unloadable: Vec<&str> = record
        .quantization
        .gguf_types
        .iter()
        .map(String::as_str)
        .filter(|t| !MLX_LOADABLE_TYPES.contains(t))
        .collect();
    if !unloadable.is_empty() {
        v.unusable(format!(
            "GGUF tensor types {} cannot be loaded by MLX (it loads {})",
            unloadable.join(", "),
            MLX_LOADABLE_TYPES.join(", ")
        ));
    }

    let estimate = record.memory.estimate_bytes;
    let (available, ratio, snapshot) = match memory {
        Ok(m) => {
            let ratio = if m.available_bytes == 0 {
                f64::INFINITY
            } else {
                estimate as f64 / m.available_bytes as f64
            };
            let room = format!(
                "needs {} of {} available ({}, {:.0}% vs threshold {:.0}%)",
                human_bytes(estimate),
                human_bytes(m.available_bytes),
                if m.available_source == "cgroup" {
                    "cgroup limit"
                } else {
                    "MemAvailable"
                },
                ratio * 100.0,
                cfg.threshold * 100.0
            );
            if ratio > cfg.threshold {
                let strict = matches!(backend.as_deref(), Some("vision" | "audio"));
                if strict && !cfg.allow_warn {
                    v.raise(Decision::Block, format!("memory: {room}; vision/audio models are blocked above the threshold (--allow-warn to run anyway)"));
                    v.blocked_by.get_or_insert(BlockCause::Memory);
                } else {
                    v.raise(
                        Decision::Warn,
                        format!("memory: {room}; may swap or be killed"),
                    );
                }
            } else {
                v.reasons.push(format!("memory: {room}"));
            }
            if m.swap_used_bytes > 0 {
                v.reasons.push(format!(
                    "swap in use: {:.0} MB",
                    m.swap_used_bytes as f64 / 1e6
                ));
            }
            if let Some(psi) = m.psi_some_avg10.filter(|p| *p > PSI_WARN_PERCENT) {
                v.raise(
                    Decision::Warn,
                    format!("memory pressure: PSI some avg10 = {psi:.1}%"),
                );
            }
            (
                Some(m.available_bytes),
                Some(round_to(ratio, 4)),
                Some(m.clone()),
            )
        }
        Err(e) => {
            v.raise(
                Decision::Warn,
                format!("memory unknown ({e}): cannot check the model fits"),
            );
            (None, None, None)
        }
    };

    Gate {
        decision: v.decision,
        backend,
        reasons: v.reasons,
        available_bytes: available,
        ratio,
        threshold: cfg.threshold,
        memory: snapshot,
        blocked_by: v.blocked_by,
    }
}

/// The decision so far: the most severe one raised, with every reason in order.
struct Verdict {
    decision: Decision,
    reasons: Vec<String>,
    blocked_by: Option<BlockCause>,
}

impl Verdict {
    /// A block no amount of memory lifts; it outranks a memory block.
    fn unusable(&mut self, reason: String) {
        self.raise(Decision::Block, reason);
        self.blocked_by = Some(BlockCause::Unusable);
    }

    fn raise(&mut self, d: Decision, reason: String) {
        if rank(d) > rank(self.decision) {
            self.decision = d;
        }
        self.reasons.push(reason);
    }
}

fn rank(d: Decision) -> u8 {
    match d {
        Decision::Allow => 0,
        Decision::Warn => 1,
        Decision::Block => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Framework, Health, MemoryEstimate, Quantization};

    fn record(model_type: &str, caps: &[Capability], estimate: u64) -> ModelRecord {
        ModelRecord {
            kind: "model".into(),
            id: "t/m".into(),
            path: "/x".into(),
            revision: None,
            framework: Framework::Mlx,
            weight_format: "safetensors".into(),
            model_type: Some(model_type.into()),
            quantization: Quantization {
                method: "none".into(),
                ..Default::default()
            },
            size_bytes: estimate,
            context_length: Some(4096),
            context_length_source: "config.json:max_position_embeddings".into(),
            capabilities: caps.to_vec(),
            health: Health {
                ok: true,
                problems: vec![],
            },
            memory: MemoryEstimate {
                estimate_bytes: estimate,
                dtype: "float32".into(),
            },
        }
    }

    fn mem(available: u64) -> MemorySnapshot {
        MemorySnapshot {
            total_bytes: 24_000_000_000,
            mem_available_bytes: available,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            cgroup_limit_bytes: None,
            cgroup_usage_bytes: None,
            psi_some_avg10: None,
            psi_full_avg10: None,
            available_bytes: available,
            available_source: "meminfo".into(),
        }
    }

    #[test]
    fn text_over_threshold_warns_vision_blocks() {
        let cfg = GateConfig::default();
        let t = decide(
            &record("llama", &[Capability::Text], 8_000_000_000),
            Ok(&mem(10_000_000_000)),
            &cfg,
        );
        assert_eq!(
            (t.decision, t.backend.as_deref()),
            (Decision::Warn, Some("text"))
        );
        assert_eq!(t.ratio, Some(0.8));
        let v = decide(
            &record(
                "llava",
                &[Capability::Text, Capability::Vision],
                8_000_000_000,
            ),
            Ok(&mem(10_000_000_000)),
            &cfg,
        );
        assert_eq!(
            (v.decision, v.backend.as_deref(), v.blocked_by),
            (Decision::Block, Some("vision"), Some(BlockCause::Memory))
        );
        assert_eq!(v.refusal().map(|f| f.exit), Some(crate::cli::Exit::Blocked));
        let lenient = GateConfig {
            allow_warn: true,
            ..cfg
        };
        let v = decide(
            &record("llava", &[Capability::Vision], 8_000_000_000),
            Ok(&mem(10_000_000_000)),
            &lenient,
        );
        assert_eq!(v.decision, Decision::Warn);
    }

    #[test]
    fn fits_is_allowed_with_numbers() {
        let g = decide(
            &record(
                "qwen3",
                &[Capability::Text, Capability::Chat],
                1_000_000_000,
            ),
            Ok(&mem(10_000_000_000)),
            &GateConfig::default(),
        );
        assert_eq!(g.decision, Decision::Allow);
        assert_eq!(g.available_bytes, Some(10_000_000_000));
        assert!(
            g.reasons[0].contains("needs 1.00 GB of 10.00 GB"),
            "{:?}",
            g.reasons
        );
    }

    #[test]
    fn unsupported_things_block_regardless_of_memory() {
        let cfg = GateConfig {
            threshold: 0.7,
            allow_warn: true,
        };
        let e = decide(
            &record("bert", &[Capability::Embeddings], 1),
            Ok(&mem(1 << 40)),
            &cfg,
        );
        assert_eq!(
            (e.decision, e.backend.clone(), e.blocked_by),
            (Decision::Block, None, Some(BlockCause::Unusable))
        );
        assert_eq!(
            e.refusal().map(|f| f.exit),
            Some(crate::cli::Exit::Unusable)
        );
        let u = decide(
            &record("mamba", &[Capability::Text], 1),
            Ok(&mem(1 << 40)),
            &cfg,
        );
        assert!(u.reasons[0].contains("'mamba' is not supported"));
        let mut sick = record("llama", &[Capability::Text], 1);
        sick.health = Health {
            ok: false,
            problems: vec!["config.json missing".into()],
        };
        // Unhealthy and short of memory: no memory would make it run, so it is unusable.
        let g = decide(&sick, Ok(&mem(1)), &GateConfig::default());
        assert_eq!(
            (g.decision, g.blocked_by),
            (Decision::Block, Some(BlockCause::Unusable))
        );
        let mut gemma = record("gemma2", &[Capability::Text], 1);
        gemma.weight_format = "gguf".into();
        let g = decide(&gemma, Ok(&mem(1 << 40)), &cfg);
        assert_eq!(g.blocked_by, Some(BlockCause::Unusable), "{:?}", g.reasons);
        assert!(
            g.reasons[0].contains("GGUF architecture 'gemma2'"),
            "{:?}",
            g.reasons
        );
        let mut k = record("llama", &[Capability::Text], 1);
        k.quantization.gguf_types = vec!["F32".into(), "Q4_K".into()];
        let g = decide(&k, Ok(&mem(1 << 40)), &cfg);
        assert!(
            g.reasons.iter().any(|r| r.contains("Q4_K")),
            "{:?}",
            g.reasons
        );
    }

    #[test]
    fn unknown_memory_warns_pressure_warns() {
        let g = decide(
            &record("llama", &[Capability::Text], 1),
            Err("no /proc/meminfo".into()),
            &GateConfig::default(),
        );
        assert_eq!(g.decision, Decision::Warn);
        let mut m = mem(1 << 40);
        m.psi_some_avg10 = Some(25.0);
        let g = decide(
            &record("llama", &[Capability::Text], 1),
            Ok(&m),
            &GateConfig::default(),
        );
        assert_eq!(g.decision, Decision::Warn);
    }
}
