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

/// The text model's config.json, as mlx-vlm reads it: `text_config` with its defaults (rope
/// base 1e6), the head size from hidden / heads, a head of its own, the root's quantization
/// and end tokens.
pub fn text_config(path: &Path, root: &Value) -> Result<Value> {
    let mut t = json!({"model_type": "llama", "rope_theta": 1_000_000.0, "vocab_size": 49152,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 8192});
    let given = root
        .get("text_config")
        .and_then(Value::as_object)
        .ok_or_else(|| broken(path, "an idefics3 config without `text_config`"))?;
    let obj = t.as_object_mut().expect("an object");
    for (k, v) in given {
        obj.insert(k.clone(), v.clone());
    }
    obj.remove("head_dim");
    // mlx-vlm's idefics3 text model always has its own `lm_head`.
    obj.insert("tie_word_embeddings".into(), json!(false));
    obj.insert("model_type".into(), json!("llama"));
    for k in ["quantization", "quantization_config", "eos_token_id"] {
        if let Some(v) = root.get(k).filter(|v| !v.is_null()) {
            obj.entry(k).or_insert(v.clone());
        }
    }
    Ok(t)
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
        let vc = root.get("vision_config").cloned().unwrap_or(json!({}));
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
        let image_token = match root.get("image_token_id").or(root.get("image_token_index")) {
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
