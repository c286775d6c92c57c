//! Tiny random LLaVA models (CLIP and SigLIP towers, f32 and a 4-bit text model) and a tiny
//! SmolVLM (tiled pictures, bucketed positions, pixel shuffle), a tiny Qwen2-VL (dynamic
//! resolution, 2-D rotary tower, patch merger, M-RoPE) and a tiny Qwen2.5-VL (window attention,
//! RMS norms, SwiGLU, tied embeddings) on pictures of several sizes and
//! aspect ratios: the processor's pixels, the prompt ids, greedy tokens and the first step's
//! top-5 log-probabilities equal mlx-vlm's; a text-only prompt through the same model too.
//! Goldens: tests/reference/goldens/vlm.json, made by tests/reference/vlm_goldens.py on the
//! folders `cargo run -p mlxk-infer --features test-support --example tiny_vlms -- DIR` writes.
use base64::Engine;
use mlx_rs::{Array, ops};
use mlxk_infer::generate::{GenerateOptions, Stepper, prefill_embedded};
use mlxk_infer::tiny_vision;
use mlxk_infer::vision::{self, ImageProcessor, Prepared, VisionModel, image};
use mlxk_infer::weights::DtypePolicy;
use serde_json::Value;
use std::path::Path;

fn goldens() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/goldens/vlm.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

const PREFILL_STEP: usize = 2048;

/// Log-probabilities after the prompt, prefilled as the generation loop does.
fn first_logprobs(
    model: &VisionModel,
    prompt: &[u32],
    images: &[Prepared],
    embeddings: Option<&Array>,
) -> Vec<f32> {
    let d = &model.text.decoder;
    let mut caches = model.new_caches(prompt, images).unwrap();
    prefill_embedded(d, &mut caches, prompt, embeddings, 0, PREFILL_STEP).unwrap();
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
        .unwrap_or_else(|| panic!("no golden for {name}: run tests/reference/vlm_goldens.py"));
    let spec = tiny_vision::spec(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sum = tiny_vision::write(&spec, &dir.path().join(name)).unwrap();
    assert_eq!(
        sum, golden["checksum"],
        "{name}: the generator no longer writes the model the goldens were made from; \
         regenerate them (tests/reference/vlm_goldens.py)"
    );
    let model = vision::load(&dir.path().join(name), DtypePolicy::UpcastHalfToF32).unwrap();
    let prompt_text = g["prompt"].as_str().unwrap();
    let max_tokens = g["max_tokens"].as_u64().unwrap() as usize;
    for c in golden["cases"].as_array().unwrap() {
        let picture = c["picture"].as_str();
        let what = format!("{name} on {}", picture.unwrap_or("no picture"));
        // `a+b`: two pictures in one prompt.
        let images: Vec<_> = picture
            .map(|p| p.split('+').collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let &(_, seed, w, h) = tiny_vision::PICTURES
                    .iter()
                    .find(|x| x.0 == p)
                    .expect("a known picture");
                let file = dir.path().join(format!("{p}.png"));
                tiny_vision::write_png(&tiny_vision::picture(seed, w, h), &file).unwrap();
                image::load(&file).unwrap()
            })
            .collect();
        // The processor: the 8-bit pictures (every tile) exactly, the floats within 1e-5.
        let prepared: Vec<Prepared> = images.iter().map(|i| model.prepare(i).unwrap()).collect();
        if let (Some(img), Some(p), Some(_)) = (images.first(), prepared.first(), c.get("crop_b64"))
        {
            let shape = ids(&c["pixel_shape"]);
            let (bytes, want_shape): (Vec<u8>, Vec<u32>) = match &model.processor {
                ImageProcessor::Clip(clip) => {
                    let mut crop = clip.clone();
                    crop.normalize.rescale = None;
                    crop.normalize.mean_std = None;
                    let (h, w, v) = crop.pixels(img);
                    (
                        v.iter().map(|&x| x as u8).collect(),
                        vec![1, 3, h as u32, w as u32],
                    )
                }
                ImageProcessor::Idefics3(ip) => {
                    let (_, _, tiles) = ip.tiles_u8(img);
                    let t = ip.tile as u32;
                    let n = tiles.len() as u32;
                    (
                        tiles.into_iter().flat_map(|t| t.data).collect(),
                        vec![n, 3, t, t],
                    )
                }
                ImageProcessor::Qwen2Vl(qp) => {
                    let r = qp.resized(img).unwrap();
                    assert_eq!(
                        p.grid.map(|g| g.to_vec()),
                        Some(ids(&c["grid_thw"]).iter().map(|&x| x as usize).collect()),
                        "{what}: patch grid"
                    );
                    (r.data, vec![1, 3, r.height as u32, r.width as u32])
                }
            };
            assert_eq!(shape, want_shape, "{what}: pixel shape");
            let want = base64::engine::general_purpose::STANDARD
                .decode(c["crop_b64"].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes.len(), want.len(), "{what}: pixel count");
            let diff = bytes.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff, 0,
                "{what}: {diff} resized pixel values differ from Pillow's"
            );
            p.pixels.eval().unwrap();
            let px = p.pixels.as_slice::<f32>();
            for s in c["pixel_samples"].as_array().unwrap() {
                let (i, v) = (s[0].as_u64().unwrap() as usize, s[1].as_f64().unwrap());
                assert!(
                    (px[i] as f64 - v).abs() < 1e-5,
                    "{what}: pixel value {i} is {}, the processor's {v}",
                    px[i]
                );
            }
        }
        let prompt = model.prompt_ids(None, prompt_text, &prepared).unwrap();
        assert_eq!(prompt, ids(&c["prompt_ids"]), "{what}: prompt ids");
        let embeddings = if images.is_empty() {
            None
        } else {
            Some(model.embeddings(&prompt, &prepared).unwrap())
        };
        let lp = first_logprobs(&model, &prompt, &prepared, embeddings.as_ref());
        for pair in c["first_top5"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap(),
            );
            let got = lp[id] as f64;
            assert!(
                (got - want).abs() < 2e-4,
                "{what}: log-prob of token {id} is {got}, mlx-vlm {want}"
            );
        }
        let opts = GenerateOptions::greedy(max_tokens, PREFILL_STEP, model.text.context_length());
        let mut g = Stepper::start_embedded(
            &model.text.decoder,
            &model.text.tokenizer,
            &prompt,
            embeddings.as_ref(),
            opts,
            model.new_caches(&prompt, &prepared).unwrap(),
            0,
        )
        .unwrap();
        while g.step(&mut |_| Ok(true)).unwrap() {}
        let (out, _) = g.finish(&mut |_| Ok(true)).unwrap();
        assert_eq!(
            out.tokens,
            ids(&c["tokens"]),
            "{what}: greedy tokens differ from mlx-vlm's"
        );
    }
}

#[test]
fn every_tiny_vision_model_has_a_golden() {
    let g = goldens();
    let names: Vec<&str> = g["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for s in tiny_vision::specs() {
        assert!(names.contains(&s.name), "no golden for {}", s.name);
    }
}

#[test]
fn llava_clip_matches_mlx_vlm() {
    check("llava-clip");
}

#[test]
fn llava_siglip_matches_mlx_vlm() {
    check("llava-siglip");
}

#[test]
fn smolvlm_matches_mlx_vlm() {
    check("smolvlm");
}

#[test]
fn qwen2_vl_matches_mlx_vlm() {
    check("qwen2-vl");
}

#[test]
fn qwen2_5_vl_matches_mlx_vlm() {
    check("qwen2.5-vl");
}

#[test]
fn llava_4bit_matches_mlx_vlm() {
    check("llava-q4");
}
