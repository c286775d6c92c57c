//! benchmarks/run.sh end to end: the whole cron suite on the packaged SmolLM2 and a tiny model
//! in a temporary cache, with the debug binaries.
#[allow(dead_code)]
mod support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A cache holding the real SmolLM2 and Whisper tiny.en (linked) and a tiny llama.
fn cache() -> Cache {
    let c = Cache::new();
    for real in [
        "models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF",
        "models--mlxk-demo--whisper-tiny.en-ct2",
    ] {
        std::os::unix::fs::symlink(root().join(".deps/hf/hub").join(real), c.root().join(real))
            .unwrap();
    }
    let snap = c.snapshot(
        "tiny/llama-gqa1",
        "0123456789abcdef0123456789abcdef01234567",
    );
    mlxk_infer::tiny::write(&mlxk_infer::tiny::spec("llama-gqa1").unwrap(), &snap).unwrap();
    c
}

fn suite(cache: &Cache, out: &Path, extra: &[&str]) -> Command {
    let bin = bin_path("mlxk-gen").parent().unwrap().to_path_buf();
    let mut c = Command::new(root().join("benchmarks/run.sh"));
    c.args(["--name", "nightly", "--out"])
        .arg(out)
        .arg("--bin")
        .arg(&bin)
        .args(extra)
        .env("HF_HUB_CACHE", cache.root())
        .env("MLXK_DEVICE", "cpu")
        .env_remove("HF_HOME")
        .env_remove("MLXK_SYS_ROOT")
        .stdin(Stdio::null());
    c
}

/// The final files in `out`: (stamp_name-kind) names, sorted.
fn finals(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn the_suite_runs_validates_reports_compares_and_plots() {
    let cache = cache();
    let out = tempfile::tempdir().unwrap();
    let r = Run::from(
        suite(&cache, out.path(), &["--repeat", "2"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let files = finals(out.path());
    let kinds: Vec<&str> = files.iter().map(|f| f.split_once('_').unwrap().1).collect();
    assert_eq!(
        kinds,
        [
            "nightly-benchmark.jsonl",
            "nightly-memory.jsonl",
            "nightly-report.md",
            "nightly-timeline.html",
            "nightly.log"
        ]
    );
    let file = |kind: &str| {
        let f = files.iter().find(|f| f.ends_with(kind)).unwrap();
        std::fs::read_to_string(out.path().join(f)).unwrap()
    };
    // Two text models × three prompts × two repeats through mlxk-gen and again through
    // mlxk-serve, and Whisper × one recording × two repeats, every record valid.
    let bench = file("-benchmark.jsonl");
    assert_eq!(bench.lines().count(), 26, "{bench}");
    let served: Vec<Value> = bench
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["test"].as_str().unwrap().starts_with("mlxk-serve::"))
        .collect();
    assert_eq!(served.len(), 12, "{bench}");
    assert!(
        served
            .iter()
            .all(|r| r["outcome"] == "passed" && r["test"] != "mlxk-serve::"),
        "{bench}"
    );
    assert!(served.iter().any(|r| r["test"] == "mlxk-serve::prompts[3]"));
    let audio: Vec<Value> = bench
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["metadata"]["inference_modality"] == "audio")
        .collect();
    assert_eq!(audio.len(), 2, "{bench}");
    assert_eq!(audio[0]["test"], "mlxk-hear::speech.flac");
    assert_eq!(audio[0]["outcome"], "passed", "{}", audio[0]);
    let bench_path = out.path().join(
        files
            .iter()
            .find(|f| f.ends_with("-benchmark.jsonl"))
            .unwrap(),
    );
    run_tool("report-validate", &[bench_path.as_os_str()]).ok();
    let md = file("-report.md");
    assert!(
        md.contains("SmolLM2-135M-Instruct")
            && md.contains("llama-gqa1")
            && md.contains("whisper-tiny.en"),
        "{md}"
    );
    // Two repeats: each test's mean ± spread.
    assert!(
        md.contains("## Repeats")
            && md.contains("| `mlxk-hear::speech.flac` | mlxk-demo/whisper-tiny.en-ct2 | 2 |"),
        "{md}"
    );
    // memmon watched the whole run and kept its exit code.
    let summary: Value =
        serde_json::from_str(file("-memory.jsonl").lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["exit_code"], 0, "{summary}");
    assert!(file("-timeline.html").contains("<html"), "a timeline page");
    assert!(
        file(".log").contains("report-validate: 26 records"),
        "{}",
        file(".log")
    );

    // A second run compares itself with the first.
    let r = Run::from(suite(&cache, out.path(), &[]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = files;
    let files = finals(out.path());
    assert_eq!(files.len(), 10, "{files:?}");
    let new_md = files
        .iter()
        .find(|f| f.ends_with("-report.md") && !first.contains(f))
        .unwrap();
    let md2 = std::fs::read_to_string(out.path().join(new_md)).unwrap();
    assert!(md2.contains("## Comparison with"), "{md2}");
    assert!(
        md2.contains("llama-gqa1") && md2.contains("`mlxk-gen::prompts[2]`"),
        "{md2}"
    );
}

#[test]
fn a_second_run_is_refused_and_a_killed_run_leaves_nothing_final() {
    let cache = cache();
    let out = tempfile::tempdir().unwrap();
    // Another run holds the lock.
    let lock = std::fs::File::create(out.path().join(".nightly.lock")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let r = Run::from(suite(&cache, out.path(), &[]).output().unwrap());
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("already going"), "{}", r.stderr);
    drop(lock);

    // Killed while the models run: no file appears under a final name.
    use std::os::unix::process::CommandExt;
    let mut c = suite(&cache, out.path(), &["--repeat", "3"]);
    c.stderr(Stdio::null()).process_group(0);
    let mut child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    let running = || {
        std::fs::read_dir(out.path()).unwrap().any(|e| {
            let p = e.unwrap().path();
            p.is_dir() && p.join("gen-1.jsonl").exists()
        })
    };
    while !running() {
        assert!(
            start.elapsed().as_secs() < 120,
            "the run never reached mlxk-gen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    assert_eq!(finals(out.path()), Vec::<String>::new());
    // Its work folder is gone too.
    assert!(
        std::fs::read_dir(out.path())
            .unwrap()
            .all(|e| !e.unwrap().path().is_dir())
    );
}
