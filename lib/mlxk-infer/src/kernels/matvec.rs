//! `y = x Wᵀ (+ b)` for a dense f32 `W` and a few rows of `x` (decoding: one row), on the CPU.
//!
//! MLX sends every f32 matmul to BLAS `sgemm`, even for a single row; OpenBLAS then packs the
//! whole weight matrix into its panel layout on every call before multiplying, which for one row
//! costs more than the multiplication and caps decoding far below the memory bandwidth. A row of
//! outputs is just a dot product per weight row, which this kernel streams straight from the
//! stored `[n, k]` matrix: four weight rows at a time share each load of `x`, with FMA on AVX2
//! (runtime-detected; portable lanes otherwise) and blocks of rows spread over the cores.
//!
//! The sums are not rounded in sgemm's order, so logits differ from mlx-lm's in the last bits
//! (relative ~1e-6); the parity tests hold greedy tokens and log-probabilities to mlx-lm's.
use super::pool::{self, Out};

/// Weight rows one task computes.
const BLOCK: usize = 64;
/// Weight rows sharing one load of `x`.
const ROWS: usize = 4;

/// Up to this many rows of `x` go through this kernel; more are a real matrix product for BLAS.
pub const MAX_ROWS: usize = 4;

/// A stored weight value the kernel reads: f32, or f16 (weights stored in half precision are
/// read as they are and widened exactly in registers, so the sums are those over the f32 copy
/// bit for bit, from half the bytes).
///
/// # Safety
/// `simd()` may return true only on a CPU with AVX2, FMA and F16C (the features the vector
/// kernel is compiled for), and `load8` must read no more than eight values from `p`.
pub unsafe trait WeightValue: Copy + Sync {
    fn f32(self) -> f32;
    /// Eight values from `p` widened to f32.
    ///
    /// # Safety
    /// `p .. p + 8` is readable and the CPU has what [`WeightValue::simd`] checks.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
    /// Whether this CPU runs the vector kernel (AVX2, FMA, F16C).
    fn simd() -> bool;
}

// SAFETY: `simd` checks AVX2, FMA and F16C; `load8` reads eight values.
unsafe impl WeightValue for f32 {
    fn f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller reads eight values inside its slice, on an AVX2 CPU.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
    fn simd() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c");
        #[allow(unreachable_code)]
        false
    }
}

// SAFETY: as for f32.
unsafe impl WeightValue for half::f16 {
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller reads eight values inside its slice, on an AVX2 + F16C CPU.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    fn simd() -> bool {
        #[cfg(target_arch = "x86_64")]
        return f32::simd();
        #[allow(unreachable_code)]
        false
    }
}

/// `out[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n])`, all contiguous row-major.
pub fn matmul_t<W: WeightValue>(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[W],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(x.len(), m * k);
    assert_eq!(w.len(), n * k);
    assert_eq!(out.len(), m * n);
    if let Some(b) = bias {
        assert_eq!(b.len(), n);
    }
    if m == 0 || n == 0 {
        return;
    }
    let ptr = Out(out.as_mut_ptr());
    let blocks = n.div_ceil(BLOCK);
    pool::run(blocks, |b| {
        let (r0, r1) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            let mut r = r0;
            while r < r1 {
                let rows = (r1 - r).min(ROWS);
                let mut dots = [0f32; ROWS];
                dot_rows(xi, &w[r * k..(r + rows) * k], rows, &mut dots);
                for (j, d) in dots.iter().take(rows).enumerate() {
                    let v = bias.map_or(*d, |b| d + b[r + j]);
                    // SAFETY: (i, r + j) is inside `out`, and only this block writes column r + j.
                    unsafe { *ptr.at(i * n + r + j) = v };
                }
                r += rows;
            }
        }
    });
}

/// `dots[j] = x · w[j]` for the `rows` (≤ ROWS) rows of `w`.
fn dot_rows<W: WeightValue>(x: &[f32], w: &[W], rows: usize, dots: &mut [f32; ROWS]) {
    #[cfg(target_arch = "x86_64")]
    if rows == ROWS && W::simd() {
        // SAFETY: the CPU has AVX2, FMA (and F16C for f16 weights).
        unsafe { avx2::dot4(x, w, dots) };
        return;
    }
    for (j, d) in dots.iter_mut().enumerate().take(rows) {
        *d = dot(x, &w[j * x.len()..(j + 1) * x.len()]);
    }
}

/// One dot product in eight independent lanes (vectorizable), summed pairwise at the end.
fn dot<W: WeightValue>(x: &[f32], w: &[W]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, wc) = (x.chunks_exact(8), w.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(wc.remainder())
        .map(|(a, b)| a * b.f32())
        .sum();
    for (a, b) in xc.zip(wc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l].f32();
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    s + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::ROWS;
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Four dot products `x · w[j]`, two accumulators per row (16 values of `k` per step).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot4<W: super::WeightValue>(x: &[f32], w: &[W], dots: &mut [f32; ROWS]) {
        let k = x.len();
        assert_eq!(w.len(), ROWS * k);
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut a = [_mm256_setzero_ps(); 2 * ROWS];
        let mut i = 0;
        // SAFETY: every load reads `i .. i + 16` ≤ k of x and of each row of w.
        unsafe {
            while i + 16 <= k {
                let x0 = _mm256_loadu_ps(xp.add(i));
                let x1 = _mm256_loadu_ps(xp.add(i + 8));
                for j in 0..ROWS {
                    let r = wp.add(j * k + i);
                    a[2 * j] = _mm256_fmadd_ps(x0, W::load8(r), a[2 * j]);
                    a[2 * j + 1] = _mm256_fmadd_ps(x1, W::load8(r.add(8)), a[2 * j + 1]);
                }
                i += 16;
            }
            for j in 0..ROWS {
                let mut d = hsum(_mm256_add_ps(a[2 * j], a[2 * j + 1]));
                for t in i..k {
                    d += *xp.add(t) * (*wp.add(j * k + t)).f32();
                }
                dots[j] = d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tiny::unit_values as pseudo;

    /// Within f32 rounding of an f64 reference, for shapes that hit every tail: k not a
    /// multiple of 16 or 8, n not a multiple of the row group or the block, several rows.
    #[test]
    fn matches_f64_reference() {
        for (m, n, k) in [
            (1, 1, 1),
            (1, 7, 13),
            (1, 64, 576),
            (2, 130, 40),
            (3, 67, 1536),
            (4, 5, 17),
            (1, 1000, 64),
        ] {
            let (x, w, b) = (pseudo(1, m * k), pseudo(2, n * k), pseudo(3, n));
            for bias in [None, Some(b.as_slice())] {
                let mut got = vec![f32::NAN; m * n];
                matmul_t(&x, m, k, &w, n, bias, &mut got);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                            .sum::<f64>()
                            + bias.map_or(0.0, |b| b[j] as f64);
                        let g = got[i * n + j] as f64;
                        assert!(
                            (g - want).abs() <= 1e-5 * (k as f64).sqrt().max(1.0),
                            "m={m} n={n} k={k} ({i},{j}): {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Weights stored in f16 give the very bits of the same weights widened to f32.
    #[test]
    fn f16_weights_sum_as_their_f32_copy() {
        for (m, n, k) in [(1, 7, 13), (1, 64, 384), (3, 67, 1536), (4, 5, 17)] {
            let x = pseudo(1, m * k);
            let w16: Vec<half::f16> = pseudo(2, n * k)
                .iter()
                .map(|&v| half::f16::from_f32(v))
                .collect();
            let w32: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
            let b = pseudo(3, n);
            let (mut a, mut c) = (vec![0f32; m * n], vec![0f32; m * n]);
            matmul_t(&x, m, k, &w16, n, Some(&b), &mut a);
            matmul_t(&x, m, k, &w32, n, Some(&b), &mut c);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&c), "m={m} n={n} k={k}");
        }
    }

    #[test]
    fn empty_shapes_are_fine() {
        let mut out = vec![];
        matmul_t(&[], 0, 2, &[1.0f32, 2.0], 1, None, &mut out);
        matmul_t::<f32>(&[1.0, 2.0], 1, 2, &[], 0, None, &mut out);
        let mut one = vec![f32::NAN];
        matmul_t::<f32>(&[], 1, 0, &[], 1, Some(&[0.5]), &mut one);
        assert_eq!(one, [0.5]);
    }
}
