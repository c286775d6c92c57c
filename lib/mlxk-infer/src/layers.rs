//! The shared layers every architecture is built from: linear (dense or affine-quantized),
//! embedding, RMSNorm, RoPE variants, KV cache, attention and gated MLPs. Each computes exactly
//! the operations mlx-lm computes, in the same order, so greedy tokens match it (the CPU
//! kernels' sums can differ in the last bits where BLAS orders a dot product otherwise).
use crate::config::QuantSpec;
use crate::error::Result;
use crate::kernels::{
    self, HostMatrix, PackedQuant, dense_matmul, packed_matmul, quantized_matmul,
};
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::{IndexOp, TryIndexMutOp};
use mlx_rs::{Array, Dtype, ops};

/// `y = x Wᵀ (+ b)`, with `W` dense or packed by MLX's affine quantization.
#[derive(Debug)]
pub enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        spec: QuantSpec,
    },
    /// Quantized, repacked at load for the CPU kernel (which computes MLX's bits).
    Packed {
        weight: Box<PackedQuant>,
        bias: Option<Array>,
    },
}

impl Linear {
    /// A quantized layer: repacked for the CPU kernel where it computes the layout, else kept
    /// in MLX's arrays for MLX's op.
    pub fn quantized(
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        spec: QuantSpec,
    ) -> Result<Linear> {
        Ok(
            match kernels::pack_quantized(&weight, &scales, &biases, spec)? {
                Some(weight) => Linear::Packed {
                    weight: Box::new(weight),
                    bias,
                },
                None => Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    bias,
                    spec,
                },
            },
        )
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight, bias } => dense_matmul(x, weight, bias.as_ref())?,
            Linear::Packed { weight, bias } => plus_bias(packed_matmul(x, weight)?, bias)?,
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                spec,
            } => plus_bias(quantized_matmul(x, weight, scales, biases, *spec)?, bias)?,
        })
    }
}

impl Linear {
    /// The weight and bias as host slices, where [`Linear::forward_rows`] computes this layer:
    /// dense f32 (the [`matvec`](crate::kernels::matvec) kernel) or repacked (the
    /// [`qmatmul`](crate::kernels::qmatmul) kernel), with an f32 bias, on a CPU device.
    pub fn runs_on_host(&self) -> bool {
        let bias_ok = |b: &Option<Array>| {
            b.as_ref()
                .is_none_or(|b| b.ndim() == 1 && b.try_as_slice::<f32>().is_ok())
        };
        crate::runtime::default_device_is_cpu()
            && match self {
                Linear::Dense { weight, bias } => HostMatrix::of(weight).is_some() && bias_ok(bias),
                Linear::Packed { bias, .. } => bias_ok(bias),
                Linear::Quantized { .. } => false,
            }
    }

    /// `x Wᵀ (+ b)` for `m` rows of `x` held on the host, computed as [`Linear::forward`]
    /// computes a few rows; an error for a layer that does not [`Linear::runs_on_host`].
    pub fn forward_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let not_host = || crate::error::InferError::Mlx("a layer the CPU path cannot run".into());
        // A bias the host cannot read is an error, never a product without it.
        fn bias(b: &Option<Array>) -> Option<std::result::Result<&[f32], ()>> {
            b.as_ref().map(|b| {
                if b.ndim() == 1 {
                    b.try_as_slice::<f32>().map_err(|_| ())
                } else {
                    Err(())
                }
            })
        }
        let bias = |b| bias(b).transpose().map_err(|_| not_host());
        match self {
            Linear::Dense { weight, bias: b } => {
                let w = HostMatrix::of(weight).ok_or_else(not_host)?;
                let (n, k) = (weight.shape()[0] as usize, weight.shape()[1] as usize);
                let mut out = vec![0f32; m * n];
                w.matmul_t(x, m, k, n, bias(b)?, &mut out);
                Ok(out)
            }
            Linear::Packed { weight, bias: b } => {
                let b = bias(b)?;
                let mut out = vec![0f32; m * weight.n];
                crate::kernels::qmatmul::qmatmul_t(x, m, weight, &mut out);
                if let Some(b) = b {
                    for row in out.chunks_exact_mut(weight.n) {
                        for (o, &bv) in row.iter_mut().zip(b) {
                            *o += bv;
                        }
                    }
                }
                Ok(out)
            }
            Linear::Quantized { .. } => Err(not_host()),
        }
    }
}

/// `y + b` for a layer with a bias, `y` for one without.
fn plus_bias(y: Array, bias: &Option<Array>) -> Result<Array> {
    Ok(match bias {
        Some(b) => ops::add(&y, b)?,
        None => y,
    })
}

/// Token embedding table, dense or quantized; also usable as the output projection (tied).
#[derive(Debug)]
pub enum Embedding {
    Dense(Array),
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        spec: QuantSpec,
    },
    /// Quantized, repacked for the CPU kernel; rows are looked up and dequantized from it.
    Packed(Box<PackedQuant>),
}

impl Embedding {
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense(w) => w.take_axis(ids, 0)?,
            Embedding::Packed(w) => {
                let mut dims = ids.shape().to_vec();
                dims.push(w.k as i32);
                let mut out = vec![0f32; ids.size() * w.k];
                // An empty lookup reads no ids (MLX has no buffer to show for them).
                if ids.size() > 0 {
                    let ids = ids.as_dtype(Dtype::Int64)?;
                    ids.eval()?;
                    let rows = ids.try_as_slice::<i64>().map_err(|e| {
                        crate::error::InferError::Mlx(format!("token ids unreadable: {e:?}"))
                    })?;
                    for (&r, o) in rows.iter().zip(out.chunks_exact_mut(w.k)) {
                        if r < 0 || r as usize >= w.n {
                            return Err(crate::error::InferError::Mlx(format!(
                                "token id {r} is outside the embedding's {} rows",
                                w.n
                            )));
                        }
                        w.dequantize_row(r as usize, o);
                    }
                }
                Array::from_slice(&out, &dims)
            }
            Embedding::Quantized {
                weight,
                scales,
                biases,
                spec,
            } => ops::dequantize(
                weight.take_axis(ids, 0)?,
                scales.take_axis(ids, 0)?,
                &biases.take_axis(ids, 0)?,
                spec.group_size,
                spec.bits,
            )?,
        })
    }

    /// Logits from hidden states with the embedding matrix as output weights.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense(w) => dense_matmul(x, w, None)?,
            Embedding::Packed(w) => packed_matmul(x, w)?,
            Embedding::Quantized {
                weight,
                scales,
                biases,
                spec,
            } => quantized_matmul(x, weight, scales, biases, *spec)?,
        })
    }

    /// Whether [`Embedding::rows`] and [`Embedding::logits_rows`] compute this table on the
    /// host (dense f32 or repacked, on a CPU device).
    pub fn runs_on_host(&self) -> bool {
        crate::runtime::default_device_is_cpu()
            && match self {
                Embedding::Dense(w) => HostMatrix::of(w).is_some(),
                Embedding::Packed(_) => true,
                Embedding::Quantized { .. } => false,
            }
    }

    /// The rows of `ids`, one after another, as [`Embedding::forward`] gives them.
    pub fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let not_host = || crate::error::InferError::Mlx("a table the CPU path cannot read".into());
        let (dense, n, k) = match self {
            Embedding::Dense(w) => (
                Some(HostMatrix::of(w).ok_or_else(not_host)?),
                w.shape()[0] as usize,
                w.shape()[1] as usize,
            ),
            Embedding::Packed(w) => (None, w.n, w.k),
            Embedding::Quantized { .. } => return Err(not_host()),
        };
        let mut out = vec![0f32; ids.len() * k];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(k)) {
            let r = id as usize;
            if r >= n {
                return Err(crate::error::InferError::Mlx(format!(
                    "token id {r} is outside the embedding's {n} rows"
                )));
            }
            match (&dense, self) {
                (Some(HostMatrix::F32(w)), _) => o.copy_from_slice(&w[r * k..(r + 1) * k]),
                (Some(HostMatrix::F16(w)), _) => {
                    for (o, v) in o.iter_mut().zip(&w[r * k..(r + 1) * k]) {
                        *o = v.to_f32();
                    }
                }
                (None, Embedding::Packed(w)) => w.dequantize_row(r, o),
                (None, _) => return Err(not_host()),
            }
        }
        Ok(out)
    }

    /// Logits for `m` host rows of `x`, as [`Embedding::as_linear`] computes a few rows.
    pub fn logits_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let not_host = || crate::error::InferError::Mlx("a table the CPU path cannot read".into());
        match self {
            Embedding::Dense(w) => {
                let host = HostMatrix::of(w).ok_or_else(not_host)?;
                let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
                let mut out = vec![0f32; m * n];
                host.matmul_t(x, m, k, n, None, &mut out);
                Ok(out)
            }
            Embedding::Packed(w) => {
                let mut out = vec![0f32; m * w.n];
                crate::kernels::qmatmul::qmatmul_t(x, m, w, &mut out);
                Ok(out)
            }
            Embedding::Quantized { .. } => Err(not_host()),
        }
    }

    /// The data type activations get from this table.
    pub fn dtype(&self) -> Dtype {
        match self {
            Embedding::Dense(w) => w.dtype(),
            Embedding::Packed(_) => Dtype::Float32,
            Embedding::Quantized { scales, .. } => scales.dtype(),
        }
    }
}

/// Root-mean-square normalization over the last axis.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Array,
    pub eps: f32,
}

impl RmsNorm {
    /// A norm whose stored weight is used as is (`x̂ · w`).
    pub fn new(weight: Array, eps: f32) -> RmsNorm {
        RmsNorm { weight, eps }
    }

    /// Gemma's norm stores `w` and multiplies by `1 + w`.
    pub fn one_plus(weight: Array, eps: f32) -> Result<RmsNorm> {
        let w = ops::add(Array::from_f32(1.0), &weight)?;
        Ok(RmsNorm { weight: w, eps })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        if let Some(y) = kernels::rms_norm_f32(x, &self.weight, self.eps)? {
            return Ok(y);
        }
        Ok(fast::rms_norm(x, Some(&self.weight), self.eps)?)
    }
}

/// Rotary position embedding: plain (with a linear position scale) or with precomputed
/// per-dimension frequencies (llama-3 scaling, GGUF `rope_freqs`).
#[derive(Debug)]
pub struct Rope {
    pub dims: i32,
    pub traditional: bool,
    pub base: Option<f32>,
    pub scale: f32,
    pub freqs: Option<Array>,
    /// Qwen2-VL's multimodal rotation instead of `fast::rope`.
    pub mrope: Option<MRope>,
}

impl Rope {
    pub fn plain(dims: usize, traditional: bool, base: f32, scale: f32) -> Rope {
        Rope {
            dims: dims as i32,
            traditional,
            base: Some(base),
            scale,
            freqs: None,
            mrope: None,
        }
    }

    /// Qwen2-VL's M-RoPE over whole `dims`-wide heads (see [`MRope`]).
    pub fn multimodal(dims: usize, base: f32, section: [usize; 3]) -> Result<Rope> {
        Ok(Rope {
            dims: dims as i32,
            traditional: false,
            base: None,
            scale: 1.0,
            freqs: None,
            mrope: Some(MRope::new(dims, base, section)?),
        })
    }

    /// From a Hugging Face `rope_scaling` entry (absent, `default`, `linear` or `llama3`).
    pub fn from_scaling(
        dims: usize,
        traditional: bool,
        base: f32,
        scaling: Option<&serde_json::Value>,
    ) -> std::result::Result<Rope, String> {
        let Some(s) = scaling.filter(|v| !v.is_null()) else {
            return Ok(Rope::plain(dims, traditional, base, 1.0));
        };
        let kind = s
            .get("type")
            .or_else(|| s.get("rope_type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let num = |k: &str| s.get(k).and_then(serde_json::Value::as_f64);
        match kind {
            "default" => Ok(Rope::plain(dims, traditional, base, 1.0)),
            "linear" => {
                let f = num("factor").ok_or("rope_scaling `linear` needs `factor`")?;
                Ok(Rope::plain(dims, traditional, base, (1.0 / f) as f32))
            }
            "llama3" => {
                let factor = num("factor").ok_or("rope_scaling `llama3` needs `factor`")? as f32;
                let low = num("low_freq_factor").unwrap_or(1.0) as f32;
                let high = num("high_freq_factor").unwrap_or(4.0) as f32;
                let old = num("original_max_position_embeddings").unwrap_or(8192.0) as f32;
                let freqs = llama3_freqs(dims, base, factor, low, high, old)
                    .map_err(|e| format!("llama3 rope frequencies: {e}"))?;
                Ok(Rope {
                    dims: dims as i32,
                    traditional,
                    base: None,
                    scale: 1.0,
                    freqs: Some(freqs),
                    mrope: None,
                })
            }
            other => Err(format!(
                "rope_scaling type `{other}` is not supported (supported: default, linear, llama3)"
            )),
        }
    }

    /// `fast::rope` of one position (`offset`) on the host, for `heads` rows of `head_dim`
    /// values: what MLX's CPU computes, its fallback of plain ops — positions `(0 + offset) ·
    /// scale`, inverse frequencies `exp(-i · (ln base / (dims/2)))` (MLX's `exp`) or
    /// `1 / freqs`, `theta = position · inv`, MLX's `cos`/`sin`, then `x1·cos − x2·sin`
    /// and `x1·sin + x2·cos`, each product and sum rounded on its own.
    pub fn apply_host(&self, x: &mut [f32], head_dim: usize, offset: usize) -> Result<()> {
        let (cos, sin) = self.host_table(offset)?;
        self.rotate_host(x, head_dim, &cos, &sin)
    }

    /// The cosines and sines of one position, as [`Rope::apply_host`] uses them.
    pub fn host_table(&self, offset: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let bad = |m: String| crate::error::InferError::Mlx(format!("RoPE on the host: {m}"));
        let half = self.dims as usize / 2;
        if let Some(m) = &self.mrope {
            // Text positions: the three axes agree, so every frequency turns by the one.
            return Ok(m.host_table(offset as f32));
        }
        let inv: Vec<f32> = match (&self.freqs, self.base) {
            (Some(f), _) => {
                let f = crate::kernels::host::<f32>(f)?;
                let f = f.try_as_slice::<f32>().map_err(|e| bad(e.to_string()))?;
                if f.len() != half {
                    return Err(bad(format!("{} frequencies for {half} pairs", f.len())));
                }
                f.iter().map(|&v| 1.0 / v).collect()
            }
            (None, Some(base)) => {
                let c = base.ln() / half as f32;
                (0..half)
                    .map(|i| crate::kernels::swiglu::exp(-(i as f32) * c))
                    .collect()
            }
            (None, None) => return Err(bad("no base and no frequencies".into())),
        };
        let position = (0.0f32 + offset as f32) * self.scale;
        let theta: Vec<f32> = inv.iter().map(|&f| position * f).collect();
        let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
        kernels::activations::cos_sin(&theta, &mut cos, &mut sin);
        Ok((cos, sin))
    }

    /// Rotates each `head_dim`-long row of `x` by a position's [`Rope::host_table`].
    pub fn rotate_host(
        &self,
        x: &mut [f32],
        head_dim: usize,
        cos: &[f32],
        sin: &[f32],
    ) -> Result<()> {
        let half = self.dims as usize / 2;
        if 2 * half > head_dim
            || head_dim == 0
            || !x.len().is_multiple_of(head_dim)
            || cos.len() != half
            || sin.len() != half
        {
            return Err(crate::error::InferError::Mlx(format!(
                "RoPE on the host: {} dimensions of {head_dim}-wide rows, {} values",
                self.dims,
                x.len()
            )));
        }
        for row in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = if self.traditional {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, half + i)
                };
                let (x1, x2) = (row[a], row[b]);
                row[a] = x1 * cos[i] - x2 * sin[i];
                row[b] = x1 * sin[i] + x2 * cos[i];
            }
        }
        Ok(())
    }

    /// RoPE of `x` `[B, heads, L, dims]` at positions `offset..offset + L`: those `positions`
    /// give where set (M-RoPE), else the positions themselves.
    pub fn forward_at(
        &self,
        x: &Array,
        offset: usize,
        positions: Option<&RopePositions>,
    ) -> Result<Array> {
        let Some(m) = &self.mrope else {
            return self.forward(x, offset);
        };
        // A cache without the prompt's positions (one restored from a snapshot, say) would
        // turn later positions by `i` instead of `i + delta`: refused, not guessed.
        let p = positions.ok_or_else(|| {
            crate::error::InferError::Mlx(
                "M-RoPE needs the prompt's positions in the cache (VisionModel::new_caches)".into(),
            )
        })?;
        let l = x.shape()[2] as usize;
        let pos: Vec<[i64; 3]> = (offset..offset + l).map(|i| p.at(i)).collect();
        let (cos, sin) = m.tables(&pos)?;
        m.rotate(x, &cos, &sin)
    }

    pub fn forward(&self, x: &Array, offset: usize) -> Result<Array> {
        if self.mrope.is_some() {
            return Err(crate::error::InferError::Mlx(
                "M-RoPE needs its positions (Rope::forward_at)".into(),
            ));
        }
        Ok(fast::rope(
            x,
            self.dims,
            self.traditional,
            self.base,
            self.scale,
            offset as i32,
            self.freqs.as_ref(),
        )?)
    }
}

/// Qwen2-VL's multimodal RoPE, as mlx-vlm computes it on a CPU: each position has a time, a
/// height and a width coordinate (equal for text); the first `section[0]` frequencies turn by
/// the time, the next `section[1]` by the height, the rest by the width. The angles are
/// `f32(position) · inv_freq` with `inv_freq = 1 / base^(2i/dims)` (MLX's `power` and
/// `divide`), rotated as `x·cos + rotate_half(x)·sin` in plain MLX operations — not
/// `fast::rope`, whose frequencies come from `exp` and round differently.
#[derive(Debug)]
pub struct MRope {
    pub inv_freq: Array,
    inv_host: Vec<f32>,
    pub section: [usize; 3],
}

impl MRope {
    pub fn new(dims: usize, base: f32, section: [usize; 3]) -> Result<MRope> {
        if dims == 0 || !dims.is_multiple_of(2) || section.iter().sum::<usize>() != dims / 2 {
            return Err(crate::error::InferError::Options(format!(
                "mrope_section {section:?} does not split the {} frequencies of {dims}-wide heads",
                dims / 2
            )));
        }
        let inv = ops::divide(Array::from_f32(1.0), &base_freqs(dims, base)?)?;
        inv.eval()?;
        let inv_host = inv.as_slice::<f32>().to_vec();
        Ok(MRope {
            inv_freq: inv,
            inv_host,
            section,
        })
    }

    /// Which coordinate (0 time, 1 height, 2 width) turns frequency `j`.
    fn axis(&self, j: usize) -> usize {
        if j < self.section[0] {
            0
        } else if j < self.section[0] + self.section[1] {
            1
        } else {
            2
        }
    }

    /// Cosines and sines `[1, 1, L, dims]` of positions `pos`.
    fn tables(&self, pos: &[[i64; 3]]) -> Result<(Array, Array)> {
        let f = self.inv_host.len();
        let mut p = Vec::with_capacity(pos.len() * f);
        for row in pos {
            p.extend((0..f).map(|j| row[self.axis(j)] as f32));
        }
        let p = Array::from_slice(&p, &[1, 1, pos.len() as i32, f as i32]);
        let freqs = ops::multiply(&p, &self.inv_freq)?;
        let emb = ops::concatenate(&[&freqs, &freqs], -1)?;
        Ok((ops::cos(&emb)?, ops::sin(&emb)?))
    }

    fn rotate(&self, x: &Array, cos: &Array, sin: &Array) -> Result<Array> {
        rotate_half_rope(x, cos, sin)
    }

    /// The host table of a text position `p` (all three coordinates `p`): `cos`/`sin` of
    /// `p · inv_freq`, MLX's functions ([`kernels::activations::cos_sin`]). The rotation
    /// [`Rope::rotate_host`] then computes is this one's: `x₁·c + (−x₂)·s` is `x₁·c − x₂·s`.
    fn host_table(&self, p: f32) -> (Vec<f32>, Vec<f32>) {
        let theta: Vec<f32> = self.inv_host.iter().map(|&f| p * f).collect();
        let n = theta.len();
        let (mut cos, mut sin) = (vec![0f32; n], vec![0f32; n]);
        kernels::activations::cos_sin(&theta, &mut cos, &mut sin);
        (cos, sin)
    }
}

/// RoPE from tables as the Hugging Face ports compute it: `x·cos + rotate_half(x)·sin`, with
/// `rotate_half(x) = [−x₂, x₁]` over the last axis, each operation rounded on its own.
pub fn rotate_half_rope(x: &Array, cos: &Array, sin: &Array) -> Result<Array> {
    let half = *x.shape().last().unwrap_or(&0) / 2;
    let parts = x.split_at_indices(&[half], -1)?;
    let rot = ops::concatenate(&[&ops::negative(&parts[1])?, &parts[0]], -1)?;
    Ok(ops::add(
        &ops::multiply(x, cos)?,
        &ops::multiply(&rot, sin)?,
    )?)
}

/// Where a prompt's positions sit for M-RoPE: explicit (time, height, width) coordinates for
/// the first `ids.len()` positions (a picture's tokens share a time and spread over its grid),
/// and `i + delta` on every axis after them.
#[derive(Debug, Clone, PartialEq)]
pub struct RopePositions {
    pub ids: Vec<[i64; 3]>,
    pub delta: i64,
}

impl RopePositions {
    pub fn at(&self, i: usize) -> [i64; 3] {
        match self.ids.get(i) {
            Some(p) => *p,
            None => [i as i64 + self.delta; 3],
        }
    }
}

/// RoPE's base frequencies `base^(2i/dims)`, with the same MLX operations as mlx-lm, so tables
/// derived from them (llama-3 scaling, GGUF factors) round exactly as the reference's do.
pub fn base_freqs(dims: usize, base: f32) -> Result<Array> {
    let idx = Array::arange::<_, i32>(0, dims as i32, 2)?;
    let exponent = ops::divide(&idx, Array::from_int(dims as i32))?;
    Ok(ops::power(Array::from_f32(base), &exponent)?)
}

/// Llama-3's frequency table, computed with the same MLX operations as mlx-lm's `Llama3RoPE`.
fn llama3_freqs(
    dims: usize,
    base: f32,
    factor: f32,
    low: f32,
    high: f32,
    old: f32,
) -> Result<Array> {
    let freqs = base_freqs(dims, base)?;
    let wavelens = ops::multiply(Array::from_f32(2.0 * std::f32::consts::PI), &freqs)?;
    let low_wl = Array::from_f32(old / low);
    let high_wl = Array::from_f32(old / high);
    let freqs = ops::select(
        &ops::gt(&wavelens, &low_wl)?,
        &ops::multiply(&freqs, Array::from_f32(factor))?,
        &freqs,
    )?;
    let medium = ops::logical_and(
        &ops::gt(&wavelens, &high_wl)?,
        &ops::lt(&wavelens, &low_wl)?,
    )?;
    let smooth = ops::divide(
        &ops::subtract(
            &ops::divide(Array::from_f32(old), &wavelens)?,
            Array::from_f32(low),
        )?,
        Array::from_f32(high - low),
    )?;
    let denom = ops::add(
        &ops::divide(
            &ops::subtract(Array::from_f32(1.0), &smooth)?,
            Array::from_f32(factor),
        )?,
        &smooth,
    )?;
    let smooth_freqs = ops::divide(&freqs, &denom)?;
    let out = ops::select(&medium, &smooth_freqs, &freqs)?;
    out.eval()?;
    Ok(out)
}

/// Keys and values of past positions for one layer, grown in steps of 256 positions
/// (as mlx-lm's `KVCache`), so decode does not copy the whole cache every token.
///
/// They live in MLX arrays while MLX computes attention (prefill), and move to host memory
/// ([`HostKv`]) when decoding steps run on the host ([`Attention::forward`]); a later MLX step
/// (the next chat turn's prefill) moves them back, and a snapshot (a save) copies them out.
#[derive(Debug, Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    host: Option<HostKv>,
    pub offset: usize,
    /// The M-RoPE positions of the prompt this cache holds (Qwen2-VL), shared by its layers.
    pub positions: Option<std::sync::Arc<RopePositions>>,
}

/// A layer's keys and values on the host: `[heads][cap][d]` each, f32.
struct HostKv {
    heads: usize,
    d: usize,
    cap: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl std::fmt::Debug for HostKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostKv {{ heads: {}, d: {}, cap: {} }}",
            self.heads, self.d, self.cap
        )
    }
}

impl HostKv {
    /// From `[1, heads, cap, d]` arrays holding `len` positions; `None` if they cannot be read
    /// on the host.
    fn from_arrays(k: &Array, v: &Array, len: usize) -> Result<Option<HostKv>> {
        let s = k.shape();
        let (heads, old_cap, d) = (s[1] as usize, s[2] as usize, s[3] as usize);
        let mut h = HostKv {
            heads,
            d,
            cap: 0,
            keys: Vec::new(),
            values: Vec::new(),
        };
        h.grow(len + 1);
        if len == 0 {
            return Ok(Some(h));
        }
        for (src, dst) in [(k, &mut h.keys), (v, &mut h.values)] {
            let a = crate::kernels::host::<f32>(src)?;
            let Ok(a) = a.try_as_slice::<f32>() else {
                return Ok(None);
            };
            if a.len() < heads * old_cap * d || old_cap < len {
                return Ok(None);
            }
            for head in 0..heads {
                let from = &a[head * old_cap * d..][..len * d];
                dst[head * h.cap * d..][..len * d].copy_from_slice(from);
            }
        }
        Ok(Some(h))
    }

    /// Room for `need` positions (in steps of 256), the rows kept.
    fn grow(&mut self, need: usize) {
        if need <= self.cap {
            return;
        }
        let cap = need.next_multiple_of(KV_STEP as usize);
        let d = self.d;
        for buf in [&mut self.keys, &mut self.values] {
            let mut fresh = vec![0f32; self.heads * cap * d];
            for head in 0..self.heads {
                if self.cap > 0 {
                    fresh[head * cap * d..][..self.cap * d]
                        .copy_from_slice(&buf[head * self.cap * d..][..self.cap * d]);
                }
            }
            *buf = fresh;
        }
        self.cap = cap;
    }

    /// `[1, heads, len, d]` arrays of the first `len` positions.
    fn to_arrays(&self, len: usize) -> (Array, Array) {
        let shape = [1, self.heads as i32, len as i32, self.d as i32];
        let take = |buf: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(self.heads * len * self.d);
            for h in 0..self.heads {
                out.extend_from_slice(&buf[h * self.cap * self.d..][..len * self.d]);
            }
            out
        };
        (
            Array::from_slice(&take(&self.keys), &shape),
            Array::from_slice(&take(&self.values), &shape),
        )
    }
}

const KV_STEP: i32 = 256;

impl KvCache {
    pub fn new() -> KvCache {
        KvCache::default()
    }

    /// The cache on the host for a step that adds one position, moved there from MLX arrays
    /// the first time; `None` when its arrays are not f32 `[1, heads, _, d]`.
    fn host_for_step(&mut self, heads: usize, d: usize) -> Result<Option<&mut HostKv>> {
        if self.host.is_none() {
            let host = match (&self.keys, &self.values) {
                (Some(k), Some(v)) => {
                    let s = k.shape();
                    if k.dtype() != Dtype::Float32
                        || v.dtype() != Dtype::Float32
                        || s != v.shape()
                        || s.len() != 4
                        || s[0] != 1
                        || s[1] as usize != heads
                        || s[3] as usize != d
                    {
                        return Ok(None);
                    }
                    match HostKv::from_arrays(k, v, self.offset)? {
                        Some(h) => h,
                        None => return Ok(None),
                    }
                }
                _ => {
                    let mut h = HostKv {
                        heads,
                        d,
                        cap: 0,
                        keys: Vec::new(),
                        values: Vec::new(),
                    };
                    h.grow(self.offset + 1);
                    h
                }
            };
            self.keys = None;
            self.values = None;
            self.host = Some(host);
        }
        let h = self.host.as_mut().expect("set above");
        if h.heads != heads || h.d != d {
            return Ok(None);
        }
        h.grow(self.offset + 1);
        Ok(Some(h))
    }

    /// Back to MLX arrays (capacity = length, as a restored cache) before an MLX step.
    fn move_to_arrays(&mut self) {
        if let Some(h) = self.host.take() {
            let (k, v) = h.to_arrays(self.offset);
            self.keys = Some(k);
            self.values = Some(v);
        }
    }

    /// Appends `[B, H, L, D]` keys/values; returns all positions so far.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        self.move_to_arrays();
        let prev = self.offset as i32;
        let l = keys.shape()[2];
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || prev + l > capacity {
            let ks = keys.shape();
            let vs = values.shape();
            let n_steps = (KV_STEP + l - 1) / KV_STEP;
            let new_k = ops::zeros_dtype(&[ks[0], ks[1], n_steps * KV_STEP, ks[3]], keys.dtype())?;
            let new_v =
                ops::zeros_dtype(&[vs[0], vs[1], n_steps * KV_STEP, vs[3]], values.dtype())?;
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if prev % KV_STEP != 0 {
                        k = k.index((.., .., ..prev, ..));
                        v = v.index((.., .., ..prev, ..));
                    }
                    self.keys = Some(ops::concatenate(&[k, new_k], 2)?);
                    self.values = Some(ops::concatenate(&[v, new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
        }
        let end = prev + l;
        self.offset = end as usize;
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("allocated above")
        };
        k.try_index_mut((.., .., prev..end, ..), keys)?;
        v.try_index_mut((.., .., prev..end, ..), values)?;
        Ok((k.index((.., .., ..end, ..)), v.index((.., .., ..end, ..))))
    }

    /// Arrays to evaluate so the cache is materialized.
    pub fn state(&self) -> Vec<&Array> {
        self.keys.iter().chain(self.values.iter()).collect()
    }

    /// The cached keys and values `[B, H, offset, D]`, for saving.
    pub fn snapshot(&self) -> Option<(Array, Array)> {
        if let Some(h) = &self.host {
            return (self.offset > 0).then(|| h.to_arrays(self.offset));
        }
        let end = self.offset as i32;
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) if end > 0 => {
                Some((k.index((.., .., ..end, ..)), v.index((.., .., ..end, ..))))
            }
            _ => None,
        }
    }

    /// A cache holding saved keys and values (as mlx-lm's cache state setter: capacity = length).
    pub fn restore(keys: Array, values: Array) -> KvCache {
        let offset = keys.shape().get(2).copied().unwrap_or(0) as usize;
        KvCache {
            keys: Some(keys),
            values: Some(values),
            host: None,
            offset,
            positions: None,
        }
    }

    /// Keeps the first `n` positions (a shorter shared prefix); later updates overwrite the rest.
    pub fn trim(&mut self, n: usize) {
        self.offset = self.offset.min(n);
    }
}

/// A causal mask for `n` queries after `offset` cached positions, limited to `window` keys.
fn causal_window_mask(n: usize, offset: usize, window: usize) -> Result<Array> {
    let total = (offset + n) as i32;
    let r = Array::arange::<_, i32>(0, total, 1)?;
    let l = Array::arange::<_, i32>(offset as i32, total, 1)?;
    let l = l.reshape(&[-1, 1])?;
    let r = r.reshape(&[1, -1])?;
    let causal = ops::ge(&l, &r)?;
    let inside = ops::lt(&l, &ops::add(&r, Array::from_int(window as i32))?)?;
    Ok(ops::logical_and(&causal, &inside)?)
}

/// The mask a layer needs for `n` new positions after `offset` (mlx-lm's `make_mask`).
pub enum Mask {
    None,
    Causal,
    Array(Array),
}

impl Mask {
    pub fn new(n: usize, offset: usize, window: Option<usize>, as_array: bool) -> Result<Mask> {
        Ok(match window {
            Some(w) => Mask::Array(causal_window_mask(n, offset, w)?),
            None if n == 1 => Mask::None,
            None if as_array => Mask::Array(causal_window_mask(n, offset, offset + n)?),
            None => Mask::Causal,
        })
    }
}

/// Which activation gates the MLP.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    Silu,
    Gelu,
    GeluApprox,
}

impl Activation {
    fn apply(self, x: &Array) -> Result<Array> {
        Ok(match self {
            Activation::Silu => mlx_rs::nn::silu(x)?,
            Activation::Gelu => mlx_rs::nn::gelu(x)?,
            Activation::GeluApprox => mlx_rs::nn::gelu_approximate(x)?,
        })
    }

    /// `act(gate) · up`. SiLU on f32 on a CPU device runs the [`swiglu`](crate::kernels::swiglu) kernel
    /// (MLX's arithmetic bit for bit, vectorized); everything else MLX's ops.
    fn gate(self, gate: &Array, up: &Array) -> Result<Array> {
        if matches!(self, Activation::Silu)
            && let Some(y) = kernels::swiglu_f32(gate, up)?
        {
            return Ok(y);
        }
        Ok(ops::multiply(&self.apply(gate)?, up)?)
    }
}

/// `down(act(gate(x)) · up(x))`; gate and up may be stored fused (phi3's `gate_up_proj`).
#[derive(Debug)]
pub enum Mlp {
    Split {
        gate: Linear,
        up: Linear,
        down: Linear,
        act: Activation,
    },
    Fused {
        gate_up: Linear,
        down: Linear,
        act: Activation,
    },
}

impl Mlp {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Mlp::Split {
                gate,
                up,
                down,
                act,
            } => {
                let h = act.gate(&gate.forward(x)?, &up.forward(x)?)?;
                down.forward(&h)
            }
            Mlp::Fused { gate_up, down, act } => {
                let gu = gate_up.forward(x)?;
                let parts = gu.split_equal(2, -1)?;
                let h = act.gate(&parts[0], &parts[1])?;
                down.forward(&h)
            }
        }
    }
}

/// Query/key/value projections, separate or fused (phi3's `qkv_proj`: q rows, then k, then v).
#[derive(Debug)]
pub enum Qkv {
    Split { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

/// Multi-head attention with grouped key/value heads and rotary positions.
#[derive(Debug)]
pub struct Attention {
    pub qkv: Qkv,
    pub o: Linear,
    /// Per-head RMSNorm of queries and keys before RoPE (qwen3, gemma3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub rope: Rope,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Gemma-2's `tanh` soft cap on attention scores (computed without the fused kernel).
    pub softcap: Option<f32>,
    /// Sliding-window size for this layer, if it attends locally.
    pub window: Option<usize>,
}

impl Attention {
    pub fn forward(&self, x: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array> {
        let shape = x.shape();
        let (b, l) = (shape[0], shape[1]);
        let (q, k, v) = match &self.qkv {
            Qkv::Split { q, k, v } => (q.forward(x)?, k.forward(x)?, v.forward(x)?),
            Qkv::Fused(lin) => {
                let qkv = lin.forward(x)?;
                let qp = (self.n_heads * self.head_dim) as i32;
                let kp = qp + (self.n_kv_heads * self.head_dim) as i32;
                let parts = qkv.split_at_indices(&[qp, kp], -1)?;
                (parts[0].clone(), parts[1].clone(), parts[2].clone())
            }
        };
        // One new position on a CPU: the rest of the step on the host, no MLX evaluation.
        // (Within its window a sliding layer's mask hides nothing yet; past it, MLX masks.)
        if b == 1
            && l == 1
            && self.softcap.is_none()
            && matches!(mask, Mask::None)
            && self.window.is_none_or(|w| cache.offset < w)
            && host_decode()
            && crate::runtime::default_device_is_cpu()
            && let Some(out) = self.step_on_host(&q, &k, &v, cache)?
        {
            return self.o.forward(&out);
        }
        let heads = |a: Array, n: usize, norm: &Option<RmsNorm>| -> Result<Array> {
            let a = a.reshape(&[b, l, n as i32, -1])?;
            let a = match norm {
                Some(nm) => nm.forward(&a)?,
                None => a,
            };
            Ok(a.transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = heads(q, self.n_heads, &self.q_norm)?;
        let k = heads(k, self.n_kv_heads, &self.k_norm)?;
        let v = heads(v, self.n_kv_heads, &None)?;
        let positions = cache.positions.as_deref();
        let q = self.rope.forward_at(&q, cache.offset, positions)?;
        let k = self.rope.forward_at(&k, cache.offset, positions)?;
        let (k, v) = cache.update_and_fetch(&k, &v)?;
        let out = match self.softcap {
            None => {
                let m = match mask {
                    Mask::None => None,
                    Mask::Causal => Some(ScaledDotProductAttentionMask::Causal),
                    Mask::Array(a) => Some(ScaledDotProductAttentionMask::Array(a)),
                };
                fast::scaled_dot_product_attention(&q, &k, &v, self.scale, m, None)?
            }
            Some(cap) => self.softcapped(&q, &k, &v, mask, cap)?,
        };
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.o.forward(&out)
    }

    /// The attention of one new position on the host, before the output projection: q/k
    /// norms, RoPE ([`Rope::apply_host`]), the keys and values appended to the host cache, and
    /// for each query head `softmax((scale · q) · kᵀ) · v` over its group's keys — as MLX's
    /// CPU `scaled_dot_product_attention` (its fallback: `scale · q`, a matmul, a precise
    /// softmax, a matmul), with the dot products and the weighted sum in order with FMAs
    /// ([`kernels::attention`]). `None` where the step must go through MLX.
    fn step_on_host(
        &self,
        q: &Array,
        k: &Array,
        v: &Array,
        cache: &mut KvCache,
    ) -> Result<Option<Array>> {
        let (h, g, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        if [q, k, v].iter().any(|a| a.dtype() != Dtype::Float32)
            || q.size() != h * d
            || k.size() != g * d
            || v.size() != g * d
            || self.rope.dims as usize > d
            || h % g != 0
        {
            return Ok(None);
        }
        let read = |a: &Array| -> Result<Option<Vec<f32>>> {
            let a = kernels::host::<f32>(a)?;
            Ok(a.try_as_slice::<f32>().ok().map(<[f32]>::to_vec))
        };
        let (Some(mut qs), Some(mut ks), Some(vs)) = (read(q)?, read(k)?, read(v)?) else {
            return Ok(None);
        };
        for (norm, x) in [(&self.q_norm, &mut qs), (&self.k_norm, &mut ks)] {
            if let Some(n) = norm {
                let Some(w) = read(&n.weight)?.filter(|w| w.len() == d) else {
                    return Ok(None);
                };
                let input = x.clone();
                kernels::norm::rms_norm_rows(&input, &w, n.eps, x);
            }
        }
        let pos = cache.offset;
        let (cos, sin) = match (&self.rope.mrope, cache.positions.as_deref()) {
            (Some(m), Some(p)) => {
                let [t, h, w] = p.at(pos);
                if t != h || t != w {
                    return Ok(None);
                }
                m.host_table(t as f32)
            }
            // No positions: MLX's path says why.
            (Some(_), None) => return Ok(None),
            _ => self.rope.host_table(pos)?,
        };
        self.rope.rotate_host(&mut qs, d, &cos, &sin)?;
        self.rope.rotate_host(&mut ks, d, &cos, &sin)?;
        let Some(kv) = cache.host_for_step(g, d)? else {
            return Ok(None);
        };
        let cap = kv.cap;
        for head in 0..g {
            let at = (head * cap + pos) * d;
            kv.keys[at..at + d].copy_from_slice(&ks[head * d..][..d]);
            kv.values[at..at + d].copy_from_slice(&vs[head * d..][..d]);
        }
        let n = pos + 1;
        let rep = h / g;
        let mut out = vec![0f32; h * d];
        let (keys, values, scale, qs) = (&kv.keys, &kv.values, self.scale, &qs);
        kernels::pool::chunks_mut(&mut out, d, |at, o| {
            let head = at.start / d;
            let grp = head / rep;
            let qh: Vec<f32> = qs[head * d..][..d].iter().map(|&x| scale * x).collect();
            let mut scores = vec![0f32; n];
            kernels::attention::scores_by_row(
                &qh,
                |j| &keys[(grp * cap + j) * d..][..d],
                1.0,
                &mut scores,
            );
            let mut p = vec![0f32; n];
            kernels::activations::softmax_row(&scores, &mut p);
            kernels::attention::weighted_rows(&p, &values[grp * cap * d..], d, o);
        });
        cache.offset = n;
        Ok(Some(Array::from_slice(&out, &[1, 1, (h * d) as i32])))
    }

    /// Attention with `cap · tanh(scores / cap)`, as mlx-lm's gemma2 computes it.
    fn softcapped(&self, q: &Array, k: &Array, v: &Array, mask: &Mask, cap: f32) -> Result<Array> {
        let s = q.shape();
        let (b, l, d) = (s[0], s[2], s[3]);
        let repeats = (self.n_heads / self.n_kv_heads) as i32;
        let mut q = ops::multiply(q, Array::from_f32(self.scale))?;
        let (mut k, mut v) = (k.clone(), v.clone());
        if repeats > 1 {
            q = q.reshape(&[b, self.n_kv_heads as i32, repeats, l, d])?;
            k = k.expand_dims(2)?;
            v = v.expand_dims(2)?;
        }
        let scores = ops::matmul(&q, &k.swap_axes(-1, -2)?)?;
        let scores = ops::tanh(&ops::divide(&scores, Array::from_f32(cap))?)?;
        let mut scores = ops::multiply(&scores, Array::from_f32(cap))?;
        let explicit;
        let mask_arr = match mask {
            Mask::None => None,
            Mask::Array(a) => Some(a),
            Mask::Causal => {
                let kl = k.shape()[k.ndim() - 2] as usize;
                explicit = causal_window_mask(l as usize, kl - l as usize, kl)?;
                Some(&explicit)
            }
        };
        if let Some(m) = mask_arr {
            let min = Array::from_f32(f32::MIN).as_dtype(scores.dtype())?;
            scores = ops::select(m, &scores, &min)?;
        }
        let p = ops::softmax_axis(&scores, -1, true)?;
        let mut out = ops::matmul(&p, &v)?;
        if repeats > 1 {
            out = out.reshape(&[b, self.n_heads as i32, l, d])?;
        }
        Ok(out)
    }
}

/// Whether one-position steps run on the host (`MLXK_HOST_DECODE=0` sends them through MLX,
/// for comparing the two; [`host_decode_on_this_thread`] too).
fn host_decode() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    HOST_DECODE_HERE.with(|c| c.get()).unwrap_or_else(|| {
        *ON.get_or_init(|| std::env::var("MLXK_HOST_DECODE").map_or(true, |v| v != "0"))
    })
}

thread_local! {
    static HOST_DECODE_HERE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Sends this thread's one-position steps to the host (`true`) or through MLX (`false`),
/// whatever `MLXK_HOST_DECODE` says: for tests that compare the two paths.
pub fn host_decode_on_this_thread(on: bool) {
    HOST_DECODE_HERE.with(|c| c.set(Some(on)));
}

/// How a block arranges its norms around attention and MLP.
#[derive(Debug)]
pub enum BlockNorms {
    /// `h = x + attn(n1(x)); out = h + mlp(n2(h))` (llama, qwen, phi3, gemma).
    Pre {
        input: RmsNorm,
        post_attention: RmsNorm,
    },
    /// Gemma-2/3: every sub-layer's output is normalized too before the residual add.
    Sandwich {
        input: RmsNorm,
        post_attention: RmsNorm,
        pre_feedforward: RmsNorm,
        post_feedforward: RmsNorm,
    },
}

/// `x + r`: the CPU kernel for f32 (MLX's add bit for bit, without an MLX evaluation), else
/// MLX's op.
fn residual(x: &Array, r: &Array) -> Result<Array> {
    match kernels::add_f32(x, r)? {
        Some(y) => Ok(y),
        None => Ok(ops::add(x, r)?),
    }
}

/// One transformer block.
#[derive(Debug)]
pub struct Block {
    pub attn: Attention,
    pub mlp: Mlp,
    pub norms: BlockNorms,
}

impl Block {
    pub fn forward(&self, x: &Array, mask: &Mask, cache: &mut KvCache) -> Result<Array> {
        match &self.norms {
            BlockNorms::Pre {
                input,
                post_attention,
            } => {
                let h = residual(x, &self.attn.forward(&input.forward(x)?, mask, cache)?)?;
                let r = self.mlp.forward(&post_attention.forward(&h)?)?;
                residual(&h, &r)
            }
            BlockNorms::Sandwich {
                input,
                post_attention,
                pre_feedforward,
                post_feedforward,
            } => {
                let r = self.attn.forward(&input.forward(x)?, mask, cache)?;
                let h = residual(x, &post_attention.forward(&r)?)?;
                let r = self.mlp.forward(&pre_feedforward.forward(&h)?)?;
                residual(&h, &post_feedforward.forward(&r)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: &[i32], seed: f32) -> Array {
        let n: i32 = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37 + seed).sin() * 0.5)
            .collect();
        Array::from_slice(&v, shape)
    }

    /// M-RoPE of a text position on the host equals its MLX form bit for bit (the decode step
    /// takes it), and a cache without the prompt's positions is refused rather than guessed.
    #[test]
    fn host_mrope_is_the_mlx_form_and_needs_positions() {
        let rope = Rope::multimodal(16, 1_000_000.0, [2, 3, 3]).unwrap();
        let m = rope.mrope.as_ref().unwrap();
        let positions = RopePositions {
            ids: vec![[0; 3], [1, 1, 2], [3; 3]],
            delta: -2,
        };
        for offset in [3usize, 40, 5000] {
            let x = ramp(&[1, 2, 1, 16], offset as f32);
            let want = rope.forward_at(&x, offset, Some(&positions)).unwrap();
            want.eval().unwrap();
            let mut got = x.as_slice::<f32>().to_vec();
            let [t, _, _] = positions.at(offset);
            assert_eq!(t, offset as i64 - 2);
            let (cos, sin) = m.host_table(t as f32);
            rope.rotate_host(&mut got, 16, &cos, &sin).unwrap();
            for (i, (g, w)) in got.iter().zip(want.as_slice::<f32>()).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "offset {offset} [{i}]: {g} vs {w}"
                );
            }
        }
        let x = ramp(&[1, 2, 1, 16], 0.5);
        assert!(rope.forward_at(&x, 3, None).is_err());
    }

    /// RoPE of one position on the host is MLX's CPU `fast::rope` bit for bit: plain and
    /// traditional, partial dimensions, a position scale, and given frequencies.
    #[test]
    fn host_rope_is_mlxs_bit_for_bit() {
        let (heads, d) = (3usize, 32usize);
        let freqs = ops::multiply(base_freqs(8, 10_000.0).unwrap(), Array::from_f32(1.5)).unwrap();
        freqs.eval().unwrap();
        let ropes = [
            Rope::plain(16, false, 10_000.0, 1.0),
            Rope::plain(16, true, 500_000.0, 1.0),
            Rope::plain(32, false, 1_000_000.0, 1.0),
            Rope::plain(8, false, 10_000.0, 0.25),
            Rope {
                dims: 8,
                traditional: false,
                base: None,
                scale: 1.0,
                freqs: Some(freqs),
                mrope: None,
            },
        ];
        for (r, rope) in ropes.iter().enumerate() {
            for offset in [0usize, 1, 7, 300, 4097] {
                let x = ramp(&[1, heads as i32, 1, d as i32], offset as f32 + r as f32);
                let want = rope.forward(&x, offset).unwrap();
                want.eval().unwrap();
                let mut got = x.as_slice::<f32>().to_vec();
                rope.apply_host(&mut got, d, offset).unwrap();
                for (i, (g, w)) in got.iter().zip(want.as_slice::<f32>()).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "rope {r} offset {offset} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The matvec path (1–4 rows) keeps the shape and adds the bias like MLX's `addmm`, within
    /// f32 rounding; more rows go to MLX itself, bit for bit.
    #[test]
    fn dense_linear_matches_mlx_for_any_row_count() {
        let (w, b) = (ramp(&[40, 96], 1.0), ramp(&[40], 2.0));
        for rows in [1, 3, 4, 5, 17] {
            let x = ramp(&[1, rows, 96], 3.0);
            for bias in [None, Some(&b)] {
                let got = dense_matmul(&x, &w, bias).unwrap();
                let want = match bias {
                    None => ops::matmul(&x, w.t()).unwrap(),
                    Some(b) => ops::addmm(b, &x, w.t(), None, None).unwrap(),
                };
                assert_eq!(got.shape(), [1, rows, 40]);
                for (g, w) in got.as_slice::<f32>().iter().zip(want.as_slice::<f32>()) {
                    if rows as usize > crate::kernels::matvec::MAX_ROWS {
                        assert_eq!(g.to_bits(), w.to_bits());
                    } else {
                        assert!((g - w).abs() < 1e-5, "rows={rows}: {g} vs {w}");
                    }
                }
            }
        }
    }
}

/// LayerNorm with a learned scale and shift (`mx.fast.layer_norm`).
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Array,
    pub bias: Array,
    pub eps: f32,
}

impl LayerNorm {
    /// The weight and bias as host slices, where [`LayerNorm::forward_rows`] can compute it.
    pub fn host_params(&self) -> Option<(&[f32], &[f32])> {
        match (
            self.weight.try_as_slice::<f32>(),
            self.bias.try_as_slice::<f32>(),
        ) {
            (Ok(w), Ok(b)) if w.len() == b.len() && !w.is_empty() => Some((w, b)),
            _ => None,
        }
    }

    /// This norm of host rows `x` (as [`LayerNorm::forward`] computes it on a CPU).
    pub fn forward_rows(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (w, b) = self.host_params().ok_or_else(|| {
            crate::error::InferError::Mlx("a norm the CPU path cannot read".into())
        })?;
        let mut out = vec![0f32; x.len()];
        kernels::norm::layer_norm_rows(x, w, b, self.eps, &mut out);
        Ok(out)
    }

    /// The CPU kernel where it applies (bit for bit), else MLX's op.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        if let Some(y) = kernels::layer_norm_f32(x, &self.weight, &self.bias, self.eps)? {
            return Ok(y);
        }
        Ok(fast::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}

/// MLX's `nn.gelu`, `x·(1 + erf(x/√2))/2` (the CPU kernel where it applies, bit for bit).
pub fn gelu(x: &Array) -> Result<Array> {
    match kernels::gelu_f32(x)? {
        Some(y) => Ok(y),
        None => Ok(mlx_rs::nn::gelu(x)?),
    }
}

/// MLX's `nn.gelu_fast_approx`, `x·σ(1.702·x)` (CLIP's `quick_gelu`). mlx-rs's own
/// `gelu_fast_approximate` uses 1.773, which is not what the Python side computes.
pub fn gelu_fast(x: &Array) -> Result<Array> {
    let s = ops::sigmoid(&ops::multiply(x, Array::from_f32(1.702))?)?;
    Ok(ops::multiply(x, &s)?)
}

/// MLX's `nn.gelu_approx`, the tanh approximation (SigLIP's `gelu_pytorch_tanh`): the CPU
/// kernel where it applies (bit for bit what the Python side's op computes), else the same
/// formula in MLX ops, its √(2/π) from f64 as Python's.
pub fn gelu_tanh(x: &Array) -> Result<Array> {
    if let Some(y) = kernels::gelu_tanh_f32(x)? {
        return Ok(y);
    }
    let c = Array::from_f32((2.0f64 / std::f64::consts::PI).sqrt() as f32);
    let cube = ops::power(x, Array::from_f32(3.0))?;
    let inner = ops::multiply(
        &c,
        ops::add(x, ops::multiply(Array::from_f32(0.044715), &cube)?)?,
    )?;
    let t = ops::add(Array::from_f32(1.0), ops::tanh(&inner)?)?;
    Ok(ops::multiply(ops::multiply(Array::from_f32(0.5), x)?, &t)?)
}
