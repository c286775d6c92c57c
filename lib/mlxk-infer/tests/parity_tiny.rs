//! Tiny random models of every architecture and quirk (GQA with one KV head, tied and separate
//! heads, llama-3 and linear RoPE scaling, attention/MLP biases, sharded safetensors, sliding
//! windows, q/k norms, fused projections with partial RoPE, gemma's scaled embeddings, (1 + w)
//! norms and soft-capping, bf16 storage, MLX 4/8-bit with group 32/64 and per-layer overrides):
//! greedy tokens and the first step's top-5 log-probabilities equal mlx-lm's.
//! Goldens: tests/reference/goldens/tiny.json, made by tests/reference/tiny_goldens.py on the
//! folders `cargo run -p mlxk-infer --features test-support --example tiny_models -- DIR` writes.
use mlx_rs::{Array, ops};
use mlxk_infer::generate::{GenerateOptions, generate, prefill};
use mlxk_infer::loader::{self, TextModel};
use mlxk_infer::tiny;
use mlxk_infer::weights::DtypePolicy;
use serde_json::Value;
use std::path::Path;

fn goldens() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/goldens/tiny.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Log-probabilities after the prompt: the prompt prefilled as `generate` does (all but the
/// last token in chunks of `step`), then the last token alone.
fn first_logprobs(model: &TextModel, prompt: &[u32], step: usize) -> Vec<f32> {
    let d = &model.decoder;
    let mut caches = prefill(d, prompt, step).unwrap();
    let x = Array::from_slice(&prompt[prompt.len() - 1..], &[1, 1]);
    let logits = d.logits(&d.hidden(&x, &mut caches).unwrap()).unwrap();
    let logits = logits.reshape(&[-1]).unwrap();
    let lse = ops::logsumexp_axis(&logits, -1, true).unwrap();
    let lp = ops::subtract(&logits, &lse).unwrap();
    lp.eval().unwrap();
    lp.as_slice::<f32>().to_vec()
}

fn check(name: &str) {
    let g = goldens();
    let golden = g["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no golden for {name}: run tests/reference/tiny_goldens.py"));
    let spec = tiny::spec(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sum = tiny::write(&spec, dir.path()).unwrap();
    assert_eq!(
        sum, golden["checksum"],
        "{name}: the generator no longer writes the model the goldens were made from; \
         regenerate them (tests/reference/tiny_goldens.py)"
    );
    let model = loader::load(dir.path(), DtypePolicy::UpcastHalfToF32).unwrap();
    for c in golden["cases"].as_array().unwrap() {
        let prompt = ids(&c["prompt_ids"]);
        let step = c["prefill_step"].as_u64().unwrap() as usize;
        let lp = first_logprobs(&model, &prompt, step);
        for pair in c["first_top5"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap(),
            );
            let got = lp[id] as f64;
            assert!(
                (got - want).abs() < 2e-4,
                "{name} (prefill step {step}): log-prob of token {id} is {got}, mlx-lm {want}"
            );
        }
        let opts = GenerateOptions::greedy(
            c["max_tokens"].as_u64().unwrap() as usize,
            step,
            model.context_length(),
        );
        let out = generate(
            &model.decoder,
            &model.tokenizer,
            &prompt,
            &opts,
            &mut |_| Ok(true),
        )
        .unwrap();
        assert_eq!(
            out.tokens,
            ids(&c["tokens"]),
            "{name} (prefill step {step}): greedy tokens differ from mlx-lm's"
        );
    }
}

#[test]
fn every_tiny_model_has_a_golden() {
    let g = goldens();
    let names: Vec<&str> = g["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let specs: Vec<&str> = tiny::specs().iter().map(|s| s.name).collect();
    assert_eq!(names, specs);
}

macro_rules! parity {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            check($name);
        }
    )*};
}

parity! {
    llama_gqa_one_kv_head => "llama-gqa1",
    llama3_rope_scaling_tied_bf16 => "llama3-rope-tied-bf16",
    llama_biases_linear_rope_sharded => "llama-biases-sharded",
    mistral_sliding_window_layers => "mistral-sliding",
    qwen2_qkv_biases => "qwen2-qkv-bias",
    qwen3_qk_norm => "qwen3-qk-norm",
    phi3_fused_partial_rope => "phi3-fused-partial-rope",
    gemma_scaled_embeddings => "gemma",
    gemma2_softcaps => "gemma2-softcap",
    gemma3_sliding_window_pattern => "gemma3-sliding",
    llama_mlx_4bit_g64 => "llama-4bit-g64",
    qwen3_mlx_8bit_g32_mixed => "qwen3-8bit-g32-mixed",
    gemma3_mlx_4bit_g32_tied_bf16 => "gemma3-4bit-g32-tied-bf16",
}

/// A golden of one token repeated tests little (a model stuck on one token hides most
/// errors): every case must decode varied text.
#[test]
fn every_golden_decodes_varied_tokens() {
    for m in goldens()["models"].as_array().unwrap() {
        for c in m["cases"].as_array().unwrap() {
            let mut t = ids(&c["tokens"]);
            t.sort_unstable();
            t.dedup();
            assert!(
                t.len() >= 6,
                "{}: only {} distinct tokens",
                m["name"],
                t.len()
            );
        }
    }
}

/// Decoding steps on the host (RoPE, the cache and attention without MLX) give the logits the
/// MLX path gives, on every tiny architecture (GQA, biases, partial and llama-3 RoPE, q/k
/// norms, sliding windows before and past their window, soft caps through MLX), step after
/// step, and through what a chat does to the cache: a trim, a second prefill on MLX, more
/// steps, a snapshot restored. Bit for bit here on all but the model with 32-wide heads
/// (within 2e-6 there, where OpenBLAS sums its dot products in another order).
#[test]
fn host_decode_steps_equal_the_mlx_path() {
    use mlxk_infer::layers::KvCache;
    for spec in tiny::specs() {
        let dir = tempfile::tempdir().unwrap();
        tiny::write(&spec, dir.path()).unwrap();
        let model = loader::load(dir.path(), DtypePolicy::UpcastHalfToF32).unwrap();
        let d = &model.decoder;
        for len in [11u32, 4] {
            let prompt: Vec<u32> = (0..len).map(|i| (i * 37 + 5) % 200).collect();
            let run = |host: bool| -> Vec<Vec<f32>> {
                mlxk_infer::layers::host_decode_on_this_thread(host);
                let mut out = Vec::new();
                let mut next = prompt[prompt.len() - 1];
                let mut steps = |caches: &mut Vec<KvCache>, n: usize, out: &mut Vec<Vec<f32>>| {
                    for _ in 0..n {
                        let x = Array::from_slice(&[next], &[1, 1]);
                        let logits = d.logits(&d.hidden(&x, caches).unwrap()).unwrap();
                        let v = logits.reshape(&[-1]).unwrap();
                        v.eval().unwrap();
                        let v = v.as_slice::<f32>().to_vec();
                        next = v
                            .iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map(|(i, _)| i as u32)
                            .unwrap();
                        out.push(v);
                    }
                };
                let mut caches = prefill(d, &prompt, 64).unwrap();
                steps(&mut caches, 6, &mut out);
                // A chat's next turn: back two positions, three new ones prefilled through MLX.
                let keep = caches[0].offset - 2;
                caches.iter_mut().for_each(|c| c.trim(keep));
                let turn = Array::from_slice(&[7u32, 11, 13], &[1, 3]);
                let h = d.hidden(&turn, &mut caches).unwrap();
                let last = d.logits(&h).unwrap();
                last.eval().unwrap();
                out.push(last.as_slice::<f32>().to_vec());
                steps(&mut caches, 3, &mut out);
                // Saved and restored (a prompt cache), then more steps.
                let mut restored: Vec<KvCache> = caches
                    .iter()
                    .map(|c| {
                        let (k, v) = c.snapshot().unwrap();
                        KvCache::restore(k, v)
                    })
                    .collect();
                steps(&mut restored, 2, &mut out);
                out
            };
            let (mlx, host) = (run(false), run(true));
            mlxk_infer::layers::host_decode_on_this_thread(true);
            assert_eq!(mlx.len(), host.len());
            for (step, (a, b)) in mlx.iter().zip(&host).enumerate() {
                let max = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    max < 1e-5,
                    "{} (prompt {len}) step {step}: logits differ by {max}",
                    spec.name
                );
            }
        }
    }
}
