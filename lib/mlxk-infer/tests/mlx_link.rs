//! Proves the MLX link is real: every op below runs in libmlx and is compared with values the
//! test computes itself in plain Rust. Files are written byte by byte here, not by MLX.

use mlx_rs::Array;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops;
use std::io::Write;

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(err <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

/// Deterministic values in [-1, 1), so tests need no RNG crate.
fn values(n: usize, seed: u64) -> Vec<f32> {
    mlxk_infer::tiny::unit_values(seed, n)
}

fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

fn eval_f32(a: &Array) -> Vec<f32> {
    a.eval().expect("eval");
    a.as_slice::<f32>().to_vec()
}

#[test]
fn matmul_matches_reference() {
    let (m, k, n) = (5, 7, 3);
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    let got = ops::matmul(
        Array::from_slice(&a, &[m as i32, k as i32]),
        Array::from_slice(&b, &[k as i32, n as i32]),
    )
    .unwrap();
    assert_eq!(got.shape(), &[m as i32, n as i32]);
    assert_close(
        &eval_f32(&got),
        &matmul_ref(&a, &b, m, k, n),
        1e-5,
        "matmul",
    );
}

#[test]
fn quantized_matmul_matches_hand_packed_weights() {
    // W is (out=2, in=64), 4-bit, group 32: W[o][i] = scale[o][g] * q + bias[o][g].
    let (out, inp, group, bits) = (2usize, 64usize, 32usize, 4);
    let q: Vec<u32> = (0..out * inp).map(|i| ((i * 7 + 3) % 16) as u32).collect();
    let scales = [0.5f32, -0.25, 0.125, 2.0];
    let biases = [-1.0f32, 0.5, 0.0, -3.0];
    // 8 values per u32, lowest bits first.
    let packed: Vec<u32> = q
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |acc, (j, v)| acc | (v << (4 * j)))
        })
        .collect();
    let w: Vec<f32> = (0..out * inp)
        .map(|i| {
            let (o, col) = (i / inp, i % inp);
            let g = o * (inp / group) + col / group;
            scales[g] * q[i] as f32 + biases[g]
        })
        .collect();
    let x = values(3 * inp, 3);
    // x @ W^T
    let mut wt = vec![0.0; inp * out];
    for o in 0..out {
        for i in 0..inp {
            wt[i * out + o] = w[o * inp + i];
        }
    }
    let want = matmul_ref(&x, &wt, 3, inp, out);
    let got = ops::quantized_matmul(
        Array::from_slice(&x, &[3, inp as i32]),
        Array::from_slice(&packed, &[out as i32, (inp / 8) as i32]),
        Array::from_slice(&scales, &[out as i32, (inp / group) as i32]),
        &Array::from_slice(&biases, &[out as i32, (inp / group) as i32]),
        true,
        group as i32,
        bits,
    )
    .unwrap();
    assert_close(&eval_f32(&got), &want, 1e-4, "quantized_matmul");
}

#[test]
fn rms_norm_matches_reference() {
    let d = 16;
    let x = values(2 * d, 4);
    let w = values(d, 5);
    let eps = 1e-5;
    let mut want = Vec::new();
    for row in x.chunks(d) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (ms + eps).sqrt();
        want.extend(row.iter().zip(&w).map(|(v, wi)| v * r * wi));
    }
    let wa = Array::from_slice(&w, &[d as i32]);
    let got = fast::rms_norm(Array::from_slice(&x, &[2, d as i32]), Some(&wa), eps).unwrap();
    assert_close(&eval_f32(&got), &want, 1e-5, "rms_norm");
}

#[test]
fn rope_matches_reference_both_layouts() {
    let (l, d, base, offset) = (3usize, 8usize, 10000.0f32, 5);
    let x = values(l * d, 6);
    let half = d / 2;
    for traditional in [false, true] {
        let mut want = vec![0.0; l * d];
        for t in 0..l {
            let pos = (t + offset) as f32;
            for i in 0..half {
                let theta = pos * base.powf(-2.0 * i as f32 / d as f32);
                let (s, c) = theta.sin_cos();
                // Traditional rotates adjacent pairs; the default rotates the two halves.
                let (a, b) = if traditional {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (x1, x2) = (x[t * d + a], x[t * d + b]);
                want[t * d + a] = x1 * c - x2 * s;
                want[t * d + b] = x1 * s + x2 * c;
            }
        }
        let input = Array::from_slice(&x, &[1, 1, l as i32, d as i32]);
        let got = fast::rope(input, d as i32, traditional, base, 1.0, offset as i32, None).unwrap();
        assert_close(
            &eval_f32(&got),
            &want,
            1e-4,
            &format!("rope traditional={traditional}"),
        );
    }
}

#[test]
fn scaled_dot_product_attention_causal_matches_reference() {
    let (l, d) = (4usize, 8usize);
    let q = values(l * d, 7);
    let k = values(l * d, 8);
    let v = values(l * d, 9);
    let scale = 1.0 / (d as f32).sqrt();
    let mut want = vec![0.0; l * d];
    for i in 0..l {
        let scores: Vec<f32> = (0..=i)
            .map(|j| (0..d).map(|c| q[i * d + c] * k[j * d + c]).sum::<f32>() * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let z: f32 = exps.iter().sum();
        for c in 0..d {
            want[i * d + c] = (0..=i).map(|j| exps[j] / z * v[j * d + c]).sum();
        }
    }
    let shape = [1, 1, l as i32, d as i32];
    let got = fast::scaled_dot_product_attention(
        Array::from_slice(&q, &shape),
        Array::from_slice(&k, &shape),
        Array::from_slice(&v, &shape),
        scale,
        ScaledDotProductAttentionMask::Causal,
        None,
    )
    .unwrap();
    assert_close(&eval_f32(&got), &want, 1e-4, "sdpa");
}

#[test]
fn loads_hand_written_safetensors() {
    let a = [1.5f32, -2.0, 3.25, 0.0, 7.0, -0.5];
    let b: [u32; 3] = [7, 0, u32::MAX];
    let header = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"U32","shape":[3],"data_offsets":[24,36]},"__metadata__":{"format":"mlx"}}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for x in a {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    for x in b {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    drop(f);
    let arrays = Array::load_safetensors(&path).unwrap();
    assert_eq!(arrays["a"].shape(), &[2, 3]);
    assert_close(&eval_f32(&arrays["a"]), &a, 0.0, "safetensors a");
    arrays["b"].eval().unwrap();
    assert_eq!(arrays["b"].as_slice::<u32>(), &b);
}

/// Minimal GGUF v3 writer for the test: metadata strings, F32 and Q8_0 tensors.
fn write_gguf(path: &std::path::Path, f32_data: &[f32], q8_scale: f32, q8: &[i8; 32]) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend(2u64.to_le_bytes()); // tensors
    out.extend(1u64.to_le_bytes()); // metadata entries
    string(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    string(&mut out, "llama");
    // tensor infos: dims are innermost first
    string(&mut out, "plain");
    out.extend(2u32.to_le_bytes());
    out.extend(3u64.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(0u64.to_le_bytes());
    string(&mut out, "quant");
    out.extend(2u32.to_le_bytes());
    out.extend(32u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend(8u32.to_le_bytes()); // Q8_0
    out.extend(32u64.to_le_bytes()); // offset after 24 bytes of F32, aligned to 32
    while out.len() % 32 != 0 {
        out.push(0);
    }
    let data_start = out.len();
    for x in f32_data {
        out.extend(x.to_le_bytes());
    }
    out.resize(data_start + 32, 0);
    out.extend(half_bits(q8_scale).to_le_bytes());
    out.extend(q8.iter().map(|v| *v as u8));
    std::fs::write(path, out).unwrap();
}

/// f32 → IEEE half bits for values exactly representable in half (the test uses such values).
fn half_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((bits >> 13) & 0x3ff) as u16;
    assert!((1..31).contains(&exp), "value not a normal half");
    sign | ((exp as u16) << 10) | mant
}

#[test]
fn loads_hand_written_gguf_with_metadata_and_q8_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let plain = [1.0f32, 2.0, 3.0, -4.0, 5.5, 6.0];
    let mut q8 = [0i8; 32];
    for (i, v) in q8.iter_mut().enumerate() {
        *v = i as i8 - 16;
    }
    write_gguf(&path, &plain, 0.25, &q8);

    let gguf = mlx_rs::io::GgufFile::load(&path).unwrap();
    assert_eq!(
        gguf.get_metadata_string("general.architecture")
            .unwrap()
            .as_deref(),
        Some("llama")
    );
    let arrays = gguf.arrays().unwrap();
    let p = &arrays["plain"];
    assert_eq!(p.shape(), &[2, 3], "GGUF dims are reversed into row-major");
    assert_close(&eval_f32(p), &plain, 0.0, "gguf f32");

    // Q8_0 arrives as MLX affine-quantized (weight, scales, biases): dequantize and compare.
    let w = &arrays["quant"];
    let scales = &arrays["quant.scales"];
    let biases = &arrays["quant.biases"];
    let deq = ops::dequantize(w, scales, biases, 32, 8).unwrap();
    let want: Vec<f32> = q8.iter().map(|v| 0.25 * *v as f32).collect();
    assert_eq!(deq.dtype(), mlx_rs::Dtype::Float16, "GGUF scales are f16");
    let deq = deq.as_type::<f32>().unwrap().reshape(&[-1]).unwrap();
    assert_close(&eval_f32(&deq), &want, 1e-6, "gguf q8_0");
}

#[test]
fn loads_the_real_smollm2_gguf() {
    // The packaged real model (scripts/bootstrap puts it in .deps/hf/hub).
    let hub = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/hf/hub");
    let repo = hub.join("models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF");
    let rev = std::fs::read_to_string(repo.join("refs/main"))
        .expect("demo model missing: run scripts/bootstrap");
    let path = repo
        .join("snapshots")
        .join(rev.trim())
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let gguf = mlx_rs::io::GgufFile::load(&path).unwrap();
    assert_eq!(
        gguf.get_metadata_string("general.architecture")
            .unwrap()
            .as_deref(),
        Some("llama")
    );
    let tokens = gguf
        .get_metadata_strings("tokenizer.ggml.tokens")
        .unwrap()
        .unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[2], "<|im_end|>");
    let arrays = gguf.arrays().unwrap();
    assert_eq!(arrays.len(), 694);
    // Blocks are 4-bit with group 32: 576 inputs → 72 packed u32 and 18 scales per row.
    let q = &arrays["blk.0.attn_q.weight"];
    assert_eq!(q.shape(), &[576, 72]);
    assert_eq!(arrays["blk.0.attn_q.scales"].shape(), &[576, 18]);
    assert_eq!(arrays["output_norm.weight"].shape(), &[576]);
}
