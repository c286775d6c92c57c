//! mlxk-probe end to end: a temporary cache holding every case, the real binary, exact records.

#[allow(dead_code)]
mod support;
use serde_json::{Value, json};
use support::*;

/// One cache with every case the probe must tell apart.
fn zoo() -> Cache {
    let c = Cache::new();
    mlx_llama_4bit(&c.snapshot("mlx-community/Tiny-Llama-4bit", "1111aaaa"));
    sharded_bf16(&c.snapshot("org/Sharded-Qwen", "2222bbbb"), 3, &[2]);

    let lfs = c.snapshot("org/Lfs-Pointer", "3333cccc");
    write_json(
        &lfs,
        "config.json",
        &json!({"model_type": "llama", "max_position_embeddings": 4096}),
    );
    write(
        &lfs,
        "model.safetensors",
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
    );
    tokenizer(&lfs, false);

    let partial = c.snapshot("org/Partial-Download", "4444dddd");
    mlx_llama_4bit(&partial);
    write(
        &c.repo_dir("org/Partial-Download").join("blobs"),
        "deadbeef.incomplete",
        b"half",
    );

    let vision = c.snapshot("org/Llava-No-Preproc", "5555eeee");
    write_json(
        &vision,
        "config.json",
        &json!({"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"},
                "text_config": {"model_type": "llama", "max_position_embeddings": 4096}}),
    );
    write(
        &vision,
        "model.safetensors",
        safetensors(&[("w", "F16", &[8, 8])], Some("mlx")),
    );
    tokenizer(&vision, true);

    gguf_llama(&c.snapshot("org/Small-GGUF", "6666ffff"), "small.Q4_1.gguf");

    // A second snapshot of the MLX model, for name@rev.
    let rd = c.repo_dir("mlx-community/Tiny-Llama-4bit");
    mlx_llama_4bit(&rd.join("snapshots").join("0000beef"));
    c
}

fn probe(c: &Cache, args: &[&str]) -> (Vec<Value>, i32, String) {
    let out = bin("mlxk-probe")
        .env("HF_HUB_CACHE", c.root())
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let r = Run::from(out);
    (r.records(), r.code, r.stderr)
}

fn one(c: &Cache, spec: &str) -> (Value, i32) {
    let (mut recs, code, _) = probe(c, &[spec]);
    assert_eq!(recs.len(), 1, "{recs:?}");
    (recs.remove(0), code)
}

#[test]
fn healthy_mlx_model_full_record() {
    let c = zoo();
    let (r, code) = one(&c, "Tiny-Llama-4bit");
    assert_eq!(code, 0);
    assert_eq!(r["type"], "model");
    assert_eq!(r["id"], "mlx-community/Tiny-Llama-4bit");
    assert_eq!(r["revision"], "1111aaaa");
    assert_eq!(r["framework"], "mlx");
    assert_eq!(r["model_type"], "llama");
    assert_eq!(
        r["quantization"],
        json!({"method": "affine", "bits": 4, "group_size": 64, "dtype": "bfloat16"})
    );
    assert_eq!(r["context_length"], 2048);
    assert_eq!(
        r["context_length_source"],
        "config.json:max_position_embeddings"
    );
    assert_eq!(r["capabilities"], json!(["text", "chat"]));
    assert_eq!(r["health"], json!({"ok": true, "problems": []}));
    // u32 packed 128×8×4 = 4096 B stay; bf16 scales/biases 2×128 and norm 64 upcast to f32.
    assert_eq!(r["memory"]["estimate_bytes"], 4096 + (128 + 128 + 64) * 4);
    assert_eq!(
        r["memory"]["dtype"],
        "4-bit packed; scales upcast to float32 (CPU)"
    );
}

#[test]
fn sharded_set_with_missing_shard_is_unhealthy() {
    let c = zoo();
    let (r, code) = one(&c, "org/Sharded-Qwen");
    assert_eq!(code, 4);
    assert_eq!(r["health"]["ok"], false);
    let problems: Vec<&str> = r["health"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        problems,
        vec![
            "model-00002-of-00003.safetensors missing (named by model.safetensors.index.json)",
            "sharded .safetensors set incomplete: shard 00002 of 00003 missing",
        ]
    );
    assert_eq!(r["framework"], "pytorch");
    assert_eq!(r["context_length"], 32768);
    assert_eq!(r["quantization"]["dtype"], "bfloat16");
}

#[test]
fn lfs_pointer_is_named() {
    let c = zoo();
    let (r, code) = one(&c, "Lfs-Pointer");
    assert_eq!(code, 4);
    assert_eq!(
        r["health"]["problems"],
        json!([
            "model.safetensors is a Git LFS pointer, not the weights (fetch with git lfs pull)"
        ])
    );
}

#[test]
fn partial_download_is_named() {
    let c = zoo();
    let (r, code) = one(&c, "Partial-Download");
    assert_eq!(code, 4);
    assert_eq!(
        r["health"]["problems"],
        json!(["partial download: blobs/deadbeef.incomplete"])
    );
}

#[test]
fn vision_without_preprocessor_and_nested_text_config() {
    let c = zoo();
    let (r, code) = one(&c, "Llava-No-Preproc");
    assert_eq!(code, 4);
    assert_eq!(r["model_type"], "llava");
    assert_eq!(r["capabilities"], json!(["text", "chat", "vision"]));
    assert_eq!(r["context_length"], 4096);
    assert_eq!(
        r["context_length_source"],
        "config.json text_config:max_position_embeddings"
    );
    assert_eq!(
        r["health"]["problems"],
        json!(["vision model without preprocessor_config.json (image preprocessing unknown)"])
    );
    // f16 8×8 upcast to f32 on CPU
    assert_eq!(r["memory"]["estimate_bytes"], 256);
}

#[test]
fn gguf_model_facts() {
    let c = zoo();
    let (r, code) = one(&c, "small-gguf");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["framework"], "gguf");
    assert_eq!(r["weight_format"], "gguf");
    assert_eq!(r["model_type"], "llama");
    assert_eq!(r["context_length"], 8192);
    assert_eq!(r["context_length_source"], "gguf:llama.context_length");
    assert_eq!(r["quantization"]["gguf_types"], json!(["F32", "Q4_1"]));
    assert_eq!(r["capabilities"], json!(["text", "chat"]));
    // Q4_1 64×64 at 0.75 B/value + 64 f32
    assert_eq!(r["memory"]["estimate_bytes"], 64 * 64 * 3 / 4 + 64 * 4);
}

#[test]
fn a_gguf_file_path_is_a_model() {
    let c = zoo();
    let file = c
        .repo_dir("org/Small-GGUF")
        .join("snapshots/6666ffff/small.Q4_1.gguf");
    let (r, code) = one(&c, file.to_str().unwrap());
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["id"], "org/Small-GGUF");
    assert_eq!(r["path"], file.to_str().unwrap());
    assert_eq!(r["quantization"]["gguf_types"], json!(["F32", "Q4_1"]));
}

#[test]
fn several_gguf_files_are_listed_and_one_must_be_named() {
    let c = Cache::new();
    let s = c.snapshot("org/Many-GGUF", "88");
    gguf_llama(&s, "m.Q4_1.gguf");
    gguf_llama(&s, "m.Q8_0.gguf");
    let (recs, code, stderr) = probe(&c, &["Many-GGUF"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(recs[0]["code"], "ambiguous");
    assert!(
        stderr.contains("org/Many-GGUF holds 2 GGUF files; name the one to use:")
            && stderr.contains("m.Q4_1.gguf")
            && stderr.contains("m.Q8_0.gguf"),
        "{stderr}"
    );
    // Naming one of them works, and only that file is probed.
    let (r, code) = one(&c, s.join("m.Q8_0.gguf").to_str().unwrap());
    assert_eq!((code, r["health"]["ok"].clone()), (0, json!(true)), "{r}");
}

#[test]
fn a_config_without_model_type_is_unhealthy() {
    for (name, config, problem) in [
        (
            "Empty-Config",
            json!({}),
            "config.json is an empty object (no model_type)",
        ),
        (
            "No-Type",
            json!({"hidden_size": 64}),
            "config.json has no model_type",
        ),
    ] {
        let c = Cache::new();
        let s = c.snapshot(&format!("org/{name}"), "99");
        mlx_llama_4bit(&s);
        write_json(&s, "config.json", &config);
        let (r, code) = one(&c, name);
        assert_eq!(code, 4, "{r}");
        assert_eq!(r["health"]["ok"], false);
        assert!(
            r["health"]["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == problem),
            "{r}"
        );
    }
}

#[test]
fn corrupt_gguf_header_is_named() {
    let c = Cache::new();
    let s = c.snapshot("org/Broken-GGUF", "77");
    write(&s, "m.gguf", b"GGUF\x03\0\0\0\x01");
    let (r, code) = one(&c, "Broken-GGUF");
    assert_eq!(code, 4);
    let p = r["health"]["problems"][0].as_str().unwrap();
    assert!(
        p.starts_with("m.gguf: invalid GGUF header: truncated"),
        "{p}"
    );
}

#[test]
fn ambiguous_substring_lists_candidates_exit_3() {
    let c = zoo();
    let (recs, code, stderr) = probe(&c, &["org"]);
    assert_eq!(code, 3);
    assert_eq!(recs[0]["type"], "error");
    assert_eq!(recs[0]["code"], "ambiguous");
    assert!(stderr.contains("'org' is ambiguous: it matches org/Lfs-Pointer, org/Llava-No-Preproc, org/Partial-Download, org/Sharded-Qwen, org/Small-GGUF; name one of them"), "{stderr}");
}

#[test]
fn not_found_suggests_and_exits_3() {
    let c = zoo();
    let (recs, code, stderr) = probe(&c, &["mlx-community/Tiny-Lama-4bit"]);
    assert_eq!(code, 3);
    assert_eq!(recs[0]["code"], "not_found");
    assert_eq!(
        stderr.trim(),
        "mlxk-probe: no model matches 'mlx-community/Tiny-Lama-4bit'; closest cached: mlx-community/Tiny-Llama-4bit"
    );
}

#[test]
fn name_at_revision_picks_that_snapshot() {
    let c = zoo();
    let (r, code) = one(&c, "mlx-community/Tiny-Llama-4bit@0000");
    assert_eq!(code, 0);
    assert_eq!(r["revision"], "0000beef");
    let (recs, code, stderr) = probe(&c, &["mlx-community/Tiny-Llama-4bit@9999"]);
    assert_eq!(code, 3);
    assert_eq!(recs[0]["code"], "not_found");
    assert!(stderr.contains("cached: 0000beef, 1111aaaa"), "{stderr}");
}

#[test]
fn folder_path_is_probed_directly() {
    let d = tempfile::tempdir().unwrap();
    mlx_llama_4bit(d.path());
    let out = bin("mlxk-probe")
        .arg(d.path())
        .arg("--json")
        .output()
        .unwrap();
    let r = &lines(&out.stdout)[0];
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(r["revision"], Value::Null);
    assert_eq!(r["id"], d.path().file_name().unwrap().to_str().unwrap());
}

#[test]
fn all_lists_every_model_sorted_and_exits_0() {
    let c = zoo();
    let (recs, code, _) = probe(&c, &["--all"]);
    assert_eq!(
        code, 0,
        "listing succeeds even when some models are unhealthy"
    );
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        vec![
            "mlx-community/Tiny-Llama-4bit",
            "org/Lfs-Pointer",
            "org/Llava-No-Preproc",
            "org/Partial-Download",
            "org/Sharded-Qwen",
            "org/Small-GGUF"
        ]
    );
}

#[test]
fn human_table_golden() {
    let c = zoo();
    let out = bin("mlxk-probe")
        .env("HF_HUB_CACHE", c.root())
        .arg("--human")
        .output()
        .unwrap();
    insta::assert_snapshot!("probe_all_table", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn empty_cache_says_where_it_looked() {
    let c = Cache::new();
    let out = bin("mlxk-probe")
        .env("HF_HUB_CACHE", c.root())
        .arg("--human")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("no models in {}", c.root().display())
    );
}

#[test]
fn closed_stdout_ends_quietly() {
    let c = Cache::new();
    // ~150 kB of records: more than a pipe buffer holds, so the writer meets the closed end.
    for i in 0..200 {
        mlx_llama_4bit(&c.snapshot(&format!("org/m{i:03}"), "1"));
    }
    // `| head -1`: the reader closes after the first line.
    let mut cmd = std::process::Command::new(bin_path("mlxk-probe"));
    cmd.env("HF_HUB_CACHE", c.root()).arg("--json");
    assert_ends_quietly_when_reader_leaves(cmd);
}

#[test]
fn hundred_models_all_listed() {
    // Speed is measured by benchmarks/probe.sh, not here.
    let c = Cache::new();
    for i in 0..100 {
        mlx_llama_4bit(&c.snapshot(&format!("org/m{i:03}"), "1"));
    }
    let (recs, code, _) = probe(&c, &[]);
    assert_eq!((recs.len(), code), (100, 0));
}
