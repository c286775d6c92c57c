//! mlxk-gen end to end on the real SmolLM2-135M-Instruct GGUF (packaged by scripts/bootstrap):
//! text and JSON output, stop strings, EOS, max tokens, seeds, gate records, bad input, pipes.

use mlxk_e2e::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn hub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/hf/hub")
}

fn gen_cmd() -> assert_cmd::Command {
    let mut c = bin("mlxk-gen");
    c.env("HF_HUB_CACHE", hub());
    c
}

fn run(args: &[&str], stdin: Option<&str>) -> (String, String, i32) {
    let mut c = gen_cmd();
    c.args(args);
    if let Some(s) = stdin {
        c.write_stdin(s);
    }
    let out = c.output().expect("run mlxk-gen");
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        out.status.code().unwrap_or(-1),
    )
}

/// The `result` record of a `--json` run.
fn result_of(out: &str) -> Value {
    lines(out.as_bytes())
        .into_iter()
        .find(|r| r["type"] == "result")
        .expect("a result record")
}

const PARIS: &[&str] = &["SmolLM2", "-p", "The capital of France is", "--raw"];

#[test]
fn raw_prompt_streams_plain_text() {
    let (out, err, code) = run(&[PARIS, &["-n", "2"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " Paris.\n");
}

#[test]
fn json_records_load_result_unload_with_deltas() {
    let (out, err, code) = run(&[PARIS, &["-n", "3", "--json", "--stream"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    let recs = lines(out.as_bytes());
    let kinds: Vec<&str> = recs.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"load"));
    assert_eq!(&kinds[kinds.len() - 2..], &["result", "unload"]);
    let deltas: String = recs
        .iter()
        .filter(|r| r["type"] == "delta")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    let result = &recs[recs.len() - 2];
    assert_eq!(deltas, result["text"].as_str().unwrap());
    assert_eq!(result["text"], " Paris.\n");
    assert_eq!(result["generated_tokens"], 3);
    assert_eq!(result["prompt_tokens"], 5);
    assert_eq!(result["finish_reason"], "length");
    assert!(result["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(recs[0]["load_time_s"].as_f64().unwrap() > 0.0);
    assert!(recs[0]["rss_bytes"].as_u64().unwrap() > 50_000_000);
}

#[test]
fn stop_string_ends_generation_and_is_never_printed() {
    // " Paris." arrives as " Paris" + "."; the stop string spans no more than needed.
    let (out, err, code) = run(
        &[PARIS, &["-n", "8", "--stop", ".\n", "--json"]].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let result = result_of(&out);
    assert_eq!(result["text"], " Paris");
    assert_eq!(result["finish_reason"], "stop");
}

#[test]
fn chat_prompt_stops_at_eos() {
    let (out, err, code) = run(
        &[
            "SmolLM2",
            "-p",
            "What is the capital of France?",
            "-n",
            "20",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let result = result_of(&out);
    assert_eq!(result["text"], "The capital of France is Paris.");
    assert_eq!(result["finish_reason"], "stop");
    assert_eq!(result["generated_tokens"], 7);
}

#[test]
fn same_seed_same_sample() {
    let args = [PARIS, &["-n", "6", "--temp", "1.0", "--seed", "42"]].concat();
    let a = run(&args, None);
    let b = run(&args, None);
    assert_eq!(a.2, 0, "{}", a.1);
    assert_eq!(a.0, b.0);
}

#[test]
fn prompt_from_stdin_and_from_file() {
    let (out, err, code) = run(
        &["SmolLM2", "-p", "-", "--raw", "-n", "2"],
        Some("The capital of France is"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " Paris.\n");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.txt");
    std::fs::write(&f, "The capital of France is").unwrap();
    let (out, _, code) = run(
        &[
            "SmolLM2",
            "--prompt-file",
            f.to_str().unwrap(),
            "--raw",
            "-n",
            "2",
        ],
        None,
    );
    assert_eq!((out.as_str(), code), (" Paris.\n", 0));
}

#[test]
fn runs_probe_gate_records_and_writes_a_valid_report() {
    let probe = bin("mlxk-probe")
        .env("HF_HUB_CACHE", hub())
        .arg("SmolLM2")
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(0));
    let gated = bin("mlxk-gate").write_stdin(probe.stdout).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let out = gen_cmd()
        .args([
            "-p",
            "The capital of France is",
            "--raw",
            "-n",
            "2",
            "--report",
        ])
        .arg(&report)
        .write_stdin(gated.stdout)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), " Paris.\n");
    let (vout, verr, vcode) = run_tool("report-validate", &[report.as_os_str()]);
    assert_eq!(vcode, 0, "{vout}{verr}");
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(rec["metadata"]["inference_modality"], "text");
    assert_eq!(rec["model"]["framework"], "GGUF");
    assert_eq!(rec["model"]["quantization"], "4bit");
    assert_eq!(rec["stop_tokens"]["configured"], json!(["<|im_end|>"]));
    assert_eq!(rec["stop_tokens"]["leaked"], false);
    for k in [
        "tokens_per_sec",
        "model_load_time_s",
        "time_to_first_token_s",
        "cleanup_time_s",
        "peak_ram_gb",
        "stable_ram_gb",
    ] {
        assert!(rec["performance"][k].as_f64().unwrap() > 0.0, "{k}");
    }
}

#[test]
fn blocked_record_is_refused_with_its_reasons() {
    let probe = bin("mlxk-probe")
        .env("HF_HUB_CACHE", hub())
        .args(["SmolLM2", "--json"])
        .output()
        .unwrap();
    let mut rec: Value = serde_json::from_slice(&probe.stdout).unwrap();
    rec["gate"] = json!({"decision": "block", "backend": "text",
        "reasons": ["needs 90 GB, 20 GB available"], "available_bytes": 1,
        "ratio": 4.5, "threshold": 0.7, "memory": null});
    let (out, err, code) = run(&["-p", "hi", "--json"], Some(&format!("{rec}\n")));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("SmolLM2") && err.contains("needs 90 GB"),
        "{err}"
    );
    let recs = lines(out.as_bytes());
    assert_eq!(recs.len(), 1, "nothing was loaded: {out}");
    assert_eq!(recs[0]["code"], "blocked");
}

#[test]
fn prompt_over_the_context_is_an_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("long.txt");
    std::fs::write(&f, "word ".repeat(9000)).unwrap();
    let (out, err, code) = run(
        &["SmolLM2", "--prompt-file", f.to_str().unwrap(), "--raw"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("9001 tokens") && err.contains("8192") && err.contains("--truncate left"),
        "{err}"
    );
}

#[test]
fn bad_input_gets_one_line_errors_and_exit_codes() {
    let (_, err, code) = run(&["SmolLM2"], None);
    assert_eq!(code, 2);
    assert!(err.contains("no prompt"), "{err}");
    let (_, err, code) = run(&["no-such-model", "-p", "hi"], None);
    assert_eq!(code, 3, "{err}");
    let (out, err, code) = run(&["-p", "hi", "--json"], Some("{not json\n"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stdin line 1"), "{err}");
    assert_eq!(lines(out.as_bytes())[0]["code"], "malformed_input");
    let (_, err, code) = run(&[PARIS, &["--top-p", "0"]].concat(), None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--top-p"), "{err}");
}

#[test]
fn broken_model_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_json(
        dir.path(),
        "config.json",
        &json!({"model_type": "llama", "hidden_size": 64}),
    );
    write(dir.path(), "model.safetensors", b"not a safetensors file");
    tokenizer(dir.path(), false);
    let (_, err, code) = run(&[dir.path().to_str().unwrap(), "-p", "hi", "--raw"], None);
    assert!(code == 4 || code == 5, "exit {code}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn ends_quietly_when_the_reader_leaves() {
    let mut c = std::process::Command::new(bin_path("mlxk-gen"));
    c.env("HF_HUB_CACHE", hub())
        .env("MLXK_DEVICE", "cpu")
        .args([
            "SmolLM2",
            "-p",
            "Count from one to fifty:",
            "-n",
            "40",
            "--json",
            "--stream",
        ]);
    assert_ends_quietly_when_reader_leaves(c);
}

/// A tiny real model (context 128, byte tokens) written into a temporary folder.
fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = mlxk_infer::tiny::spec("llama-gqa1").unwrap();
    mlxk_infer::tiny::write(&spec, dir.path()).unwrap();
    dir
}

#[test]
fn a_prompt_over_the_context_is_refused_or_truncated_on_the_left() {
    let model = tiny_model();
    let path = model.path().to_str().unwrap();
    // 201 byte tokens against a 128-token context.
    let prompt = "x".repeat(200) + "y";
    let (out, err, code) = run(&[path, "-p", &prompt, "--raw", "-n", "8"], None);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("201 tokens") && err.contains("128") && err.contains("--truncate left"),
        "{err}"
    );
    let (out, err, code) = run(
        &[
            path,
            "-p",
            &prompt,
            "--raw",
            "-n",
            "8",
            "--truncate",
            "left",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let r = result_of(&out);
    // The last 120 tokens are kept: 8 of the 128 positions stay free for generation.
    assert_eq!(r["prompt_tokens"], 120);
    assert_eq!(r["truncated_prompt_tokens"], 81);
    assert_eq!(r["generated_tokens"], 8);
    assert!(err.contains("dropped the first 81 prompt tokens"), "{err}");
}

#[test]
fn generation_stops_at_the_end_of_the_context_and_says_so() {
    let model = tiny_model();
    let path = model.path().to_str().unwrap();
    let prompt = "z".repeat(100);
    let (out, err, code) = run(&[path, "-p", &prompt, "--raw", "-n", "64", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let r = result_of(&out);
    assert_eq!(r["prompt_tokens"], 100);
    // Stops at the context (unless the model ends first, which this one does not).
    assert_eq!(r["generated_tokens"], 28);
    assert_eq!(r["finish_reason"], "length");
    assert_eq!(r["context_full"], true);
    assert!(
        err.contains("end of the model's context (128 tokens)"),
        "{err}"
    );
}

#[test]
fn a_model_folder_path_runs_directly_with_its_chat_template() {
    let model = tiny_model();
    let path = model.path().to_str().unwrap();
    let (out, err, code) = run(&[path, "-p", "hi", "-n", "5", "--json", "--verbose"], None);
    assert_eq!(code, 0, "{err}");
    let r = result_of(&out);
    // "<|bos|>user\nhi\n<|bos|>assistant\n": 2 specials and 18 bytes.
    assert_eq!(r["prompt_tokens"], 20);
    assert!(
        err.contains("safetensors llama (2 layers, hidden 64)"),
        "{err}"
    );
}
