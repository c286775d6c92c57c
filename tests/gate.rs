//! mlxk-gate end to end: real probe records through the real gate, with fake /proc trees so
//! allow, warn and block are all reached.

#[allow(dead_code)]
mod support;
use serde_json::{Value, json};
use support::*;

fn probe_json(c: &Cache, spec: &str) -> String {
    let out = bin("mlxk-probe")
        .env("HF_HUB_CACHE", c.root())
        .args([spec, "--json"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn gate(input: &str, sys: &tempfile::TempDir, args: &[&str]) -> (Vec<Value>, i32, String) {
    let out = bin("mlxk-gate")
        .env("MLXK_SYS_ROOT", sys.path())
        .args(args)
        .arg("--json")
        .write_stdin(input)
        .output()
        .unwrap();
    let r = Run::from(out);
    (r.records(), r.code, r.stderr)
}

/// A text model whose estimate we control through a big f32 tensor.
fn text_model(c: &Cache, repo: &str, f32_values: u64) {
    let s = c.snapshot(repo, "1");
    write_json(
        &s,
        "config.json",
        &json!({"model_type": "qwen3", "max_position_embeddings": 40960}),
    );
    write(
        &s,
        "model.safetensors",
        safetensors(&[("w", "F32", &[f32_values])], Some("mlx")),
    );
    tokenizer(&s, true);
}

fn vision_model(c: &Cache, repo: &str, f32_values: u64) {
    let s = c.snapshot(repo, "1");
    write_json(
        &s,
        "config.json",
        &json!({"model_type": "llava", "vision_config": {}, "text_config": {"model_type": "llama"}}),
    );
    write(
        &s,
        "model.safetensors",
        safetensors(&[("w", "F32", &[f32_values])], Some("mlx")),
    );
    write_json(
        &s,
        "preprocessor_config.json",
        &json!({"image_processor_type": "CLIPImageProcessor"}),
    );
    tokenizer(&s, true);
}

#[test]
fn allow_when_it_fits_with_numbers_and_fields_kept() {
    let c = Cache::new();
    text_model(&c, "org/Small", 1000); // 4000 B
    let sys = sys_root(1000, None); // 1 024 000 B available
    let mut rec: Value = serde_json::from_str(probe_json(&c, "org/Small").trim()).unwrap();
    rec["x_custom"] = json!({"kept": true});
    let (out, code, _) = gate(&format!("{rec}\n"), &sys, &[]);
    assert_eq!(code, 0);
    let g = &out[0]["gate"];
    assert_eq!(g["decision"], "allow");
    assert_eq!(g["backend"], "text");
    assert_eq!(g["available_bytes"], 1_024_000);
    assert_eq!(g["ratio"], 0.0039);
    assert_eq!(g["threshold"], 0.7);
    assert_eq!(
        out[0]["x_custom"],
        json!({"kept": true}),
        "unknown fields pass through"
    );
    assert_eq!(out[0]["id"], "org/Small");
}

#[test]
fn text_over_threshold_warns_vision_blocks_exit_5() {
    let c = Cache::new();
    text_model(&c, "org/Big-Text", 200_000); // 800 kB
    vision_model(&c, "org/Big-Vision", 200_000);
    let sys = sys_root(1000, None); // 1 MB available → ratio 0.78
    let input = probe_json(&c, "org/Big-Text") + &probe_json(&c, "org/Big-Vision");
    let (out, code, _) = gate(&input, &sys, &[]);
    assert_eq!(code, 5);
    assert_eq!(out[0]["gate"]["decision"], "warn");
    assert_eq!(out[1]["gate"]["decision"], "block");
    assert_eq!(out[1]["gate"]["backend"], "vision");
    let why = out[1]["gate"]["reasons"][0].as_str().unwrap();
    assert!(
        why.starts_with(
            "memory: needs 800.0 kB of 1.0 MB available (MemAvailable, 78% vs threshold 70%)"
        ),
        "{why}"
    );

    // --allow-warn lets the vision model through with a warning; --threshold moves the line.
    let (out, code, _) = gate(&input, &sys, &["--allow-warn"]);
    assert_eq!(
        (code, out[1]["gate"]["decision"].as_str()),
        (0, Some("warn"))
    );
    let (out, code, _) = gate(&input, &sys, &["--threshold", "0.9"]);
    assert_eq!(
        (
            code,
            out[0]["gate"]["decision"].as_str(),
            out[1]["gate"]["decision"].as_str()
        ),
        (0, Some("allow"), Some("allow"))
    );
}

#[test]
fn drop_blocked_leaves_them_out_and_says_so() {
    let c = Cache::new();
    text_model(&c, "org/Fine", 10);
    let sick = c.snapshot("org/Sick", "1");
    write(&sick, "model.safetensors", b"");
    let input = probe_json(&c, "org/Sick") + &probe_json(&c, "org/Fine");
    let sys = sys_root(1_000_000, None);
    let (out, code, stderr) = gate(&input, &sys, &["--drop-blocked"]);
    assert_eq!(code, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], "org/Fine");
    assert!(
        stderr.contains(
            "dropped org/Sick: unhealthy: config.json missing; model.safetensors is empty"
        ),
        "{stderr}"
    );
    let (out, code, _) = gate(&input, &sys, &[]);
    // An unhealthy model is unusable here (4), not short of memory (5).
    assert_eq!((out.len(), code), (2, 4));
    assert_eq!(out[0]["gate"]["blocked_by"], "unusable");
}

#[test]
fn a_memory_block_exits_5_and_an_unusable_model_4() {
    let c = Cache::new();
    vision_model(&c, "org/Big-Vision", 200_000);
    let sick = c.snapshot("org/Sick", "1");
    write(&sick, "model.safetensors", b"");
    let sys = sys_root(1000, None);
    let (out, code, _) = gate(&probe_json(&c, "org/Big-Vision"), &sys, &[]);
    assert_eq!(
        (code, out[0]["gate"]["blocked_by"].clone()),
        (5, json!("memory"))
    );
    let (out, code, _) = gate(&probe_json(&c, "org/Sick"), &sys, &[]);
    assert_eq!(
        (code, out[0]["gate"]["blocked_by"].clone()),
        (4, json!("unusable"))
    );
    // Both in one stream: the higher status (the memory block) is the run's, as in every tool.
    let both = probe_json(&c, "org/Sick") + &probe_json(&c, "org/Big-Vision");
    let (_, code, _) = gate(&both, &sys, &[]);
    assert_eq!(code, 5);
}

#[test]
fn malformed_lines_become_error_records_and_the_gate_goes_on() {
    let c = Cache::new();
    text_model(&c, "org/Fine", 10);
    let good = probe_json(&c, "org/Fine");
    let input = format!(
        "{{not json\n\n[1,2]\n{good}{{\"type\":\"model\",\"id\":\"x\"}}\n{{\"type\":\"error\",\"code\":\"not_found\",\"message\":\"m\"}}\n"
    );
    let sys = sys_root(1_000_000, None);
    let (out, code, stderr) = gate(&input, &sys, &[]);
    assert_eq!(code, 1);
    assert_eq!(out.len(), 5);
    assert_eq!(out[0]["type"], "error");
    assert!(
        out[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stdin line 1: not valid JSON")
    );
    assert_eq!(out[1]["message"], "stdin line 3: not a JSON object");
    assert_eq!(out[2]["gate"]["decision"], "allow");
    assert!(
        out[3]["message"]
            .as_str()
            .unwrap()
            .starts_with("stdin line 5: model record is incomplete")
    );
    assert_eq!(out[3]["model"], "x");
    assert_eq!(
        out[4],
        json!({"type":"error","code":"not_found","message":"m"}),
        "other records pass untouched"
    );
    assert_eq!(stderr.lines().count(), 3);
}

#[test]
fn unsupported_models_are_blocked_whatever_the_memory() {
    let c = Cache::new();
    let e = c.snapshot("org/Embedder", "1");
    write_json(&e, "config.json", &json!({"model_type": "bert"}));
    write(
        &e,
        "model.safetensors",
        safetensors(&[("w", "F32", &[4])], Some("pt")),
    );
    let g = c.snapshot("org/K-Quant", "1");
    use mlxk::gguf::writer::{Meta, build};
    write(
        &g,
        "m.gguf",
        build(
            &[("general.architecture", Meta::Str("llama"))],
            &[("w", &[256], 12)],
        ),
    );
    let input = probe_json(&c, "org/Embedder") + &probe_json(&c, "org/K-Quant");
    let sys = sys_root(100_000_000, None);
    let (out, code, _) = gate(&input, &sys, &["--allow-warn"]);
    assert_eq!(
        code, 4,
        "no backend can run them: unusable, not a memory block"
    );
    assert_eq!(out[0]["gate"]["blocked_by"], "unusable");
    assert_eq!(
        out[0]["gate"]["reasons"][0],
        "embedding model: mlxk has no embeddings backend yet"
    );
    assert_eq!(out[0]["gate"]["backend"], Value::Null);
    assert_eq!(
        out[1]["gate"]["reasons"][0],
        "GGUF tensor types Q4_K cannot be loaded by MLX (it loads F32, F16, BF16, Q4_0, Q4_1, Q8_0)"
    );
}

#[test]
fn memory_pressure_and_unreadable_memory_warn() {
    let c = Cache::new();
    text_model(&c, "org/Fine", 10);
    let input = probe_json(&c, "org/Fine");
    let (out, _, _) = gate(&input, &sys_root(1_000_000, Some(42.0)), &[]);
    assert_eq!(out[0]["gate"]["decision"], "warn");
    assert_eq!(out[0]["gate"]["memory"]["psi_some_avg10"], 42.0);
    let empty = tempfile::tempdir().unwrap();
    let (out, code, _) = gate(&input, &empty, &[]);
    assert_eq!(
        (code, out[0]["gate"]["decision"].as_str()),
        (0, Some("warn"))
    );
    assert!(
        out[0]["gate"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("memory unknown (cannot read")
    );
}

#[test]
fn cgroup_limit_counts_when_tighter() {
    let c = Cache::new();
    text_model(&c, "org/Mid", 200_000); // 800 kB
    let sys = sys_root(100_000_000, None);
    write(sys.path(), "proc/self/cgroup", "0::/job\n");
    write(sys.path(), "sys/fs/cgroup/job/memory.max", "1000000\n");
    write(sys.path(), "sys/fs/cgroup/job/memory.current", "0\n");
    let (out, _, _) = gate(&probe_json(&c, "org/Mid"), &sys, &[]);
    let g = &out[0]["gate"];
    assert_eq!(g["available_bytes"], 1_000_000);
    assert_eq!(g["memory"]["available_source"], "cgroup");
    assert_eq!(g["decision"], "warn");
}

#[test]
fn human_table_golden() {
    let c = Cache::new();
    text_model(&c, "org/Big-Text", 200_000);
    vision_model(&c, "org/Big-Vision", 200_000);
    let input = probe_json(&c, "org/Big-Text") + &probe_json(&c, "org/Big-Vision");
    let sys = sys_root(1000, None);
    let out = bin("mlxk-gate")
        .env("MLXK_SYS_ROOT", sys.path())
        .arg("--human")
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    insta::assert_snapshot!("gate_table", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn bad_threshold_is_a_usage_error() {
    let sys = sys_root(1000, None);
    let (_, code, stderr) = gate("", &sys, &["--threshold", "0"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the threshold must be a positive number"),
        "{stderr}"
    );
}

#[test]
fn probe_gate_pipe_through_a_real_shell() {
    let c = Cache::new();
    text_model(&c, "org/Fine", 10);
    let sys = sys_root(1_000_000, None);
    let script = format!(
        "set -o pipefail; '{}' org/Fine | '{}' --json",
        bin_path("mlxk-probe").display(),
        bin_path("mlxk-gate").display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("HF_HUB_CACHE", c.root())
        .env("MLXK_SYS_ROOT", sys.path())
        .env("MLXK_DEVICE", "cpu")
        .output()
        .unwrap();
    let out = Run::from(out).ok();
    assert_eq!(out.records()[0]["gate"]["decision"], "allow");
}

#[test]
fn closed_stdout_ends_quietly() {
    let c = Cache::new();
    text_model(&c, "org/Fine", 10);
    let one = probe_json(&c, "org/Fine");
    let input = one.repeat(100);
    let sys = sys_root(1_000_000, None);
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("records.jsonl");
    std::fs::write(&file, &input).unwrap();
    assert_output_exceeds(
        bin("mlxk-gate")
            .env("MLXK_SYS_ROOT", sys.path())
            .write_stdin(input.clone()),
        8192,
    );
    let mut cmd = std::process::Command::new(bin_path("mlxk-gate"));
    cmd.env("MLXK_SYS_ROOT", sys.path())
        .stdin(std::fs::File::open(&file).unwrap());
    assert_ends_quietly_when_reader_leaves(cmd);
}

#[test]
fn a_terminal_on_stdin_is_a_usage_error() {
    let r = run_on_terminal(std::process::Command::new(bin_path("mlxk-gate")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("reads model records on stdin"),
        "{}",
        r.stderr
    );
}
