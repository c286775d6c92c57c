//! Writes the tiny random vision-language models into DIR/<name>/, the fixture pictures into
//! DIR/images/ (PNG, several sizes and aspect ratios) and DIR/vlm.json (names, checksums,
//! pictures) for tests/reference/vlm_goldens.py.
//! Usage: cargo run -p mlxk-infer --features test-support --example tiny_vlms -- DIR
use mlxk_infer::tiny_vision;
use serde_json::json;
use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tiny_vlms DIR");
        std::process::exit(2);
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("tiny_vlms: {what}: {e}");
        std::process::exit(1)
    };
    let mut models = vec![];
    for s in tiny_vision::specs() {
        let sum = tiny_vision::write(&s, &dir.join(s.name)).unwrap_or_else(|e| fail(s.name, &e));
        println!("{} {sum}", s.name);
        models.push(json!({"name": s.name, "checksum": sum}));
    }
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap_or_else(|e| fail("images", &e));
    let mut pictures = vec![];
    for (name, seed, w, h) in tiny_vision::PICTURES {
        let path = images.join(format!("{name}.png"));
        tiny_vision::write_png(&tiny_vision::picture(*seed, *w, *h), &path)
            .unwrap_or_else(|e| fail(name, &e));
        pictures.push(json!({"name": name, "file": format!("images/{name}.png")}));
    }
    let manifest = json!({"models": models, "pictures": pictures,
        "prompt": tiny_vision::PROMPT, "max_tokens": tiny_vision::MAX_TOKENS});
    std::fs::write(
        dir.join("vlm.json"),
        serde_json::to_string_pretty(&manifest).expect("serializable"),
    )
    .unwrap_or_else(|e| fail("vlm.json", &e));
}
