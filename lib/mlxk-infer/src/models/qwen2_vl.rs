//! Qwen2-VL and Qwen2.5-VL: their own vision transformer (a patch embedding over two frames,
//! 2-D rotary positions, attention within each picture, a 2 × 2 patch merger) and a qwen2 text
//! model whose RoPE is multimodal (M-RoPE: a picture's tokens share a time and spread over its
//! grid) — as mlx-vlm's `qwen2_vl` and `qwen2_5_vl` compute them. Qwen2.5-VL's tower has RMS
//! norms and a SwiGLU MLP, and attends within windows of merged tokens except in its
//! full-attention blocks.
use super::clip;
use super::llava::{merge_text_config, text_layer_name};
use crate::error::{Result, broken, unsupported};
use crate::layers::{
    Activation, LayerNorm, Linear, Mlp, RmsNorm, RopePositions, gelu, gelu_fast, rotate_half_rope,
};
use crate::weights::Weights;
use mlx_rs::{Array, ops};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The `model_type` values this file runs.
pub const MODEL_TYPES: &[&str] = &["qwen2_vl", "qwen2_5_vl"];

/// Whether `root` is a Qwen2.5-VL config.
fn is_25(root: &Value) -> bool {
    root.get("model_type").and_then(Value::as_str) == Some("qwen2_5_vl")
}

/// mlx-vlm's `TextConfig` defaults (`qwen2_vl`'s, or `qwen2_5_vl`'s).
fn text_defaults(v25: bool) -> Value {
    if v25 {
        json!({
            "max_position_embeddings": 128000,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": true,
        })
    } else {
        json!({
            "num_key_value_heads": 8,
            "max_position_embeddings": 40960,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": false,
        })
    }
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
        text_defaults(is_25(root)),
        &given,
        &json!({"model_type": "qwen2"}),
    )
}

/// The frequencies (of `head_dim / 2`) that turn by the time, height and width positions:
/// `rope_scaling.mrope_section` as mlx-vlm reads it (a `rope_scaling` without one is refused, as
/// mlx-vlm refuses it); without `rope_scaling`, transformers 5's `rope_parameters.mrope_section`
/// (mlx-vlm 0.7.6 ignores it and takes its default, which is wrong for Qwen2-VL-2B's heads);
/// without either, mlx-vlm's default 24 + 20 + 20.
pub fn mrope_section(path: &Path, root: &Value, head_dim: usize) -> Result<[usize; 3]> {
    let scaling = root.get("rope_scaling").filter(|v| !v.is_null());
    if let Some(s) = scaling
        && s.get("mrope_section").is_none()
    {
        return Err(broken(path, "`rope_scaling` has no `mrope_section`"));
    }
    let given = scaling
        .or_else(|| root.get("rope_parameters"))
        .and_then(|v| v.get("mrope_section"));
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

/// The quantization of the tower's layers: the config's `quantization` (or
/// `quantization_config`) with per-layer entries named as [`split_weights`] names the tower's
/// tensors (without `visual.`, `model.visual.` or `vision_tower.`).
pub fn vision_quantization(root: &Value) -> Option<crate::config::Quantization> {
    let q = ["quantization", "quantization_config"]
        .iter()
        .find_map(|k| root.get(*k).and_then(Value::as_object))?;
    let renamed: serde_json::Map<String, Value> = q
        .iter()
        .map(|(k, v)| {
            let short = ["visual.", "model.visual.", "vision_tower."]
                .iter()
                .find_map(|p| k.strip_prefix(p))
                .unwrap_or(k);
            (short.to_string(), v.clone())
        })
        .collect();
    crate::config::Quantization::from_json(&Value::Object(renamed))
}

/// The special tokens the prompt marks pictures with.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub image: u32,
    pub video: u32,
    pub vision_start: u32,
}

/// The vision tower's shape (mlx-vlm's `qwen2_vl.VisionConfig` or `qwen2_5_vl`'s, whose
/// `hidden_size` is the tower's width and `out_hidden_size` the text model's).
#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub depth: usize,
    pub embed_dim: usize,
    /// The merger's output: the text model's width.
    pub hidden_size: usize,
    pub num_heads: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub in_channels: usize,
    pub mlp_hidden: usize,
    /// Qwen2.5-VL: the attention window's side in pixels, and the blocks that attend over
    /// whole pictures instead (`None`: Qwen2-VL, every block over whole pictures).
    pub windows: Option<(usize, Vec<usize>)>,
}

impl VisionConfig {
    fn from_json(path: &Path, v: &Value, v25: bool) -> Result<VisionConfig> {
        let kind = if v25 { "qwen2_5_vl" } else { "qwen2_vl" };
        if let Some(mt) = v.get("model_type").and_then(Value::as_str)
            && mt != kind
        {
            return Err(unsupported(
                path,
                format!("a {kind} vision tower of model_type `{mt}` is not supported"),
            ));
        }
        let n = |k: &str, default: usize| clip::vision_count(path, v, k, default);
        let (embed_dim, hidden_size, mlp_hidden, windows) = if v25 {
            let full = match v.get("fullatt_block_indexes") {
                None | Some(Value::Null) => vec![7, 15, 23, 31],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_u64().map(|x| x as usize))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| broken(path, "`fullatt_block_indexes` holds a non-index"))?,
                Some(o) => {
                    return Err(broken(
                        path,
                        format!("`fullatt_block_indexes` is not a list: {o}"),
                    ));
                }
            };
            (
                n("hidden_size", 1280)?,
                n("out_hidden_size", 1536)?,
                n("intermediate_size", 3420)?,
                Some((n("window_size", 112)?, full)),
            )
        } else {
            let embed_dim = n("embed_dim", 1280)?;
            let ratio = match v.get("mlp_ratio") {
                None | Some(Value::Null) => 4.0,
                Some(x) => x.as_f64().filter(|r| *r > 0.0).ok_or_else(|| {
                    broken(path, "vision_config `mlp_ratio` is not a positive number")
                })?,
            };
            (
                embed_dim,
                n("hidden_size", 1536)?,
                (embed_dim as f64 * ratio) as usize,
                None,
            )
        };
        let c = VisionConfig {
            depth: n("depth", 32)?,
            embed_dim,
            hidden_size,
            num_heads: n("num_heads", 16)?,
            patch_size: n("patch_size", 14)?,
            temporal_patch_size: n("temporal_patch_size", 2)?,
            merge_size: n("spatial_merge_size", 2)?,
            in_channels: n("in_channels", 3)?,
            mlp_hidden,
            windows,
        };
        if let Some((w, _)) = &c.windows
            && *w < c.merge_size * c.patch_size
        {
            return Err(broken(
                path,
                format!(
                    "vision_config `window_size` {w} is under a merged token's {} pixels",
                    c.merge_size * c.patch_size
                ),
            ));
        }
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

/// A tower norm: LayerNorm (Qwen2-VL) or RMSNorm (Qwen2.5-VL), eps 1e-6 either way.
#[derive(Debug)]
enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    fn take(w: &mut Weights, prefix: &str, dim: usize, rms: bool) -> Result<Norm> {
        Ok(if rms {
            Norm::Rms(w.norm(prefix, dim, 1e-6, false)?)
        } else {
            Norm::Layer(w.layer_norm(prefix, 1e-6)?)
        })
    }

    fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

/// A tower MLP: quick-GELU (Qwen2-VL) or SwiGLU with biases (Qwen2.5-VL).
#[derive(Debug)]
enum TowerMlp {
    Gelu { fc1: Linear, fc2: Linear },
    Swiglu(Mlp),
}

#[derive(Debug)]
struct Block {
    norm1: Norm,
    norm2: Norm,
    qkv: Linear,
    proj: Linear,
    mlp: TowerMlp,
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
    ln_q: Norm,
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
        let v25 = is_25(root);
        let c =
            VisionConfig::from_json(path, root.get("vision_config").unwrap_or(&json!({})), v25)?;
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
            let mlp = if v25 {
                TowerMlp::Swiglu(Mlp::Split {
                    gate: w.linear(&format!("{b}.mlp.gate_proj"), d, f, true)?,
                    up: w.linear(&format!("{b}.mlp.up_proj"), d, f, true)?,
                    down: w.linear(&format!("{b}.mlp.down_proj"), f, d, true)?,
                    act: Activation::Silu,
                })
            } else {
                TowerMlp::Gelu {
                    fc1: w.linear(&format!("{b}.mlp.fc1"), d, f, true)?,
                    fc2: w.linear(&format!("{b}.mlp.fc2"), f, d, true)?,
                }
            };
            blocks.push(Block {
                // mlx-vlm fixes these norms' eps at 1e-6 whatever the config says.
                norm1: Norm::take(w, &format!("{b}.norm1"), d, v25)?,
                norm2: Norm::take(w, &format!("{b}.norm2"), d, v25)?,
                qkv: w.linear(&format!("{b}.attn.qkv"), d, 3 * d, true)?,
                proj: w.linear(&format!("{b}.attn.proj"), d, d, true)?,
                mlp,
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
            ln_q: Norm::take(w, "merger.ln_q", d, v25)?,
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
        let (mut cos, mut sin) = self.rotary(grids)?;
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
        // Qwen2.5-VL: merged tokens regrouped window by window (and back after the merger).
        let mut windows = None;
        if let Some((side, full)) = &c.windows {
            let (order, window_bounds) = self.window_order(grids, *side);
            let area = self.merge_area() as i32;
            let idx = Array::from_slice(&order, &[order.len() as i32]);
            let regroup = |a: &Array| -> Result<Array> {
                let s = a.shape().to_vec();
                let mut grouped = vec![s[0] / area, area];
                grouped.extend(&s[1..]);
                Ok(a.reshape(&grouped)?.take_axis(&idx, 0)?.reshape(&s)?)
            };
            h = regroup(&h)?;
            cos = regroup(&cos)?;
            sin = regroup(&sin)?;
            windows = Some((full, window_bounds, order));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let within = match &windows {
                Some((full, wb, _)) if !full.contains(&i) => wb.as_slice(),
                _ => bounds.as_slice(),
            };
            h = self.block(b, &h, &cos, &sin, within)?;
        }
        let merged = (c.embed_dim * self.merge_area()) as i32;
        let x = self.ln_q.forward(&h)?.reshape(&[-1, merged])?;
        let x = gelu(&self.mlp0.forward(&x)?)?;
        let out = self.mlp2.forward(&x)?;
        match windows {
            None => Ok(out),
            Some((_, _, order)) => {
                // mlx-vlm: hidden[argsort(window_index)].
                let mut back = vec![0i32; order.len()];
                for (i, &o) in order.iter().enumerate() {
                    back[o as usize] = i as i32;
                }
                Ok(out.take_axis(Array::from_slice(&back, &[back.len() as i32]), 0)?)
            }
        }
    }

    /// Qwen2.5-VL's window order (mlx-vlm's `get_window_index`): each picture's merged tokens
    /// cut into windows of `side` pixels (`side / merge / patch` tokens a side, the last ones
    /// short), window by window, row by row within; and where each window ends, in patches (the
    /// empty windows of the padding left out).
    fn window_order(&self, grids: &[Grid], side: usize) -> (Vec<i32>, Vec<i32>) {
        let c = &self.config;
        let m = c.merge_size;
        let ws = side / m / c.patch_size;
        let (mut order, mut bounds) = (Vec::new(), Vec::new());
        let (mut base, mut end) = (0usize, 0i32);
        for &[t, gh, gw] in grids {
            let (lh, lw) = (gh / m, gw / m);
            let (nh, nw) = ((lh + ws - lh % ws) / ws, (lw + ws - lw % ws) / ws);
            for ti in 0..t {
                for wh in 0..nh {
                    for ww in 0..nw {
                        let mut count = 0;
                        for i in wh * ws..((wh + 1) * ws).min(lh) {
                            for j in ww * ws..((ww + 1) * ws).min(lw) {
                                order.push((base + (ti * lh + i) * lw + j) as i32);
                                count += 1;
                            }
                        }
                        if count > 0 {
                            end += (count * m * m) as i32;
                            bounds.push(end);
                        }
                    }
                }
            }
            base += t * lh * lw;
        }
        bounds.pop();
        (order, bounds)
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
        let rope = |a: Array| rotate_half_rope(&a, cos, sin);
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
        let y = b.norm2.forward(&x)?;
        let y = match &b.mlp {
            TowerMlp::Gelu { fc1, fc2 } => fc2.forward(&gelu_fast(&fc1.forward(&y)?)?)?,
            TowerMlp::Swiglu(mlp) => mlp.forward(&y)?,
        };
        Ok(ops::add(&x, &y)?)
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
            windows: None,
        };
        let ln = || {
            Norm::Layer(LayerNorm {
                weight: Array::from_slice(&[1f32], &[1]),
                bias: Array::from_slice(&[0f32], &[1]),
                eps: 1e-6,
            })
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

    /// Per-layer quantization entries reach the tower's layers under its short names.
    #[test]
    fn the_towers_quantization_entries_lose_their_prefix() {
        let root = json!({"quantization": {"group_size": 64, "bits": 4,
            "vision_tower.blocks.0.attn.qkv": {"group_size": 32, "bits": 8},
            "visual.blocks.1.mlp.fc1": false}});
        let q = vision_quantization(&root).unwrap();
        let spec = q.for_layer("blocks.0.attn.qkv").unwrap();
        assert_eq!((spec.group_size, spec.bits), (32, 8));
        assert!(q.for_layer("blocks.1.mlp.fc1").is_none());
        assert_eq!(q.for_layer("blocks.2.attn.proj").map(|s| s.bits), Some(4));
    }

    /// `get_window_index` on a 3 × 3 merged grid in windows of 2 × 2: short windows at the
    /// edges, the padding's empty windows left out, window ends in patches.
    #[test]
    fn windows_follow_mlx_vlms_window_index() {
        let mut q = tower_stub();
        q.config.patch_size = 1;
        let (order, ends) = q.window_order(&[[1, 6, 6], [1, 2, 4]], 4);
        assert_eq!(order, [0, 1, 3, 4, 2, 5, 6, 7, 8, 9, 10]);
        assert_eq!(ends, [16, 24, 32, 36]);
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
