//! mlxk-see end to end on the tiny random LLaVA and SmolVLM models (lib/mlxk-infer/src/tiny_vision.rs):
//! the text and records of a picture and a prompt equal mlx-vlm's greedy tokens, a prompt with
//! no picture runs text-only, --image-dir runs each picture on one load with a report record
//! each, the probe | gate | see pipe, and every bad input with its message and exit code.
//! Token-level parity (pixels, ids, log-probs) is in lib/mlxk-infer/tests/parity_vlm.rs.

#[allow(dead_code)]
mod support;
use mlxk_infer::tiny_vision;
use mlxk_infer::tokenizer::TextTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use support::*;

/// The tiny models and the fixture pictures, written once per test process.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        for s in tiny_vision::specs() {
            tiny_vision::write(&s, &d.path().join(s.name)).unwrap();
        }
        std::fs::create_dir_all(d.path().join("images")).unwrap();
        for (name, seed, w, h) in tiny_vision::PICTURES {
            let img = tiny_vision::picture(*seed, *w, *h);
            tiny_vision::write_png(&img, &d.path().join(format!("images/{name}.png"))).unwrap();
        }
        d
    })
    .path()
}

fn model(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn picture(name: &str) -> String {
    fixtures()
        .join(format!("images/{name}.png"))
        .display()
        .to_string()
}

/// mlx-vlm's greedy text for `model` on `picture` (None: text only), from the goldens.
fn golden_text(model_name: &str, picture: Option<&str>) -> String {
    static G: OnceLock<Value> = OnceLock::new();
    let g = G.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/goldens/vlm.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    });
    let m = g["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model_name)
        .unwrap();
    let case = m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["picture"].as_str() == picture)
        .unwrap();
    let ids: Vec<u32> = case["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let tok = TextTokenizer::from_dir(&fixtures().join(model_name), &[]).unwrap();
    tok.decode(&ids).unwrap()
}

fn see(args: &[&str]) -> Run {
    Run::of(bin("mlxk-see").args(args))
}

const PROMPT: &str = tiny_vision::PROMPT;

#[test]
fn a_picture_and_a_prompt_give_mlx_vlms_text() {
    for name in [
        "llava-clip",
        "llava-siglip",
        "llava-q4",
        "smolvlm",
        "qwen2-vl",
        "qwen2.5-vl",
    ] {
        let r = see(&[&model(name), &picture("wide"), "-p", PROMPT, "-n", "12"]).ok();
        assert_eq!(
            r.stdout,
            format!("{}\n", golden_text(name, Some("wide"))),
            "{name}"
        );
        assert_eq!(r.stderr, "", "no progress when stderr is not a terminal");
    }
}

#[test]
fn json_records_name_the_images_and_their_tokens() {
    let r = see(&[
        &model("llava-clip"),
        &picture("tall"),
        "-p",
        PROMPT,
        "-n",
        "12",
        "--json",
        "--stream",
    ])
    .ok();
    let recs = r.records();
    let types: Vec<&str> = recs.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"load"));
    assert_eq!(types.last(), Some(&"unload"));
    assert!(types.contains(&"delta"), "{types:?}");
    let res = recs.iter().find(|r| r["type"] == "result").unwrap();
    assert_eq!(res["text"], golden_text("llava-clip", Some("tall")));
    assert_eq!(res["images"], serde_json::json!([picture("tall")]));
    assert_eq!(res["image_tokens"], 16);
    assert_eq!(res["prompt_tokens"], 55);
    assert_eq!(res["generated_tokens"], 12);
    assert!(res["image_encode_s"].as_f64().unwrap() > 0.0);
    let deltas: String = recs
        .iter()
        .filter(|r| r["type"] == "delta")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, res["text"].as_str().unwrap());
}

/// The `result` record of `name` on the square and the wide picture in one prompt, its text
/// checked against mlx-vlm's.
fn square_and_wide(name: &str) -> Value {
    let r = see(&[
        &model(name),
        &picture("square"),
        &picture("wide"),
        "-p",
        PROMPT,
        "-n",
        "12",
        "--json",
    ])
    .ok();
    let res = r
        .records()
        .into_iter()
        .find(|r| r["type"] == "result")
        .unwrap();
    assert_eq!(
        res["text"],
        golden_text(name, Some("square+wide")),
        "{name}"
    );
    res
}

#[test]
fn smolvlm_takes_two_pictures_in_one_prompt() {
    let res = square_and_wide("smolvlm");
    // 2 × 2 tiles and the global view, then 1 × 2 and the global view, 9 tokens each.
    assert_eq!(res["image_tokens"], (5 + 3) * 9);
    assert_eq!(res["prompt_tokens"], 134);
}

#[test]
fn qwen2_vl_takes_two_pictures_of_their_own_sizes_in_one_prompt() {
    let res = square_and_wide("qwen2-vl");
    // 56×56 → 64×64: 8 × 8 patches, 16 tokens; 96×40 → 96×32: 4 × 12 patches, 12 tokens.
    assert_eq!(res["image_tokens"], 16 + 12);
    assert_eq!(res["prompt_tokens"], 110);
}

#[test]
fn no_picture_runs_text_only_through_the_vision_model() {
    for name in ["llava-clip", "qwen2-vl", "qwen2.5-vl"] {
        let r = see(&[&model(name), "-p", PROMPT, "-n", "12"]).ok();
        assert_eq!(r.stdout, format!("{}\n", golden_text(name, None)), "{name}");
    }
}

#[test]
fn an_image_dir_runs_each_picture_on_one_load_with_a_report_each() {
    let dir = tempfile::tempdir().unwrap();
    for p in ["square", "narrow"] {
        std::fs::copy(picture(p), dir.path().join(format!("{p}.png"))).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a picture").unwrap();
    let report = dir.path().join("bench.jsonl");
    let r = see(&[
        &model("llava-siglip"),
        "--image-dir",
        dir.path().to_str().unwrap(),
        "-p",
        PROMPT,
        "-n",
        "12",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ])
    .ok();
    let recs = r.records();
    assert_eq!(recs.iter().filter(|r| r["type"] == "load").count(), 1);
    let results: Vec<&Value> = recs.iter().filter(|r| r["type"] == "result").collect();
    // Name order: narrow, then square; the text file is not a picture.
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0]["text"],
        golden_text("llava-siglip", Some("narrow"))
    );
    assert_eq!(
        results[1]["text"],
        golden_text("llava-siglip", Some("square"))
    );
    let lines: Vec<Value> = lines(&std::fs::read(&report).unwrap());
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["metadata"]["inference_modality"], "vision", "{l}");
        assert_eq!(l["outcome"], "passed", "{l}");
        assert_eq!(l["test"], "mlxk-see", "{l}");
    }
    run_tool("report-validate", &[report.as_os_str()]).ok();
}

#[test]
fn the_probe_gate_see_pipe_takes_pictures_only() {
    let probe = bin("mlxk-probe").arg(model("llava-clip")).output().unwrap();
    assert!(probe.status.success());
    let rec: Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert!(
        rec["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"vision".into()),
        "{rec}"
    );
    let gate = bin("mlxk-gate").write_stdin(probe.stdout).output().unwrap();
    assert!(
        gate.status.success(),
        "{}",
        String::from_utf8_lossy(&gate.stderr)
    );
    let r = Run::of(
        bin("mlxk-see")
            .args([&picture("square"), "-p", PROMPT, "-n", "12"])
            .write_stdin(gate.stdout),
    )
    .ok();
    assert_eq!(
        r.stdout,
        format!("{}\n", golden_text("llava-clip", Some("square")))
    );
}

fn bad(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_pictures_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(picture("square")).unwrap();
    // A PNG header that promises 40000×40000 pixels: refused before anything is decoded.
    let mut bomb = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bomb, 40_000, 40_000);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        // The decoder reads up to the first image data before it says the size: a few bytes
        // of it (a stored zlib block of five zeros), nothing like 40000² pixels.
        let idat = [
            0x78, 0x01, 0x01, 0x05, 0x00, 0xfa, 0xff, 0, 0, 0, 0, 0, 0x00, 0x05, 0x00, 0x01,
        ];
        w.write_chunk(png::chunk::IDAT, &idat).unwrap();
        drop(w);
    }
    let cases = [
        (bad(dir.path(), "empty.png", b""), "the file is empty"),
        (
            bad(dir.path(), "text.png", b"just some words"),
            "not an image",
        ),
        (
            bad(dir.path(), "cut.png", &png[..png.len() / 2]),
            "ends early",
        ),
        (bad(dir.path(), "bomb.png", &bomb), "decompression bomb"),
    ];
    for (path, says) in &cases {
        let r = see(&[&model("llava-clip"), path.to_str().unwrap(), "-p", PROMPT]);
        assert_eq!(r.code, 1, "{}: {}", path.display(), r.stderr);
        assert_eq!(r.stdout, "", "nothing is generated from a bad picture");
        let line = r.stderr.trim_end();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains(path.to_str().unwrap()), "{line}");
        assert!(line.contains(says), "{line}");
    }
    let r = see(&[&model("llava-clip"), "/no/such/picture.png", "-p", PROMPT]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("/no/such/picture.png: no such file"),
        "{}",
        r.stderr
    );
    // In a batch the good pictures still run; the exit status says one failed.
    std::fs::copy(picture("square"), dir.path().join("good.png")).unwrap();
    let r = see(&[
        &model("llava-clip"),
        "--image-dir",
        dir.path().to_str().unwrap(),
        "-p",
        PROMPT,
        "-n",
        "12",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let recs = r.records();
    assert_eq!(recs.iter().filter(|r| r["type"] == "result").count(), 1);
    assert_eq!(recs.iter().filter(|r| r["type"] == "error").count(), 4);
}

#[test]
fn a_text_model_given_a_picture_is_refused_with_exit_4() {
    let text = tiny_llama(None);
    let r = see(&[
        text.path().to_str().unwrap(),
        &picture("square"),
        "-p",
        PROMPT,
    ]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("use mlxk-gen"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn llava_takes_two_pictures_in_one_prompt_as_mlx_vlm_does() {
    let r = see(&[
        &model("llava-clip"),
        &picture("square"),
        &picture("wide"),
        "-p",
        PROMPT,
        "-n",
        "12",
    ])
    .ok();
    assert_eq!(
        r.stdout,
        format!("{}\n", golden_text("llava-clip", Some("square+wide")))
    );
}

#[test]
fn a_picture_in_the_models_place_with_image_dir_or_a_piped_prompt_is_a_usage_error() {
    // With records on stdin the first word is a picture: not with --image-dir as well.
    let dir = tempfile::tempdir().unwrap();
    let r = Run::of(
        bin("mlxk-see")
            .args([
                &picture("square"),
                "--image-dir",
                dir.path().to_str().unwrap(),
                "-p",
                PROMPT,
            ])
            .write_stdin(""),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not both"), "{}", r.stderr);
    // With records on stdin, `-p -` cannot read the prompt from there too.
    let r = Run::of(
        bin("mlxk-see")
            .args([&picture("square"), "-p", "-"])
            .write_stdin("{}\n"),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("stdin carries model records"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_prompt_over_the_context_is_refused_not_cut() {
    let long = "word ".repeat(40);
    let r = see(&[&model("llava-clip"), &picture("square"), "-p", &long]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("of them the pictures'") && r.stderr.contains("context is 128"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("--truncate"),
        "mlxk-see has no --truncate: {}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}

#[test]
fn no_prompt_and_no_picture_is_a_usage_error() {
    let r = see(&[&model("llava-clip")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("give -p TEXT"), "{}", r.stderr);
}

#[test]
fn a_prompts_batch_runs_each_line_with_its_pictures_on_one_load() {
    // Pictures named relative to the batch file; a text-only line; a line that names a missing
    // picture and one that is not JSON fail alone (exit 1), the rest still run, in order.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shots")).unwrap();
    for p in ["square", "wide"] {
        std::fs::copy(picture(p), dir.path().join(format!("shots/{p}.png"))).unwrap();
    }
    let prompt = serde_json::to_string(PROMPT).unwrap();
    let batch = dir.path().join("batch.jsonl");
    std::fs::write(
        &batch,
        format!(
            "{{\"prompt\": {prompt}, \"images\": [\"shots/square.png\", \"shots/wide.png\"]}}\n\
             {{\"prompt\": {prompt}}}\n\
             \n\
             {{\"prompt\": {prompt}, \"images\": \"shots/gone.png\"}}\n\
             not json\n\
             {{\"prompt\": {prompt}, \"images\": \"shots/wide.png\", \"max_tokens\": 3}}\n"
        ),
    )
    .unwrap();
    let report = dir.path().join("bench.jsonl");
    let r = see(&[
        &model("smolvlm"),
        "--prompts",
        batch.to_str().unwrap(),
        "-n",
        "12",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let recs = r.records();
    assert_eq!(recs.iter().filter(|r| r["type"] == "load").count(), 1);
    let results: Vec<&Value> = recs.iter().filter(|r| r["type"] == "result").collect();
    assert_eq!(results.len(), 3, "{recs:?}");
    assert_eq!(
        results[0]["text"],
        golden_text("smolvlm", Some("square+wide"))
    );
    assert_eq!(results[1]["text"], golden_text("smolvlm", None));
    assert_eq!(results[1]["images"], serde_json::json!([]));
    // The line's own max_tokens over the command line's -n.
    assert_eq!(results[2]["generated_tokens"], 3, "{}", results[2]);
    assert_eq!(results[2]["prompt_line"], 6);
    let errors: Vec<&Value> = recs.iter().filter(|r| r["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "{recs:?}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("gone.png"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("--prompts line 5: not valid JSON"),
        "{}",
        errors[1]
    );
    // A report record per line, failed ones included.
    assert_eq!(lines(&std::fs::read(&report).unwrap()).len(), 5);
}

#[test]
fn a_prompts_batch_refuses_keys_it_would_ignore_and_pictures_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.jsonl");
    std::fs::write(
        &batch,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"images\": []}\n",
    )
    .unwrap();
    let r = see(&[
        &model("smolvlm"),
        "--prompts",
        batch.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 1);
    let errors: Vec<String> = r
        .records()
        .iter()
        .filter(|r| r["type"] == "error")
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert!(errors[0].contains("unknown key `messages`"), "{errors:?}");
    assert!(errors[1].contains("`prompt` is missing"), "{errors:?}");
    let r = see(&[
        &model("smolvlm"),
        &picture("square"),
        "--prompts",
        batch.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
