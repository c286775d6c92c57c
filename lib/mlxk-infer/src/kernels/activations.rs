//! Softmax over rows and erf-GELU for f32 on the CPU, bit for bit what MLX computes, several
//! times faster. MLX's x86 CPU build runs both one value at a time through its Cephes-style
//! `exp` (see [`swiglu`](super::swiglu)); Whisper's encoder spends most of its time there
//! (1500 × 1500 attention scores per head, a 1536-wide GELU per frame).
//!
//! Softmax, as MLX's `softmax` with one-wide SIMD: the row maximum, `exp(x - max)` stored, the
//! sum added up in order, then every value times `1 / sum`. Only the exponentials are
//! vectorized (eight at a time); the sum stays sequential so it rounds as MLX's does.
//! GELU, as `nn.gelu` writes it: `x · (1 + erf(x / √2)) / 2` with MLX's `simd::erf`.
use super::pool;
use super::swiglu::exp;

/// Rows per parallel task are at least this many values.
const CHUNK: usize = 16 * 1024;

/// `out` = softmax of each `m`-long row of `x`.
pub fn softmax_rows(x: &[f32], out: &mut [f32], m: usize) {
    assert_eq!(x.len(), out.len());
    if m == 0 {
        return;
    }
    let rows_per_task = CHUNK.div_ceil(m).max(1);
    let piece = rows_per_task * m;
    pool::chunks_mut(out, piece, |at, o| {
        let x = &x[at];
        for (o, x) in o.chunks_mut(m).zip(x.chunks(m)) {
            softmax_row(x, o);
        }
    });
}

/// One row of [`softmax_rows`].
pub fn softmax_row(x: &[f32], o: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for &v in x {
        // std::max(maximum, v): keeps `maximum` unless v is larger.
        if max < v {
            max = v;
        }
    }
    exp_shifted(x, max, o);
    let mut sum = 0.0f32;
    for &v in o.iter() {
        sum += v;
    }
    let inv = 1.0 / sum;
    for v in o.iter_mut() {
        *v *= inv;
    }
}

/// `o[i] = exp(x[i] - shift)`.
fn exp_shifted(x: &[f32], shift: f32, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        let done = unsafe { avx2::exp_shifted(x, shift, o) };
        for i in done..x.len() {
            o[i] = exp(x[i] - shift);
        }
        return;
    }
    for (o, x) in o.iter_mut().zip(x) {
        *o = exp(x - shift);
    }
}

/// `out[i] = gelu(x[i])`.
pub fn gelu(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    pool::chunks_mut(out, CHUNK, |at, o| {
        let x = &x[at];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            let done = unsafe { avx2::gelu(x, o) };
            for i in done..x.len() {
                o[i] = gelu_one(x[i]);
            }
            return;
        }
        for (o, x) in o.iter_mut().zip(x) {
            *o = gelu_one(*x);
        }
    });
}

/// `out[i] = gelu_approx(x[i])`: MLX's `nn.gelu_approx`, `0.5·x·(1 + tanh(√(2/π)·(x +
/// 0.044715·x³)))`, one pass instead of MLX's seven, with the libm `powf` and `tanhf` its CPU
/// ops call (so bit for bit the same).
pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    pool::chunks_mut(out, CHUNK, |at, o| {
        let x = &x[at];
        for (o, x) in o.iter_mut().zip(x) {
            *o = gelu_tanh_one(*x);
        }
    });
}

/// √(2/π) as Python computes it, then made f32 (as MLX does with a Python scalar).
#[allow(clippy::excessive_precision)]
const SQRT_2_OVER_PI: f32 = 0.797_884_56;

fn gelu_tanh_one(x: f32) -> f32 {
    // powf(x, 3), not x·x·x: MLX's `x**3` is `std::pow`, which rounds differently.
    let x3 = x.powf(std::hint::black_box(3.0));
    let inner = SQRT_2_OVER_PI * (x + 0.044_715 * x3);
    0.5 * x * (1.0 + inner.tanh())
}

/// √2 as MLX's compiled graph writes the constant into its generated C++ (`1.414214`, six
/// decimals — not the nearest f32 to √2).
#[allow(clippy::approx_constant)]
const SQRT2: f32 = 1.414_214;

/// MLX's `simd::erf` (PyTorch's AVX2 formula) for one value, its constants as MLX writes them.
#[allow(clippy::excessive_precision)]
fn erf(v: f32) -> f32 {
    let t = 1.0 / 0.327_591_1f32.mul_add(v.abs(), 1.0);
    let mut r = 1.061_405_429f32.mul_add(t, -1.453_152_027);
    r = r.mul_add(t, 1.421_413_741);
    r = r.mul_add(t, -0.284_496_736);
    r = r.mul_add(t, 0.254_829_592);
    let e = -exp(-v * v);
    let result = (e * t).mul_add(r, 1.0);
    if v > 0.0 { result } else { -result }
}

fn gelu_one(x: f32) -> f32 {
    x * (1.0 + erf(x / SQRT2)) / 2.0
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::swiglu::avx2::exp;
    use super::SQRT2;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shifted(x: &[f32], shift: f32, o: &mut [f32]) -> usize {
        let n = x.len() / 8 * 8;
        let s = _mm256_set1_ps(shift);
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both slices' lengths.
            unsafe {
                let v = _mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), s);
                _mm256_storeu_ps(o.as_mut_ptr().add(i), exp(v));
            }
            i += 8;
        }
        n
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::excessive_precision)]
    fn erf(v: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), v);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.327_591_1), abs, one));
        let mut r = _mm256_fmadd_ps(
            _mm256_set1_ps(1.061_405_429),
            t,
            _mm256_set1_ps(-1.453_152_027),
        );
        r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421_413_741));
        r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284_496_736));
        r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254_829_592));
        let neg_v = _mm256_xor_ps(v, _mm256_set1_ps(-0.0));
        let e = _mm256_xor_ps(exp(_mm256_mul_ps(neg_v, v)), _mm256_set1_ps(-0.0));
        let result = _mm256_fmadd_ps(_mm256_mul_ps(e, t), r, one);
        let pos = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
        _mm256_blendv_ps(_mm256_xor_ps(result, _mm256_set1_ps(-0.0)), result, pos)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu(x: &[f32], o: &mut [f32]) -> usize {
        let n = x.len() / 8 * 8;
        let one = _mm256_set1_ps(1.0);
        let two = _mm256_set1_ps(2.0);
        let sqrt2 = _mm256_set1_ps(SQRT2);
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both slices' lengths.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                let e = erf(_mm256_div_ps(v, sqrt2));
                let g = _mm256_div_ps(_mm256_mul_ps(v, _mm256_add_ps(one, e)), two);
                _mm256_storeu_ps(o.as_mut_ptr().add(i), g);
            }
            i += 8;
        }
        n
    }
}

/// MLX's CPU `cos` and `sin` of each `theta` (its `simd::sincos`, Cephes' single-precision
/// polynomials after a three-part reduction by π/4, with fused multiply-adds), bit for bit;
/// not libm's, which rounds differently in about a third of the cases.
pub fn cos_sin(theta: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
        unsafe { cos_sin_fma(theta, cos, sin) };
        return;
    }
    cos_sin_any(theta, cos, sin);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn cos_sin_fma(theta: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    cos_sin_any(theta, cos, sin);
}

#[inline(always)]
fn cos_sin_any(theta: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    for ((&t, c), s) in theta.iter().zip(cos.iter_mut()).zip(sin.iter_mut()) {
        (*c, *s) = mlx_sincos(t);
    }
}

#[inline(always)]
#[allow(clippy::excessive_precision)]
fn mlx_sincos(v: f32) -> (f32, f32) {
    let mut sign_sin = v < 0.0;
    let mut x = v.abs();
    let y = x * 1.273_239_544_735_16;
    let emm2 = ((y as u32).wrapping_add(1)) & !1;
    let y = emm2 as f32;
    let poly = (emm2 & 2) != 0;
    x = y.mul_add(-0.785_156_25, x);
    x = y.mul_add(-2.418_756_484_985_351_562_5e-4, x);
    x = y.mul_add(-3.774_894_977_445_941_08e-8, x);
    sign_sin ^= (emm2 & 4) != 0;
    let sign_cos = (emm2.wrapping_sub(2) & 4) != 0;
    let z = x * x;
    let mut y1 = z.mul_add(2.443_315_711_809_948e-5, -1.388_731_625_493_765e-3);
    let mut y2 = z.mul_add(-1.951_529_589_1e-4, 8.332_160_873_6e-3);
    y1 = y1.mul_add(z, 4.166_664_568_298_827e-2);
    y2 = y2.mul_add(z, -1.666_665_461_1e-1);
    y1 *= z;
    y2 *= z;
    y1 *= z;
    y2 = x.mul_add(y2, x);
    y1 = z.mul_add(-0.5, y1);
    y1 += 1.0;
    let ys = if poly { y1 } else { y2 };
    let yc = if poly { y2 } else { y1 };
    (
        if sign_cos { yc } else { -yc },
        if sign_sin { -ys } else { ys },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{Array, ops};

    fn inputs(n: usize, scale: f32) -> Vec<f32> {
        let mut s = 0x2545_f491u32;
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        v.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            9.0,
            -9.0,
            20.0,
            -20.0,
            f32::MIN,
            3.0,
        ]);
        v
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn gelu_equals_mlx_bit_for_bit() {
        let x = inputs(40_003, 8.0);
        let want = mlx_rs::nn::gelu(Array::from_slice(&x, &[x.len() as i32])).unwrap();
        let want = want.as_slice::<f32>();
        let mut got = vec![0f32; x.len()];
        gelu(&x, &mut got);
        for i in 0..x.len() {
            assert!(
                same(gelu_one(x[i]), want[i]),
                "scalar gelu({}) = {} but MLX says {}",
                x[i],
                gelu_one(x[i]),
                want[i]
            );
            assert!(
                same(got[i], want[i]),
                "gelu({}) = {} but MLX says {}",
                x[i],
                got[i],
                want[i]
            );
        }
    }

    #[test]
    fn tanh_gelu_equals_mlx_bit_for_bit() {
        // MLX's `nn.gelu_approx` as the Python side writes it (√(2/π) from f64).
        assert_eq!(
            SQRT_2_OVER_PI,
            (2.0f64 / std::f64::consts::PI).sqrt() as f32
        );
        let x = inputs(40_003, 8.0);
        let a = Array::from_slice(&x, &[x.len() as i32]);
        let c = Array::from_f32((2.0f64 / std::f64::consts::PI).sqrt() as f32);
        let cube = mlx_rs::ops::power(&a, Array::from_f32(3.0)).unwrap();
        let inner = mlx_rs::ops::multiply(
            &c,
            mlx_rs::ops::add(
                &a,
                mlx_rs::ops::multiply(Array::from_f32(0.044715), &cube).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let t = mlx_rs::ops::add(Array::from_f32(1.0), mlx_rs::ops::tanh(&inner).unwrap()).unwrap();
        let want =
            mlx_rs::ops::multiply(mlx_rs::ops::multiply(Array::from_f32(0.5), &a).unwrap(), &t)
                .unwrap();
        let want = want.as_slice::<f32>();
        let mut got = vec![0f32; x.len()];
        gelu_tanh(&x, &mut got);
        for i in 0..x.len() {
            assert!(
                same(got[i], want[i]),
                "gelu_approx({}) = {} but MLX says {}",
                x[i],
                got[i],
                want[i]
            );
        }
    }

    #[test]
    fn softmax_equals_mlx_precise_bit_for_bit() {
        // Rows of 1500 (Whisper's audio context) and an odd length, with the lowest f32 as a
        // mask value and a wide range of scores.
        for m in [1500usize, 37] {
            let mut x = inputs(m * 12 - 10, 30.0);
            x.truncate(m * 12);
            x.resize(m * 12, -5.0);
            x[m + 3] = f32::MIN;
            let a = Array::from_slice(&x, &[12, m as i32]);
            let want = ops::softmax_axis(&a, -1, true).unwrap();
            let want = want.as_slice::<f32>();
            let mut got = vec![0f32; x.len()];
            softmax_rows(&x, &mut got, m);
            for i in 0..x.len() {
                assert!(
                    same(got[i], want[i]),
                    "m={m} i={i}: {} vs MLX {}",
                    got[i],
                    want[i]
                );
            }
        }
    }

    /// MLX's CPU `cos`/`sin` bit for bit, over angles RoPE meets (up to ~10⁵ radians).
    #[test]
    fn cos_sin_are_mlxs() {
        let theta: Vec<f32> = (0..4000)
            .map(|i| (i as f32 * 0.5634 + 0.1) * if i % 3 == 0 { -1.0 } else { 25.0 })
            .collect();
        let a = mlx_rs::Array::from_slice(&theta, &[theta.len() as i32]);
        let (c, s) = (mlx_rs::ops::cos(&a).unwrap(), mlx_rs::ops::sin(&a).unwrap());
        c.eval().unwrap();
        s.eval().unwrap();
        let (mut cos, mut sin) = (vec![0f32; theta.len()], vec![0f32; theta.len()]);
        cos_sin(&theta, &mut cos, &mut sin);
        for i in 0..theta.len() {
            assert_eq!(
                cos[i].to_bits(),
                c.as_slice::<f32>()[i].to_bits(),
                "cos {}",
                theta[i]
            );
            assert_eq!(
                sin[i].to_bits(),
                s.as_slice::<f32>()[i].to_bits(),
                "sin {}",
                theta[i]
            );
        }
    }
}
