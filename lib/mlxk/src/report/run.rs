//! One benchmark report record (schema 0.2.2) for one model run of gen/see/hear, from measured
//! facts only: a figure that was not measured is `null`, never estimated.
use crate::report::markdown::format_utc;
use crate::sys::MemorySnapshot;
use crate::table::round_to;
use serde_json::{Value, json};

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub tool: String,
    pub model_id: String,
    pub size_bytes: Option<u64>,
    pub family: Option<String>,
    /// `MLX` or `GGUF`.
    pub framework: Option<String>,
    /// `4bit`, `8bit`, `f32`, …
    pub quantization: Option<String>,
    pub modality: String,
    pub passed: bool,
    pub start_ts: f64,
    pub end_ts: f64,
    pub tokens_per_sec: Option<f64>,
    pub load_time_s: Option<f64>,
    pub ttft_s: Option<f64>,
    pub cleanup_time_s: Option<f64>,
    pub peak_bytes: Option<u64>,
    pub stable_bytes: Option<u64>,
    /// Extra numeric metrics (`prefill_tokens_per_sec`, …).
    pub extra: Vec<(String, f64)>,
    pub stop_configured: Vec<String>,
    pub stop_detected: Vec<String>,
    pub stop_leaked: bool,
    pub mlx_version: String,
    pub memory: Option<MemorySnapshot>,
}

const GB: f64 = 1e9;

fn iso(ts: f64) -> String {
    let secs = ts.max(0.0) as u64;
    let ms = ((ts - secs as f64) * 1000.0).round().clamp(0.0, 999.0) as u32;
    format!("{}.{ms:03}Z", format_utc(secs, "%Y-%m-%dT%H:%M:%S"))
}

/// The record, valid under report schema 0.2.2.
pub fn record(f: &RunFacts) -> Value {
    let gb = |b: Option<u64>| b.map(|b| round_to(b as f64 / GB, 3));
    let s = |x: Option<f64>| x.map(|v| round_to(v, 4));
    let mut perf = json!({
        "tokens_per_sec": s(f.tokens_per_sec),
        "model_load_time_s": s(f.load_time_s),
        "time_to_first_token_s": s(f.ttft_s),
        "cleanup_time_s": s(f.cleanup_time_s),
        "peak_ram_gb": gb(f.peak_bytes),
        "stable_ram_gb": gb(f.stable_bytes),
        "duration_s": round_to(f.end_ts - f.start_ts, 4),
    });
    for (k, v) in &f.extra {
        perf[k] = json!(round_to(*v, 4));
    }
    let mut health = json!({});
    let mut flags = Vec::new();
    if let Some(m) = &f.memory {
        health["swap_used_mb"] = json!(round_to(m.swap_used_bytes as f64 / 1e6, 1));
        health["ram_free_gb"] = json!(round_to(m.available_bytes as f64 / GB, 3));
        // More than 256 MB in swap slows a run measurably; under a tenth free is tight.
        if m.swap_used_bytes > 256 << 20 {
            flags.push("degraded_swap");
        }
        if m.total_bytes > 0 && m.available_bytes < m.total_bytes / 10 {
            flags.push("degraded_ram");
        }
        if flags.is_empty() {
            flags.push("clean");
        }
        health["quality_flags"] = json!(flags);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut profile = json!({"cores_logical": cores});
    if let Some(m) = &f.memory {
        profile["memory_gb"] = json!(round_to(m.total_bytes as f64 / GB, 2));
    }
    json!({
        "schema_version": "0.2.2",
        "timestamp": iso(f.end_ts),
        "mlx_knife_version": format!("mlxk {}", env!("CARGO_PKG_VERSION")),
        "test": f.tool,
        "outcome": if f.passed { "passed" } else { "failed" },
        "duration": round_to(f.end_ts - f.start_ts, 4),
        "model": {
            "id": f.model_id,
            "size_gb": gb(f.size_bytes),
            "family": f.family,
            "framework": f.framework,
            "quantization": f.quantization,
        },
        "performance": perf,
        "stop_tokens": {
            "configured": f.stop_configured,
            "detected": f.stop_detected,
            "leaked": f.stop_leaked,
        },
        "system": {
            "os": std::env::consts::OS,
            "platform": format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            "mlx_version": f.mlx_version,
            "hardware_profile": profile,
        },
        "system_health": health,
        "metadata": {"inference_modality": f.modality},
        "test_start_ts": round_to(f.start_ts, 3),
        "test_end_ts": round_to(f.end_ts, 3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Schemas;

    #[test]
    fn record_is_valid_under_0_2_2_and_keeps_unmeasured_null() {
        let f = RunFacts {
            tool: "mlxk-gen".into(),
            model_id: "org/m".into(),
            modality: "text".into(),
            passed: true,
            start_ts: 1_700_000_000.25,
            end_ts: 1_700_000_003.5,
            tokens_per_sec: Some(12.5),
            extra: vec![("prefill_tokens_per_sec".into(), 100.0)],
            stop_configured: vec!["<|im_end|>".into()],
            memory: Some(MemorySnapshot {
                total_bytes: 24 << 30,
                mem_available_bytes: 20 << 30,
                swap_total_bytes: 0,
                swap_used_bytes: 0,
                cgroup_limit_bytes: None,
                cgroup_usage_bytes: None,
                psi_some_avg10: None,
                psi_full_avg10: None,
                available_bytes: 20 << 30,
                available_source: "meminfo".into(),
            }),
            ..Default::default()
        };
        let r = record(&f);
        let problems = Schemas::new().check(&r);
        assert!(problems.is_empty(), "{problems:?}\n{r:#}");
        assert_eq!(r["timestamp"], "2023-11-14T22:13:23.500Z");
        assert!(r["performance"]["model_load_time_s"].is_null());
        assert_eq!(r["system_health"]["quality_flags"], json!(["clean"]));
    }
}
