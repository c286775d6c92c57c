//! mlxk-gen end to end on the real SmolLM2-135M-Instruct GGUF (packaged by scripts/bootstrap):
//! text and JSON output, stop strings, EOS, max tokens, seeds, gate records, bad input, pipes.

#[allow(dead_code)]
mod support;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::*;

fn hub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/hf/hub")
}

fn gen_cmd() -> assert_cmd::Command {
    let mut c = bin("mlxk-gen");
    c.env("HF_HUB_CACHE", hub());
    c
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut c = gen_cmd();
    c.args(args);
    if let Some(s) = stdin {
        c.write_stdin(s);
    }
    Run::of(&mut c)
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
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&[PARIS, &["-n", "2"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " Paris.\n");
}

#[test]
fn json_records_load_result_unload_with_deltas() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&[PARIS, &["-n", "3", "--json", "--stream"]].concat(), None);
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
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(
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
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(
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
fn sampling_follows_temp_and_seed() {
    let sample = |seed: &str| {
        run(
            &[PARIS, &["-n", "16", "--temp", "1.5", "--seed", seed]].concat(),
            None,
        )
        .ok()
        .stdout
    };
    let (a, b, c) = (sample("42"), sample("42"), sample("7"));
    assert_eq!(a, b, "same seed, same sample");
    assert_ne!(a, c, "another seed, another sample (--seed is not ignored)");
    let greedy = run(&[PARIS, &["-n", "16"]].concat(), None).ok().stdout;
    assert_ne!(
        a, greedy,
        "--temp 1.5 is not greedy (--temp is not ignored)"
    );
}

#[test]
fn prompt_from_stdin_and_from_file() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(
        &["SmolLM2", "-p", "-", "--raw", "-n", "2"],
        Some("The capital of France is"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " Paris.\n");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.txt");
    std::fs::write(&f, "The capital of France is").unwrap();
    let Run {
        stdout: out, code, ..
    } = run(
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
    let out = Run::from(out).ok();
    assert_eq!(out.stdout, " Paris.\n");
    let Run {
        stdout: vout,
        stderr: verr,
        code: vcode,
    } = run_tool("report-validate", &[report.as_os_str()]);
    assert_eq!(vcode, 0, "{vout}{verr}");
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(rec["metadata"]["inference_modality"], "text");
    assert_eq!(rec["model"]["framework"], "GGUF");
    assert_eq!(rec["model"]["quantization"], "4bit");
    assert_eq!(rec["stop_tokens"]["configured"], json!(["<|im_end|>"]));
    assert_eq!(rec["stop_tokens"]["leaked"], false);
    assert_eq!(rec["mlx_knife_version"], env!("CARGO_PKG_VERSION"));
    assert!(rec["performance"]["prompt_tokens"].is_u64());
    assert_eq!(rec["performance"]["completion_tokens"], 2);
    // mlx-knife's own validator and report generator read the same folders.
    assert_eq!(
        mlxk::report::run::mlx_knife_problems(&rec),
        Vec::<String>::new()
    );
    for k in [
        "tokens_per_sec",
        "model_load_time_s",
        "time_to_first_token_s",
        "peak_ram_gb",
        "stable_ram_gb",
    ] {
        assert!(rec["performance"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    // Releasing a small model can take less than the 0.1 ms the report rounds to.
    assert!(rec["performance"]["cleanup_time_s"].as_f64().unwrap() >= 0.0);
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
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&["-p", "hi", "--json"], Some(&format!("{rec}\n")));
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
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(
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
    let Run {
        stderr: err, code, ..
    } = run(&["SmolLM2"], None);
    assert_eq!(code, 2);
    assert!(err.contains("no prompt"), "{err}");
    let Run {
        stderr: err, code, ..
    } = run(&["no-such-model", "-p", "hi"], None);
    assert_eq!(code, 3, "{err}");
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&["-p", "hi", "--json"], Some("{not json\n"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stdin line 1"), "{err}");
    assert_eq!(lines(out.as_bytes())[0]["code"], "malformed_input");
    let Run {
        stderr: err, code, ..
    } = run(&[PARIS, &["--top-p", "0"]].concat(), None);
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
    let Run {
        stderr: err, code, ..
    } = run(&[dir.path().to_str().unwrap(), "-p", "hi", "--raw"], None);
    assert_eq!(code, 4, "a broken model is unusable here: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The probe record of the real SmolLM2, as mlxk-probe writes it.
fn smollm2_record() -> Value {
    let probe = bin("mlxk-probe")
        .env("HF_HUB_CACHE", hub())
        .args(["SmolLM2", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&probe.stdout).unwrap()
}

#[test]
fn a_record_for_another_backend_is_refused_before_loading() {
    let mut rec = smollm2_record();
    rec["gate"] = json!({"decision": "allow", "backend": "vision", "reasons": [],
        "available_bytes": null, "ratio": null, "threshold": 0.7, "memory": null});
    let r = run(&["-p", "hi", "--json"], Some(&format!("{rec}\n")));
    assert_eq!(r.code, 4, "{}", r.stderr);
    let recs = r.records();
    assert_eq!(recs.len(), 1, "nothing was loaded: {}", r.stdout);
    assert_eq!(recs[0]["code"], "wrong_backend");
    assert!(r.stderr.contains("use mlxk-see"), "{}", r.stderr);
}

#[test]
fn a_gguf_file_path_runs_directly() {
    let file = hub()
        .join("models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF/snapshots")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let r = run(
        &[
            file.to_str().unwrap(),
            "-p",
            "The capital of France is",
            "--raw",
            "-n",
            "2",
        ],
        None,
    )
    .ok();
    assert_eq!(r.stdout, " Paris.\n");
}

#[test]
fn a_gguf_with_zero_heads_is_a_broken_model_not_a_crash() {
    use mlxk::gguf::writer::{Meta, build};
    let dir = tempfile::tempdir().unwrap();
    let bytes = build(
        &[
            ("general.architecture", Meta::Str("llama")),
            ("llama.embedding_length", Meta::U32(64)),
            ("llama.attention.head_count", Meta::U32(0)),
            ("llama.block_count", Meta::U32(1)),
            ("llama.feed_forward_length", Meta::U32(128)),
            ("llama.context_length", Meta::U32(128)),
            ("tokenizer.ggml.model", Meta::Str("gpt2")),
            ("tokenizer.ggml.tokens", Meta::StrArray(&["a", "b"])),
        ],
        &[("blk.0.attn_q.weight", &[64, 64], 0)],
    );
    let f = dir.path().join("zero-heads.gguf");
    std::fs::write(&f, bytes).unwrap();
    let r = run(&[f.to_str().unwrap(), "-p", "hi", "--raw"], None);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("zero-heads.gguf"), "{}", r.stderr);
}

#[test]
fn a_failed_run_still_reaches_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let long = dir.path().join("long.txt");
    std::fs::write(&long, "word ".repeat(9000)).unwrap();
    let r = run(
        &[
            "SmolLM2",
            "--prompt-file",
            long.to_str().unwrap(),
            "--raw",
            "--report",
            report.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let text = std::fs::read_to_string(&report).unwrap();
    let recs = lines(text.as_bytes());
    assert_eq!(recs.len(), 1, "{text}");
    assert_eq!(recs[0]["outcome"], "failed");
    assert_eq!(recs[0]["metadata"]["error"]["code"], "context_overflow");
    assert!(mlxk::report::run::mlx_knife_problems(&recs[0]).is_empty());
    run_tool("report-validate", &[report.as_os_str()]).ok();
}

#[test]
fn ctrl_c_marks_the_partial_text_and_completes_the_records() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let mut child = std::process::Command::new(bin_path("mlxk-gen"))
        .env("HF_HUB_CACHE", hub())
        .env("MLXK_DEVICE", "cpu")
        .args([
            "SmolLM2",
            "-p",
            "Tell me a long story.",
            "-n",
            "400",
            "--json",
            "--stream",
        ])
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    // Wait for the first text, then press Ctrl-C.
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "ended early: {seen:?}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let delta = v["type"] == "delta";
        seen.push(v);
        if delta {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    for line in reader.lines() {
        seen.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let result = seen
        .iter()
        .find(|r| r["type"] == "result")
        .expect("a result record");
    assert_eq!(result["finish_reason"], "interrupted");
    assert!(result["generated_tokens"].as_u64().unwrap() < 400);
    assert!(seen.iter().any(|r| r["type"] == "unload"), "{seen:?}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(rec["outcome"], "failed");
    assert_eq!(rec["metadata"]["finish_reason"], "interrupted");
    assert_eq!(rec["metadata"]["error"]["code"], "interrupted");
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

#[test]
fn text_mode_ends_quietly_when_the_reader_leaves() {
    // Plain text streams token by token over seconds: after the first byte is read and the
    // pipe closed, every later token meets the closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let mut c = std::process::Command::new(bin_path("mlxk-gen"));
    c.env("HF_HUB_CACHE", hub())
        .env("MLXK_DEVICE", "cpu")
        .args([
            "SmolLM2",
            "-p",
            "Count from one to fifty:",
            "-n",
            "40",
            "--report",
        ])
        .arg(&report);
    assert_ends_quietly_when_reader_leaves(c);
    // It stopped at the closed pipe, and the report says the output is partial.
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(rec["outcome"], "failed");
    assert_eq!(rec["metadata"]["error"]["code"], "output_closed");
    assert_eq!(rec["metadata"]["finish_reason"], "interrupted");
    assert!(
        rec["performance"]["completion_tokens"].as_u64().unwrap() < 40,
        "{rec}"
    );
}

#[test]
fn an_unsupported_architecture_is_refused_before_loading_with_4() {
    let dir = tempfile::tempdir().unwrap();
    write_json(
        dir.path(),
        "config.json",
        &json!({"model_type": "mamba", "hidden_size": 64, "max_position_embeddings": 128}),
    );
    write(dir.path(), "model.safetensors", b"not even safetensors");
    tokenizer(dir.path(), false);
    let r = run(
        &[dir.path().to_str().unwrap(), "-p", "hi", "--raw", "--json"],
        None,
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("model_type 'mamba' is not supported"),
        "{}",
        r.stderr
    );
    assert_eq!(r.records()[0]["code"], "unusable");
}

#[test]
fn a_prompt_batch_runs_every_line_on_one_load() {
    let model = tiny_llama(None);
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    let report = dir.path().join("bench.jsonl");
    std::fs::write(
        &prompts,
        concat!(
            "{\"prompt\": \"abc\", \"raw\": true, \"max_tokens\": 3}\n",
            "{\"prompt\": \"x\", \"max_tokns\": 2}\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 4}\n",
        ),
    )
    .unwrap();
    let r = run(
        &[
            model.path().to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--json",
            "--report",
            report.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code, 1, "a bad line fails the run: {}", r.stderr);
    let recs = r.records();
    let kinds: Vec<&str> = recs.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["load", "result", "error", "result", "unload"],
        "{recs:?}"
    );
    assert_eq!(
        (
            recs[1]["prompt_line"].clone(),
            recs[1]["generated_tokens"].clone()
        ),
        (json!(1), json!(3))
    );
    assert!(
        recs[2]["message"]
            .as_str()
            .unwrap()
            .starts_with("--prompts line 2: unknown key `max_tokns`")
    );
    assert_eq!(
        (
            recs[3]["prompt_line"].clone(),
            recs[3]["generated_tokens"].clone()
        ),
        (json!(3), json!(4))
    );
    let reports = lines(std::fs::read_to_string(&report).unwrap().as_bytes());
    let outcomes: Vec<&str> = reports
        .iter()
        .map(|v| v["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["passed", "failed", "passed"]);
    assert_eq!(reports[2]["test"], "mlxk-gen::prompts[3]");
    run_tool("report-validate", &[report.as_os_str()]).ok();
}

#[test]
fn a_terminal_on_stdin_without_a_model_is_a_usage_error() {
    let mut cmd = std::process::Command::new(bin_path("mlxk-gen"));
    cmd.env("HF_HUB_CACHE", hub()).args(["-p", "hi"]);
    let r = run_on_terminal(cmd);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("name a model, or pipe model records"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_prompt_over_the_context_is_refused_or_truncated_on_the_left() {
    let model = tiny_llama(None);
    let path = model.path().to_str().unwrap();
    // 201 byte tokens against a 128-token context.
    let prompt = "x".repeat(200) + "y";
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&[path, "-p", &prompt, "--raw", "-n", "8"], None);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("201 tokens") && err.contains("128") && err.contains("--truncate left"),
        "{err}"
    );
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(
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
    let model = tiny_llama(None);
    let path = model.path().to_str().unwrap();
    let prompt = "z".repeat(100);
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&[path, "-p", &prompt, "--raw", "-n", "64", "--json"], None);
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
    let model = tiny_llama(None);
    let path = model.path().to_str().unwrap();
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = run(&[path, "-p", "hi", "-n", "5", "--json", "--verbose"], None);
    assert_eq!(code, 0, "{err}");
    let r = result_of(&out);
    // "<|bos|>user\nhi\n<|bos|>assistant\n": 2 specials and 18 bytes.
    assert_eq!(r["prompt_tokens"], 20);
    assert!(
        err.contains("safetensors llama (2 layers, hidden 64)"),
        "{err}"
    );
}

#[test]
fn a_thinking_models_reasoning_is_kept_apart_from_its_answer() {
    let (dir, raw, reasoning, answer, thought) = tiny_thinking_model(12, true);
    assert!(!reasoning.is_empty());
    let path = dir.path().to_str().unwrap();
    let args = [path, "-p", "hi", "--raw", "-n", "12"];
    let bench = dir.path().join("bench.jsonl");
    let r = run(
        &[
            &args[..],
            &["--json", "--stream", "--report", bench.to_str().unwrap()],
        ]
        .concat(),
        None,
    )
    .ok();
    let recs = r.records();
    let result = recs.iter().find(|v| v["type"] == "result").unwrap();
    assert_eq!(result["reasoning"], reasoning.as_str());
    assert_eq!(result["text"], answer.as_str());
    // Both parts are counted: the reasoning's tokens up to and with `</think>`, the rest answer.
    assert_eq!(result["reasoning_tokens"], json!(thought));
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&bench).unwrap().trim()).unwrap();
    assert_eq!(
        (
            &rec["performance"]["reasoning_tokens"],
            &rec["performance"]["answer_tokens"]
        ),
        (&json!(thought), &json!(12 - thought))
    );
    let deltas = |reasoning: bool| -> String {
        recs.iter()
            .filter(|v| v["type"] == "delta" && (v["part"] == "reasoning") == reasoning)
            .map(|v| v["text"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        (deltas(true), deltas(false)),
        (reasoning.clone(), answer.clone())
    );
    // A pipe gets the stream as the model wrote it; --no-reasoning only the answer.
    assert_eq!(run(&args, None).ok().stdout, format!("{raw}\n"));
    let hidden = run(&[&args[..], &["--no-reasoning"]].concat(), None).ok();
    assert_eq!(hidden.stdout, format!("{answer}\n"));
}

#[test]
fn a_prompt_cache_is_reused_exactly_and_refused_for_another_model() {
    let model = tiny_llama(None);
    let path = model.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("sys.safetensors");
    let text_of = |prompt: &str, extra: &[&str]| -> Value {
        let r = run(
            &[
                &[path, "-p", prompt, "--raw", "-n", "8", "--json"][..],
                extra,
            ]
            .concat(),
            None,
        );
        let r = r.ok();
        result_of(&r.stdout)
    };
    let with_cache = ["--prompt-cache", cache.to_str().unwrap()];
    let long = "You are terse. Answer in one word. ".repeat(2);
    let p1 = format!("{long}Q1");
    let plain = text_of(&p1, &[]);
    let first = text_of(&p1, &with_cache);
    assert_eq!(
        (first["text"].clone(), first["cached_prompt_tokens"].clone()),
        (plain["text"].clone(), json!(0))
    );
    assert!(cache.exists());
    // The same prompt again: all but its last token come from the cache, same output.
    let again = text_of(&p1, &with_cache);
    assert_eq!(again["cached_prompt_tokens"], json!(p1.len() - 1));
    assert_eq!(again["text"], plain["text"]);
    // A new question after the same prefix: the shared part is reused, output as uncached.
    let p2 = format!("{long}Q2 and more");
    let uncached = text_of(&p2, &[]);
    let reused = text_of(&p2, &with_cache);
    assert_eq!(reused["cached_prompt_tokens"], json!(long.len() + 1));
    assert_eq!(reused["text"], uncached["text"]);
    // Another model's cache is refused, with the fix.
    let other = tempfile::tempdir().unwrap();
    mlxk_infer::tiny::write(
        &mlxk_infer::tiny::spec("llama-4bit-g64").unwrap(),
        other.path(),
    )
    .unwrap();
    let r = run(
        &[
            other.path().to_str().unwrap(),
            "-p",
            &p1,
            "--raw",
            "-n",
            "2",
            "--prompt-cache",
            cache.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("made for another model") && r.stderr.contains("delete it"),
        "{}",
        r.stderr
    );
    let r = run(
        &[path, "-p", "x", "--raw", "--prompt-cache", "sys.cache"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must end in .safetensors"),
        "{}",
        r.stderr
    );
}
