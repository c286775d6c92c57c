//! Greedy tokens of the real SmolLM2-135M-Instruct equal mlx-lm's, token for token: the GGUF
//! loaded directly (4-bit blocks, 8-bit embedding, as the reference's converted folder) and
//! dequantized to f32 (as the reference's f32 folder). Raw, chat and a 374-token chat prompt
//! (a long prompt catches a wrong q/k row order that a 5-token prompt does not).
//! Goldens: tests/reference/goldens/smollm2.json, made by tests/reference/mlx_lm_goldens.py.
use mlxk_infer::generate::{GenerateOptions, generate};
use mlxk_infer::loader::{self, TextModel};
use mlxk_infer::tokenizer::Message;
use mlxk_infer::weights::DtypePolicy;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gguf() -> PathBuf {
    let repo = root().join(".deps/hf/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF");
    let rev = std::fs::read_to_string(repo.join("refs/main"))
        .expect("demo model missing: run scripts/bootstrap");
    repo.join("snapshots")
        .join(rev.trim())
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn goldens() -> Vec<Value> {
    let text =
        std::fs::read_to_string(root().join("tests/reference/goldens/smollm2.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check(model: &TextModel, folder: &str) {
    let cases: Vec<Value> = goldens()
        .into_iter()
        .filter(|c| c["model"] == folder)
        .collect();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let prompt = c["prompt"].as_str().unwrap();
        let chat = c["chat"].as_bool().unwrap();
        let text = if chat {
            let m = [Message {
                role: "user".into(),
                content: prompt.into(),
            }];
            model.tokenizer.render_chat(&m, None).unwrap()
        } else {
            prompt.to_string()
        };
        let prompt_ids = model.tokenizer.encode(&text, !chat).unwrap();
        assert_eq!(
            prompt_ids,
            ids(&c["prompt_ids"]),
            "{folder}: prompt ids of {prompt:.40}"
        );
        let opts = GenerateOptions::greedy(
            c["max_tokens"].as_u64().unwrap() as usize,
            2048,
            model.context_length(),
        );
        let g = generate(
            &model.decoder,
            &model.tokenizer,
            &prompt_ids,
            &opts,
            &mut |_| Ok(true),
        )
        .unwrap();
        assert_eq!(
            g.tokens,
            ids(&c["tokens"]),
            "{folder}: tokens for {prompt:.40}"
        );
        assert_eq!(g.text, c["text"].as_str().unwrap());
    }
}

#[test]
fn gguf_4bit_matches_mlx_lm() {
    let model = loader::load(&gguf(), DtypePolicy::UpcastHalfToF32).unwrap();
    assert_eq!(model.quantization_label(), "4-bit/g32, 8-bit/g32");
    check(&model, "smollm2-q4");
}

#[test]
fn gguf_dequantized_to_f32_matches_mlx_lm_f32() {
    let model = loader::load_with(&gguf(), DtypePolicy::UpcastHalfToF32, true).unwrap();
    check(&model, "smollm2-f32");
}

#[test]
fn capital_of_france() {
    let model = loader::load(&gguf(), DtypePolicy::UpcastHalfToF32).unwrap();
    let ids = model
        .tokenizer
        .encode("The capital of France is", true)
        .unwrap();
    let opts = GenerateOptions::greedy(2, 2048, None);
    let g = generate(&model.decoder, &model.tokenizer, &ids, &opts, &mut |_| {
        Ok(true)
    })
    .unwrap();
    assert_eq!(g.text, " Paris.");
}
