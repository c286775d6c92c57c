//! Qwen2-VL: its own vision transformer (a patch embedding over two frames, 2-D rotary
//! positions, attention within each picture, a 2 × 2 patch merger) and a qwen2 text model
//! whose RoPE is multimodal (M-RoPE: a picture's tokens share a time and spread over its grid)
//! — as mlx-vlm's `qwen2_vl` computes it.
use super::clip;
use super::llava::{merge_text_config, text_layer_name};
use crate::error::{Result, broken, unsupported};
use crate::layers::{LayerNorm, Linear, RopePositions, gelu, gelu_fast};
use crate::weights::Weights;
use mlx_rs::{Array, ops};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The `model_type` values this file runs.
pub const MODEL_TYPES: &[&str] = &["qwen2_vl"];

/// mlx-vlm's `qwen2_vl.TextConfig` defaults.
fn text_defaults() -> Value {
    json!({
        "num_key_value_heads": 8,
        "max_position_embeddings": 40960,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": false,
    })
}

/// The text model's config as a qwen2 checkpoint's: mlx-vlm reads the text fields from the
/// root (a nested `text_config` is overwritten by them), computes the head size from hidden /
/// heads, and takes M-RoPE from `rope_scaling`, which is left to [`mrope_section`] here.
pub fn text_config(path: &Path, root: &Value) -> Result<Value> {
    let mut given = root
        .as_object()
        .cloned()
        .ok_or_else(|| broken(path, "the config is not an object"))?;
    for k in [
        "vision_config",
        "text_config",
        "rope_scaling",
        "rope_parameters",
    ] {
        given.remove(k);
    }
    for k in [
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
    ] {
        if !given.contains_key(k) {
            return Err(broken(path, format!("a qwen2_vl config without `{k}`")));
        }
    }
    merge_text_config(
        path,
        root,
        text_defaults(),
        &given,
        &json!({"model_type": "qwen2"}),
    )
}

/// The frequencies (of `head_dim / 2`) that turn by the time, height and width positions:
/// `rope_scaling.mrope_section` (or `rope_parameters`'), mlx-vlm's default otherwise.
pub fn mrope_section(path: &Path, root: &Value, head_dim: usize) -> Result<[usize; 3]> {
    let given = ["rope_parameters", "rope_scaling"]
        .iter()
        .find_map(|k| root.get(*k).and_then(|v| v.get("mrope_section")));
    if let Some(kind) = root
        .get("rope_scaling")
        .and_then(|v| v.get("type").or_else(|| v.get("rope_type")))
        .and_then(Value::as_str)
        && !["mrope", "default"].contains(&kind)
    {
        return Err(unsupported(
            path,
            format!("qwen2_vl rope_scaling type `{kind}` is not supported (mrope)"),
        ));
    }
    let section = match given {
        None => [24, 20, 20],
        Some(v) => {
            let s: Vec<usize> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as usize)
                        .collect()
                })
                .unwrap_or_default();
            <[usize; 3]>::try_from(s)
                .map_err(|_| broken(path, format!("`mrope_section` {v} is not three numbers")))?
        }
    };
    if section.iter().sum::<usize>() != head_dim / 2 {
        return Err(broken(
            path,
            format!(
                "`mrope_section` {section:?} does not add up to the {} rotary frequencies of {head_dim}-wide heads",
                head_dim / 2
            ),
        ));
    }
    Ok(section)
}

/// A checkpoint's tensors split into the text model's (named as a qwen2 checkpoint names them)
/// and the vision tower's (without their prefix): Hugging Face's `model.…` / `visual.…`,
/// transformers 5's `model.language_model.…` / `model.visual.…`, and mlx-vlm's
/// `language_model.model.…` / `vision_tower.…`.
pub fn split_weights(
    map: HashMap<String, Array>,
) -> (HashMap<String, Array>, HashMap<String, Array>) {
    let mut text = HashMap::new();
    let mut vision = HashMap::new();
    for (k, v) in map {
        if let Some(t) = ["visual.", "model.visual.", "vision_tower."]
            .iter()
            .find_map(|p| k.strip_prefix(p))
        {
            vision.insert(t.to_string(), v);
        } else if let Some(t) = k.strip_prefix("model.language_model.") {
            text.insert(format!("model.{t}"), v);
        } else if k.starts_with("language_model.") {
            text.insert(text_layer_name(&k), v);
        } else {
            text.insert(k, v);
        }
    }
    (text, vision)
}

/// The special tokens the prompt marks pictures with.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub image: u32,
    pub video: u32,
    pub vision_start: u32,
}

/// The vision tower's shape (mlx-vlm's `qwen2_vl.VisionConfig`).
#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub depth: usize,
    pub embed_dim: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub in_channels: usize,
    pub mlp_hidden: usize,
}

impl VisionConfig {
    fn from_json(path: &Path, v: &Value) -> Result<VisionConfig> {
        if let Some(mt) = v.get("model_type").and_then(Value::as_str)
            && mt != "qwen2_vl"
        {
            return Err(unsupported(
                path,
                format!("a qwen2_vl vision tower of model_type `{mt}` is not supported"),
            ));
        }
        let n = |k: &str, default: usize| -> Result<usize> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_u64()
                    .filter(|&x| x > 0)
                    .map(|x| x as usize)
                    .ok_or_else(|| {
                        broken(
                            path,
                            format!("vision_config `{k}` is not a positive whole number"),
                        )
                    }),
            }
        };
        let embed_dim = n("embed_dim", 1280)?;
        let ratio = match v.get("mlp_ratio") {
            None | Some(Value::Null) => 4.0,
            Some(x) => x.as_f64().filter(|r| *r > 0.0).ok_or_else(|| {
                broken(path, "vision_config `mlp_ratio` is not a positive number")
            })?,
        };
        let c = VisionConfig {
            depth: n("depth", 32)?,
            embed_dim,
            hidden_size: n("hidden_size", 1536)?,
            num_heads: n("num_heads", 16)?,
            patch_size: n("patch_size", 14)?,
            temporal_patch_size: n("temporal_patch_size", 2)?,
            merge_size: n("spatial_merge_size", 2)?,
            in_channels: n("in_channels", 3)?,
            mlp_hidden: (embed_dim as f64 * ratio) as usize,
        };
        if !c.embed_dim.is_multiple_of(c.num_heads)
            || !(c.embed_dim / c.num_heads).is_multiple_of(4)
        {
            return Err(broken(
                path,
                format!(
                    "vision_config: {} wide over {} heads does not give heads a multiple of 4 wide",
                    c.embed_dim, c.num_heads
                ),
            ));
        }
        Ok(c)
    }

    /// Values per patch: channels × frames × patch × patch.
    pub fn patch_values(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// The vision half of a Qwen2-VL model.
#[derive(Debug)]
pub struct Qwen2Vl {
    pub config: VisionConfig,
    pub tokens: Tokens,
    /// `[embed, frames, patch, patch, channels]` (MLX's layout).
    patch: Array,
    /// `1 / 10000^(2i/(head/2))`: the 2-D rotary frequencies.
    inv_freq: Array,
    blocks: Vec<Block>,
    ln_q: LayerNorm,
    mlp0: Linear,
    mlp2: Linear,
}

/// A picture's patch grid: frames, rows and columns of patches.
pub type Grid = [usize; 3];

impl Qwen2Vl {
    /// Builds the vision half from the root config and the tower's tensors (`w`, names without
    /// their prefix).
    pub fn build(
        path: &Path,
        root: &Value,
        text_hidden: usize,
        w: &mut Weights,
    ) -> Result<Qwen2Vl> {
        let c = VisionConfig::from_json(path, root.get("vision_config").unwrap_or(&json!({})))?;
        if c.hidden_size != text_hidden {
            return Err(broken(
                path,
                format!(
                    "vision_config hidden_size {} is not the text model's {text_hidden}",
                    c.hidden_size
                ),
            ));
        }
        let id = |k: &str, default: u32| -> Result<u32> {
            match root.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|x| x as u32)
                    .ok_or_else(|| broken(path, format!("`{k}` is not a token id"))),
            }
        };
        let tokens = Tokens {
            image: id("image_token_id", 151655)?,
            video: id("video_token_id", 151656)?,
            vision_start: id("vision_start_token_id", 151652)?,
        };
        let (e, t, p, ch) = (
            c.embed_dim as i32,
            c.temporal_patch_size as i32,
            c.patch_size as i32,
            c.in_channels as i32,
        );
        let name = "patch_embed.proj.weight";
        let raw = w.take(name)?;
        let patch = if raw.shape() == [e, t, p, p, ch] {
            raw
        } else if raw.shape() == [e, ch, t, p, p] {
            raw.transpose_axes(&[0, 2, 3, 4, 1])?
        } else {
            return Err(broken(
                w.path(),
                format!(
                    "`{name}` is {:?}; the config implies [{e}, {ch}, {t}, {p}, {p}]",
                    raw.shape()
                ),
            ));
        };
        let (d, f) = (c.embed_dim, c.mlp_hidden);
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let b = format!("blocks.{i}");
            blocks.push(Block {
                // mlx-vlm fixes these norms' eps at 1e-6 whatever the config says.
                norm1: w.layer_norm(&format!("{b}.norm1"), 1e-6)?,
                norm2: w.layer_norm(&format!("{b}.norm2"), 1e-6)?,
                qkv: w.linear(&format!("{b}.attn.qkv"), d, 3 * d, true)?,
                proj: w.linear(&format!("{b}.attn.proj"), d, d, true)?,
                fc1: w.linear(&format!("{b}.mlp.fc1"), d, f, true)?,
                fc2: w.linear(&format!("{b}.mlp.fc2"), f, d, true)?,
            });
        }
        let merged = d * c.merge_size * c.merge_size;
        let head = c.embed_dim / c.num_heads;
        let inv_freq = ops::divide(
            Array::from_f32(1.0),
            &crate::layers::base_freqs(head / 2, 10_000.0)?,
        )?;
        inv_freq.eval()?;
        w.discard(|k| k.contains("position_ids"));
        Ok(Qwen2Vl {
            tokens,
            patch,
            inv_freq,
            blocks,
            ln_q: w.layer_norm("merger.ln_q", 1e-6)?,
            mlp0: w.linear("merger.mlp.0", merged, merged, true)?,
            mlp2: w.linear("merger.mlp.2", merged, text_hidden, true)?,
            config: c,
        })
    }

    /// Patches merged into one text token.
    pub fn merge_area(&self) -> usize {
        self.config.merge_size * self.config.merge_size
    }

    /// The rotary cosines and sines `[patches, 1, head]` of the pictures' patches, in the
    /// processor's order (2 × 2 merge windows row by row): the first half of a head turns by
    /// the patch's row, the second by its column.
    fn rotary(&self, grids: &[Grid]) -> Result<(Array, Array)> {
        let m = self.config.merge_size;
        let mut pos: Vec<i32> = Vec::new();
        for &[t, h, w] in grids {
            for _ in 0..t {
                for bh in 0..h / m {
                    for bw in 0..w / m {
                        for mh in 0..m {
                            for mw in 0..m {
                                pos.push((bh * m + mh) as i32);
                                pos.push((bw * m + mw) as i32);
                            }
                        }
                    }
                }
            }
        }
        let n = (pos.len() / 2) as i32;
        let f = self.inv_freq.shape()[0];
        // mlx-vlm: outer(arange(max grid), inv_freq), rows taken by position.
        let max = grids.iter().flat_map(|g| [g[1], g[2]]).max().unwrap_or(1) as i32;
        let seq = Array::arange::<_, f32>(0, max, 1)?;
        let table = ops::multiply(&seq.reshape(&[-1, 1])?, &self.inv_freq.reshape(&[1, -1])?)?;
        let idx = Array::from_slice(&pos, &[2 * n]);
        let freqs = table.take_axis(&idx, 0)?.reshape(&[n, 1, 2 * f])?;
        let cos = ops::tile(&ops::cos(&freqs)?, &[1, 1, 2])?;
        let sin = ops::tile(&ops::sin(&freqs)?, &[1, 1, 2])?;
        Ok((cos, sin))
    }

    /// The merged features `[tokens, text hidden]` of pictures whose patches (the processor's
    /// `[patches, channels × frames × patch × patch]`) are `pixels`, `grids` giving each one's
    /// grid.
    pub fn image_features(&self, pixels: &Array, grids: &[Grid]) -> Result<Array> {
        let c = &self.config;
        let patches: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
        if pixels.shape() != [patches as i32, c.patch_values() as i32] {
            return Err(crate::error::InferError::Options(format!(
                "{:?} pixel values for {patches} patches of {} values",
                pixels.shape(),
                c.patch_values()
            )));
        }
        let (t, p) = (c.temporal_patch_size as i32, c.patch_size as i32);
        let x = pixels
            .reshape(&[-1, c.in_channels as i32, t, p, p])?
            .move_axis(1, 4)?;
        let x = ops::conv3d(&x, &self.patch, (t, p, p), None, None, None)?;
        let mut h = x.reshape(&[-1, c.embed_dim as i32])?;
        let (cos, sin) = self.rotary(grids)?;
        // Attention stays within a frame of a picture.
        let mut bounds = Vec::new();
        let mut at = 0;
        for &[t, gh, gw] in grids {
            for _ in 0..t {
                at += (gh * gw) as i32;
                bounds.push(at);
            }
        }
        bounds.pop();
        for b in &self.blocks {
            h = self.block(b, &h, &cos, &sin, &bounds)?;
        }
        let merged = (c.embed_dim * self.merge_area()) as i32;
        let x = self.ln_q.forward(&h)?.reshape(&[-1, merged])?;
        let x = gelu(&self.mlp0.forward(&x)?)?;
        self.mlp2.forward(&x)
    }

    fn block(
        &self,
        b: &Block,
        x: &Array,
        cos: &Array,
        sin: &Array,
        bounds: &[i32],
    ) -> Result<Array> {
        let c = &self.config;
        let n = x.shape()[0];
        let heads = c.num_heads as i32;
        let qkv = b
            .qkv
            .forward(&b.norm1.forward(x)?)?
            .reshape(&[n, 3, heads, -1])?;
        let part = |i: i32| -> Result<Array> {
            use mlx_rs::ops::indexing::IndexOp;
            Ok(qkv.index((.., i, .., ..)))
        };
        let rope = |a: Array| -> Result<Array> {
            let half = a.shape()[2] / 2;
            let s = a.split_at_indices(&[half], -1)?;
            let rot = ops::concatenate(&[&ops::negative(&s[1])?, &s[0]], -1)?;
            Ok(ops::add(
                &ops::multiply(&a, cos)?,
                &ops::multiply(&rot, sin)?,
            )?)
        };
        // [patches, heads, head] → [1, heads, patches, head]
        let arrange =
            |a: Array| -> Result<Array> { Ok(a.transpose_axes(&[1, 0, 2])?.expand_dims(0)?) };
        let q = arrange(rope(part(0)?)?)?;
        let k = arrange(rope(part(1)?)?)?;
        let v = arrange(part(2)?)?;
        let scale = ((c.embed_dim / c.num_heads) as f64).powf(-0.5) as f32;
        let out = if bounds.is_empty() {
            clip::attention(&q, &k, &v, scale)?
        } else {
            let (qs, ks, vs) = (
                q.split_at_indices(bounds, 2)?,
                k.split_at_indices(bounds, 2)?,
                v.split_at_indices(bounds, 2)?,
            );
            let outs = qs
                .iter()
                .zip(&ks)
                .zip(&vs)
                .map(|((q, k), v)| clip::attention(q, k, v, scale))
                .collect::<Result<Vec<_>>>()?;
            ops::concatenate(&outs.iter().collect::<Vec<_>>(), 2)?
        };
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, -1])?;
        let x = ops::add(x, &b.proj.forward(&out)?)?;
        let y = gelu_fast(&b.fc1.forward(&b.norm2.forward(&x)?)?)?;
        Ok(ops::add(&x, &b.fc2.forward(&y)?)?)
    }

    /// The M-RoPE positions of a prompt (mlx-vlm's `get_rope_index`): text runs on from the
    /// last position on all three axes; each picture, where a vision-start token is followed
    /// by its image tokens, takes its merged grid (time, row, column) after the text before
    /// it; `delta` continues the positions after the prompt.
    pub fn positions(&self, ids: &[u32], grids: &[Grid]) -> Result<RopePositions> {
        let m = self.config.merge_size;
        let bad = |msg: String| crate::error::InferError::Options(msg);
        let pictures = ids
            .windows(2)
            .filter(|w| w[0] == self.tokens.vision_start && w[1] == self.tokens.image)
            .count();
        if pictures != grids.len() {
            return Err(bad(format!(
                "the prompt marks {pictures} pictures for {} given",
                grids.len()
            )));
        }
        let mut out: Vec<[i64; 3]> = Vec::with_capacity(ids.len());
        let next = |out: &Vec<[i64; 3]>| out.iter().flatten().max().map_or(0, |x| x + 1);
        let mut st = 0;
        for &[t, h, w] in grids {
            let ed = ids[st..]
                .iter()
                .position(|&x| x == self.tokens.image)
                .map(|i| st + i)
                .ok_or_else(|| bad("a picture's tokens are missing from the prompt".into()))?;
            let start = next(&out);
            for i in 0..(ed - st) as i64 {
                out.push([start + i; 3]);
            }
            let base = start + (ed - st) as i64;
            let (gh, gw) = (h / m, w / m);
            for ti in 0..t {
                for hi in 0..gh {
                    for wi in 0..gw {
                        out.push([base + ti as i64, base + hi as i64, base + wi as i64]);
                    }
                }
            }
            st = ed + t * gh * gw;
            if st > ids.len() || ids[ed..st].iter().any(|&x| x != self.tokens.image) {
                return Err(bad(format!(
                    "a picture of {} tokens does not fill its place in the prompt",
                    t * gh * gw
                )));
            }
        }
        if st < ids.len() {
            let start = next(&out);
            for i in 0..(ids.len() - st) as i64 {
                out.push([start + i; 3]);
            }
        }
        let delta = next(&out) - ids.len() as i64;
        Ok(RopePositions { ids: out, delta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tower_stub() -> Qwen2Vl {
        let c = VisionConfig {
            depth: 0,
            embed_dim: 16,
            hidden_size: 8,
            num_heads: 2,
            patch_size: 2,
            temporal_patch_size: 2,
            merge_size: 2,
            in_channels: 3,
            mlp_hidden: 32,
        };
        let ln = || LayerNorm {
            weight: Array::from_slice(&[1f32], &[1]),
            bias: Array::from_slice(&[0f32], &[1]),
            eps: 1e-6,
        };
        let lin = || Linear::Dense {
            weight: Array::from_slice(&[1f32], &[1, 1]),
            bias: None,
        };
        Qwen2Vl {
            config: c,
            tokens: Tokens {
                image: 9,
                video: 8,
                vision_start: 7,
            },
            patch: Array::from_slice(&[0f32], &[1]),
            inv_freq: Array::from_slice(&[1f32], &[1]),
            blocks: vec![],
            ln_q: ln(),
            mlp0: lin(),
            mlp2: lin(),
        }
    }

    /// `get_rope_index` of two pictures (2 × 3 and 1 × 2 merged grids) between text.
    #[test]
    fn positions_follow_mlx_vlms_rope_index() {
        let q = tower_stub();
        let mut ids = vec![1, 2, 7];
        ids.extend([9; 6]);
        ids.extend([5, 3, 7, 9, 9, 4]);
        let p = q.positions(&ids, &[[1, 4, 6], [1, 2, 4]]).unwrap();
        let want: Vec<[i64; 3]> = vec![
            [0, 0, 0],
            [1, 1, 1],
            [2, 2, 2],
            [3, 3, 3],
            [3, 3, 4],
            [3, 3, 5],
            [3, 4, 3],
            [3, 4, 4],
            [3, 4, 5],
            [6, 6, 6],
            [7, 7, 7],
            [8, 8, 8],
            [9, 9, 9],
            [9, 9, 10],
            [11, 11, 11],
        ];
        assert_eq!(p.ids, want);
        assert_eq!(p.delta, 12 - ids.len() as i64);
        assert_eq!(p.at(ids.len()), [12; 3]);
        assert!(q.positions(&ids, &[[1, 4, 6]]).is_err());
        assert!(q.positions(&ids, &[[1, 4, 6], [1, 4, 4]]).is_err());
    }
}
