//! memmon end to end: real children, real signals, fake /proc trees for exact values.

#[allow(dead_code)]
mod support;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::*;

fn run(args: &[&str]) -> (Vec<Value>, i32, String) {
    let r = Run::of(bin("memmon").args(args));
    (r.records(), r.code, r.stderr)
}

fn read_jsonl(path: &std::path::Path) -> (Vec<Value>, Value) {
    let mut all = lines(&std::fs::read(path).unwrap());
    let summary = all.pop().expect("a summary line");
    assert!(
        summary.get("summary").is_some(),
        "last line is the summary: {summary}"
    );
    (all, summary["summary"].clone())
}

#[test]
fn process_tree_rss_peak_matches_what_the_child_allocated() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    // A shell whose child touches 200 MiB and stays until memmon has sampled it (it watches
    // memmon's own output for a sample that counts it), so no sleep decides the outcome; the
    // 60 s bound only ends a broken run.
    let script = format!(
        "python3 -c \"
import json, time
x = b'x' * (200 * 1024 * 1024)
deadline = time.time() + 60
while time.time() < deadline:
    seen = [json.loads(l) for l in open('{}') if l.strip()]
    if any(s.get('proc_rss_mb', 0) >= 200 * 1024 * 1024 / 1e6 for s in seen):
        break
    time.sleep(0.02)
\"",
        out.display()
    );
    let o = bin("memmon")
        .args(["--interval", "50", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    Run::from(o).ok();
    let (samples, summary) = read_jsonl(&out);
    let want_mb = 200.0 * 1024.0 * 1024.0 / 1e6;
    let peak = summary["proc_rss_peak_mb"].as_f64().unwrap();
    assert!(
        (peak - want_mb).abs() / want_mb <= 0.10,
        "peak {peak} MB vs {want_mb} MB"
    );
    assert_eq!(summary["samples"].as_u64().unwrap() as usize, samples.len());
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["command"][0], "sh");
}

#[test]
fn an_output_that_cannot_be_created_fails_before_the_command_starts() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("ran");
    let out = d.path().join("no/such/dir/m.jsonl");
    let r = Run::of(
        bin("memmon")
            .arg("-o")
            .arg(&out)
            .args(["--", "touch"])
            .arg(&marker),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("memmon: cannot create"),
        "{}",
        r.stderr
    );
    assert!(!marker.exists(), "the command must not run");
    assert!(!d.path().join("no").exists(), "no folders are made");
}

#[test]
fn a_write_error_mid_run_is_reported_and_fails_the_run() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("finished");
    // /dev/full opens fine and fails every write: the samples are lost, the command still
    // runs to its end, and the exit says the run failed.
    let r = Run::of(
        bin("memmon")
            .args(["-o", "/dev/full", "--", "sh", "-c"])
            .arg(format!("touch {}", marker.display())),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write samples to /dev/full"),
        "{}",
        r.stderr
    );
    assert!(marker.exists(), "the command ran to its end");
    let r = Run::of(bin("memmon").args(["-o", "/dev/full", "--", "sh", "-c", "exit 3"]));
    assert_eq!(r.code, 3, "the command's own failure is passed on");
}

#[test]
fn exit_codes_propagate() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    let o = bin("memmon")
        .arg("-o")
        .arg(&out)
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(read_jsonl(&out).1["exit_code"], 3);
    let o = bin("memmon")
        .arg("-o")
        .arg(&out)
        .args(["--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(137), "128 + SIGKILL");
}

#[test]
fn summary_is_written_when_the_command_cannot_start() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    let o = bin("memmon")
        .arg("-o")
        .arg(&out)
        .args(["--", "/no/such/program"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("memmon: cannot run '/no/such/program'"),
        "{err}"
    );
    let (_, summary) = read_jsonl(&out);
    assert_eq!(summary["exit_code"], 127);
    assert!(summary["error"].as_str().unwrap().contains("No such file"));
}

/// Starts memmon around a shell that says "ready" and then waits; returns once it is ready.
fn start_waiting_child(
    out: &std::path::Path,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin_path("memmon"))
        .arg("-o")
        .arg(out)
        .args([
            "--interval",
            "20",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line, "ready\n",
        "the command's stdout passes through untouched"
    );
    (child, reader)
}

#[test]
fn sigterm_is_forwarded_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    let (mut child, _r) = start_waiting_child(&out);
    // SAFETY: signalling the memmon process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(143),
        "the command died of SIGTERM: 128 + 15"
    );
    assert_eq!(read_jsonl(&out).1["exit_code"], 143);
}

#[test]
fn sigint_sent_with_kill_is_forwarded() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    let (mut child, _r) = start_waiting_child(&out);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn fixed_clock_counts_every_tick() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.jsonl");
    let o = bin("memmon")
        .arg("-o")
        .arg(&out)
        .args(["--interval", "50", "--duration", "0.5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let (samples, summary) = read_jsonl(&out);
    let missed = summary["missed_ticks"].as_u64().unwrap();
    // Ticks at 0, 50, …, 500 ms on a fixed clock: each one is sampled or counted as missed,
    // however loaded the machine is; ticks past the end are never due.
    let ticks = samples.len() as u64 + missed;
    assert_eq!(ticks, 11, "{} samples + {missed} missed", samples.len());
    // Samples sit on the clock: the i-th is never taken before tick i (missed ticks only
    // make it later), and they come in order.
    let at: Vec<f64> = samples
        .iter()
        .map(|s| s["elapsed_s"].as_f64().unwrap())
        .collect();
    for (i, t) in at.iter().enumerate() {
        assert!(
            *t >= i as f64 * 0.05 - 0.0005,
            "sample {i} at {t} s: {at:?}"
        );
    }
    assert!(at.windows(2).all(|w| w[1] > w[0]), "{at:?}");
}

#[test]
fn fake_proc_gives_exact_fields_and_absent_ones_stay_absent() {
    let sys = sys_root(4_000_000, Some(15.0));
    write(sys.path(), "proc/loadavg", "1.50 1.00 0.50 1/100 42\n");
    write(sys.path(), "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
    write(sys.path(), "proc/self/cgroup", "0::/job\n");
    write(sys.path(), "sys/fs/cgroup/job/memory.max", "2000000000\n");
    write(
        sys.path(),
        "sys/fs/cgroup/job/memory.current",
        "500000000\n",
    );
    let (recs, code, _) = run(&[
        "--sys-root",
        sys.path().to_str().unwrap(),
        "-o",
        "-",
        "--duration",
        "0.05",
        "--interval",
        "20",
    ]);
    assert_eq!(code, 0);
    let s = &recs[0];
    assert_eq!(s["ram_free_gb"], 4.096);
    assert_eq!(
        s["ram_available_gb"], 1.5,
        "cgroup room is lower than MemAvailable"
    );
    assert_eq!(s["cgroup_limit_mb"], 2000.0);
    assert_eq!(s["cgroup_usage_mb"], 500.0);
    assert_eq!(s["psi_some_avg10"], 15.0);
    assert_eq!(s["memory_pressure"], 2);
    assert_eq!(
        (s["load_1"].as_f64(), s["load_15"].as_f64()),
        (Some(1.5), Some(0.5))
    );
    assert_eq!(s["swap_used_mb"], 0.0);
    for absent in ["proc_rss_mb", "gpu_util", "cpu_user"] {
        assert!(
            s.get(absent).is_none(),
            "{absent} must be absent, not zero: {s}"
        );
    }
    assert!(
        recs.last().unwrap()["summary"]["exit_code"].is_null(),
        "no command, no exit code"
    );
}

#[test]
fn csv_has_a_header_the_same_samples_and_a_summary_beside_it() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.csv");
    let o = bin("memmon")
        .arg("--csv")
        .arg("-o")
        .arg(&out)
        .args(["--interval", "50", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next().unwrap(), mlxk::monitor::CSV_COLUMNS.join(","));
    let n = rows.count();
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("m.csv.summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["summary"]["samples"].as_u64().unwrap() as usize, n);
    assert!(n >= 1);
}

#[test]
fn stdout_is_the_commands() {
    let (_, code, err) = run(&["-o", "-", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("belongs to the command"), "{err}");
    let (_, code, _) = run(&["--", "true"]);
    assert_eq!(code, 2);
}

#[test]
fn closed_stdout_ends_quietly() {
    let mut cmd = Command::new(bin_path("memmon"));
    cmd.args(["-o", "-", "--interval", "5", "--duration", "30"]);
    assert_ends_quietly_when_reader_leaves(cmd);
}
