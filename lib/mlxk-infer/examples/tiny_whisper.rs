//! Writes the tiny random Whisper models into DIR/<name>/ and DIR/whisper_tiny.json (names,
//! layouts, checksums) for tests/reference/whisper_tiny_goldens.py.
//! Usage: cargo run -p mlxk-infer --features test-support --example tiny_whisper -- DIR TOKENIZER_JSON
//! (TOKENIZER_JSON: Whisper tiny.en's tokenizer.json, e.g. from scripts/bootstrap's tiny.en).
use mlxk_infer::tiny_whisper;
use serde_json::json;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(tok)) = (
        args.get(1).map(PathBuf::from),
        args.get(2).map(PathBuf::from),
    ) else {
        eprintln!("usage: tiny_whisper DIR TOKENIZER_JSON");
        std::process::exit(2);
    };
    let mut models = vec![];
    for s in tiny_whisper::specs() {
        let sum = tiny_whisper::write(&s, &dir.join(s.name), &tok).unwrap_or_else(|e| {
            eprintln!("tiny_whisper: {}: {e}", s.name);
            std::process::exit(1)
        });
        println!("{} {sum}", s.name);
        models.push(json!({"name": s.name, "checksum": sum, "layout": s.layout}));
    }
    let manifest = serde_json::to_string_pretty(&json!({"models": models})).expect("serializable");
    std::fs::write(dir.join("whisper_tiny.json"), manifest).unwrap_or_else(|e| {
        eprintln!("tiny_whisper: {}: {e}", dir.display());
        std::process::exit(1)
    });
}
