//! Writes every tiny parity model into DIR/<name>/ and DIR/tiny.json (names, checksums, the
//! parity cases' prompt ids) for tests/reference/tiny_goldens.py.
//! Usage: cargo run -p mlxk-infer --features test-support --example tiny_models -- DIR
use mlxk_infer::tiny;
use serde_json::json;
use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tiny_models DIR");
        std::process::exit(2);
    };
    let mut models = vec![];
    for s in tiny::specs() {
        let sum = tiny::write(&s, &dir.join(s.name)).unwrap_or_else(|e| {
            eprintln!("tiny_models: {}: {e}", s.name);
            std::process::exit(1)
        });
        println!("{} {sum}", s.name);
        models.push(json!({"name": s.name, "checksum": sum,
            "upcast_to_f32": s.storage == tiny::Storage::Bf16}));
    }
    let manifest = json!({"models": models, "cases": tiny::CASES.iter().map(|c| json!({
        "prompt_ids": tiny::prompt_ids(c.seed, c.prompt_len),
        "prefill_step": c.prefill_step, "max_tokens": c.max_tokens})).collect::<Vec<_>>()});
    std::fs::write(
        dir.join("tiny.json"),
        serde_json::to_string_pretty(&manifest).expect("serializable"),
    )
    .unwrap_or_else(|e| {
        eprintln!("tiny_models: {}: {e}", dir.display());
        std::process::exit(1)
    });
}
