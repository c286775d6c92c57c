//! Whisper (tiny … large-v3-turbo, `.en` and multilingual): a convolutional front, a
//! transformer audio encoder with sinusoidal positions, and a text decoder with learned
//! positions, self- and cross-attention, tied output embedding. Computed op for op as
//! mlx-whisper computes it (q and k each scaled by `d^-¼`, additive causal mask, precise softmax,
//! erf GELU, LayerNorm eps 1e-5), so greedy tokens match it.
//!
//! Three checkpoint layouts load into mlx-whisper's parameter names: mlx-whisper's own
//! (`weights.safetensors` + `config.json` with `n_mels`, …), Hugging Face transformers
//! (`model.safetensors`, `model_type: whisper`) and CTranslate2 (`model.bin`, faster-whisper's).
use crate::config::Quantization;
use crate::ct2;
use crate::error::{Result, broken, unsupported};
use crate::kernels;
use crate::layers::{Embedding, LayerNorm, Linear, gelu};
use crate::weights::{DtypePolicy, WeightFormat, Weights, load_safetensors_dir};
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype, ops};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The sizes of a Whisper model (mlx-whisper's `ModelDimensions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WhisperDims {
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_vocab: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
}

impl WhisperDims {
    /// Sizes this implementation can run: a 30-second window of 3000 mel frames (1500 audio
    /// positions), 80 or 128 mel bins, head counts dividing the widths, a Whisper vocabulary.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |what: String| {
            Err(broken(
                path,
                format!("not a Whisper model this build runs: {what}"),
            ))
        };
        if self.n_audio_ctx != 1500 {
            return bad(format!(
                "n_audio_ctx is {} (Whisper's 30-second window is 1500)",
                self.n_audio_ctx
            ));
        }
        if self.n_mels != 80 && self.n_mels != 128 {
            return bad(format!("{} mel bins (80 or 128)", self.n_mels));
        }
        for (what, width, heads) in [
            ("audio", self.n_audio_state, self.n_audio_head),
            ("text", self.n_text_state, self.n_text_head),
        ] {
            if heads == 0 || width < 4 || width % heads != 0 || width % 2 != 0 {
                return bad(format!("{what} width {width} with {heads} heads"));
            }
        }
        if self.n_vocab < 51864 {
            return bad(format!(
                "a vocabulary of {} tokens (Whisper's has 51864 or more)",
                self.n_vocab
            ));
        }
        if self.n_text_ctx < 4 || self.n_audio_layer == 0 || self.n_text_layer == 0 {
            return bad(format!(
                "{} text positions, {}+{} layers",
                self.n_text_ctx, self.n_audio_layer, self.n_text_layer
            ));
        }
        Ok(())
    }

    /// Multilingual vocabularies have 51865 or more tokens; `.en` ones 51864.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// Language tokens in the vocabulary (99, or 100 for large-v3).
    pub fn num_languages(&self) -> usize {
        (self.n_vocab as i64 - 51765 - self.is_multilingual() as i64).max(0) as usize
    }
}

/// Which files a Whisper checkpoint came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperLayout {
    MlxWhisper,
    Transformers,
    CTranslate2,
}

impl WhisperLayout {
    pub fn label(self) -> &'static str {
        match self {
            WhisperLayout::MlxWhisper => "MLX",
            WhisperLayout::Transformers => "transformers",
            WhisperLayout::CTranslate2 => "CTranslate2",
        }
    }

    /// The layout of the checkpoint in `dir`, if it is a Whisper checkpoint at all.
    pub fn detect(dir: &Path) -> Option<WhisperLayout> {
        if mlxk::ct2::looks_like_ct2(&dir.join("model.bin")) {
            return Some(WhisperLayout::CTranslate2);
        }
        let cfg: Value = std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())?;
        if cfg.get("n_audio_ctx").is_some() && cfg.get("n_mels").is_some() {
            return Some(WhisperLayout::MlxWhisper);
        }
        (cfg["model_type"].as_str() == Some("whisper")).then_some(WhisperLayout::Transformers)
    }
}

struct MultiHeadAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    n_head: usize,
}

impl MultiHeadAttention {
    /// `softmax(q kᵀ + mask) v` with q and k each scaled by `d^-¼`; also the raw scores
    /// (the cross-attention pattern word timestamps align on).
    /// Keys `(b, h, d, lk)` and values `(b, h, lk, d)` by head, the keys scaled by `d^-¼`.
    fn heads_kv(&self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let (b, lk, state) = (k.shape()[0], k.shape()[1], k.shape()[2]);
        let h = self.n_head as i32;
        let scale = Array::from_f32(((state / h) as f64).powf(-0.25) as f32);
        let k = ops::multiply(
            &k.reshape(&[b, lk, h, -1])?.transpose_axes(&[0, 2, 3, 1])?,
            &scale,
        )?;
        let v = v.reshape(&[b, lk, h, -1])?.transpose_axes(&[0, 2, 1, 3])?;
        Ok((k, v))
    }

    fn attend(
        &self,
        q: &Array,
        k: &Array,
        v: &Array,
        mask: Option<&Array>,
    ) -> Result<(Array, Array)> {
        let (k, v) = self.heads_kv(k, v)?;
        self.attend_heads(q, &k, &v, mask)
    }

    /// `attend` with keys and values already by head ([`MultiHeadAttention::heads_kv`]).
    fn attend_heads(
        &self,
        q: &Array,
        k: &Array,
        v: &Array,
        mask: Option<&Array>,
    ) -> Result<(Array, Array)> {
        let (b, l, state) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let h = self.n_head as i32;
        let scale = Array::from_f32(((state / h) as f64).powf(-0.25) as f32);
        let q = ops::multiply(
            &q.reshape(&[b, l, h, -1])?.transpose_axes(&[0, 2, 1, 3])?,
            &scale,
        )?;
        let mut qk = ops::matmul(&q, k)?;
        if let Some(m) = mask {
            qk = ops::add(&qk, m.index((..l, ..l)))?;
        }
        let w = softmax(&qk)?;
        let out = ops::matmul(&w, v)?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[b, l, state])?;
        Ok((self.out.forward(&out)?, qk))
    }
}

/// MLX's precise softmax over the last axis (the CPU kernel where it applies, bit for bit).
fn softmax(x: &Array) -> Result<Array> {
    match kernels::softmax_last_axis_f32(x)? {
        Some(y) => Ok(y),
        None => Ok(ops::softmax_axis(x, -1, true)?),
    }
}

struct ResidualBlock {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    cross: Option<(MultiHeadAttention, LayerNorm)>,
    mlp1: Linear,
    mlp2: Linear,
    mlp_ln: LayerNorm,
}

impl ResidualBlock {
    fn mlp(&self, x: &Array) -> Result<Array> {
        let h = gelu(&self.mlp1.forward(&self.mlp_ln.forward(x)?)?)?;
        Ok(ops::add(x, &self.mlp2.forward(&h)?)?)
    }
}

/// One decoder layer's self-attention keys and values of the tokens so far.
#[derive(Clone)]
enum SelfKv {
    Empty,
    /// In MLX arrays `(rows, tokens, d)`, after a step through MLX's ops.
    Arrays(Array, Array),
    /// On the host, after a step of the CPU path: per row (hypothesis), its keys and its
    /// values, `tokens × d` each.
    Host(Vec<(Vec<f32>, Vec<f32>)>),
}

impl SelfKv {
    /// As MLX arrays (for a step through MLX's ops).
    fn arrays(&self, d: usize) -> Option<(Array, Array)> {
        match self {
            SelfKv::Empty => None,
            SelfKv::Arrays(k, v) => Some((k.clone(), v.clone())),
            SelfKv::Host(rows) if rows.is_empty() => None,
            SelfKv::Host(rows) => {
                let (b, len) = (rows.len() as i32, (rows[0].0.len() / d) as i32);
                let keys: Vec<f32> = rows.iter().flat_map(|r| r.0.iter().copied()).collect();
                let values: Vec<f32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
                Some((
                    Array::from_slice(&keys, &[b, len, d as i32]),
                    Array::from_slice(&values, &[b, len, d as i32]),
                ))
            }
        }
    }

    /// On the host (for a step of the CPU path), `rows` rows when empty.
    fn host(&mut self, rows: usize) -> Result<&mut Vec<(Vec<f32>, Vec<f32>)>> {
        if let SelfKv::Arrays(k, v) = self {
            let (k, v) = (
                k.as_dtype(Dtype::Float32)?.contiguous()?,
                v.as_dtype(Dtype::Float32)?.contiguous()?,
            );
            mlx_rs::transforms::eval([&k, &v])?;
            let per_row = k.size() / (k.shape()[0] as usize).max(1);
            let (ks, vs) = (k.as_slice::<f32>(), v.as_slice::<f32>());
            *self = SelfKv::Host(
                ks.chunks(per_row.max(1))
                    .zip(vs.chunks(per_row.max(1)))
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
            );
        }
        if let SelfKv::Empty = self {
            *self = SelfKv::Host(vec![(Vec::new(), Vec::new()); rows]);
        }
        match self {
            SelfKv::Host(r) => Ok(r),
            _ => unreachable!("made a host cache above"),
        }
    }
}

/// A decoder's state over one 30-second window: cross-attention keys/values of the encoded
/// audio (computed once) and self-attention keys/values of the tokens so far.
pub struct DecoderCache {
    cross: Vec<(Array, Array)>,
    tokens: Vec<SelfKv>,
    pub offset: usize,
}

impl DecoderCache {
    /// Keeps the hypotheses (batch rows) `rows`, in that order: beam search's reordering.
    pub fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        let idx = Array::from_slice(
            &rows.iter().map(|&r| r as i32).collect::<Vec<_>>(),
            &[rows.len() as i32],
        );
        for kv in &mut self.tokens {
            match kv {
                SelfKv::Empty => {}
                SelfKv::Arrays(k, v) => {
                    *k = k.take_axis(&idx, 0)?;
                    *v = v.take_axis(&idx, 0)?;
                }
                SelfKv::Host(have) => {
                    if let Some(&r) = rows.iter().find(|&&r| r as usize >= have.len()) {
                        return Err(crate::error::InferError::Options(format!(
                            "hypothesis {r} of {} kept",
                            have.len()
                        )));
                    }
                    *have = rows.iter().map(|&r| have[r as usize].clone()).collect();
                }
            }
        }
        Ok(())
    }
}

/// A loaded Whisper model.
pub struct Whisper {
    pub dims: WhisperDims,
    pub layout: WhisperLayout,
    pub quantization: Option<(i32, i32)>,
    /// Dtype the weights were stored in (before the dtype policy).
    pub stored_dtype: Dtype,
    pub weight_bytes: usize,
    pub policy_applied: Vec<String>,
    /// Cross-attention heads that follow the alignment (layer, head), for word timestamps.
    pub alignment_heads: Vec<(usize, usize)>,
    /// The model's folder (its tokenizer files sit beside the weights).
    pub dir: PathBuf,
    conv1: (Array, Array),
    conv2: (Array, Array),
    audio_positions: Array,
    encoder: Vec<ResidualBlock>,
    ln_post: LayerNorm,
    token_embedding: Embedding,
    text_positions: Array,
    decoder: Vec<ResidualBlock>,
    ln: LayerNorm,
    mask: Array,
    /// Whether a decoder step can run on the host ([`Whisper::step_on_host`]): every decoder
    /// weight in a layout the CPU kernels compute, on a CPU device.
    host_decoder: bool,
}

impl Whisper {
    /// Audio features `(1, n_audio_ctx, n_audio_state)` of mel frames `(1, 3000, n_mels)`.
    pub fn encode(&self, mel: &Array) -> Result<Array> {
        let conv = |x: &Array, (w, b): &(Array, Array), stride: i32| -> Result<Array> {
            let y = ops::conv1d(x, w, stride, 1, 1, 1)?;
            gelu(&ops::add(&y, b)?)
        };
        let x = conv(mel, &self.conv1, 1)?;
        let x = conv(&x, &self.conv2, 2)?;
        if x.shape()[1..] != [self.dims.n_audio_ctx as i32, self.dims.n_audio_state as i32] {
            return Err(crate::error::InferError::Options(format!(
                "the encoder got {:?} audio frames; a 30-second window is {} mel frames",
                x.shape(),
                2 * self.dims.n_audio_ctx
            )));
        }
        let mut x = ops::add(&x, &self.audio_positions)?;
        for block in &self.encoder {
            let a = &block.attn;
            let h = block.attn_ln.forward(&x)?;
            let (q, k, v) = (
                a.query.forward(&h)?,
                a.key.forward(&h)?,
                a.value.forward(&h)?,
            );
            let scale = ((self.dims.n_audio_state / a.n_head) as f64).powf(-0.25) as f32;
            let y = match kernels::attention_f32(&q, &k, &v, a.n_head, scale)? {
                Some(o) => a.out.forward(&o)?,
                None => a.attend(&q, &k, &v, None)?.0,
            };
            x = block.mlp(&ops::add(&x, &y)?)?;
        }
        let x = self.ln_post.forward(&x)?;
        x.eval()?;
        Ok(x)
    }

    /// A fresh decoder cache over `audio` (the encoder's output), its cross keys/values computed.
    pub fn start(&self, audio: &Array) -> Result<DecoderCache> {
        let mut cross = Vec::with_capacity(self.decoder.len());
        for block in &self.decoder {
            let (a, _) = block.cross.as_ref().ok_or_else(|| {
                crate::error::InferError::Mlx("decoder block without cross-attention".into())
            })?;
            // By head and scaled once per window, not at every token.
            let (k, v) = a.heads_kv(&a.key.forward(audio)?, &a.value.forward(audio)?)?;
            let (k, v) = (k.contiguous()?, v.contiguous()?);
            mlx_rs::transforms::eval([&k, &v])?;
            cross.push((k, v));
        }
        Ok(DecoderCache {
            cross,
            tokens: vec![SelfKv::Empty; self.decoder.len()],
            offset: 0,
        })
    }

    /// Logits `(1, L, n_vocab)` in f32 for `tokens` (`(1, L)`) after those in `cache`; with
    /// `want_cross_qk`, also each layer's cross-attention scores `(1, heads, L, n_audio_ctx)`.
    pub fn decode(
        &self,
        tokens: &Array,
        cache: &mut DecoderCache,
        want_cross_qk: bool,
    ) -> Result<(Array, Vec<Array>)> {
        let l = tokens.shape()[1] as usize;
        let offset = cache.offset;
        if offset + l > self.dims.n_text_ctx {
            return Err(crate::error::InferError::Options(format!(
                "the decoder holds {} text positions; {} were asked for",
                self.dims.n_text_ctx,
                offset + l
            )));
        }
        // One encoded window (batch 1) in f32, shared by every row.
        let cross_on_host = cache.cross.iter().all(|(k, v)| {
            k.dtype() == Dtype::Float32 && v.dtype() == Dtype::Float32 && k.shape()[0] == 1
        });
        if l == 1 && !want_cross_qk && self.host_decoder && cross_on_host {
            return Ok((self.step_on_host(tokens, cache)?, Vec::new()));
        }
        let pos = self
            .text_positions
            .index((offset as i32..(offset + l) as i32, ..));
        let mut x = ops::add(&self.token_embedding.forward(tokens)?, &pos)?;
        let mut cross_qk = Vec::new();
        for (i, block) in self.decoder.iter().enumerate() {
            let a = &block.attn;
            let h = block.attn_ln.forward(&x)?;
            let (mut k, mut v) = (a.key.forward(&h)?, a.value.forward(&h)?);
            if let Some((pk, pv)) = cache.tokens[i].arrays(self.dims.n_text_state) {
                k = ops::concatenate(&[&pk, &k], 1)?;
                v = ops::concatenate(&[&pv, &v], 1)?;
            }
            let (y, _) = a.attend(&a.query.forward(&h)?, &k, &v, Some(&self.mask))?;
            cache.tokens[i] = SelfKv::Arrays(k, v);
            x = ops::add(&x, &y)?;
            let (c, c_ln) = block
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let h = c_ln.forward(&x)?;
            let (ck, cv) = &cache.cross[i];
            let (y, qk) = c.attend_heads(&c.query.forward(&h)?, ck, cv, None)?;
            if want_cross_qk {
                cross_qk.push(qk);
            }
            x = block.mlp(&ops::add(&x, &y)?)?;
        }
        cache.offset += l;
        let x = self.ln.forward(&x)?;
        let logits = self
            .token_embedding
            .as_linear(&x)?
            .as_dtype(Dtype::Float32)?;
        Ok((logits, cross_qk))
    }

    /// One decoder step (one new token per row of `tokens`, `(rows, 1)`) on the host: the
    /// same operations as [`Whisper::decode`] through the CPU kernels (LayerNorm, softmax and
    /// GELU bit for bit as MLX's; the matmuls as the kernels sum them), with no MLX evaluation.
    /// MLX's per-operation cost over a step's ~150 small operations was most of a token's time.
    fn step_on_host(&self, tokens: &Array, cache: &mut DecoderCache) -> Result<Array> {
        let tokens = tokens.as_dtype(Dtype::Int32)?;
        tokens.eval()?;
        if tokens.size() == 0 {
            return Err(crate::error::InferError::Options(
                "a decoder step needs at least one token".into(),
            ));
        }
        let ids: Vec<u32> = tokens.as_slice::<i32>().iter().map(|&t| t as u32).collect();
        let (rows, d) = (ids.len(), self.dims.n_text_state);
        let heads = self.dims.n_text_head;
        let dh = d / heads;
        let scale = (dh as f64).powf(-0.25) as f32;
        let at = cache.offset;
        let positions = self
            .text_positions
            .try_as_slice::<f32>()
            .map_err(|_| crate::error::InferError::Mlx("text positions unreadable".into()))?;
        let pos = &positions[at * d..(at + 1) * d];
        let mut x = self.token_embedding.rows(&ids)?;
        for row in x.chunks_exact_mut(d) {
            for (v, &p) in row.iter_mut().zip(pos) {
                *v += p;
            }
        }
        let add = |x: &mut [f32], y: &[f32]| x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
        for (i, block) in self.decoder.iter().enumerate() {
            let a = &block.attn;
            let h = block.attn_ln.forward_rows(&x)?;
            let q = scaled(a.query.forward_rows(&h, rows)?, scale);
            let (k, v) = (
                a.key.forward_rows(&h, rows)?,
                a.value.forward_rows(&h, rows)?,
            );
            let kv = cache.tokens[i].host(rows)?;
            if kv.len() != rows {
                return Err(crate::error::InferError::Mlx(format!(
                    "a decoder step of {rows} rows over a cache of {}",
                    kv.len()
                )));
            }
            for (r, (ks, vs)) in kv.iter_mut().enumerate() {
                ks.extend_from_slice(&k[r * d..(r + 1) * d]);
                vs.extend_from_slice(&v[r * d..(r + 1) * d]);
            }
            let kv = &*kv;
            let mut o = vec![0f32; rows * d];
            let out = kernels::pool::Out(o.as_mut_ptr());
            kernels::pool::run(rows * heads, |task| {
                let (r, hh) = (task / heads, task % heads);
                let (ks, vs) = &kv[r];
                let cols = hh * dh..(hh + 1) * dh;
                let q = &q[r * d..][cols.clone()];
                let mut w = vec![0f32; ks.len() / d];
                kernels::attention::scores_by_row(q, |j| &ks[j * d..][cols.clone()], scale, &mut w);
                let p = softmax_host(&w);
                // SAFETY: each task writes only its own row and head of `o`.
                let o = unsafe { std::slice::from_raw_parts_mut(out.at(r * d + hh * dh), dh) };
                kernels::attention::weighted_rows(&p, &vs[hh * dh..], d, o);
            });
            add(&mut x, &a.out.forward_rows(&o, rows)?);

            let (c, c_ln) = block
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let h = c_ln.forward_rows(&x)?;
            let q = scaled(c.query.forward_rows(&h, rows)?, scale);
            let (ck, cv) = &cache.cross[i];
            let (ck, cv) = (
                ck.try_as_slice::<f32>().map_err(|_| cross_unreadable())?,
                cv.try_as_slice::<f32>().map_err(|_| cross_unreadable())?,
            );
            let frames = ck.len() / d;
            let mut o = vec![0f32; rows * d];
            let out = kernels::pool::Out(o.as_mut_ptr());
            kernels::pool::run(rows * heads, |task| {
                let (r, hh) = (task / heads, task % heads);
                let q = &q[r * d + hh * dh..r * d + (hh + 1) * dh];
                let mut w = vec![0f32; frames];
                kernels::attention::weighted_rows(q, &ck[hh * dh * frames..], frames, &mut w);
                let p = softmax_host(&w);
                let vs = &cv[hh * frames * dh..(hh + 1) * frames * dh];
                // SAFETY: each task writes only its own row and head of `o`.
                let o = unsafe { std::slice::from_raw_parts_mut(out.at(r * d + hh * dh), dh) };
                kernels::attention::weighted_rows(&p, vs, dh, o);
            });
            add(&mut x, &c.out.forward_rows(&o, rows)?);

            let h = block.mlp_ln.forward_rows(&x)?;
            let m = block.mlp1.forward_rows(&h, rows)?;
            let mut g = vec![0f32; m.len()];
            kernels::activations::gelu(&m, &mut g);
            add(&mut x, &block.mlp2.forward_rows(&g, rows)?);
        }
        cache.offset += 1;
        let x = self.ln.forward_rows(&x)?;
        let logits = self.token_embedding.logits_rows(&x, rows)?;
        let n = logits.len() / rows;
        Ok(Array::from_slice(&logits, &[rows as i32, 1, n as i32]))
    }
}

/// `v · scale`, each value rounded on its own (MLX's multiply).
fn scaled(mut v: Vec<f32>, scale: f32) -> Vec<f32> {
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

/// MLX's precise softmax of one row (the CPU kernel, bit for bit).
fn softmax_host(x: &[f32]) -> Vec<f32> {
    let mut p = vec![0f32; x.len()];
    kernels::activations::softmax_row(x, &mut p);
    p
}

fn cross_unreadable() -> crate::error::InferError {
    crate::error::InferError::Mlx("cross-attention keys unreadable on the host".into())
}

/// Loads the Whisper checkpoint in `dir` under `policy` (f16/bf16 → f32 on a CPU).
pub fn load(dir: &Path, policy: DtypePolicy) -> Result<Whisper> {
    let layout = WhisperLayout::detect(dir).ok_or_else(|| {
        broken(
            dir,
            "not a Whisper checkpoint: no model.bin (CTranslate2), no config.json with n_mels/\
             n_audio_ctx (mlx-whisper) or model_type `whisper` (transformers)",
        )
    })?;
    let (dims, map, quant, alignment, format) = match layout {
        WhisperLayout::CTranslate2 => from_ct2(dir)?,
        WhisperLayout::MlxWhisper => from_mlx_whisper(dir)?,
        WhisperLayout::Transformers => from_transformers(dir)?,
    };
    dims.validate(dir)?;
    let stored_dtype = map
        .get("decoder.token_embedding.weight")
        .map(|a| {
            if a.dtype() == Dtype::Uint32 {
                Dtype::Float32
            } else {
                a.dtype()
            }
        })
        .or_else(|| map.get("decoder.token_embedding.scales").map(Array::dtype))
        .unwrap_or(Dtype::Float32);
    let mut w = Weights::new(dir.to_path_buf(), map, format);
    let quantization = quant
        .as_ref()
        .and_then(|q| q.default)
        .map(|s| (s.bits, s.group_size));
    w.set_quantization(quant);
    // The decoder's matrices run through the host step's kernels, which read f16 as stored.
    let host_reads_f16 = crate::runtime::default_device_is_cpu()
        && <half::f16 as kernels::matvec::WeightValue>::simd();
    w.apply_policy_keeping_f16(policy, |name| {
        host_reads_f16
            && name.starts_with("decoder.")
            && name.ends_with(".weight")
            && !name.ends_with("ln.weight")
    })?;
    let weight_bytes = w.nbytes();
    w.materialize()?;
    let policy_applied = std::mem::take(&mut w.policy_applied);
    let model = build(
        dir,
        layout,
        dims,
        &mut w,
        stored_dtype,
        weight_bytes,
        alignment,
        quantization,
        policy_applied,
    )?;
    w.finish()?;
    Ok(model)
}

type Parts = (
    WhisperDims,
    HashMap<String, Array>,
    Option<Quantization>,
    Vec<(usize, usize)>,
    WeightFormat,
);

#[allow(clippy::too_many_arguments)]
fn build(
    dir: &Path,
    layout: WhisperLayout,
    dims: WhisperDims,
    w: &mut Weights,
    stored_dtype: Dtype,
    weight_bytes: usize,
    alignment: Vec<(usize, usize)>,
    quantization: Option<(i32, i32)>,
    policy_applied: Vec<String>,
) -> Result<Whisper> {
    let ln = |w: &mut Weights, p: &str| w.layer_norm(p, 1e-5);
    let mha = |w: &mut Weights, p: &str, d: usize, n_head: usize| -> Result<MultiHeadAttention> {
        Ok(MultiHeadAttention {
            query: w.linear(&format!("{p}.query"), d, d, true)?,
            key: w.linear(&format!("{p}.key"), d, d, false)?,
            value: w.linear(&format!("{p}.value"), d, d, true)?,
            out: w.linear(&format!("{p}.out"), d, d, true)?,
            n_head,
        })
    };
    let block =
        |w: &mut Weights, p: &str, d: usize, n_head: usize, cross: bool| -> Result<ResidualBlock> {
            Ok(ResidualBlock {
                attn: mha(w, &format!("{p}.attn"), d, n_head)?,
                attn_ln: ln(w, &format!("{p}.attn_ln"))?,
                cross: if cross {
                    Some((
                        mha(w, &format!("{p}.cross_attn"), d, n_head)?,
                        ln(w, &format!("{p}.cross_attn_ln"))?,
                    ))
                } else {
                    None
                },
                mlp1: w.linear(&format!("{p}.mlp1"), d, 4 * d, true)?,
                mlp2: w.linear(&format!("{p}.mlp2"), 4 * d, d, true)?,
                mlp_ln: ln(w, &format!("{p}.mlp_ln"))?,
            })
        };
    let conv = |w: &mut Weights, p: &str, out: usize, inp: usize| -> Result<(Array, Array)> {
        let weight = w.take(&format!("{p}.weight"))?;
        if weight.shape() != [out as i32, 3, inp as i32] {
            return Err(broken(
                dir,
                format!(
                    "`{p}.weight` has shape {:?}, expected [{out}, 3, {inp}]",
                    weight.shape()
                ),
            ));
        }
        Ok((weight, w.take(&format!("{p}.bias"))?))
    };
    let d_a = dims.n_audio_state;
    let d_t = dims.n_text_state;
    let conv1 = conv(w, "encoder.conv1", d_a, dims.n_mels)?;
    let conv2 = conv(w, "encoder.conv2", d_a, d_a)?;
    // The encoder's blocks attend to the audio only; the decoder's also across to it.
    let blocks = |w: &mut Weights, side: &str, n: usize, d: usize, heads: usize| {
        (0..n)
            .map(|i| {
                block(
                    w,
                    &format!("{side}.blocks.{i}"),
                    d,
                    heads,
                    side == "decoder",
                )
            })
            .collect::<Result<Vec<_>>>()
    };
    let encoder = blocks(w, "encoder", dims.n_audio_layer, d_a, dims.n_audio_head)?;
    let ln_post = ln(w, "encoder.ln_post")?;
    let token_embedding = w.embedding("decoder.token_embedding", dims.n_vocab, d_t)?;
    let text_positions = w.take("decoder.positional_embedding")?;
    if text_positions.shape() != [dims.n_text_ctx as i32, d_t as i32] {
        return Err(broken(
            dir,
            "`decoder.positional_embedding` does not match n_text_ctx × n_text_state",
        ));
    }
    let decoder = blocks(w, "decoder", dims.n_text_layer, d_t, dims.n_text_head)?;
    let ln_dec = ln(w, "decoder.ln")?;
    let float = text_positions.dtype();
    let audio_positions = sinusoids(dims.n_audio_ctx, d_a)?.as_dtype(float)?;
    let mask = causal_mask(dims.n_text_ctx)?.as_dtype(float)?;
    let alignment: Vec<(usize, usize)> = alignment
        .into_iter()
        .filter(|&(l, h)| l < dims.n_text_layer && h < dims.n_text_head)
        .collect();
    let alignment_heads = if alignment.is_empty() {
        // mlx-whisper's default: every head of the last half of the decoder layers.
        (dims.n_text_layer / 2..dims.n_text_layer)
            .flat_map(|l| (0..dims.n_text_head).map(move |h| (l, h)))
            .collect()
    } else {
        alignment
    };
    let host_decoder = decoder.iter().all(|b| {
        let lin = |a: &MultiHeadAttention| {
            [&a.query, &a.key, &a.value, &a.out]
                .iter()
                .all(|l| l.runs_on_host())
        };
        lin(&b.attn)
            && b.cross.as_ref().is_some_and(|(c, l)| {
                lin(c) && l.host_params().is_some_and(|(w, _)| w.len() == d_t)
            })
            && b.mlp1.runs_on_host()
            && b.mlp2.runs_on_host()
            && [&b.attn_ln, &b.mlp_ln]
                .iter()
                .all(|l| l.host_params().is_some_and(|(w, _)| w.len() == d_t))
    }) && token_embedding.runs_on_host()
        && text_positions.try_as_slice::<f32>().is_ok()
        && ln_dec.host_params().is_some_and(|(w, _)| w.len() == d_t);
    Ok(Whisper {
        dims,
        layout,
        quantization,
        stored_dtype,
        weight_bytes,
        policy_applied,
        alignment_heads,
        dir: dir.to_path_buf(),
        conv1,
        conv2,
        audio_positions,
        encoder,
        ln_post,
        token_embedding,
        text_positions,
        decoder,
        ln: ln_dec,
        mask,
        host_decoder,
    })
}

/// mlx-whisper's `sinusoids(length, channels)`, in MLX f32 ops as it computes them.
fn sinusoids(length: usize, channels: usize) -> Result<Array> {
    let inc = (10000f64).ln() / (channels / 2 - 1) as f64;
    let half = ops::arange::<_, f32>(0, (channels / 2) as i32, None)?;
    let inv = ops::exp(&ops::multiply(&half, Array::from_f32(-inc as f32))?)?;
    let t = ops::arange::<_, f32>(0, length as i32, None)?.reshape(&[length as i32, 1])?;
    let scaled = ops::multiply(&t, &inv.reshape(&[1, -1])?)?;
    Ok(ops::concatenate(
        &[ops::sin(&scaled)?, ops::cos(&scaled)?],
        1,
    )?)
}

/// MLX's `create_additive_causal_mask(n)`: the lowest f32 above the diagonal.
fn causal_mask(n: usize) -> Result<Array> {
    let idx = ops::arange::<_, i32>(0, n as i32, None)?;
    let above = ops::lt(&idx.reshape(&[-1, 1])?, &idx.reshape(&[1, -1])?)?;
    Ok(ops::multiply(
        &above.as_dtype(Dtype::Float32)?,
        Array::from_f32(f32::MIN),
    )?)
}

fn config_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| broken(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| broken(path, format!("not valid JSON: {e}")))
}

fn from_mlx_whisper(dir: &Path) -> Result<Parts> {
    let cfg_path = dir.join("config.json");
    let cfg = config_json(&cfg_path)?;
    let dims: WhisperDims = serde_json::from_value(cfg.clone())
        .map_err(|e| broken(&cfg_path, format!("not an mlx-whisper config: {e}")))?;
    let quant = cfg.get("quantization").and_then(Quantization::from_json);
    let st = dir.join("weights.safetensors");
    let map = if st.is_file() {
        Array::load_safetensors(&st)
            .map_err(|e| broken(&st, format!("cannot read safetensors: {e}")))?
    } else if dir.join("weights.npz").is_file() {
        crate::npz::load_npz(&dir.join("weights.npz"))?
    } else {
        load_safetensors_dir(dir)?
    };
    let mut map = map;
    // Converted checkpoints may carry the alignment heads as an (n, 2) array.
    let alignment = match map.remove("alignment_heads") {
        Some(a) if a.ndim() == 2 && a.shape()[1] == 2 => {
            let a = a.as_dtype(Dtype::Int32)?;
            a.eval()?;
            a.as_slice::<i32>()
                .chunks(2)
                .map(|p| (p[0].max(0) as usize, p[1].max(0) as usize))
                .collect()
        }
        _ => Vec::new(),
    };
    Ok((dims, map, quant, alignment, WeightFormat::Safetensors))
}

fn from_transformers(dir: &Path) -> Result<Parts> {
    let cfg_path = dir.join("config.json");
    let cfg = config_json(&cfg_path)?;
    let get = |k: &str| -> Result<usize> {
        cfg[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| broken(&cfg_path, format!("`{k}` is missing")))
    };
    let d = get("d_model")?;
    let dims = WhisperDims {
        n_mels: get("num_mel_bins")?,
        n_audio_ctx: get("max_source_positions")?,
        n_audio_state: d,
        n_audio_head: get("encoder_attention_heads")?,
        n_audio_layer: get("encoder_layers")?,
        n_vocab: get("vocab_size")?,
        n_text_ctx: get("max_target_positions")?,
        n_text_state: d,
        n_text_head: get("decoder_attention_heads")?,
        n_text_layer: get("decoder_layers")?,
    };
    let raw = load_safetensors_dir(dir)?;
    let mut map = HashMap::new();
    for (name, a) in raw {
        let n = name.strip_prefix("model.").unwrap_or(&name);
        if n == "proj_out.weight" || n == "encoder.embed_positions.weight" {
            continue; // tied to the embedding / recomputed as mlx-whisper does
        }
        let mapped = n
            .replace("encoder.layers.", "encoder.blocks.")
            .replace("decoder.layers.", "decoder.blocks.")
            .replace(".self_attn_layer_norm", ".attn_ln")
            .replace(".encoder_attn_layer_norm", ".cross_attn_ln")
            .replace(".final_layer_norm", ".mlp_ln")
            .replace(".self_attn.", ".attn.")
            .replace(".encoder_attn.", ".cross_attn.")
            .replace(".q_proj", ".query")
            .replace(".k_proj", ".key")
            .replace(".v_proj", ".value")
            .replace(".out_proj", ".out")
            .replace(".fc1", ".mlp1")
            .replace(".fc2", ".mlp2")
            .replace("encoder.layer_norm", "encoder.ln_post")
            .replace("decoder.layer_norm", "decoder.ln")
            .replace("decoder.embed_tokens", "decoder.token_embedding")
            .replace(
                "decoder.embed_positions.weight",
                "decoder.positional_embedding",
            );
        let a = if mapped.ends_with("conv1.weight") || mapped.ends_with("conv2.weight") {
            a.transpose_axes(&[0, 2, 1])?
        } else {
            a
        };
        map.insert(mapped, a);
    }
    let alignment = alignment_from_generation_config(dir);
    Ok((dims, map, None, alignment, WeightFormat::Safetensors))
}

fn alignment_from_generation_config(dir: &Path) -> Vec<(usize, usize)> {
    let cfg = config_json(&dir.join("generation_config.json")).ok();
    pairs(cfg.as_ref().and_then(|c| c.get("alignment_heads")))
}

fn pairs(v: Option<&Value>) -> Vec<(usize, usize)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_u64()? as usize, p.get(1)?.as_u64()? as usize)))
                .collect()
        })
        .unwrap_or_default()
}

fn from_ct2(dir: &Path) -> Result<Parts> {
    let path = dir.join("model.bin");
    let m = ct2::read(&path)?;
    if m.spec != "WhisperSpec" {
        return Err(unsupported(
            &path,
            format!("a CTranslate2 `{}` model, not Whisper", m.spec),
        ));
    }
    let mut arrays = m.arrays;
    let mut take = |n: &str| -> Result<Array> {
        arrays
            .remove(n)
            .ok_or_else(|| broken(&path, format!("variable `{n}` is missing")))
    };
    let scalar = |n: &str| -> Result<usize> {
        m.scalars
            .get(n)
            .map(|&v| v as usize)
            .ok_or_else(|| broken(&path, format!("scalar `{n}` is missing")))
    };
    let mut map = HashMap::new();
    let conv1 = take("encoder/conv1/weight")?;
    let rank = |a: &Array, r: usize, n: &str| -> Result<()> {
        if a.ndim() == r {
            Ok(())
        } else {
            Err(broken(
                &path,
                format!(
                    "`{n}` has shape {:?}; a rank-{r} tensor was expected",
                    a.shape()
                ),
            ))
        }
    };
    rank(&conv1, 3, "encoder/conv1/weight")?;
    let (d_a, n_mels) = (conv1.shape()[0] as usize, conv1.shape()[1] as usize);
    map.insert(
        "encoder.conv1.weight".into(),
        conv1.transpose_axes(&[0, 2, 1])?,
    );
    map.insert("encoder.conv1.bias".into(), take("encoder/conv1/bias")?);
    map.insert(
        "encoder.conv2.weight".into(),
        take("encoder/conv2/weight")?.transpose_axes(&[0, 2, 1])?,
    );
    map.insert("encoder.conv2.bias".into(), take("encoder/conv2/bias")?);
    let enc_pos = take("encoder/position_encodings/encodings")?;
    rank(&enc_pos, 2, "encoder/position_encodings/encodings")?;
    let n_audio_ctx = enc_pos.shape()[0] as usize;
    let embed = take("decoder/embeddings/weight")?;
    rank(&embed, 2, "decoder/embeddings/weight")?;
    let (n_vocab, d_t) = (embed.shape()[0] as usize, embed.shape()[1] as usize);
    map.insert("decoder.token_embedding.weight".into(), embed);
    let text_pos = take("decoder/position_encodings/encodings")?;
    rank(&text_pos, 2, "decoder/position_encodings/encodings")?;
    let n_text_ctx = text_pos.shape()[0] as usize;
    map.insert("decoder.positional_embedding".into(), text_pos);
    arrays.remove("decoder/projection/weight");
    let count = |prefix: &str, arrays: &HashMap<String, Array>| {
        (0..)
            .take_while(|i| arrays.contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")))
            .count()
    };
    let n_audio_layer = count("encoder", &arrays);
    let n_text_layer = count("decoder", &arrays);
    let mut take = |n: &str| -> Result<Array> {
        arrays
            .remove(n)
            .ok_or_else(|| broken(&path, format!("variable `{n}` is missing")))
    };
    for (side, n) in [("encoder", n_audio_layer), ("decoder", n_text_layer)] {
        for i in 0..n {
            let src = format!("{side}/layer_{i}");
            let dst = format!("{side}.blocks.{i}");
            let mut moved = vec![
                ("self_attention/layer_norm/gamma", "attn_ln.weight"),
                ("self_attention/layer_norm/beta", "attn_ln.bias"),
                ("ffn/layer_norm/gamma", "mlp_ln.weight"),
                ("ffn/layer_norm/beta", "mlp_ln.bias"),
                ("self_attention/linear_1/weight", "attn.out.weight"),
                ("self_attention/linear_1/bias", "attn.out.bias"),
                ("ffn/linear_0/weight", "mlp1.weight"),
                ("ffn/linear_0/bias", "mlp1.bias"),
                ("ffn/linear_1/weight", "mlp2.weight"),
                ("ffn/linear_1/bias", "mlp2.bias"),
            ];
            if side == "decoder" {
                moved.extend([
                    ("attention/layer_norm/gamma", "cross_attn_ln.weight"),
                    ("attention/layer_norm/beta", "cross_attn_ln.bias"),
                    ("attention/linear_0/weight", "cross_attn.query.weight"),
                    ("attention/linear_0/bias", "cross_attn.query.bias"),
                    ("attention/linear_2/weight", "cross_attn.out.weight"),
                    ("attention/linear_2/bias", "cross_attn.out.bias"),
                ]);
            }
            for (from, to) in moved {
                map.insert(format!("{dst}.{to}"), take(&format!("{src}/{from}"))?);
            }
            // Fused projections, split: q|k|v (self) and k|v (cross); the key has no bias
            // (its slot in the fused bias is zero).
            let mut split = vec![("self_attention/linear_0", "attn", 3)];
            if side == "decoder" {
                split.push(("attention/linear_1", "cross_attn", 2));
            }
            for (from, to, parts) in split {
                let w = take(&format!("{src}/{from}/weight"))?.split_equal(parts, 0)?;
                let b = take(&format!("{src}/{from}/bias"))?.split_equal(parts, 0)?;
                let names: &[&str] = if parts == 3 {
                    &["query", "key", "value"]
                } else {
                    &["key", "value"]
                };
                for (k, name) in names.iter().enumerate() {
                    map.insert(format!("{dst}.{to}.{name}.weight"), w[k].clone());
                    if *name != "key" {
                        map.insert(format!("{dst}.{to}.{name}.bias"), b[k].clone());
                    }
                }
            }
        }
    }
    for side in ["encoder", "decoder"] {
        let to = if side == "encoder" {
            "encoder.ln_post"
        } else {
            "decoder.ln"
        };
        map.insert(
            format!("{to}.weight"),
            take(&format!("{side}/layer_norm/gamma"))?,
        );
        map.insert(
            format!("{to}.bias"),
            take(&format!("{side}/layer_norm/beta"))?,
        );
    }
    if let Some(left) = arrays.keys().next() {
        return Err(broken(
            &path,
            format!("variable `{left}` does not belong to a Whisper model"),
        ));
    }
    let dims = WhisperDims {
        n_mels,
        n_audio_ctx,
        n_audio_state: d_a,
        n_audio_head: scalar("encoder/num_heads")?,
        n_audio_layer,
        n_vocab,
        n_text_ctx,
        n_text_state: d_t,
        n_text_head: scalar("decoder/num_heads")?,
        n_text_layer,
    };
    let alignment = pairs(
        config_json(&dir.join("config.json"))
            .ok()
            .as_ref()
            .and_then(|c| c.get("alignment_heads")),
    );
    Ok((dims, map, None, alignment, WeightFormat::Safetensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_counts_follow_the_vocabulary() {
        let mut d = WhisperDims {
            n_mels: 80,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_vocab: 51864,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
        };
        assert!(!d.is_multilingual());
        assert_eq!(d.num_languages(), 99);
        d.n_vocab = 51865;
        assert!(d.is_multilingual());
        assert_eq!(d.num_languages(), 99);
        d.n_vocab = 51866;
        assert_eq!(d.num_languages(), 100);
    }

    #[test]
    fn the_causal_mask_is_the_lowest_f32_above_the_diagonal() {
        let m = causal_mask(3).unwrap();
        assert_eq!(
            m.as_slice::<f32>(),
            [0.0, f32::MIN, f32::MIN, 0.0, 0.0, f32::MIN, 0.0, 0.0, 0.0]
        );
    }
}
