//! One benchmark report record (schema 0.2.2) for one model run of gen/see/hear, from measured
//! facts only: a figure that was not measured is left out, never estimated. Records are valid
//! under mlx-knife's own 0.2.2 schema too (its validator and report generator read the same
//! benchmark folders): a bare SemVer `mlx_knife_version`, no `null` values, integer token
//! counts, its quality-flag names.
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
    /// How the weights were computed with, as data (not a display string).
    pub quantization: Option<WeightPrecision>,
    pub modality: String,
    pub passed: bool,
    /// Why the run failed or was interrupted: (`error` record code, message).
    pub error: Option<(String, String)>,
    /// `stop`, `length` or `interrupted` for a generation.
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Of the completion tokens, those of a reasoning model's thinking (the rest are its answer).
    pub reasoning_tokens: Option<u64>,
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
    /// Zombie processes on the machine when the run ended.
    pub zombies: Option<u64>,
}

/// The precision the weights ran in: quantized (`bits`, `group_size`) or a dense dtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightPrecision {
    Quantized {
        bits: u32,
        group_size: u32,
    },
    /// `f32`, `f16`, `bf16`.
    Dense(String),
}

impl WeightPrecision {
    /// The report's `model.quantization` value: `4bit`, `8bit`, `f32`, …
    pub fn label(&self) -> String {
        match self {
            WeightPrecision::Quantized { bits, .. } => format!("{bits}bit"),
            WeightPrecision::Dense(d) => d.clone(),
        }
    }
}

const GB: f64 = 1e9;
/// seeds/004: more swap than this degrades a run.
const SWAP_DEGRADED_BYTES: u64 = 100_000_000;
/// mlx-knife's report generator: under 5 GB free is `degraded_memory`.
const FREE_DEGRADED_BYTES: u64 = 5_000_000_000;

fn iso(ts: f64) -> String {
    let secs = ts.max(0.0) as u64;
    let ms = ((ts - secs as f64) * 1000.0).round().clamp(0.0, 999.0) as u32;
    format!("{}.{ms:03}Z", format_utc(secs, "%Y-%m-%dT%H:%M:%S"))
}

/// The record, valid under report schema 0.2.2 (ours and mlx-knife's).
pub fn record(f: &RunFacts) -> Value {
    let gb = |b: u64| round_to(b as f64 / GB, 3);
    let mut perf = serde_json::Map::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) {
            perf.insert(k.into(), json!(round_to(v, 4)));
        }
    };
    put("tokens_per_sec", f.tokens_per_sec);
    put("model_load_time_s", f.load_time_s);
    put("time_to_first_token_s", f.ttft_s);
    put("cleanup_time_s", f.cleanup_time_s);
    put("peak_ram_gb", f.peak_bytes.map(|b| b as f64 / GB));
    put("stable_ram_gb", f.stable_bytes.map(|b| b as f64 / GB));
    put("duration_s", Some(f.end_ts - f.start_ts));
    for (k, v) in &f.extra {
        put(k, Some(*v));
    }
    if let Some(n) = f.prompt_tokens {
        perf.insert("prompt_tokens".into(), json!(n));
    }
    if let Some(n) = f.completion_tokens {
        perf.insert("completion_tokens".into(), json!(n));
        if let Some(r) = f.reasoning_tokens {
            perf.insert("reasoning_tokens".into(), json!(r));
            perf.insert("answer_tokens".into(), json!(n.saturating_sub(r)));
        }
    }
    let mut health = json!({});
    if let Some(m) = &f.memory {
        health["swap_used_mb"] = json!(round_to(m.swap_used_bytes as f64 / 1e6, 1));
        health["ram_free_gb"] = json!(round_to(m.available_bytes as f64 / GB, 3));
        let mut flags = Vec::new();
        if m.swap_used_bytes > SWAP_DEGRADED_BYTES {
            flags.push("degraded_swap");
        }
        if m.available_bytes < FREE_DEGRADED_BYTES {
            flags.push("degraded_memory");
        }
        if let Some(z) = f.zombies {
            health["zombie_processes"] = json!(z);
            if z > 0 {
                flags.push("degraded_zombies");
            }
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
    let mut model = json!({"id": f.model_id});
    if let Some(b) = f.size_bytes {
        model["size_gb"] = json!(gb(b));
    }
    if let Some(v) = &f.family {
        model["family"] = json!(v);
    }
    if let Some(v) = &f.framework {
        model["framework"] = json!(v);
    }
    if let Some(q) = &f.quantization {
        model["quantization"] = json!(q.label());
        if let WeightPrecision::Quantized { bits, group_size } = q {
            model["bits"] = json!(bits);
            model["group_size"] = json!(group_size);
        }
    }
    let mut metadata = json!({"inference_modality": f.modality});
    if let Some(r) = &f.finish_reason {
        metadata["finish_reason"] = json!(r);
    }
    if let Some((code, message)) = &f.error {
        metadata["error"] = json!({"code": code, "message": message});
    }
    json!({
        "schema_version": "0.2.2",
        "timestamp": iso(f.end_ts),
        "mlx_knife_version": env!("CARGO_PKG_VERSION"),
        "test": f.tool,
        "outcome": if f.passed { "passed" } else { "failed" },
        "duration": round_to(f.end_ts - f.start_ts, 4),
        "model": model,
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
        "metadata": metadata,
        "test_start_ts": round_to(f.start_ts, 3),
        "test_end_ts": round_to(f.end_ts, 3),
    })
}

/// What mlx-knife's own 0.2.2 schema and report generator refuse, checked on a record we
/// write (their schema file is not ours to ship; these are its rules, from seeds/000 and the
/// published schema): problems, empty when the record would pass there.
pub fn mlx_knife_problems(r: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let semver = r["mlx_knife_version"].as_str().is_some_and(|v| {
        let mut parts = v.splitn(3, '.');
        let num = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        let (a, b) = (parts.next(), parts.next());
        let c = parts.next().map(|c| {
            c.split(|ch: char| !ch.is_ascii_digit())
                .next()
                .unwrap_or("")
        });
        num(a) && num(b) && num(c)
    });
    if !semver {
        p.push(format!(
            "mlx_knife_version {} does not start with X.Y.Z",
            r["mlx_knife_version"]
        ));
    }
    fn nulls(v: &Value, path: &str, p: &mut Vec<String>) {
        match v {
            Value::Null => p.push(format!("{path} is null")),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, v)| nulls(v, &format!("{path}.{k}"), p)),
            Value::Array(a) => a.iter().for_each(|v| nulls(v, &format!("{path}[]"), p)),
            _ => {}
        }
    }
    nulls(r, "", &mut p);
    for k in ["prompt_tokens", "completion_tokens"] {
        let v = &r["performance"][k];
        if !v.is_null() && !v.is_u64() {
            p.push(format!("performance.{k} = {v} is not an integer ≥ 0"));
        }
    }
    if let Some(flags) = r["system_health"]["quality_flags"].as_array() {
        for f in flags {
            if !matches!(
                f.as_str(),
                Some("clean" | "degraded_swap" | "degraded_zombies" | "degraded_memory")
            ) {
                p.push(format!("quality flag {f} is not one of mlx-knife's"));
            }
        }
    }
    if let Some(perf) = r["performance"].as_object() {
        for (k, v) in perf {
            if !v.is_number() || v.as_f64().is_some_and(|x| x < 0.0) {
                p.push(format!("performance.{k} = {v} is not a number ≥ 0"));
            }
        }
    }
    // Their generator reads these without defaults.
    if r["outcome"] == "passed" && r["duration"].is_null() {
        p.push("a passed record without duration".into());
    }
    if r["model"].is_object() && r["model"]["id"].is_null() {
        p.push("model without id".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Schemas;

    #[test]
    fn record_is_valid_under_0_2_2_here_and_for_mlx_knife() {
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
        assert_eq!(mlx_knife_problems(&r), Vec::<String>::new(), "{r:#}");
        assert_eq!(r["timestamp"], "2023-11-14T22:13:23.500Z");
        assert_eq!(r["mlx_knife_version"], env!("CARGO_PKG_VERSION"));
        // Not measured: left out, not null (mlx-knife's schema refuses null metrics).
        assert!(r["performance"].get("model_load_time_s").is_none());
        assert!(r["model"].get("family").is_none());
        assert_eq!(r["system_health"]["quality_flags"], json!(["clean"]));
    }

    #[test]
    fn token_counts_are_integers_and_precision_is_data() {
        let f = RunFacts {
            tool: "mlxk-gen".into(),
            model_id: "org/m".into(),
            modality: "text".into(),
            passed: true,
            prompt_tokens: Some(31),
            completion_tokens: Some(7),
            quantization: Some(WeightPrecision::Quantized {
                bits: 4,
                group_size: 64,
            }),
            ..Default::default()
        };
        let r = record(&f);
        assert_eq!(r["performance"]["prompt_tokens"], json!(31));
        assert!(r["performance"]["prompt_tokens"].is_u64());
        assert_eq!(r["performance"]["completion_tokens"], json!(7));
        assert!(r["performance"].get("reasoning_tokens").is_none());
        let thought = record(&RunFacts {
            reasoning_tokens: Some(5),
            ..f.clone()
        });
        assert_eq!(
            (
                &thought["performance"]["reasoning_tokens"],
                &thought["performance"]["answer_tokens"]
            ),
            (&json!(5), &json!(2))
        );
        assert!(Schemas::new().check(&thought).is_empty());
        assert_eq!(
            (
                &r["model"]["quantization"],
                &r["model"]["bits"],
                &r["model"]["group_size"]
            ),
            (&json!("4bit"), &json!(4), &json!(64))
        );
        let dense = RunFacts {
            quantization: Some(WeightPrecision::Dense("bf16".into())),
            ..f
        };
        assert_eq!(record(&dense)["model"]["quantization"], "bf16");
    }

    #[test]
    fn a_failed_run_says_why_and_is_still_valid() {
        let f = RunFacts {
            tool: "mlxk-gen".into(),
            model_id: "org/m".into(),
            modality: "text".into(),
            passed: false,
            error: Some(("interrupted".into(), "interrupted by Ctrl-C".into())),
            finish_reason: Some("interrupted".into()),
            start_ts: 10.0,
            end_ts: 12.0,
            ..Default::default()
        };
        let r = record(&f);
        assert_eq!(r["outcome"], "failed");
        assert_eq!(r["metadata"]["error"]["code"], "interrupted");
        assert_eq!(r["metadata"]["finish_reason"], "interrupted");
        assert!(Schemas::new().check(&r).is_empty());
        assert!(
            mlx_knife_problems(&r).is_empty(),
            "{:?}",
            mlx_knife_problems(&r)
        );
    }

    #[test]
    fn low_memory_and_swap_use_mlx_knife_flag_names() {
        let mem = MemorySnapshot {
            total_bytes: 24 << 30,
            mem_available_bytes: 4_000_000_000,
            swap_total_bytes: 1 << 30,
            swap_used_bytes: 200_000_000,
            cgroup_limit_bytes: None,
            cgroup_usage_bytes: None,
            psi_some_avg10: None,
            psi_full_avg10: None,
            available_bytes: 4_000_000_000,
            available_source: "meminfo".into(),
        };
        let r = record(&RunFacts {
            memory: Some(mem),
            tool: "t".into(),
            model_id: "m".into(),
            modality: "text".into(),
            zombies: Some(3),
            ..Default::default()
        });
        assert_eq!(
            r["system_health"]["quality_flags"],
            json!(["degraded_swap", "degraded_memory", "degraded_zombies"])
        );
        assert_eq!(r["system_health"]["zombie_processes"], 3);
        assert!(mlx_knife_problems(&r).is_empty());
    }

    #[test]
    fn what_mlx_knife_refuses_is_named() {
        let bad = json!({"mlx_knife_version": "mlxk 0.1.0", "outcome": "passed", "duration": 1,
            "performance": {"prompt_tokens": 31.0, "x": null},
            "system_health": {"quality_flags": ["degraded_ram"]}});
        let p = mlx_knife_problems(&bad);
        assert_eq!(p.len(), 5, "{p:?}");
        let ok = json!({"mlx_knife_version": "2.0.4-beta.9", "outcome": "passed", "duration": 1});
        assert!(mlx_knife_problems(&ok).is_empty());
    }
}
