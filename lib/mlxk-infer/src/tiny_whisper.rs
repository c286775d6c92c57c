//! Tiny random Whisper models for the parity tests: Whisper's real tiny.en vocabulary and
//! tokenizer, a 64-wide encoder and decoder of two layers each, deterministic weights — in the
//! mlx-whisper layout (f32, and MLX 4- and 8-bit quantized) and the Hugging Face transformers
//! layout (same values, PyTorch names and conv layout), so each loader is held to the same
//! tokens as mlx-whisper's.
use crate::error::{InferError, Result};
use crate::tiny::{Fnv, Raw, Rng, Storage, float_raw, quantize, safetensors};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// One tiny Whisper checkpoint to write.
#[derive(Debug, Clone)]
pub struct TinyWhisper {
    pub name: &'static str,
    /// `mlx` (mlx-whisper) or `transformers`.
    pub layout: &'static str,
    /// MLX affine quantization (bits, group size) of every linear layer and the embedding.
    pub quantized: Option<(i32, i32)>,
}

pub fn specs() -> Vec<TinyWhisper> {
    vec![
        TinyWhisper {
            name: "whisper-f32",
            layout: "mlx",
            quantized: None,
        },
        TinyWhisper {
            name: "whisper-q4",
            layout: "mlx",
            quantized: Some((4, 64)),
        },
        TinyWhisper {
            name: "whisper-q8",
            layout: "mlx",
            quantized: Some((8, 32)),
        },
        TinyWhisper {
            name: "whisper-hf",
            layout: "transformers",
            quantized: None,
        },
    ]
}

/// The sizes: tiny.en's vocabulary and context, a 64-wide model.
pub fn dims() -> Value {
    json!({"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 2,
        "n_audio_layer": 2, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 64,
        "n_text_head": 2, "n_text_layer": 2})
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Matrix,
    Bias,
    Norm,
    Conv,
    Embedding,
    Positions,
}

/// The tensors in mlx-whisper's names and layout (convs `(out, k, in)`).
fn tensors() -> Vec<(String, Vec<usize>, Kind)> {
    let d = 64;
    let mut out = vec![
        (
            "encoder.conv1.weight".to_string(),
            vec![d, 3, 80],
            Kind::Conv,
        ),
        ("encoder.conv1.bias".to_string(), vec![d], Kind::Bias),
        (
            "encoder.conv2.weight".to_string(),
            vec![d, 3, d],
            Kind::Conv,
        ),
        ("encoder.conv2.bias".to_string(), vec![d], Kind::Bias),
    ];
    let block = |p: String, cross: bool, out: &mut Vec<(String, Vec<usize>, Kind)>| {
        let attn = |a: &str, out: &mut Vec<(String, Vec<usize>, Kind)>| {
            for (n, bias) in [
                ("query", true),
                ("key", false),
                ("value", true),
                ("out", true),
            ] {
                out.push((format!("{p}.{a}.{n}.weight"), vec![d, d], Kind::Matrix));
                if bias {
                    out.push((format!("{p}.{a}.{n}.bias"), vec![d], Kind::Bias));
                }
            }
        };
        attn("attn", out);
        let mut norms = vec!["attn_ln", "mlp_ln"];
        if cross {
            attn("cross_attn", out);
            norms.push("cross_attn_ln");
        }
        for n in norms {
            out.push((format!("{p}.{n}.weight"), vec![d], Kind::Norm));
            out.push((format!("{p}.{n}.bias"), vec![d], Kind::Bias));
        }
        out.push((format!("{p}.mlp1.weight"), vec![4 * d, d], Kind::Matrix));
        out.push((format!("{p}.mlp1.bias"), vec![4 * d], Kind::Bias));
        out.push((format!("{p}.mlp2.weight"), vec![d, 4 * d], Kind::Matrix));
        out.push((format!("{p}.mlp2.bias"), vec![d], Kind::Bias));
    };
    for i in 0..2 {
        block(format!("encoder.blocks.{i}"), false, &mut out);
    }
    out.push(("encoder.ln_post.weight".into(), vec![d], Kind::Norm));
    out.push(("encoder.ln_post.bias".into(), vec![d], Kind::Bias));
    out.push((
        "decoder.token_embedding.weight".into(),
        vec![51864, d],
        Kind::Embedding,
    ));
    out.push((
        "decoder.positional_embedding".into(),
        vec![448, d],
        Kind::Positions,
    ));
    for i in 0..2 {
        block(format!("decoder.blocks.{i}"), true, &mut out);
    }
    out.push(("decoder.ln.weight".into(), vec![d], Kind::Norm));
    out.push(("decoder.ln.bias".into(), vec![d], Kind::Bias));
    out
}

fn values(rng: &mut Rng, shape: &[usize], kind: Kind) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in = shape[1..].iter().product::<usize>().max(1) as f32;
    let (offset, scale) = match kind {
        Kind::Matrix | Kind::Conv => (0.0, 1.7 / fan_in.sqrt()),
        Kind::Bias => (0.0, 0.1),
        Kind::Norm => (1.0, 0.2),
        Kind::Embedding => (0.0, 0.5),
        Kind::Positions => (0.0, 0.2),
    };
    (0..n).map(|_| offset + scale * rng.unit()).collect()
}

/// The transformers name of an mlx-whisper parameter.
fn hf_name(n: &str) -> String {
    let n = n
        .replace("encoder.blocks.", "model.encoder.layers.")
        .replace("decoder.blocks.", "model.decoder.layers.")
        .replace(".cross_attn_ln", ".encoder_attn_layer_norm")
        .replace(".attn_ln", ".self_attn_layer_norm")
        .replace(".mlp_ln", ".final_layer_norm")
        .replace(".cross_attn.", ".encoder_attn.")
        .replace(".attn.", ".self_attn.")
        .replace(".query", ".q_proj")
        .replace(".key", ".k_proj")
        .replace(".value", ".v_proj")
        .replace(".out.", ".out_proj.")
        .replace(".mlp1", ".fc1")
        .replace(".mlp2", ".fc2")
        .replace("encoder.ln_post", "model.encoder.layer_norm")
        .replace("decoder.ln.", "model.decoder.layer_norm.")
        .replace("decoder.token_embedding", "model.decoder.embed_tokens")
        .replace(
            "decoder.positional_embedding",
            "model.decoder.embed_positions.weight",
        );
    if n.starts_with("encoder.conv") {
        format!("model.{n}")
    } else {
        n
    }
}

/// Writes `spec` into `dir` with `tokenizer` (tiny.en's tokenizer.json) beside it; returns a
/// checksum of what was written.
pub fn write(spec: &TinyWhisper, dir: &Path, tokenizer: &Path) -> Result<String> {
    let io = |e: std::io::Error| InferError::Options(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    // The same values for every layout and precision: one seed.
    let mut rng = Rng(0x0077_6869_7370_6572);
    let mut all: BTreeMap<String, Raw> = BTreeMap::new();
    for (name, shape, kind) in tensors() {
        let v = values(&mut rng, &shape, kind);
        let prefix = name.trim_end_matches(".weight");
        match (spec.quantized, kind) {
            (Some((bits, group)), Kind::Matrix | Kind::Embedding) if spec.layout == "mlx" => {
                let [w, s, b] = quantize(&v, &shape, group, bits, Storage::F32)?;
                all.insert(name.clone(), w);
                all.insert(format!("{prefix}.scales"), s);
                all.insert(format!("{prefix}.biases"), b);
            }
            _ if spec.layout == "transformers" => {
                let (v, shape) = if kind == Kind::Conv {
                    // (out, k, in) → PyTorch's (out, in, k).
                    let (o, k, i) = (shape[0], shape[1], shape[2]);
                    let mut t = vec![0.0f32; v.len()];
                    for a in 0..o {
                        for b in 0..k {
                            for c in 0..i {
                                t[(a * i + c) * k + b] = v[(a * k + b) * i + c];
                            }
                        }
                    }
                    (t, vec![o, i, k])
                } else {
                    (v, shape)
                };
                all.insert(hf_name(&name), float_raw(&v, shape, Storage::F32));
            }
            _ => {
                all.insert(name, float_raw(&v, shape, Storage::F32));
            }
        }
    }
    let config = if spec.layout == "transformers" {
        json!({"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
            "d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "decoder_layers": 2,
            "decoder_attention_heads": 2, "num_mel_bins": 80, "max_source_positions": 1500,
            "max_target_positions": 448, "vocab_size": 51864, "encoder_ffn_dim": 256,
            "decoder_ffn_dim": 256, "torch_dtype": "float32"})
    } else {
        let mut c = dims();
        if let Some((bits, group)) = spec.quantized {
            c["quantization"] = json!({"group_size": group, "bits": bits});
        }
        c
    };
    let mut sum = Fnv::new();
    let text = serde_json::to_string_pretty(&config).expect("serializable");
    sum.write(text.as_bytes());
    for (name, t) in &all {
        sum.write(name.as_bytes());
        sum.write(&t.bytes);
    }
    std::fs::write(dir.join("config.json"), text).map_err(io)?;
    let file = if spec.layout == "transformers" {
        "model.safetensors"
    } else {
        "weights.safetensors"
    };
    let format = (spec.layout == "transformers").then_some("pt");
    std::fs::write(dir.join(file), safetensors(&all, format)).map_err(io)?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).map_err(io)?;
    Ok(format!("{:016x}", sum.0))
}

/// Rewrites an mlx-layout model in `dir` the way older mlx-whisper folders hold it:
/// `weights.npz` (f32 arrays; f16 stay f16, quantized words stay u32) instead of
/// `weights.safetensors`.
pub fn to_npz(dir: &Path) -> Result<()> {
    use mlx_rs::{Array, Dtype};
    let st = dir.join("weights.safetensors");
    let map = Array::load_safetensors(&st)
        .map_err(|e| InferError::Options(format!("{}: {e}", st.display())))?;
    let mut owned: Vec<(String, &'static str, Vec<i32>, Vec<u8>)> = Vec::new();
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let a = &map[name];
        let (descr, bytes): (&str, Vec<u8>) = match a.dtype() {
            Dtype::Uint32 => (
                "<u4",
                a.as_slice::<u32>()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 => {
                let f = a.as_dtype(Dtype::Float32)?;
                f.eval()?;
                (
                    "<f4",
                    f.as_slice::<f32>()
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                )
            }
            other => {
                return Err(InferError::Options(format!(
                    "{name}: {other:?} has no npz form here"
                )));
            }
        };
        owned.push((name.clone(), descr, a.shape().to_vec(), bytes));
    }
    let arrays: Vec<(&str, &str, &[i32], &[u8])> = owned
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
        .collect();
    crate::npz::write_npz(&dir.join("weights.npz"), &arrays, false)
        .map_err(|e| InferError::Options(format!("cannot write weights.npz: {e}")))?;
    std::fs::remove_file(&st).map_err(|e| InferError::Options(format!("{e}")))?;
    Ok(())
}
