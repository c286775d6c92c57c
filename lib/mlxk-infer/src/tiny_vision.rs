//! Tiny random vision-language models for the parity tests: LLaVA checkpoints in the Hugging
//! Face layout (a 64-wide llama over the tiny byte-level tokenizer with an `<image>` token, a
//! 32-wide CLIP or SigLIP tower on 56×56 pictures), written deterministically with the
//! processor files mlx-vlm needs. `tests/reference/vlm_goldens.py` runs mlx-vlm on the same
//! folders; a checksum over everything written catches a drifted generator.
use crate::error::{InferError, Result};
use crate::tiny::{
    self, CONTEXT, Fnv, Kind, Raw, Rng, Storage, VOCAB, float_raw, quantize, safetensors,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The id of `<image>` in the tiny tokenizer (one of its reserved specials).
pub const IMAGE_TOKEN: u32 = 258;

/// One tiny vision-language checkpoint to write.
#[derive(Debug, Clone)]
pub struct TinyVlm {
    pub name: &'static str,
    /// `llava` or `smolvlm`.
    pub arch: &'static str,
    /// `clip_vision_model` or `siglip_vision_model`.
    pub tower: &'static str,
    /// MLX affine quantization (bits, group size) of the text model's layers.
    pub quantized: Option<(i32, i32)>,
    /// The processor's `resample` (Pillow's filter number).
    pub resample: u64,
}

pub fn specs() -> Vec<TinyVlm> {
    vec![
        TinyVlm {
            name: "smolvlm",
            arch: "smolvlm",
            tower: "smolvlm_vision",
            quantized: None,
            resample: 1,
        },
        TinyVlm {
            name: "llava-clip",
            arch: "llava",
            tower: "clip_vision_model",
            quantized: None,
            resample: 3,
        },
        TinyVlm {
            name: "llava-siglip",
            arch: "llava",
            tower: "siglip_vision_model",
            quantized: None,
            resample: 2,
        },
        TinyVlm {
            name: "qwen2-vl",
            arch: "qwen2_vl",
            tower: "qwen2_vl",
            quantized: None,
            resample: 3,
        },
        TinyVlm {
            name: "qwen2.5-vl",
            arch: "qwen2_5_vl",
            tower: "qwen2_5_vl",
            quantized: None,
            resample: 3,
        },
        TinyVlm {
            name: "llava-q4",
            arch: "llava",
            tower: "clip_vision_model",
            quantized: Some((4, 32)),
            resample: 3,
        },
    ]
}

pub fn spec(name: &str) -> Option<TinyVlm> {
    specs().into_iter().find(|s| s.name == name)
}

/// LLaVA 1.5's chat template without the `{% generation %}` tags: each user turn's images,
/// then its text.
pub const LLAVA_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/// The text model's config (a llama as the tiny text models are, with its own head).
fn text_config() -> Value {
    json!({
        "model_type": "llama",
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
        "tie_word_embeddings": false,
        "bos_token_id": tiny::BOS,
        "eos_token_id": tiny::EOS,
    })
}

fn vision_config(tower: &str) -> Value {
    json!({
        "model_type": tower,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "image_size": 56,
        "patch_size": 14,
        "projection_dim": 32,
        "num_channels": 3,
        "layer_norm_eps": 1e-5,
    })
}

/// SmolVLM's chat template: `<|im_start|>`, `User:` with the pictures first, `Assistant:`.
pub const SMOLVLM_TEMPLATE: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/// The tiny SmolVLM's specials, in place of the tiny tokenizer's reserved ids 258….
const SMOLVLM_SPECIALS: &[&str] = &[
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    "<|im_start|>",
    "<row_1_col_1>",
    "<row_1_col_2>",
    "<row_2_col_1>",
    "<row_2_col_2>",
];
/// `<end_of_utterance>`: SmolVLM's end of an answer.
const END_OF_UTTERANCE: u32 = 261;

/// The tiny SmolVLM: 48 px tiles of 8 px patches (6 × 6, whose bucketed positions repeat one),
/// folded 2 × 2 into 9 tokens; pictures resized to a 96 px longest edge, so 1 to 4 tiles and
/// the global view.
fn smolvlm_config() -> Value {
    let mut text = text_config();
    text["eos_token_id"] = json!(END_OF_UTTERANCE);
    text["bos_token_id"] = json!(262);
    // Room for two tiled pictures in one prompt.
    text["max_position_embeddings"] = json!(512);
    json!({
        "model_type": "smolvlm",
        "architectures": ["SmolVLMForConditionalGeneration"],
        "image_token_id": IMAGE_TOKEN,
        "scale_factor": 2,
        "text_config": text,
        "vision_config": {
            "model_type": "smolvlm_vision",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 48,
            "patch_size": 8,
            "num_channels": 3,
            "layer_norm_eps": 1e-6,
        },
        "eos_token_id": END_OF_UTTERANCE,
        "tie_word_embeddings": false,
    })
}

fn smolvlm_tensors(v: &Value, text_hidden: usize, scale: usize) -> Vec<(String, Vec<usize>, Kind)> {
    let n = |k: &str| v[k].as_u64().expect("tiny vision config") as usize;
    let (d, f, p) = (n("hidden_size"), n("intermediate_size"), n("patch_size"));
    let grid = n("image_size") / p;
    let pre = "model.vision_model";
    let mut out = vec![
        (
            format!("{pre}.embeddings.patch_embedding.weight"),
            vec![d, 3, p, p],
            Kind::Matrix,
        ),
        (
            format!("{pre}.embeddings.patch_embedding.bias"),
            vec![d],
            Kind::Bias,
        ),
        (
            format!("{pre}.embeddings.position_embedding.weight"),
            vec![grid * grid, d],
            Kind::Embedding,
        ),
    ];
    out.extend(encoder_tensors(pre, n("num_hidden_layers"), d, f));
    out.push((
        "model.connector.modality_projection.proj.weight".into(),
        vec![text_hidden, d * scale * scale],
        Kind::Matrix,
    ));
    out
}

/// Qwen2-VL's chat template (its `chat_template.json`): a default system turn, each picture
/// as `<|vision_start|><|image_pad|><|vision_end|>` where its part stands.
pub const QWEN2_VL_TEMPLATE: &str = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The tiny Qwen2-VL's specials, in place of the tiny tokenizer's reserved ids 258….
const QWEN2_VL_SPECIALS: &[&str] = &[
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|im_start|>",
    "<|im_end|>",
];
/// `<|im_end|>`: Qwen's end of a turn.
const IM_END: u32 = 263;

/// The tiny Qwen2-VL: the text fields at the root as on the Hub, M-RoPE sections 2 + 3 + 3 of a
/// 16-wide head's 8 frequencies; a 2-layer tower of 8 px patches over two frames, merged 2 × 2,
/// pictures resized to between 1024 and 6400 pixels (8 to 25 tokens). The tiny Qwen2.5-VL
/// (`v25`) has a 3-layer RMS-norm SwiGLU tower whose middle block attends over whole pictures
/// and the others within windows of 2 × 2 merged tokens, and tied embeddings.
fn qwen2_vl_config(v25: bool) -> Value {
    let vision = if v25 {
        json!({
            "model_type": "qwen2_5_vl",
            "depth": 3,
            "hidden_size": 32,
            "out_hidden_size": 64,
            "intermediate_size": 64,
            "num_heads": 4,
            "in_channels": 3,
            "patch_size": 8,
            "spatial_patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 32,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        })
    } else {
        json!({
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 4,
            "mlp_ratio": 2,
            "in_channels": 3,
            "patch_size": 8,
            "spatial_patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        })
    };
    json!({
        "model_type": if v25 { "qwen2_5_vl" } else { "qwen2_vl" },
        "architectures": [if v25 { "Qwen2_5_VLForConditionalGeneration" } else { "Qwen2VLForConditionalGeneration" }],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": VOCAB,
        "max_position_embeddings": 512,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": v25,
        "bos_token_id": tiny::BOS,
        "eos_token_id": IM_END,
        "image_token_id": IMAGE_TOKEN,
        "video_token_id": IMAGE_TOKEN + 1,
        "vision_start_token_id": IMAGE_TOKEN + 2,
        "vision_end_token_id": IMAGE_TOKEN + 3,
        "vision_config": vision,
    })
}

/// The tiny Qwen2-VL's tensors in Hugging Face's names (`model.…`, `lm_head`, `visual.…`).
fn qwen2_vl_tensors(c: &Value) -> Vec<(String, Vec<usize>, Kind)> {
    let mut text = c.clone();
    text["model_type"] = json!("qwen2");
    text["head_dim"] = json!(16);
    let mut out = tiny::tensors(&text);
    let v = &c["vision_config"];
    let n = |k: &str| v[k].as_u64().expect("tiny vision config") as usize;
    let v25 = c["model_type"] == "qwen2_5_vl";
    let (d, out_dim, f) = if v25 {
        (
            n("hidden_size"),
            n("out_hidden_size"),
            n("intermediate_size"),
        )
    } else {
        (
            n("embed_dim"),
            n("hidden_size"),
            n("embed_dim") * n("mlp_ratio"),
        )
    };
    let (p, t) = (n("patch_size"), n("temporal_patch_size"));
    let merged = d * 4;
    out.push((
        "visual.patch_embed.proj.weight".into(),
        // PyTorch's Conv3d layout.
        vec![d, 3, t, p, p],
        Kind::Matrix,
    ));
    for i in 0..n("depth") {
        let b = format!("visual.blocks.{i}");
        for ln in ["norm1", "norm2"] {
            out.push((format!("{b}.{ln}.weight"), vec![d], Kind::Norm));
            if !v25 {
                out.push((format!("{b}.{ln}.bias"), vec![d], Kind::Bias));
            }
        }
        let mlp: &[(&str, usize, usize)] = if v25 {
            &[
                ("mlp.gate_proj", f, d),
                ("mlp.up_proj", f, d),
                ("mlp.down_proj", d, f),
            ]
        } else {
            &[("mlp.fc1", f, d), ("mlp.fc2", d, f)]
        };
        for &(name, o, i) in [("attn.qkv", 3 * d, d), ("attn.proj", d, d)]
            .iter()
            .chain(mlp)
        {
            out.push((format!("{b}.{name}.weight"), vec![o, i], Kind::Matrix));
            out.push((format!("{b}.{name}.bias"), vec![o], Kind::Bias));
        }
    }
    out.push(("visual.merger.ln_q.weight".into(), vec![d], Kind::Norm));
    if !v25 {
        out.push(("visual.merger.ln_q.bias".into(), vec![d], Kind::Bias));
    }
    for (name, o, i) in [("mlp.0", merged, merged), ("mlp.2", out_dim, merged)] {
        out.push((
            format!("visual.merger.{name}.weight"),
            vec![o, i],
            Kind::Matrix,
        ));
        out.push((format!("visual.merger.{name}.bias"), vec![o], Kind::Bias));
    }
    out
}

/// config.json of `spec`.
pub fn config(spec: &TinyVlm) -> Value {
    if spec.arch == "smolvlm" {
        return smolvlm_config();
    }
    if spec.arch.starts_with("qwen2") {
        return qwen2_vl_config(spec.arch == "qwen2_5_vl");
    }
    let mut c = json!({
        "model_type": "llava",
        "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": IMAGE_TOKEN,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
        "text_config": text_config(),
        "vision_config": vision_config(spec.tower),
        "eos_token_id": tiny::EOS,
    });
    if let Some((bits, group)) = spec.quantized {
        c["quantization"] = json!({"group_size": group, "bits": bits});
        c["vision_config"]["skip_vision"] = json!(true);
    }
    c
}

fn vision_tensors(v: &Value, text_hidden: usize) -> Vec<(String, Vec<usize>, Kind)> {
    let n = |k: &str| v[k].as_u64().expect("tiny vision config") as usize;
    let (d, f, p) = (n("hidden_size"), n("intermediate_size"), n("patch_size"));
    let grid = n("image_size") / p;
    let clip = v["model_type"] == "clip_vision_model";
    let pre = "vision_tower.vision_model";
    let mut out = vec![(
        format!("{pre}.embeddings.patch_embedding.weight"),
        // PyTorch's layout, as Hugging Face checkpoints store it.
        vec![d, 3, p, p],
        Kind::Matrix,
    )];
    if clip {
        out.push((
            format!("{pre}.embeddings.class_embedding"),
            vec![d],
            Kind::Bias,
        ));
        out.push((format!("{pre}.pre_layrnorm.weight"), vec![d], Kind::Norm));
        out.push((format!("{pre}.pre_layrnorm.bias"), vec![d], Kind::Bias));
    } else {
        out.push((
            format!("{pre}.embeddings.patch_embedding.bias"),
            vec![d],
            Kind::Bias,
        ));
    }
    out.push((
        format!("{pre}.embeddings.position_embedding.weight"),
        vec![grid * grid + usize::from(clip), d],
        Kind::Embedding,
    ));
    out.extend(encoder_tensors(pre, n("num_hidden_layers"), d, f));
    let t = text_hidden;
    out.push((
        "multi_modal_projector.linear_1.weight".into(),
        vec![t, d],
        Kind::Matrix,
    ));
    out.push((
        "multi_modal_projector.linear_1.bias".into(),
        vec![t],
        Kind::Bias,
    ));
    out.push((
        "multi_modal_projector.linear_2.weight".into(),
        vec![t, t],
        Kind::Matrix,
    ));
    out.push((
        "multi_modal_projector.linear_2.bias".into(),
        vec![t],
        Kind::Bias,
    ));
    out
}

/// The tensors of a CLIP/SigLIP encoder of `layers` pre-norm layers under `pre`, then its
/// final norm.
fn encoder_tensors(
    pre: &str,
    layers: usize,
    d: usize,
    f: usize,
) -> Vec<(String, Vec<usize>, Kind)> {
    let mut out = Vec::new();
    for i in 0..layers {
        let l = format!("{pre}.encoder.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((
                format!("{l}.self_attn.{proj}.weight"),
                vec![d, d],
                Kind::Matrix,
            ));
            out.push((format!("{l}.self_attn.{proj}.bias"), vec![d], Kind::Bias));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            out.push((format!("{l}.{ln}.weight"), vec![d], Kind::Norm));
            out.push((format!("{l}.{ln}.bias"), vec![d], Kind::Bias));
        }
        out.push((format!("{l}.mlp.fc1.weight"), vec![f, d], Kind::Matrix));
        out.push((format!("{l}.mlp.fc1.bias"), vec![f], Kind::Bias));
        out.push((format!("{l}.mlp.fc2.weight"), vec![d, f], Kind::Matrix));
        out.push((format!("{l}.mlp.fc2.bias"), vec![d], Kind::Bias));
    }
    out.push((format!("{pre}.post_layernorm.weight"), vec![d], Kind::Norm));
    out.push((format!("{pre}.post_layernorm.bias"), vec![d], Kind::Bias));
    out
}

/// Writes `spec` into `dir` (created if missing); returns the checksum of everything written.
pub fn write(spec: &TinyVlm, dir: &Path) -> Result<String> {
    let io = |e: std::io::Error| InferError::Options(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let c = config(spec);
    let mut rng = Rng(0x766c_6d00 ^ (spec.name.len() as u64) << 40);
    for b in spec.name.bytes() {
        rng.0 = rng.0.rotate_left(7) ^ u64::from(b);
    }
    let mut all: BTreeMap<String, Raw> = BTreeMap::new();
    let is_smol = spec.arch == "smolvlm";
    let is_qwen = spec.arch.starts_with("qwen2");
    let text: Vec<_> = if is_qwen {
        qwen2_vl_tensors(&c)
    } else {
        tiny::tensors(&c["text_config"])
            .into_iter()
            .map(|(n, s, k)| match (is_smol, n.strip_prefix("model.")) {
                // Hugging Face's Idefics3 names: model.text_model.…, lm_head.
                (true, Some(rest)) => (format!("model.text_model.{rest}"), s, k),
                (true, None) => (n, s, k),
                (false, _) => (format!("language_model.{n}"), s, k),
            })
            .collect()
    };
    let vision = if is_qwen {
        vec![]
    } else if is_smol {
        smolvlm_tensors(&c["vision_config"], 64, 2)
    } else {
        vision_tensors(&c["vision_config"], 64)
    };
    for (name, shape, kind) in text.into_iter().chain(vision) {
        let matrix_shape = if shape.len() >= 4 {
            vec![shape[0], shape[1..].iter().product()]
        } else {
            shape.clone()
        };
        let v = tiny::values(&mut rng, &matrix_shape, kind, false, 1.0);
        let quantize_it = spec.quantized.is_some()
            && name.starts_with("language_model.")
            && matches!(kind, Kind::Matrix | Kind::Embedding);
        match spec.quantized.filter(|_| quantize_it) {
            Some((bits, group)) => {
                let prefix = name.trim_end_matches(".weight");
                let [w, s, b] = quantize(&v, &shape, group, bits, Storage::F32)?;
                all.insert(name.clone(), w);
                all.insert(format!("{prefix}.scales"), s);
                all.insert(format!("{prefix}.biases"), b);
            }
            None => {
                all.insert(name, float_raw(&v, shape, Storage::F32));
            }
        }
    }
    let mut sum = Fnv::new();
    let config_text = serde_json::to_string_pretty(&c).expect("serializable");
    sum.write(config_text.as_bytes());
    for (name, t) in &all {
        sum.write(name.as_bytes());
        sum.write(t.dtype.as_bytes());
        for d in &t.shape {
            sum.write(&(*d as u64).to_le_bytes());
        }
        sum.write(&t.bytes);
    }
    let put = |file: &str, text: String| std::fs::write(dir.join(file), text).map_err(io);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("serializable");
    put("config.json", config_text)?;
    std::fs::write(dir.join("model.safetensors"), safetensors(&all, Some("pt"))).map_err(io)?;
    let mut tok = tiny::tokenizer_json();
    let smol = spec.arch == "smolvlm";
    let specials: &[&str] = match spec.arch {
        "smolvlm" => SMOLVLM_SPECIALS,
        "qwen2_vl" | "qwen2_5_vl" => QWEN2_VL_SPECIALS,
        _ => &["<image>"],
    };
    for t in tok["added_tokens"].as_array_mut().expect("a list") {
        let id = t["id"].as_u64().expect("an id") as u32;
        if let Some(name) = id
            .checked_sub(IMAGE_TOKEN)
            .and_then(|i| specials.get(i as usize))
        {
            t["content"] = json!(name);
        }
    }
    put(
        "tokenizer.json",
        serde_json::to_string(&tok).expect("serializable"),
    )?;
    if smol {
        write_smolvlm_processor(dir, &c)?;
        return Ok(format!("{:016x}", sum.0));
    }
    if is_qwen {
        write_qwen2_vl_processor(dir, spec.arch == "qwen2_5_vl")?;
        return Ok(format!("{:016x}", sum.0));
    }
    let tc = json!({"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|eos|>",
        "add_bos_token": false, "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": CONTEXT, "processor_class": "LlavaProcessor"});
    put("tokenizer_config.json", pretty(&tc))?;
    put(
        "chat_template.json",
        pretty(&json!({"chat_template": LLAVA_TEMPLATE})),
    )?;
    let size = c["vision_config"]["image_size"].clone();
    let pre = json!({
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "LlavaProcessor",
        "do_resize": true, "size": {"shortest_edge": size},
        "resample": spec.resample,
        "do_center_crop": true, "crop_size": {"height": size, "width": size},
        "do_rescale": true, "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": crate::vision::processor::CLIP_MEAN,
        "image_std": crate::vision::processor::CLIP_STD,
        "do_convert_rgb": true,
    });
    put("preprocessor_config.json", pretty(&pre))?;
    let additional = usize::from(spec.tower == "clip_vision_model");
    let proc = json!({"processor_class": "LlavaProcessor", "patch_size": 14,
        "vision_feature_select_strategy": "default", "image_token": "<image>",
        "num_additional_image_tokens": additional});
    put("processor_config.json", pretty(&proc))?;
    Ok(format!("{:016x}", sum.0))
}

/// Writes `v` as `dir/file`, pretty-printed.
fn put_json(dir: &Path, file: &str, v: &Value) -> Result<()> {
    std::fs::write(
        dir.join(file),
        serde_json::to_string_pretty(v).expect("serializable"),
    )
    .map_err(|e| InferError::Options(format!("{}: {e}", dir.join(file).display())))
}

/// The tiny SmolVLM's tokenizer settings, chat template and processor files.
fn write_smolvlm_processor(dir: &Path, c: &Value) -> Result<()> {
    let put = |file: &str, v: &Value| put_json(dir, file, v);
    put(
        "tokenizer_config.json",
        &json!({"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>",
            "pad_token": "<|eos|>", "add_bos_token": false,
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONTEXT,
            "processor_class": "SmolVLMProcessor"}),
    )?;
    put(
        "chat_template.json",
        &json!({"chat_template": SMOLVLM_TEMPLATE}),
    )?;
    let tile = c["vision_config"]["image_size"].clone();
    put(
        "preprocessor_config.json",
        &json!({"image_processor_type": "SmolVLMImageProcessor",
            "processor_class": "SmolVLMProcessor",
            "do_convert_rgb": true, "do_resize": true, "size": {"longest_edge": 96},
            "resample": 1, "do_image_splitting": true, "max_image_size": {"longest_edge": tile},
            "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_pad": true}),
    )?;
    put(
        "processor_config.json",
        &json!({"processor_class": "SmolVLMProcessor", "image_seq_len": 9}),
    )?;
    Ok(())
}

/// The tiny Qwen2-VL's tokenizer settings, chat template and processor files.
fn write_qwen2_vl_processor(dir: &Path, v25: bool) -> Result<()> {
    let class = if v25 {
        "Qwen2_5_VLProcessor"
    } else {
        "Qwen2VLProcessor"
    };
    let put = |file: &str, v: &Value| put_json(dir, file, v);
    put(
        "tokenizer_config.json",
        &json!({"eos_token": "<|im_end|>", "pad_token": "<|eos|>", "add_bos_token": false,
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONTEXT,
            "processor_class": class}),
    )?;
    put(
        "chat_template.json",
        &json!({"chat_template": QWEN2_VL_TEMPLATE}),
    )?;
    put(
        "preprocessor_config.json",
        &json!({"image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": class,
            "patch_size": 8, "temporal_patch_size": 2, "merge_size": 2,
            "min_pixels": 1024, "max_pixels": 6400, "resample": 3,
            "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
            "image_mean": crate::vision::processor::CLIP_MEAN,
            "image_std": crate::vision::processor::CLIP_STD,
            "do_convert_rgb": true}),
    )?;
    Ok(())
}

/// A deterministic test picture: `w` × `h` RGB with smooth gradients and some noise, so that
/// resampling filters differ.
pub fn picture(seed: u64, w: usize, h: usize) -> crate::vision::image::Rgb8 {
    let mut rng = Rng(seed);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let base = (x * (3 + c) * 255 / w.max(1) + y * (5 - c) * 255 / h.max(1)) / 4;
                let noise = (rng.unit() * 40.0) as i64;
                data.push((base as i64 + noise).clamp(0, 255) as u8);
            }
        }
    }
    crate::vision::image::Rgb8::new(w, h, data)
}

/// The fixture pictures: (name, seed, width, height) — square, wide, tall, larger and smaller
/// than the tower's 56×56, so the processor both shrinks and enlarges.
pub const PICTURES: &[(&str, u64, usize, usize)] = &[
    ("square", 1, 56, 56),
    ("wide", 2, 96, 40),
    ("tall", 3, 33, 71),
    ("large", 4, 241, 180),
    // 60×300 → 56×280: the height shrinks far more than the width, so Pillow 13 filters
    // vertically first.
    ("narrow", 5, 60, 300),
];

/// The prompt of every image case, and how many tokens each decodes.
pub const PROMPT: &str = "Describe the picture.";
pub const MAX_TOKENS: usize = 12;

/// Writes `img` as an 8-bit RGB PNG.
pub fn write_png(img: &crate::vision::image::Rgb8, path: &Path) -> Result<()> {
    image::save_buffer_with_format(
        path,
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| InferError::Options(format!("{}: {e}", path.display())))
}
