//! Idefics3 and SmolVLM: a SigLIP tower (tanh GELU, bucketed positions) on every tile of a
//! picture, a pixel-shuffle connector that folds `scale_factor²` neighbouring patches into one
//! token, and a llama text model — as mlx-vlm's `idefics3` (which `smolvlm` subclasses)
//! computes them.
use super::clip::{TowerAct, TowerConfig, TowerKind, VisionTower};
use crate::error::{Result, broken};
use crate::layers::Linear;
use crate::weights::Weights;
use mlx_rs::Array;
use serde_json::{Value, json};
use std::path::Path;

/// The `model_type` values this file runs.
pub const MODEL_TYPES: &[&str] = &["idefics3", "smolvlm"];

/// The vision tower names these checkpoints give their SigLIP.
pub const TOWER_TYPES: &[&str] = &[
    "siglip_vision_model",
    "idefics3",
    "idefics3_vision",
    "smolvlm_vision",
];

/// The text model's config.json, as mlx-vlm reads it: `text_config` over its defaults (SmolVLM's
/// config class fills a missing size; rope base 1e6), the head size from hidden / heads, a head
/// of its own, the root's quantization and end tokens.
pub fn text_config(path: &Path, root: &Value) -> Result<Value> {
    let given = root
        .get("text_config")
        .and_then(Value::as_object)
        .ok_or_else(|| broken(path, "an idefics3 config without `text_config`"))?;
    let mut defaults = json!({"rope_theta": 1_000_000.0, "vocab_size": 49152,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 4096});
    if root["model_type"] == "smolvlm" {
        let hidden = given
            .get("hidden_size")
            .and_then(Value::as_u64)
            .unwrap_or(4096);
        let heads = match given.get("head_dim").and_then(Value::as_u64) {
            Some(h) if h > 0 => hidden / h,
            _ => 32,
        };
        for (k, v) in [
            ("hidden_size", json!(hidden)),
            ("intermediate_size", json!(11008)),
            ("num_hidden_layers", json!(32)),
            ("num_attention_heads", json!(heads)),
        ] {
            defaults[k] = v;
        }
    }
    // The head size is hidden / heads; mlx-vlm's idefics3 text model has its own `lm_head`.
    let fixed = json!({"model_type": "llama", "tie_word_embeddings": false});
    super::llava::merge_text_config(path, root, defaults, given, &fixed)
}

/// `vision_config` with the sizes mlx-vlm's config classes fill in when a checkpoint leaves
/// them out (SmolVLM's from the hidden size; Idefics3's fixed), so real exports load.
fn vision_config(path: &Path, root: &Value) -> Result<Value> {
    let mut v = root.get("vision_config").cloned().unwrap_or(json!({}));
    let Some(obj) = v.as_object_mut() else {
        return Err(broken(path, "`vision_config` is not an object"));
    };
    let get = |o: &serde_json::Map<String, Value>, k: &str| o.get(k).and_then(Value::as_u64);
    if root["model_type"] == "smolvlm" {
        let hidden = get(obj, "hidden_size").unwrap_or(1152);
        let defaults = [
            ("hidden_size", hidden),
            (
                "num_attention_heads",
                if hidden % 64 == 0 { hidden / 64 } else { 16 },
            ),
            ("num_hidden_layers", if hidden <= 768 { 12 } else { 27 }),
            (
                "intermediate_size",
                match hidden {
                    768 => 3072,
                    1152 => 4304,
                    h => 4 * h,
                },
            ),
            ("image_size", 384),
            ("patch_size", 14),
        ];
        for (k, d) in defaults {
            obj.entry(k).or_insert(json!(d));
        }
    } else {
        for k in ["hidden_size", "num_attention_heads", "patch_size"] {
            if get(obj, k).is_none() {
                return Err(broken(path, format!("`vision_config.{k}` is missing")));
            }
        }
        for (k, d) in [
            ("num_hidden_layers", 12),
            ("intermediate_size", 3072),
            ("image_size", 224),
        ] {
            obj.entry(k).or_insert(json!(d));
        }
    }
    Ok(v)
}

/// Position ids of a full tile's `n × n` patches as mlx-vlm computes them: each row and column
/// index bucketed against `arange(1/n, 1, 1/n)` in f32, whose rounding skips or repeats an index
/// for some `n` (27: …, 13, 15, …).
pub fn bucket_positions(n: usize) -> Vec<i32> {
    let step64 = 1.0 / n as f64;
    let count = ((1.0 - step64) / step64).ceil().max(0.0) as usize;
    let step = step64 as f32;
    let mut bounds = Vec::with_capacity(count);
    let mut b = step;
    for _ in 0..count {
        bounds.push(b);
        b += step;
    }
    let bucket = |i: usize| -> i32 {
        let frac = (i as f32 / n as f32).clamp(0.0, 1.0 - 1e-6);
        bounds.iter().filter(|&&x| frac >= x).count() as i32
    };
    let axis: Vec<i32> = (0..n).map(bucket).collect();
    let mut ids = Vec::with_capacity(n * n);
    for &r in &axis {
        for &c in &axis {
            ids.push(r * n as i32 + c);
        }
    }
    ids
}

/// The vision half of an Idefics3 / SmolVLM model.
#[derive(Debug)]
pub struct Idefics3 {
    pub tower: VisionTower,
    proj: Linear,
    pub scale_factor: usize,
    pub image_token: u32,
    text_hidden: usize,
}

impl Idefics3 {
    pub fn build(
        path: &Path,
        root: &Value,
        text_hidden: usize,
        w: &mut Weights,
    ) -> Result<Idefics3> {
        let vc = vision_config(path, root)?;
        let mut tower_cfg = TowerConfig::from_json_with(path, &vc, TOWER_TYPES, 1e-6)?;
        tower_cfg.kind = TowerKind::Siglip;
        let scale_factor = match root.get("scale_factor") {
            None => 2,
            Some(v) => v
                .as_u64()
                .filter(|&s| s > 0)
                .ok_or_else(|| broken(path, "`scale_factor` is not a positive whole number"))?
                as usize,
        };
        let grid = tower_cfg.grid();
        if !grid.is_multiple_of(scale_factor) {
            return Err(broken(
                path,
                format!("{grid} patches per side do not fold by `scale_factor` {scale_factor}"),
            ));
        }
        // mlx-vlm: `image_token_index` when set, else `image_token_id`.
        let image_token = match root
            .get("image_token_index")
            .filter(|v| !v.is_null())
            .or(root.get("image_token_id"))
        {
            None => 49153,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| broken(path, "`image_token_id` is not a token id"))?
                as u32,
        };
        let layers = tower_cfg.num_layers;
        let mut tower =
            VisionTower::build(w, "vision_model", &tower_cfg, TowerAct::Tanh, layers, true)?;
        tower.set_position_ids(bucket_positions(grid));
        let d = tower_cfg.hidden_size * scale_factor * scale_factor;
        Ok(Idefics3 {
            proj: w.linear("connector.modality_projection.proj", d, text_hidden, false)?,
            tower,
            scale_factor,
            image_token,
            text_hidden,
        })
    }

    /// Image tokens per tile: the tower's patches folded by `scale_factor²`.
    pub fn tokens_per_tile(&self) -> usize {
        let g = self.tower.config.grid() / self.scale_factor;
        g * g
    }

    /// The features of tiles `[n, T, T, 3]`: `[n, tokens_per_tile, text hidden]`.
    pub fn image_features(&self, tiles: &Array) -> Result<Array> {
        let h = self.tower.forward(tiles)?;
        let s = h.shape();
        let (n, seq, d) = (s[0], s[1], s[2]);
        let side = self.tower.config.grid() as i32;
        debug_assert_eq!(side * side, seq);
        let sf = self.scale_factor as i32;
        // The pixel shuffle, in mlx-vlm's reshape/transpose order.
        let x = h.reshape(&[n, side, side / sf, d * sf])?;
        let x = x.transpose_axes(&[0, 2, 1, 3])?;
        let x = x.reshape(&[n, side / sf, side / sf, d * sf * sf])?;
        let x = x.transpose_axes(&[0, 2, 1, 3])?;
        let x = x.reshape(&[n, (side / sf) * (side / sf), d * sf * sf])?;
        let y = self.proj.forward(&x)?;
        Ok(y.reshape(&[n, -1, self.text_hidden as i32])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_bucketed_as_mlx_vlm_buckets_them() {
        // Checked against mlx-vlm 0.7.6 on mlx 0.32.2: identity for 32, skewed for 6 and 27.
        let axis = |n: usize| -> Vec<i32> { bucket_positions(n)[..n].to_vec() };
        assert_eq!(axis(32), (0..32).collect::<Vec<i32>>());
        assert_eq!(axis(6), vec![0, 1, 2, 3, 4, 4]);
        let a27 = axis(27);
        assert_eq!(&a27[3..7], &[3, 4, 4, 5]);
        assert_eq!(&a27[13..16], &[12, 13, 15]);
        let p = bucket_positions(6);
        assert_eq!(p[6], 6, "row 1 starts at 1 × n");
        assert_eq!(p[35], 4 * 6 + 4);
    }
}
