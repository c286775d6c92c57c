//! report-validate and report-gen end to end, over fixture files for every schema version,
//! every invalid case, a file shaped like the Python tool's real output, and two runs.

#[allow(dead_code)]
mod support;
use std::path::PathBuf;
use support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reports")
        .join(name)
}

fn validate(args: &[&str]) -> Run {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    run_tool("report-validate", &args)
}

#[test]
fn every_version_and_the_python_writers_file_are_valid() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = validate(&[
        "fixtures/reports/v0.1.0.jsonl",
        "fixtures/reports/v0.2.0.jsonl",
        "fixtures/reports/v0.2.1.jsonl",
        "fixtures/reports/v0.2.2.jsonl",
        "fixtures/reports/python-writer-0.2.2.jsonl",
        "fixtures/reports/run-old_benchmark.jsonl",
        "fixtures/reports/run-new_benchmark.jsonl",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "21 records in 7 file(s): all valid\n");
}

#[test]
fn invalid_cases_read_like_a_compiler() {
    let Run {
        stdout: out, code, ..
    } = validate(&["fixtures/reports/invalid.jsonl"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("validate_invalid", out);
}

#[test]
fn json_mode_gives_records() {
    let Run {
        stdout: out, code, ..
    } = validate(&["--json", "fixtures/reports/invalid.jsonl"]);
    assert_eq!(code, 1);
    let recs = lines(out.as_bytes());
    assert_eq!(recs[0]["type"], "error");
    assert_eq!(recs[0]["file"], "fixtures/reports/invalid.jsonl");
    assert_eq!(recs[0]["line"], 2);
    assert_eq!(recs[0]["path"], "/");
    let last = recs.last().unwrap();
    assert_eq!(
        last,
        &serde_json::json!({"type": "summary", "files": 1, "records": 8, "invalid": 7})
    );
}

#[test]
fn stdin_works_and_a_terminal_is_refused() {
    let body = std::fs::read(fixture("v0.2.2.jsonl")).unwrap();
    let out = bin("report-validate").write_stdin(body).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 records in 1 file(s): all valid\n"
    );
    // No files and a person's terminal on stdin: a usage error, not a hang.
    let r = run_on_terminal(std::process::Command::new(bin_path("report-validate")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("give report files"), "{}", r.stderr);
}

#[test]
fn a_missing_file_is_named() {
    let Run {
        stderr: err, code, ..
    } = validate(&["fixtures/reports/no-such.jsonl"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("report-validate: cannot read fixtures/reports/no-such.jsonl"),
        "{err}"
    );
}

#[test]
fn migrate_round_trip_keeps_every_field() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = validate(&[
        "--migrate",
        "--to",
        "0.2.2",
        "fixtures/reports/v0.1.0.jsonl",
    ]);
    assert_eq!(code, 0, "{err}");
    let migrated = lines(out.as_bytes());
    let original = lines(&std::fs::read(fixture("v0.1.0.jsonl")).unwrap());
    assert_eq!(migrated.len(), original.len());
    for (m, o) in migrated.iter().zip(&original) {
        let mut o = o.clone();
        o["schema_version"] = "0.2.2".into();
        assert_eq!(m, &o);
    }
    // The migrated output validates as 0.2.2.
    let v = bin("report-validate").write_stdin(out).output().unwrap();
    assert_eq!(v.status.code(), Some(0));
}

#[test]
fn migrate_refuses_and_writes_nothing() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = validate(&[
        "--migrate",
        "--to",
        "0.2.2",
        "fixtures/reports/invalid.jsonl",
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "nothing on stdout when refusing");
    assert!(
        err.contains(
            "line 4: /: Additional properties are not allowed ('surprise' was unexpected)"
        ),
        "{err}"
    );
    assert!(err.contains("nothing written"), "{err}");
    let Run {
        stderr: err, code, ..
    } = validate(&[
        "--migrate",
        "--to",
        "0.1.0",
        "fixtures/reports/v0.2.2.jsonl",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot migrate 0.2.2 down to 0.1.0"), "{err}");
    let Run { code, .. } = validate(&["--to", "0.2.2", "fixtures/reports/v0.2.2.jsonl"]);
    assert_eq!(code, 2, "--to without --migrate is a usage error");
}

fn report_gen(args: &[&str]) -> Run {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    run_tool("report-gen", &args)
}

#[test]
fn report_golden_and_deterministic() {
    let Run {
        stdout: a,
        stderr: err,
        code,
    } = report_gen(&["fixtures/reports/run-old_benchmark.jsonl", "-o", "-"]);
    assert_eq!(code, 0, "{err}");
    let Run { stdout: b, .. } =
        report_gen(&["fixtures/reports/run-old_benchmark.jsonl", "-o", "-"]);
    assert_eq!(a, b, "same input, same bytes");
    insta::assert_snapshot!("report_old", a);
}

#[test]
fn compare_golden() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = report_gen(&[
        "fixtures/reports/run-new_benchmark.jsonl",
        "--compare",
        "fixtures/reports/run-old_benchmark.jsonl",
        "-o",
        "-",
    ]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("report_compare", out);
}

#[test]
fn default_paths_follow_the_seed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("benchmarks/runs")).unwrap();
    std::fs::copy(
        fixture("run-old_benchmark.jsonl"),
        d.path()
            .join("benchmarks/runs/2026-01-30_wet_benchmark.jsonl"),
    )
    .unwrap();
    std::fs::copy(
        fixture("run-new_benchmark.jsonl"),
        d.path()
            .join("benchmarks/runs/2026-01-31_wet_benchmark.jsonl"),
    )
    .unwrap();
    let out = bin("report-gen").current_dir(d.path()).output().unwrap();
    let out = Run::from(out).ok();
    let path = out.stdout.trim().to_string();
    assert_eq!(
        path,
        "benchmarks/reports/BENCHMARK-2.0.4-beta.9-2026-01-31.md"
    );
    let text = std::fs::read_to_string(d.path().join(&path)).unwrap();
    assert!(text.contains("Source: `benchmarks/runs/2026-01-31_wet_benchmark.jsonl`"));
}

#[test]
fn invalid_input_gives_no_report() {
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = report_gen(&["fixtures/reports/invalid.jsonl", "-o", "-"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("fixtures/reports/invalid.jsonl:8: /: truncated last line"),
        "{err}"
    );
    let d = tempfile::tempdir().unwrap();
    let out = bin("report-gen").current_dir(d.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Many valid records: enough output from report-gen and report-validate --json to overflow a
/// pipe.
fn big_report(dir: &std::path::Path) -> PathBuf {
    let line = std::fs::read_to_string(fixture("run-old_benchmark.jsonl")).unwrap();
    let body = line.repeat(400);
    let p = dir.join("big_benchmark.jsonl");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn report_gen_ends_quietly_on_a_closed_stdout() {
    let d = tempfile::tempdir().unwrap();
    let big = big_report(d.path());
    assert_output_exceeds(bin("report-gen").arg(&big).args(["-o", "-"]), 8192);
    let mut c = std::process::Command::new(bin_path("report-gen"));
    c.arg(&big).args(["-o", "-"]);
    assert_ends_quietly_when_reader_leaves(c);
}

#[test]
fn report_validate_json_ends_quietly_on_a_closed_stdout() {
    let d = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(fixture("invalid.jsonl"))
        .unwrap()
        .repeat(200);
    let p = d.path().join("bad.jsonl");
    std::fs::write(&p, bad).unwrap();
    assert_output_exceeds(bin("report-validate").arg("--json").arg(&p), 8192);
    let mut c = std::process::Command::new(bin_path("report-validate"));
    c.arg("--json").arg(&p);
    // Invalid records exit 1 when all output is read; a reader that leaves ends it with 0.
    assert_ends_quietly_when_reader_leaves(c);
}
