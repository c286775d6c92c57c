//! mlxk-hear end to end on the real Whisper tiny.en (CTranslate2, packaged by scripts/bootstrap)
//! and spoken fixtures made by tests/fixtures/speech.sh: text, records, subtitles, stdin,
//! several files on one loaded model, the probe | gate | hear pipe, reports, bad inputs.
//! Token-level parity with mlx-whisper is in lib/mlxk-infer/tests/parity_whisper.rs.

#[allow(dead_code)]
mod support;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;
use support::*;

fn golden_text(name: &str) -> String {
    static G: OnceLock<Value> = OnceLock::new();
    let g = G.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/goldens/whisper.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    });
    g["fixtures"][name]["text"]
        .as_str()
        .unwrap()
        .trim()
        .to_string()
}

fn hear() -> assert_cmd::Command {
    let mut c = bin("mlxk-hear");
    c.env("HF_HUB_CACHE", hub());
    c
}

fn run(args: &[&str]) -> Run {
    Run::of(hear().args(args))
}

#[test]
fn a_wav_file_prints_its_text() {
    let r = run(&["whisper-tiny.en", &fx("short.wav")]).ok();
    assert_eq!(r.stdout, format!("{}\n", golden_text("short.wav")));
    assert_eq!(r.stderr, "", "no progress when stderr is not a terminal");
}

#[test]
fn json_records_segments_then_the_transcript() {
    let r = run(&["whisper-tiny.en", &fx("long.wav"), "--json"]).ok();
    let recs = r.records();
    let types: Vec<&str> = recs.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"load"));
    assert_eq!(types.last(), Some(&"unload"));
    let segs: Vec<&Value> = recs.iter().filter(|r| r["type"] == "segment").collect();
    assert_eq!(segs.len(), 15);
    let t = recs.iter().find(|r| r["type"] == "transcript").unwrap();
    assert_eq!(t["language"], "en");
    assert_eq!(t["text"].as_str().unwrap(), golden_text("long.wav"));
    assert!(
        (t["duration_s"].as_f64().unwrap() - 73.99).abs() < 0.01,
        "{t}"
    );
    assert!(t["rtf"].as_f64().unwrap() > 0.0);
    assert_eq!(t["segments"], 15);
    // The transcript record comes after its segments.
    let pos = |ty: &str| types.iter().rposition(|t| *t == ty).unwrap();
    assert!(pos("segment") < pos("transcript"));
}

#[test]
fn subtitles_go_to_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let srt = dir.path().join("talk.srt");
    let r = run(&[
        "whisper-tiny.en",
        &fx("long.wav"),
        "-f",
        "srt",
        "-o",
        srt.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(r.stdout, "");
    let s = std::fs::read_to_string(&srt).unwrap();
    assert!(
        s.starts_with("1\n00:00:00,000 --> 00:00:04,720\nMy grandmother lived"),
        "{s}"
    );
    assert_eq!(s.matches(" --> ").count(), 15);
    let vtt = dir.path().join("talk.vtt");
    run(&[
        "whisper-tiny.en",
        &fx("short.wav"),
        "-f",
        "vtt",
        "-o",
        vtt.to_str().unwrap(),
    ])
    .ok();
    let v = std::fs::read_to_string(&vtt).unwrap();
    assert!(v.starts_with("WEBVTT\n\n00:00.000 --> 00:05.000\n"), "{v}");
}

#[test]
fn several_files_reuse_one_model_and_a_bad_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "this is a text file, not audio\n").unwrap();
    let r = run(&[
        "whisper-tiny.en",
        &fx("short.flac"),
        notes.to_str().unwrap(),
        &fx("short.ogg"),
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let recs = r.records();
    assert_eq!(
        recs.iter().filter(|r| r["type"] == "load").count(),
        1,
        "one model load"
    );
    let texts: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "transcript")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, [golden_text("short.flac"), golden_text("short.ogg")]);
    let err = recs.iter().find(|r| r["type"] == "error").unwrap();
    assert_eq!(err["code"], "not_audio");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("notes.wav: not audio"), "{}", r.stderr);
}

#[test]
fn opus_and_m4a_are_transcribed() {
    let r = run(&[
        "whisper-tiny.en",
        &fx("short.opus"),
        &fx("short.m4a"),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let recs = r.records();
    let transcripts: Vec<&Value> = recs.iter().filter(|r| r["type"] == "transcript").collect();
    assert_eq!(transcripts.len(), 2, "{}", r.stdout);
    for (t, file) in transcripts.iter().zip(["short.opus", "short.m4a"]) {
        assert!(t["file"].as_str().unwrap().ends_with(file), "{t}");
        let text = t["text"].as_str().unwrap();
        assert!(text.contains("Please call me tomorrow"), "{file}: {text}");
        let secs = t["duration_s"].as_f64().unwrap();
        assert!((4.8..5.0).contains(&secs), "{file}: {secs} s");
    }
}

#[test]
fn bad_audio_is_a_one_line_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, "").unwrap();
    let cut = dir.path().join("cut.wav");
    let wav = std::fs::read(speech_fixtures().join("short.wav")).unwrap();
    std::fs::write(&cut, &wav[..wav.len() / 2]).unwrap();
    let missing = dir.path().join("missing.wav");
    for (path, code, words) in [
        (&empty, 1, "no audio samples"),
        (&cut, 1, "cut off after 2.4"),
        (&missing, 2, "cannot read"),
    ] {
        let r = run(&["whisper-tiny.en", path.to_str().unwrap()]);
        assert_eq!(r.code, code, "{}: {}", path.display(), r.stderr);
        assert_eq!(r.stdout, "", "nothing transcribed from {}", path.display());
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(path.to_str().unwrap()) && r.stderr.contains(words),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn audio_from_stdin() {
    let wav = std::fs::read(speech_fixtures().join("short.wav")).unwrap();
    let r = Run::of(hear().args(["whisper-tiny.en", "-"]).write_stdin(wav)).ok();
    assert_eq!(r.stdout.trim(), golden_text("short.wav"));
}

#[test]
fn probe_gate_hear_pipe_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let probe = Run::of(
        bin("mlxk-probe")
            .env("HF_HUB_CACHE", hub())
            .arg("whisper-tiny.en"),
    )
    .ok();
    let rec = &probe.records()[0];
    assert_eq!(rec["capabilities"], serde_json::json!(["audio"]));
    assert_eq!(rec["framework"], "ctranslate2");
    assert_eq!(rec["model_type"], "whisper");
    assert_eq!(rec["health"]["ok"], true);
    let gate = Run::of(
        bin("mlxk-gate")
            .env("HF_HUB_CACHE", hub())
            .write_stdin(probe.stdout),
    )
    .ok();
    let r = Run::of(
        hear()
            .args([&fx("short.wav"), "--report", report.to_str().unwrap()])
            .write_stdin(gate.stdout),
    )
    .ok();
    assert_eq!(r.stdout.trim(), golden_text("short.wav"));
    let recs = lines(&std::fs::read(&report).unwrap());
    assert_eq!(recs.len(), 1);
    let rep = &recs[0];
    assert_eq!(rep["metadata"]["inference_modality"], "audio", "{rep}");
    assert_eq!(rep["test"], "mlxk-hear::short.wav", "{rep}");
    assert!(
        rep["performance"]["tokens_per_sec"].as_f64().unwrap() > 0.0,
        "{rep}"
    );
    Run::of(bin("report-validate").arg(&report)).ok();
}

#[test]
fn an_english_only_model_refuses_another_language() {
    let r = run(&["whisper-tiny.en", &fx("short.wav"), "--language", "de"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("English-only"), "{}", r.stderr);
    let r = run(&["whisper-tiny.en", &fx("short.wav"), "--language", "klingon"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_cut_model_file_is_unhealthy_and_refused() {
    let hub_dir = tempfile::tempdir().unwrap();
    let snap = hub_dir.path().join("models--x--whisper-cut/snapshots/abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(hub_dir.path().join("models--x--whisper-cut/refs"), "").ok();
    let src = hub().join("models--mlxk-demo--whisper-tiny.en-ct2/snapshots");
    let src = std::fs::read_dir(src)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), snap.join(f)).unwrap();
    }
    let bin_bytes = std::fs::read(src.join("model.bin")).unwrap();
    std::fs::write(snap.join("model.bin"), &bin_bytes[..bin_bytes.len() / 3]).unwrap();
    let r = Run::of(
        bin("mlxk-hear")
            .arg(snap.to_str().unwrap())
            .arg(fx("short.wav")),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("model.bin") && r.stderr.contains("cut off"),
        "{}",
        r.stderr
    );
}

/// The text mlxk-hear's `transcript` record gives for short.wav on the model in `dir`.
fn transcript_text(dir: &Path) -> String {
    let r = Run::of(bin("mlxk-hear").arg(dir).arg(fx("short.wav")).arg("--json")).ok();
    let t = r
        .records()
        .into_iter()
        .find(|r| r["type"] == "transcript")
        .unwrap();
    t["text"].as_str().unwrap().to_string()
}

#[test]
fn the_probe_knows_every_whisper_layout_and_hear_runs_them() {
    let tok = std::fs::read_dir(hub().join("models--mlxk-demo--whisper-tiny.en-ct2/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("tokenizer.json");
    let dir = tempfile::tempdir().unwrap();
    let mut texts = Vec::new();
    for spec in mlxk_infer::tiny_whisper::specs() {
        let d = dir.path().join(spec.name);
        mlxk_infer::tiny_whisper::write(&spec, &d, &tok).unwrap();
        let p = Run::of(bin("mlxk-probe").arg(&d)).ok();
        let rec = &p.records()[0];
        assert_eq!(rec["model_type"], "whisper", "{}: {rec}", spec.name);
        assert_eq!(
            rec["capabilities"],
            serde_json::json!(["audio"]),
            "{}",
            spec.name
        );
        assert_eq!(rec["health"]["ok"], true, "{}: {rec}", spec.name);
        if let Some((bits, _)) = spec.quantized {
            assert_eq!(rec["quantization"]["bits"], bits, "{rec}");
        }
        texts.push((spec.name, transcript_text(&d)));
    }
    // The transformers copy holds the f32 model's values.
    let f32_text = &texts.iter().find(|t| t.0 == "whisper-f32").unwrap().1;
    let hf_text = &texts.iter().find(|t| t.0 == "whisper-hf").unwrap().1;
    assert_eq!(f32_text, hf_text);
    // mlx-whisper's folders carry no tokenizer: Whisper's built-in vocabulary serves, the same.
    let f32_dir = dir.path().join("whisper-f32");
    std::fs::remove_file(f32_dir.join("tokenizer.json")).unwrap();
    let p = Run::of(bin("mlxk-probe").arg(&f32_dir)).ok();
    assert_eq!(p.records()[0]["health"]["ok"], true, "{}", p.stdout);
    assert_eq!(&transcript_text(&f32_dir), f32_text);
    // The older ones keep weights.npz instead of safetensors: the same text again.
    mlxk_infer::tiny_whisper::to_npz(&f32_dir).unwrap();
    let p = Run::of(bin("mlxk-probe").arg(&f32_dir)).ok();
    let rec = &p.records()[0];
    assert_eq!(rec["weight_format"], "npz", "{}", p.stdout);
    assert!(
        rec["memory"]["estimate_bytes"].as_u64().unwrap() > 0,
        "{rec}"
    );
    Run::of(bin("mlxk-gate").write_stdin(p.stdout.clone())).ok();
    assert_eq!(&transcript_text(&f32_dir), f32_text);
}

#[test]
fn a_reader_that_leaves_ends_it_quietly() {
    let mut c = std::process::Command::new(bin_path("mlxk-hear"));
    c.env("HF_HUB_CACHE", hub())
        .env("MLXK_DEVICE", "cpu")
        .args(["whisper-tiny.en", &fx("long.wav"), "--json"]);
    assert_ends_quietly_when_reader_leaves(c);
}

#[test]
fn options_that_cannot_work_are_usage_errors() {
    for (args, words) in [
        (
            &["--temperature-increment-on-fallback", "1e-9"][..],
            "between 0.01 and 1",
        ),
        (&["--json", "-f", "srt"][..], "-o FILE"),
        (&["--task", "translate"][..], "English-only"),
        (&["--patience", "0"][..], "--patience"),
    ] {
        let mut a = vec!["whisper-tiny.en", "short.wav"];
        a.extend_from_slice(args);
        let wav = fx("short.wav");
        a[1] = &wav;
        let r = run(&a);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(words), "{args:?}: {}", r.stderr);
        // Nothing transcribed; with --json the failure is also an `error` record.
        assert!(
            r.records().iter().all(|x| x["type"] == "error"),
            "{args:?}: {}",
            r.stdout
        );
    }
}
