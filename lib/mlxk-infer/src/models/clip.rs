//! The CLIP / SigLIP vision transformer, the image tower LLaVA (and, with SigLIP, other
//! vision-language models) puts in front of a text model: patches by a strided convolution,
//! a class token (CLIP), learned positions, pre-norm encoder layers — computed as mlx-vlm's
//! `ClipVisionModel` computes them.
use crate::error::{Result, broken, unsupported};
use crate::layers::{LayerNorm, Linear, gelu_fast, gelu_tanh};
use crate::weights::Weights;
use mlx_rs::fast;
use mlx_rs::{Array, ops};
use serde_json::Value;
use std::path::Path;

/// Which of the two towers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerKind {
    /// CLIP: a class token, a pre-norm before the encoder, no patch bias.
    Clip,
    /// SigLIP: patches only, a patch bias, no pre-norm.
    Siglip,
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerAct {
    /// `x·σ(1.702x)` (CLIP's quick_gelu; mlx-vlm's LLaVA uses it for either tower).
    Fast,
    /// The tanh approximation (SigLIP's `gelu_pytorch_tanh`).
    Tanh,
}

/// `vision_config`: the tower's dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct TowerConfig {
    pub kind: TowerKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub layer_norm_eps: f32,
}

impl TowerConfig {
    /// Reads `vision_config`, with mlx-vlm's defaults (CLIP ViT-L/14 at 336) for absent keys;
    /// a key of the wrong type is an error, never the default.
    pub fn from_json(path: &Path, v: &Value) -> Result<TowerConfig> {
        Self::from_json_with(path, v, &["siglip_vision_model"], 1e-5)
    }

    /// [`TowerConfig::from_json`] for checkpoints that name their SigLIP tower otherwise
    /// (`siglip_names`) and default its LayerNorm eps to `eps_default`.
    pub fn from_json_with(
        path: &Path,
        v: &Value,
        siglip_names: &[&str],
        eps_default: f64,
    ) -> Result<TowerConfig> {
        let get = |k: &str| v.get(k).filter(|x| !x.is_null());
        let n = |k: &str, d: usize| vision_count(path, v, k, d);
        let kind = match get("model_type").and_then(Value::as_str) {
            None | Some("clip_vision_model") => TowerKind::Clip,
            Some(s) if siglip_names.contains(&s) => TowerKind::Siglip,
            Some(other) => {
                return Err(unsupported(
                    path,
                    format!(
                        "vision tower `{other}` is not supported (clip_vision_model, {})",
                        siglip_names.join(", ")
                    ),
                ));
            }
        };
        let eps = match get("layer_norm_eps") {
            None => eps_default as f32,
            Some(x) => x
                .as_f64()
                .ok_or_else(|| broken(path, "`vision_config.layer_norm_eps` is not a number"))?
                as f32,
        };
        let c = TowerConfig {
            kind,
            hidden_size: n("hidden_size", 1024)?,
            intermediate_size: n("intermediate_size", 4096)?,
            num_layers: n("num_hidden_layers", 24)?,
            num_heads: n("num_attention_heads", 16)?,
            image_size: n("image_size", 336)?,
            patch_size: n("patch_size", 14)?,
            num_channels: n("num_channels", 3)?,
            layer_norm_eps: eps,
        };
        if !c.hidden_size.is_multiple_of(c.num_heads) {
            return Err(broken(
                path,
                format!(
                    "vision hidden size {} is not a multiple of its {} heads",
                    c.hidden_size, c.num_heads
                ),
            ));
        }
        if !c.image_size.is_multiple_of(c.patch_size) {
            return Err(broken(
                path,
                format!(
                    "vision image size {} is not a multiple of the patch size {}",
                    c.image_size, c.patch_size
                ),
            ));
        }
        if c.num_channels != 3 {
            return Err(unsupported(
                path,
                format!(
                    "a vision tower of {} input channels (3 expected)",
                    c.num_channels
                ),
            ));
        }
        Ok(c)
    }

    /// Patches per image side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Positions the tower encodes: the patches, plus CLIP's class token.
    pub fn positions(&self) -> usize {
        self.grid() * self.grid() + usize::from(self.kind == TowerKind::Clip)
    }
}

#[derive(Debug)]
struct EncoderLayer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The vision tower, loaded up to the layer whose output the model uses.
#[derive(Debug)]
pub struct VisionTower {
    pub config: TowerConfig,
    act: TowerAct,
    /// `[hidden, patch, patch, channels]` (MLX's convolution layout).
    patch_weight: Array,
    patch_bias: Option<Array>,
    class_embedding: Option<Array>,
    position_embedding: Array,
    /// Which row of the position table each patch takes (all in order when none).
    position_ids: Option<Array>,
    pre_norm: Option<LayerNorm>,
    layers: Vec<EncoderLayer>,
    post_norm: Option<LayerNorm>,
}

impl VisionTower {
    /// Builds the tower from `w` (names under `prefix`, e.g. `vision_tower.vision_model`),
    /// keeping the first `keep_layers` encoder layers and, if `post_norm`, the final norm; the
    /// tensors of layers that are never used are dropped.
    pub fn build(
        w: &mut Weights,
        prefix: &str,
        config: &TowerConfig,
        act: TowerAct,
        keep_layers: usize,
        post_norm: bool,
    ) -> Result<VisionTower> {
        let c = config;
        let (d, f) = (c.hidden_size, c.intermediate_size);
        let e = format!("{prefix}.embeddings");
        let patch = w.take(&format!("{e}.patch_embedding.weight"))?;
        let patch_weight = conv_layout(w, &format!("{e}.patch_embedding.weight"), patch, c)?;
        let patch_bias = match c.kind {
            TowerKind::Siglip => Some(w.take(&format!("{e}.patch_embedding.bias"))?),
            TowerKind::Clip => None,
        };
        let class_embedding = match c.kind {
            TowerKind::Clip => Some(w.take(&format!("{e}.class_embedding"))?),
            TowerKind::Siglip => None,
        };
        let position_embedding = w.take(&format!("{e}.position_embedding.weight"))?;
        if position_embedding.shape() != [c.positions() as i32, d as i32] {
            return Err(broken(
                w.path(),
                format!(
                    "`{e}.position_embedding.weight` is {:?}; the config implies [{}, {d}]",
                    position_embedding.shape(),
                    c.positions()
                ),
            ));
        }
        let pre_norm = match c.kind {
            // mlx-vlm's nn.LayerNorm default, whatever the config's eps.
            TowerKind::Clip => Some(w.layer_norm(&format!("{prefix}.pre_layrnorm"), 1e-5)?),
            TowerKind::Siglip => None,
        };
        let mut layers = Vec::new();
        for i in 0..c.num_layers {
            let p = format!("{prefix}.encoder.layers.{i}");
            if i >= keep_layers {
                w.discard(|k| k.starts_with(&format!("{p}.")));
                continue;
            }
            let eps = c.layer_norm_eps;
            layers.push(EncoderLayer {
                ln1: w.layer_norm(&format!("{p}.layer_norm1"), eps)?,
                q: w.linear(&format!("{p}.self_attn.q_proj"), d, d, true)?,
                k: w.linear(&format!("{p}.self_attn.k_proj"), d, d, true)?,
                v: w.linear(&format!("{p}.self_attn.v_proj"), d, d, true)?,
                out: w.linear(&format!("{p}.self_attn.out_proj"), d, d, true)?,
                ln2: w.layer_norm(&format!("{p}.layer_norm2"), eps)?,
                fc1: w.linear(&format!("{p}.mlp.fc1"), d, f, true)?,
                fc2: w.linear(&format!("{p}.mlp.fc2"), f, d, true)?,
            });
        }
        let post_norm = if post_norm {
            Some(w.layer_norm(&format!("{prefix}.post_layernorm"), 1e-5)?)
        } else {
            w.discard(|k| k.starts_with(&format!("{prefix}.post_layernorm.")));
            None
        };
        // Precomputed position ids some exporters save are recomputed, never read.
        w.discard(|k| k.ends_with("position_ids"));
        Ok(VisionTower {
            config: c.clone(),
            act,
            patch_weight,
            patch_bias,
            class_embedding,
            position_embedding,
            position_ids: None,
            pre_norm,
            layers,
            post_norm,
        })
    }

    /// Patches take the position table's rows `ids` (Idefics3's bucketed positions).
    pub fn set_position_ids(&mut self, ids: Vec<i32>) {
        self.position_ids = Some(Array::from_slice(&ids, &[ids.len() as i32]));
    }

    /// The hidden states after every kept encoder layer for pixels `[n, H, W, 3]` (the image
    /// size of the config): `[n, positions, hidden]`, then the final norm if kept.
    pub fn forward(&self, pixels: &Array) -> Result<Array> {
        let c = &self.config;
        let s = pixels.shape();
        if s.len() != 4 || s[1] as usize != c.image_size || s[2] as usize != c.image_size {
            return Err(crate::error::InferError::Options(format!(
                "the vision tower takes {0}×{0} images; the processor made {1:?}",
                c.image_size, s
            )));
        }
        let n = s[0];
        let mut x = ops::conv2d(
            pixels,
            &self.patch_weight,
            (c.patch_size as i32, c.patch_size as i32),
            None,
            None,
            None,
        )?;
        if let Some(b) = &self.patch_bias {
            x = ops::add(&x, b)?;
        }
        let d = c.hidden_size as i32;
        x = x.reshape(&[n, -1, d])?;
        if let Some(cls) = &self.class_embedding {
            let cls = ops::broadcast_to(cls, &[n, 1, d])?;
            x = ops::concatenate(&[cls, x], 1)?;
        }
        x = match &self.position_ids {
            Some(ids) => ops::add(&x, self.position_embedding.take_axis(ids, 0)?)?,
            None => ops::add(&x, &self.position_embedding)?,
        };
        if let Some(norm) = &self.pre_norm {
            x = norm.forward(&x)?;
        }
        for l in &self.layers {
            x = self.layer(l, &x)?;
        }
        if let Some(norm) = &self.post_norm {
            x = norm.forward(&x)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &EncoderLayer, x: &Array) -> Result<Array> {
        let s = x.shape();
        let (b, len) = (s[0], s[1]);
        let h = self.config.num_heads as i32;
        let hd = (self.config.hidden_size / self.config.num_heads) as f64;
        let y = l.ln1.forward(x)?;
        let heads = |t: Array| -> Result<Array> {
            Ok(t.reshape(&[b, len, h, -1])?.transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = heads(l.q.forward(&y)?)?;
        let k = heads(l.k.forward(&y)?)?;
        let v = heads(l.v.forward(&y)?)?;
        let o = attention(&q, &k, &v, hd.powf(-0.5) as f32)?;
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, len, -1])?;
        let x = ops::add(x, &l.out.forward(&o)?)?;
        let y = l.fc1.forward(&l.ln2.forward(&x)?)?;
        let y = match self.act {
            TowerAct::Fast => gelu_fast(&y)?,
            TowerAct::Tanh => gelu_tanh(&y)?,
        };
        Ok(ops::add(&x, &l.fc2.forward(&y)?)?)
    }
}

/// Unmasked attention over every position, as MLX's `scaled_dot_product_attention` computes it
/// on a CPU (queries scaled, `q·kᵀ`, precise softmax, `·v`) — with the softmax through the CPU
/// kernel: MLX's scalar `exp` over a tile's thousand positions per head is most of a tower's
/// time otherwise.
pub(crate) fn attention(q: &Array, k: &Array, v: &Array, scale: f32) -> Result<Array> {
    if !crate::runtime::default_device_is_cpu() || q.dtype() != mlx_rs::Dtype::Float32 {
        return Ok(fast::scaled_dot_product_attention(
            q, k, v, scale, None, None,
        )?);
    }
    let q = ops::multiply(q, Array::from_f32(scale))?;
    let scores = ops::matmul(&q, k.swap_axes(-1, -2)?)?;
    let w = match crate::kernels::softmax_last_axis_f32(&scores)? {
        Some(w) => w,
        None => ops::softmax_axis(&scores, -1, true)?,
    };
    Ok(ops::matmul(&w, v)?)
}

/// A positive whole number of `vision_config` (`default` when absent or null).
pub(crate) fn vision_count(path: &Path, v: &Value, k: &str, default: usize) -> Result<usize> {
    match v.get(k).filter(|x| !x.is_null()) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .filter(|&x| x > 0)
            .map(|x| x as usize)
            .ok_or_else(|| {
                broken(
                    path,
                    format!("`vision_config.{k}` is not a positive whole number"),
                )
            }),
    }
}

/// The patch convolution's weight in MLX's layout `[out, kh, kw, in]`, from PyTorch's
/// `[out, in, kh, kw]` (Hugging Face checkpoints) or already so (mlx-vlm's conversions).
fn conv_layout(w: &Weights, name: &str, t: Array, c: &TowerConfig) -> Result<Array> {
    let (d, p, ch) = (
        c.hidden_size as i32,
        c.patch_size as i32,
        c.num_channels as i32,
    );
    let s = t.shape();
    if s == [d, p, p, ch] {
        Ok(t)
    } else if s == [d, ch, p, p] {
        Ok(t.transpose_axes(&[0, 2, 3, 1])?)
    } else {
        Err(broken(
            w.path(),
            format!("`{name}` is {s:?}; the config implies [{d}, {ch}, {p}, {p}]"),
        ))
    }
}
