//! Tiny random models, one per architecture and quirk, written deterministically as real
//! checkpoint folders (config.json, safetensors — single or sharded, f32/bf16 or MLX-quantized —
//! and a byte-level tokenizer). The parity tests write them, run them and compare with the
//! greedy tokens mlx-lm produced on the same folders (`tests/reference/tiny_goldens.py`); the
//! `tiny_models` example writes them for that script. A checksum over everything written
//! catches a generator that drifted from the one the goldens were made with.
use crate::config::{QuantSpec, Quantization};
use crate::error::{InferError, Result};
use mlx_rs::{Array, ops};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Byte tokens 0..256, then the specials.
pub const VOCAB: usize = 272;
pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
/// Positions every tiny model declares (`max_position_embeddings`).
pub const CONTEXT: usize = 128;

/// How the float tensors are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    Bf16,
}

/// One tiny model: its name, config.json, storage and shard count.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub name: &'static str,
    pub config: Value,
    pub storage: Storage,
    pub shards: usize,
    /// Multiplies the weight matrices' scale. Some architectures' random blocks are too weak
    /// against their (scaled) embeddings and decode one token over and over, which tests
    /// little; a larger gain makes greedy output vary.
    pub gain: f32,
}

impl TinySpec {
    fn with_gain(self, gain: f32) -> TinySpec {
        TinySpec { gain, ..self }
    }
}

fn base(model_type: &str, extra: Value) -> Value {
    let mut c = json!({
        "model_type": model_type,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rope_theta": 10000.0,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
    });
    let (Value::Object(c_obj), Value::Object(e)) = (&mut c, extra) else {
        unreachable!("both are objects")
    };
    for (k, v) in e {
        c_obj.insert(k, v);
    }
    c
}

/// Every tiny model the parity tests cover.
pub fn specs() -> Vec<TinySpec> {
    let s = |name, config, storage, shards| TinySpec {
        name,
        config,
        storage,
        shards,
        gain: 1.0,
    };
    use Storage::*;
    vec![
        s(
            "llama-gqa1",
            base(
                "llama",
                json!({"num_key_value_heads": 1, "tie_word_embeddings": false}),
            ),
            F32,
            1,
        ),
        s(
            "llama3-rope-tied-bf16",
            base(
                "llama",
                json!({"tie_word_embeddings": true, "rope_theta": 500000.0, "rope_scaling": {
                    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
            ),
            Bf16,
            1,
        ),
        s(
            "llama-biases-sharded",
            base(
                "llama",
                json!({"attention_bias": true, "mlp_bias": true, "tie_word_embeddings": false,
                       "rope_scaling": {"type": "linear", "factor": 2.0}}),
            ),
            F32,
            2,
        )
        .with_gain(2.0),
        s(
            "mistral-sliding",
            base(
                "mistral",
                json!({"tie_word_embeddings": false, "sliding_window": 8,
                       "layer_types": ["sliding_attention", "full_attention"]}),
            ),
            F32,
            1,
        ),
        s(
            "qwen2-qkv-bias",
            base(
                "qwen2",
                json!({"tie_word_embeddings": true, "rope_theta": 1000000.0}),
            ),
            F32,
            1,
        ),
        s(
            "qwen3-qk-norm",
            base(
                "qwen3",
                json!({"head_dim": 32, "tie_word_embeddings": false, "rope_theta": 1000000.0}),
            ),
            F32,
            1,
        ),
        s(
            "phi3-fused-partial-rope",
            base(
                "phi3",
                json!({"partial_rotary_factor": 0.5, "tie_word_embeddings": false}),
            ),
            F32,
            1,
        ),
        s(
            "gemma",
            base("gemma", json!({"num_key_value_heads": 1})),
            F32,
            1,
        )
        .with_gain(2.0),
        s(
            "gemma2-softcap",
            base(
                "gemma2",
                json!({"attn_logit_softcapping": 1.0, "final_logit_softcapping": 0.5,
                       "query_pre_attn_scalar": 24.0}),
            ),
            F32,
            1,
        )
        .with_gain(14.0),
        s(
            "gemma3-sliding",
            base(
                "gemma3_text",
                json!({"num_hidden_layers": 4, "sliding_window": 8, "sliding_window_pattern": 2,
                       "query_pre_attn_scalar": 16.0, "rope_theta": 1000000.0,
                       "rope_local_base_freq": 10000.0,
                       "rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
            ),
            F32,
            1,
        )
        .with_gain(4.0),
        s(
            "llama-4bit-g64",
            base(
                "llama",
                json!({"tie_word_embeddings": false,
                       "quantization": {"group_size": 64, "bits": 4}}),
            ),
            F32,
            1,
        ),
        s(
            "qwen3-8bit-g32-mixed",
            base(
                "qwen3",
                json!({"tie_word_embeddings": false, "quantization": {
                    "group_size": 32, "bits": 8,
                    "lm_head": {"group_size": 64, "bits": 4},
                    "model.layers.1.mlp.down_proj": false}}),
            ),
            F32,
            1,
        ),
        s(
            "gemma3-4bit-g32-tied-bf16",
            base(
                "gemma3_text",
                json!({"sliding_window": 8, "sliding_window_pattern": 2,
                       "query_pre_attn_scalar": 16.0,
                       "quantization": {"group_size": 32, "bits": 4}}),
            ),
            Bf16,
            1,
        )
        .with_gain(6.0),
    ]
}

/// The spec named `name`.
pub fn spec(name: &str) -> Option<TinySpec> {
    specs().into_iter().find(|s| s.name == name)
}

/// SplitMix64: a tiny, fully specified generator, so the weights are the same everywhere.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), exactly representable in f32.
    pub(crate) fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// `n` values uniform in [-1, 1) from SplitMix64 seeded with `seed`: deterministic test data
/// for kernels, without an RNG crate.
pub fn unit_values(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.unit()).collect()
}

/// FNV-1a, 64-bit.
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn u(c: &Value, k: &str) -> usize {
    c[k].as_u64()
        .unwrap_or_else(|| panic!("tiny config lacks {k}")) as usize
}

/// The float tensors of `cfg` in Hugging Face naming: (name, shape, kind).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Matrix,
    Bias,
    Norm,
    Embedding,
}

pub(crate) fn tensors(c: &Value) -> Vec<(String, Vec<usize>, Kind)> {
    let mt = c["model_type"].as_str().unwrap_or("");
    let (d, f, v) = (
        u(c, "hidden_size"),
        u(c, "intermediate_size"),
        u(c, "vocab_size"),
    );
    let hd = u(c, "head_dim");
    let (nq, nkv) = (
        u(c, "num_attention_heads") * hd,
        u(c, "num_key_value_heads") * hd,
    );
    let flag = |k: &str| c[k].as_bool().unwrap_or(false);
    let gemma = mt.starts_with("gemma");
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![v, d],
        Kind::Embedding,
    )];
    for i in 0..u(c, "num_hidden_layers") {
        let p = format!("model.layers.{i}");
        let mut m = |name: String, shape: Vec<usize>, kind| out.push((name, shape, kind));
        let qkv_bias = mt == "qwen2" || flag("attention_bias");
        if mt == "phi3" {
            m(
                format!("{p}.self_attn.qkv_proj.weight"),
                vec![nq + 2 * nkv, d],
                Kind::Matrix,
            );
        } else {
            for (n, o) in [("q", nq), ("k", nkv), ("v", nkv)] {
                m(
                    format!("{p}.self_attn.{n}_proj.weight"),
                    vec![o, d],
                    Kind::Matrix,
                );
                if qkv_bias {
                    m(format!("{p}.self_attn.{n}_proj.bias"), vec![o], Kind::Bias);
                }
            }
        }
        m(
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, nq],
            Kind::Matrix,
        );
        if flag("attention_bias") {
            m(format!("{p}.self_attn.o_proj.bias"), vec![d], Kind::Bias);
        }
        if mt == "qwen3" || mt == "gemma3_text" {
            m(format!("{p}.self_attn.q_norm.weight"), vec![hd], Kind::Norm);
            m(format!("{p}.self_attn.k_norm.weight"), vec![hd], Kind::Norm);
        }
        if mt == "phi3" {
            m(
                format!("{p}.mlp.gate_up_proj.weight"),
                vec![2 * f, d],
                Kind::Matrix,
            );
        } else {
            for n in ["gate", "up"] {
                m(format!("{p}.mlp.{n}_proj.weight"), vec![f, d], Kind::Matrix);
                if flag("mlp_bias") {
                    m(format!("{p}.mlp.{n}_proj.bias"), vec![f], Kind::Bias);
                }
            }
        }
        m(
            format!("{p}.mlp.down_proj.weight"),
            vec![d, f],
            Kind::Matrix,
        );
        if flag("mlp_bias") {
            m(format!("{p}.mlp.down_proj.bias"), vec![d], Kind::Bias);
        }
        let mut norms = vec!["input_layernorm", "post_attention_layernorm"];
        if mt == "gemma2" || mt == "gemma3_text" {
            norms.extend(["pre_feedforward_layernorm", "post_feedforward_layernorm"]);
        }
        for n in norms {
            m(format!("{p}.{n}.weight"), vec![d], Kind::Norm);
        }
    }
    out.push(("model.norm.weight".into(), vec![d], Kind::Norm));
    if !gemma && !c["tie_word_embeddings"].as_bool().unwrap_or(true) {
        out.push(("lm_head.weight".into(), vec![v, d], Kind::Matrix));
    }
    out
}

/// Values for one tensor: matrices ~ U(±1.7/√fan_in), norms around 1 (around 0 where the
/// architecture adds 1), biases and embeddings small.
pub(crate) fn values(
    rng: &mut Rng,
    shape: &[usize],
    kind: Kind,
    one_plus: bool,
    gain: f32,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let scale = match kind {
        Kind::Matrix => gain * 1.7 / (shape[1] as f32).sqrt(),
        Kind::Bias => 0.2,
        Kind::Norm => 0.3 * gain,
        // Small, so that the blocks (not the residual embedding) decide a tied head's logits.
        Kind::Embedding => 0.1,
    };
    let offset = if kind == Kind::Norm && !one_plus {
        1.0
    } else {
        0.0
    };
    (0..n).map(|_| offset + scale * rng.unit()).collect()
}

fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    // Round to nearest, ties to even (no NaNs are generated).
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// A tensor ready for a safetensors file.
pub(crate) struct Raw {
    pub(crate) dtype: &'static str,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) fn float_raw(v: &[f32], shape: Vec<usize>, storage: Storage) -> Raw {
    match storage {
        Storage::F32 => Raw {
            dtype: "F32",
            shape,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        },
        Storage::Bf16 => Raw {
            dtype: "BF16",
            shape,
            bytes: v.iter().flat_map(|x| bf16_bits(*x).to_le_bytes()).collect(),
        },
    }
}

fn mlx_err(e: impl std::fmt::Display) -> InferError {
    InferError::Mlx(e.to_string())
}

/// MLX affine quantization of `v` (`[rows, cols]`): packed weight, scales, biases.
pub(crate) fn quantize(
    v: &[f32],
    shape: &[usize],
    group: i32,
    bits: i32,
    storage: Storage,
) -> Result<[Raw; 3]> {
    let a = Array::from_slice(v, &[shape[0] as i32, shape[1] as i32]);
    let (w, s, b) = ops::quantize(&a, group, bits).map_err(mlx_err)?;
    for x in [&w, &s, &b] {
        x.eval().map_err(mlx_err)?;
    }
    let dims = |x: &Array| x.shape().iter().map(|&d| d as usize).collect::<Vec<_>>();
    let packed = Raw {
        dtype: "U32",
        shape: dims(&w),
        bytes: w
            .as_slice::<u32>()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    };
    Ok([
        packed,
        float_raw(s.as_slice::<f32>(), dims(&s), storage),
        float_raw(b.as_slice::<f32>(), dims(&b), storage),
    ])
}

pub(crate) fn safetensors(tensors: &BTreeMap<String, Raw>, format: Option<&str>) -> Vec<u8> {
    let shapes: Vec<Vec<u64>> = tensors
        .values()
        .map(|t| t.shape.iter().map(|&d| d as u64).collect())
        .collect();
    let list: Vec<mlxk::safetensors::TensorData> = tensors
        .iter()
        .zip(&shapes)
        .map(|((name, t), shape)| mlxk::safetensors::TensorData {
            name,
            dtype: t.dtype,
            shape,
            data: &t.bytes,
        })
        .collect();
    mlxk::safetensors::write(&list, format)
}

/// The byte-level tokenizer every tiny model ships: ids 0..256 are the bytes (GPT-2's byte to
/// character map), then `<|bos|>`, `<|eos|>` and reserved specials.
pub(crate) fn tokenizer_json() -> Value {
    let mut chars = Vec::with_capacity(256);
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        chars.push(char::from_u32(c).expect("valid char").to_string());
    }
    let vocab: serde_json::Map<String, Value> = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), json!(i)))
        .collect();
    let mut added = vec![];
    for id in 256..VOCAB {
        let content = match id as u32 {
            BOS => "<|bos|>".to_string(),
            EOS => "<|eos|>".to_string(),
            _ => format!("<|reserved_{id}|>"),
        };
        added.push(
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}),
        );
    }
    let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": bl,
        "post_processor": null, "decoder": bl,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

const CHAT_TEMPLATE: &str = "{% for m in messages %}<|bos|>{{ m.role }}\n{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}";

/// Writes the model of `spec` into `dir` (created if missing); returns the checksum of
/// everything written, as 16 hex digits.
pub fn write(spec: &TinySpec, dir: &Path) -> Result<String> {
    let io = |e: std::io::Error| InferError::Options(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let c = &spec.config;
    let one_plus = c["model_type"]
        .as_str()
        .is_some_and(|m| m.starts_with("gemma"));
    let quant = c.get("quantization").and_then(Quantization::from_json);
    let mut rng = Rng(0x6d6c_786b ^ (spec.name.len() as u64) << 32);
    for b in spec.name.bytes() {
        rng.0 = rng.0.rotate_left(5) ^ b as u64;
    }
    let mut all: BTreeMap<String, Raw> = BTreeMap::new();
    for (name, shape, kind) in tensors(c) {
        let v = values(&mut rng, &shape, kind, one_plus, spec.gain);
        let prefix = name.trim_end_matches(".weight");
        let q = matches!(kind, Kind::Matrix | Kind::Embedding)
            .then(|| quant.as_ref()?.for_layer(prefix))
            .flatten();
        match q {
            Some(QuantSpec { group_size, bits }) => {
                let [w, s, b] = quantize(&v, &shape, group_size, bits, spec.storage)?;
                all.insert(name.clone(), w);
                all.insert(format!("{prefix}.scales"), s);
                all.insert(format!("{prefix}.biases"), b);
            }
            None => {
                all.insert(name, float_raw(&v, shape, spec.storage));
            }
        }
    }
    let mut sum = Fnv::new();
    let config_text = serde_json::to_string_pretty(c).expect("serializable");
    sum.write(config_text.as_bytes());
    for (name, t) in &all {
        sum.write(name.as_bytes());
        sum.write(t.dtype.as_bytes());
        for d in &t.shape {
            sum.write(&(*d as u64).to_le_bytes());
        }
        sum.write(&t.bytes);
    }
    let put = |file: &str, bytes: &[u8]| std::fs::write(dir.join(file), bytes).map_err(io);
    put("config.json", config_text.as_bytes())?;
    if spec.shards <= 1 {
        put("model.safetensors", &safetensors(&all, Some("mlx")))?;
    } else {
        let names: Vec<String> = all.keys().cloned().collect();
        let per = names.len().div_ceil(spec.shards);
        let mut map = serde_json::Map::new();
        let mut rest = all;
        for (k, chunk) in names.chunks(per).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, spec.shards);
            let part: BTreeMap<String, Raw> = chunk
                .iter()
                .map(|n| (n.clone(), rest.remove(n).expect("listed")))
                .collect();
            for n in part.keys() {
                map.insert(n.clone(), json!(file));
            }
            put(&file, &safetensors(&part, Some("mlx")))?;
        }
        let index = json!({"metadata": {}, "weight_map": map});
        put(
            "model.safetensors.index.json",
            serde_json::to_string_pretty(&index)
                .expect("serializable")
                .as_bytes(),
        )?;
    }
    put(
        "tokenizer.json",
        serde_json::to_string(&tokenizer_json())
            .expect("serializable")
            .as_bytes(),
    )?;
    let tc = json!({"bos_token": "<|bos|>", "eos_token": "<|eos|>",
        "add_bos_token": false, "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONTEXT});
    put(
        "tokenizer_config.json",
        serde_json::to_string_pretty(&tc)
            .expect("serializable")
            .as_bytes(),
    )?;
    Ok(format!("{:016x}", sum.0))
}

/// A parity case: greedy decoding from a seeded prompt, prefilled in chunks of `prefill_step`.
pub struct Case {
    pub seed: u64,
    pub prompt_len: usize,
    pub prefill_step: usize,
    pub max_tokens: usize,
}

/// Two cases per model: one prefill longer than the sliding windows, one in uneven chunks.
pub const CASES: &[Case] = &[
    Case {
        seed: 1,
        prompt_len: 30,
        prefill_step: 2048,
        max_tokens: 24,
    },
    Case {
        seed: 2,
        prompt_len: 21,
        prefill_step: 6,
        max_tokens: 24,
    },
];

/// The prompt ids of the parity cases: `n` ids drawn from the byte range, seeded by `seed`.
pub fn prompt_ids(seed: u64, n: usize) -> Vec<u32> {
    let mut r = Rng(seed);
    (0..n).map(|_| (r.next() % 256) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_is_written_deterministically_and_differs_from_the_others() {
        let mut sums = std::collections::BTreeSet::new();
        for s in specs() {
            let a = tempfile::tempdir().unwrap();
            let b = tempfile::tempdir().unwrap();
            let x = write(&s, a.path()).unwrap();
            let y = write(&s, b.path()).unwrap();
            assert_eq!(x, y, "{}", s.name);
            assert!(
                sums.insert(x),
                "{} has the checksum of another spec",
                s.name
            );
            assert!(a.path().join("config.json").is_file());
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80); // tie → even
        assert_eq!(bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82); // tie → even
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
    }

    #[test]
    fn the_tokenizer_round_trips_bytes() {
        let t = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&tokenizer_json()).unwrap())
            .unwrap();
        let text = "héllo\n wörld <|eos|>";
        let enc = t.encode(text, false).unwrap();
        assert_eq!(*enc.get_ids().last().unwrap(), EOS);
        assert_eq!(enc.get_ids().len(), "héllo\n wörld ".len() + 1);
        assert_eq!(t.decode(enc.get_ids(), false).unwrap(), text);
    }
}
