//! CPU kernels for the hot operations MLX's x86 CPU build runs slowly (it has no SIMD for
//! them), and their dispatch: each one is used only where it computes what MLX would (f32 on a
//! CPU device, shapes it handles); everything else goes to MLX's own op.
use crate::config::QuantSpec;
use crate::error::Result;
use mlx_rs::{Array, Dtype, ops};
pub use qmatmul::PackedQuant;

pub mod activations;
pub mod attention;
pub mod matvec;
pub mod norm;
pub mod pool;
pub mod qmatmul;
pub mod swiglu;

/// `a` evaluated and row-contiguous, so a CPU kernel can read it as one slice of `T` (a copy
/// only when `a` is a strided view).
pub(crate) fn host<T: mlx_rs::ArrayElement>(a: &Array) -> Result<Array> {
    Ok(if a.try_as_slice::<T>().is_ok() {
        a.clone()
    } else {
        a.contiguous()?
    })
}

/// Runs a CPU kernel `f(inputs, out)` on the values of f32 `inputs` into a new f32 array
/// shaped `shape`; `None` where MLX must compute it instead (an input of another dtype, or a
/// device that is not the CPU).
fn on_host<const N: usize>(
    inputs: [&Array; N],
    shape: &[i32],
    f: impl FnOnce([&[f32]; N], &mut [f32]),
) -> Result<Option<Array>> {
    if inputs.iter().any(|a| a.dtype() != Dtype::Float32)
        || !crate::runtime::default_device_is_cpu()
    {
        return Ok(None);
    }
    let hosts = inputs
        .iter()
        .map(|a| host::<f32>(a))
        .collect::<Result<Vec<_>>>()?;
    let Ok(values) = hosts
        .iter()
        .map(|h| h.try_as_slice::<f32>())
        .collect::<std::result::Result<Vec<_>, _>>()
    else {
        return Ok(None);
    };
    let values: [&[f32]; N] = values.try_into().expect("one slice per input");
    let mut out = vec![0f32; shape.iter().map(|&d| d as usize).product()];
    f(values, &mut out);
    Ok(Some(Array::from_slice(&out, shape)))
}

/// A kernel's output as an array shaped like its input `shape` with the last axis `n` long.
fn with_last_axis(out: &[f32], shape: &[i32], n: usize) -> Array {
    let mut dims = shape.to_vec();
    *dims.last_mut().expect("inputs have a last axis") = n as i32;
    Array::from_slice(out, &dims)
}

/// A dense matrix's values on the host as stored, for the [`matvec`] kernel: f32, or f16 where
/// this CPU widens it in registers (the same sums as over its f32 copy).
pub enum HostMatrix<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> HostMatrix<'a> {
    /// `w`'s values, where the kernel reads them (an evaluated row-major matrix on a CPU device).
    pub fn of(w: &'a Array) -> Option<HostMatrix<'a>> {
        if w.ndim() != 2 || !crate::runtime::default_device_is_cpu() {
            return None;
        }
        match w.dtype() {
            Dtype::Float32 => w.try_as_slice::<f32>().ok().map(HostMatrix::F32),
            Dtype::Float16 if <half::f16 as matvec::WeightValue>::simd() => {
                w.try_as_slice::<half::f16>().ok().map(HostMatrix::F16)
            }
            _ => None,
        }
    }

    /// [`matvec::matmul_t`] over these values.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_t(
        &self,
        x: &[f32],
        m: usize,
        k: usize,
        n: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        match self {
            HostMatrix::F32(w) => matvec::matmul_t(x, m, k, w, n, bias, out),
            HostMatrix::F16(w) => matvec::matmul_t(x, m, k, w, n, bias, out),
        }
    }
}

/// `x Wᵀ (+ b)` for a dense `W`: the [`matvec`](matvec) kernel for a few f32 rows on a
/// CPU device (decoding; `W` f32 or f16), else MLX's matmul (BLAS `sgemm`).
pub fn dense_matmul(x: &Array, weight: &Array, bias: Option<&Array>) -> Result<Array> {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0) as usize;
    // k == 0 leaves no rows for the kernel: MLX handles that degenerate product.
    let rows = x.size().checked_div(k).unwrap_or(0);
    let f32s = x.dtype() == Dtype::Float32
        && bias.is_none_or(|b| b.dtype() == Dtype::Float32 && b.ndim() == 1);
    if f32s
        && (1..=matvec::MAX_ROWS).contains(&rows)
        && let Some(w) = HostMatrix::of(weight)
    {
        let n = weight.shape()[0] as usize;
        let x = host::<f32>(x)?;
        let b = bias.map(|b| b.try_as_slice::<f32>());
        if let (Ok(xs), None | Some(Ok(_))) = (x.try_as_slice::<f32>(), &b) {
            let b = b.and_then(|b| b.ok());
            let mut out = vec![0f32; rows * n];
            w.matmul_t(xs, rows, k, n, b, &mut out);
            return Ok(with_last_axis(&out, shape, n));
        }
    }
    Ok(match bias {
        None => ops::matmul(x, weight.t())?,
        Some(b) => ops::addmm(b, x, weight.t(), None, None)?,
    })
}

/// `W` repacked for the [`qmatmul`] kernel, when the kernel computes its layout exactly as MLX
/// would (f32 scales and biases, a supported width and group, a CPU device); `None` leaves it
/// to MLX's own op. The arrays are evaluated here, so the caller can drop them.
pub fn pack_quantized(
    weight: &Array,
    scales: &Array,
    biases: &Array,
    spec: QuantSpec,
) -> Result<Option<PackedQuant>> {
    let shape = scales.shape();
    if shape.len() != 2
        || weight.ndim() != 2
        || weight.dtype() != Dtype::Uint32
        || scales.dtype() != Dtype::Float32
        || biases.dtype() != Dtype::Float32
        || biases.shape() != shape
        || !crate::runtime::default_device_is_cpu()
    {
        return Ok(None);
    }
    let (n, k) = (shape[0] as usize, (shape[1] * spec.group_size) as usize);
    if n == 0
        || !PackedQuant::supported(spec.bits, spec.group_size, k)
        || weight.shape() != [n as i32, (k * spec.bits as usize / 32) as i32]
    {
        return Ok(None);
    }
    let (w, s, b) = (
        host::<u32>(weight)?,
        host::<f32>(scales)?,
        host::<f32>(biases)?,
    );
    let (Ok(ws), Ok(ss), Ok(bs)) = (
        w.try_as_slice::<u32>(),
        s.try_as_slice::<f32>(),
        b.try_as_slice::<f32>(),
    ) else {
        return Ok(None);
    };
    Ok(Some(PackedQuant::pack(
        ws,
        ss,
        bs,
        n,
        k,
        spec.group_size as usize,
        spec.bits as u32,
    )))
}

/// `x Wᵀ` for a repacked `W`: the [`qmatmul`] kernel, the same bits as MLX's CPU op, several
/// times faster. Activations that are not f32 are computed in f32, as MLX promotes them
/// against f32 scales.
pub fn packed_matmul(x: &Array, w: &PackedQuant) -> Result<Array> {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0) as usize;
    if k != w.k {
        return Err(crate::error::InferError::Mlx(format!(
            "a quantized matrix of {} inputs was given {k}",
            w.k
        )));
    }
    if x.size() == 0 {
        return Ok(with_last_axis(&[], shape, w.n));
    }
    let x = if x.dtype() == Dtype::Float32 {
        x.clone()
    } else {
        x.as_dtype(Dtype::Float32)?
    };
    let x = host::<f32>(&x)?;
    let xs = x
        .try_as_slice::<f32>()
        .map_err(|e| crate::error::InferError::Mlx(format!("activations unreadable: {e:?}")))?;
    let m = xs.len() / k;
    let mut out = vec![0f32; m * w.n];
    qmatmul::qmatmul_t(xs, m, w, &mut out);
    Ok(with_last_axis(&out, shape, w.n))
}

/// `x Wᵀ` for `W` in MLX's packed layout (one the kernel does not compute): MLX's op.
pub fn quantized_matmul(
    x: &Array,
    weight: &Array,
    scales: &Array,
    biases: &Array,
    spec: QuantSpec,
) -> Result<Array> {
    Ok(ops::quantized_matmul(
        x,
        weight,
        scales,
        biases,
        true,
        spec.group_size,
        spec.bits,
    )?)
}

/// `silu(gate) · up` through the [`swiglu`] kernel when both are f32 of one shape on a CPU
/// device; `None` when MLX's ops must compute it.
pub fn swiglu_f32(gate: &Array, up: &Array) -> Result<Option<Array>> {
    if gate.shape() != up.shape() {
        return Ok(None);
    }
    on_host([gate, up], gate.shape(), |[g, u], out| {
        swiglu::swiglu(g, u, out)
    })
}

/// Softmax over the last axis of an f32 array on a CPU device (the
/// [`activations`] kernel, MLX's precise softmax bit for bit); `None` where MLX must do it.
pub fn softmax_last_axis_f32(x: &Array) -> Result<Option<Array>> {
    if x.ndim() == 0 {
        return Ok(None);
    }
    let m = *x.shape().last().unwrap_or(&0) as usize;
    on_host([x], x.shape(), |[xs], out| {
        activations::softmax_rows(xs, out, m)
    })
}

/// tanh-GELU (`nn.gelu_approx`) of an f32 array on a CPU device (the [`activations`] kernel,
/// bit for bit); `None` where MLX must do it.
pub fn gelu_tanh_f32(x: &Array) -> Result<Option<Array>> {
    on_host([x], x.shape(), |[xs], out| activations::gelu_tanh(xs, out))
}

/// erf-GELU of an f32 array on a CPU device (the [`activations`] kernel, MLX's `nn.gelu`
/// bit for bit); `None` where MLX must do it.
pub fn gelu_f32(x: &Array) -> Result<Option<Array>> {
    on_host([x], x.shape(), |[xs], out| activations::gelu(xs, out))
}

/// `fast::rms_norm(x, w, eps)` for f32 on a CPU device through the [`norm`] kernel (MLX's
/// arithmetic bit for bit); `None` where MLX must do it.
pub fn rms_norm_f32(x: &Array, w: &Array, eps: f32) -> Result<Option<Array>> {
    let width = *x.shape().last().unwrap_or(&0);
    if width == 0 || w.shape() != [width] {
        return Ok(None);
    }
    on_host([x, w], x.shape(), |[xs, ws], out| {
        norm::rms_norm_rows(xs, ws, eps, out)
    })
}

/// `fast::layer_norm(x, w, b, eps)` for f32 on a CPU device through the [`norm`] kernel
/// (MLX's arithmetic bit for bit); `None` where MLX must do it.
pub fn layer_norm_f32(x: &Array, w: &Array, b: &Array, eps: f32) -> Result<Option<Array>> {
    let width = *x.shape().last().unwrap_or(&0);
    if width == 0 || w.shape() != [width] || b.shape() != [width] {
        return Ok(None);
    }
    on_host([x, w, b], x.shape(), |[xs, ws, bs], out| {
        norm::layer_norm_rows(xs, ws, bs, eps, out)
    })
}

/// Unmasked multi-head self-attention `softmax((q·s)(k·s)ᵀ) v` of f32 `(1, n, d)` arrays on a
/// CPU device through the [`attention`] kernel, its scores never stored whole; `None` where
/// MLX must do it.
pub fn attention_f32(
    q: &Array,
    k: &Array,
    v: &Array,
    heads: usize,
    scale: f32,
) -> Result<Option<Array>> {
    let shape = q.shape();
    if shape.len() != 3 || shape[0] != 1 || k.shape() != shape || v.shape() != shape {
        return Ok(None);
    }
    let n = shape[1] as usize;
    on_host([q, k, v], shape, |[q, k, v], out| {
        attention::full(q, k, v, n, heads, scale, out)
    })
}

/// `a + b` for two f32 arrays of one shape on a CPU device through the [`norm`] kernel (the
/// residual adds); `None` where MLX must do it.
pub fn add_f32(a: &Array, b: &Array) -> Result<Option<Array>> {
    if a.shape() != b.shape() {
        return Ok(None);
    }
    on_host([a, b], a.shape(), |[x, y], out| norm::add(x, y, out))
}
