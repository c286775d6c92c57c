//! LLaVA 1.5: a CLIP (or SigLIP) tower, a two-layer GELU projector, and a llama or qwen2 text
//! model whose prompt carries one `<image>` token per image feature —
//! as mlx-vlm's `llava` computes it.
use super::clip::{TowerAct, TowerConfig, VisionTower};
use crate::error::{Result, broken, unsupported};
use crate::layers::{Linear, gelu};
use crate::weights::Weights;
use mlx_rs::{Array, ops};
use serde_json::{Value, json};
use std::path::Path;

/// The `model_type` values this file runs.
pub const MODEL_TYPES: &[&str] = &["llava"];

/// The text architectures a LLaVA checkpoint may wrap here (mlx-vlm's LLaVA text model is a
/// llama, with qwen2's attention biases).
const TEXT_TYPES: &[&str] = &["llama", "qwen2"];

/// mlx-vlm's `llava.TextConfig` defaults (Vicuna-7B's, which llava-hf configs leave out).
fn text_defaults() -> Value {
    json!({
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "rms_norm_eps": 1e-6,
        "vocab_size": 32000,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": false,
    })
}

/// The text model's config.json, as mlx-vlm reads it from a LLaVA config: `text_config` over
/// the defaults, the head size from hidden / heads, the root's quantization and end tokens.
pub fn text_config(path: &Path, root: &Value) -> Result<Value> {
    let given = root
        .get("text_config")
        .and_then(Value::as_object)
        .ok_or_else(|| broken(path, "a llava config without `text_config`"))?;
    let t = merge_text_config(path, root, text_defaults(), given, &json!({}))?;
    let mt = t["model_type"].as_str().unwrap_or("");
    if !TEXT_TYPES.contains(&mt) {
        return Err(unsupported(
            path,
            format!(
                "a llava model over `{mt}` text is not supported ({})",
                TEXT_TYPES.join(", ")
            ),
        ));
    }
    Ok(t)
}

/// A vision model's text config as a text checkpoint's: `given` over `defaults`, then `fixed`;
/// no `head_dim` (mlx-vlm computes hidden / heads); the root's quantization and end tokens,
/// per-layer quantization entries renamed from the checkpoint's `language_model.[model.]…` to
/// the text model's `model.…` / `lm_head`.
pub fn merge_text_config(
    path: &Path,
    root: &Value,
    mut defaults: Value,
    given: &serde_json::Map<String, Value>,
    fixed: &Value,
) -> Result<Value> {
    let obj = defaults
        .as_object_mut()
        .ok_or_else(|| broken(path, "text defaults are not an object"))?;
    for (k, v) in given {
        obj.insert(k.clone(), v.clone());
    }
    if let Some(f) = fixed.as_object() {
        for (k, v) in f {
            obj.insert(k.clone(), v.clone());
        }
    }
    obj.remove("head_dim");
    for k in ["quantization", "quantization_config", "eos_token_id"] {
        if let Some(v) = root.get(k).filter(|v| !v.is_null()) {
            obj.entry(k).or_insert(v.clone());
        }
    }
    for k in ["quantization", "quantization_config"] {
        if let Some(Value::Object(q)) = obj.get_mut(k) {
            let renamed: serde_json::Map<String, Value> = q
                .iter()
                .map(|(name, v)| (text_layer_name(name), v.clone()))
                .collect();
            *q = renamed;
        }
    }
    Ok(defaults)
}

/// A checkpoint's name for a text-model layer as the text model names it:
/// `language_model.model.x` and `language_model.x` → `model.x`, `language_model.lm_head` →
/// `lm_head`; other names as they are.
pub fn text_layer_name(name: &str) -> String {
    match name.strip_prefix("language_model.") {
        Some(t) if t.starts_with("model.") || t == "lm_head" || t.starts_with("lm_head.") => {
            t.to_string()
        }
        Some(t) => format!("model.{t}"),
        None => name.to_string(),
    }
}

/// The vision half of a LLaVA model: tower, projector, and how image tokens are counted.
#[derive(Debug)]
pub struct Llava {
    pub tower: VisionTower,
    linear_1: Linear,
    linear_2: Linear,
    /// The id of `<image>` in the prompt.
    pub image_token: u32,
    /// `default` drops the first position's feature (CLIP's class token); `full` keeps it.
    drop_class: bool,
}

impl Llava {
    /// Builds the vision half from the root config and the checkpoint's `vision_tower.*` and
    /// `multi_modal_projector.*` tensors (in `w`).
    pub fn build(path: &Path, root: &Value, text_hidden: usize, w: &mut Weights) -> Result<Llava> {
        let vc = root.get("vision_config").cloned().unwrap_or(json!({}));
        let tower_cfg = TowerConfig::from_json(path, &vc)?;
        let layer = match root.get("vision_feature_layer") {
            None => -2,
            Some(v) => v.as_i64().ok_or_else(|| {
                unsupported(
                    path,
                    format!("`vision_feature_layer` {v} is not supported (one layer index)"),
                )
            })?,
        };
        let n = tower_cfg.num_layers as i64;
        // hidden_states[layer]: index 0 is the embeddings, index i the output of layer i.
        let keep = if layer < 0 { n + 1 + layer } else { layer };
        if !(0..=n).contains(&keep) {
            return Err(broken(
                path,
                format!("`vision_feature_layer` {layer} is outside the tower's {n} layers"),
            ));
        }
        let drop_class = match root
            .get("vision_feature_select_strategy")
            .and_then(Value::as_str)
        {
            None | Some("default") => true,
            Some("full") => false,
            Some(other) => {
                return Err(unsupported(
                    path,
                    format!("`vision_feature_select_strategy` {other} is not supported"),
                ));
            }
        };
        let image_token = match root.get("image_token_index") {
            None => 32000,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| broken(path, "`image_token_index` is not a token id"))?
                as u32,
        };
        // mlx-vlm's llava tower uses quick_gelu whichever tower it is.
        let tower = VisionTower::build(
            w,
            "vision_tower.vision_model",
            &tower_cfg,
            TowerAct::Fast,
            keep as usize,
            false,
        )?;
        let d = tower_cfg.hidden_size;
        Ok(Llava {
            linear_1: w.linear("multi_modal_projector.linear_1", d, text_hidden, true)?,
            linear_2: w.linear(
                "multi_modal_projector.linear_2",
                text_hidden,
                text_hidden,
                true,
            )?,
            tower,
            image_token,
            drop_class,
        })
    }

    /// Image tokens per image in the prompt: the tower's positions, less the first with the
    /// `default` strategy (the class token; with SigLIP, which has none, mlx-vlm and
    /// transformers drop the first patch all the same).
    pub fn tokens_per_image(&self) -> usize {
        self.tower.config.positions() - usize::from(self.drop_class)
    }

    /// The projected features of images `[n, H, W, 3]`: `[n, tokens_per_image, text hidden]`.
    pub fn image_features(&self, pixels: &Array) -> Result<Array> {
        let mut h = self.tower.forward(pixels)?;
        if self.drop_class {
            use mlx_rs::ops::indexing::IndexOp;
            h = h.index((.., 1.., ..));
        }
        let x = gelu(&self.linear_1.forward(&h)?)?;
        self.linear_2.forward(&x)
    }
}

/// Puts image features `[n, tokens, hidden]` in place of the image tokens' embeddings
/// `[1, L, hidden]`, in order; the prompt must hold exactly `n × tokens` image tokens.
pub fn merge_features(
    embeddings: &Array,
    ids: &[u32],
    image_token: u32,
    features: &Array,
) -> Result<Array> {
    let d = *embeddings.shape().last().expect("3-D embeddings");
    let feats = features.reshape(&[-1, d])?.as_dtype(embeddings.dtype())?;
    let count = feats.shape()[0] as usize;
    let at: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == image_token)
        .map(|(i, _)| i)
        .collect();
    if at.len() != count {
        return Err(crate::error::InferError::Options(format!(
            "the prompt has {} image tokens for {count} image features",
            at.len()
        )));
    }
    // One gather over [text embeddings; image features]: position i takes row i, or the
    // next image feature where the prompt has an image token.
    let l = ids.len();
    let mut index = Vec::with_capacity(l);
    let mut next = 0;
    for (i, &t) in ids.iter().enumerate() {
        if t == image_token {
            index.push((l + next) as i32);
            next += 1;
        } else {
            index.push(i as i32);
        }
    }
    let rows = ops::concatenate(&[embeddings.reshape(&[-1, d])?, feats], 0)?;
    let idx = Array::from_slice(&index, &[l as i32]);
    Ok(rows.take_axis(&idx, 0)?.reshape(&[1, l as i32, d])?)
}
