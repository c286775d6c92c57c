//! `silu(gate) · up` (the SwiGLU of llama-style MLPs) for f32 on the CPU, bit for bit what MLX
//! computes, several times faster.
//!
//! MLX's CPU build for x86 has no SIMD for `exp`: its Cephes-style `simd::exp` runs one value at
//! a time and calls libm's `fmaf` six times per value, so during prefill the MLP's sigmoid costs
//! about as much as its three matrix products. This is the same arithmetic — `x·log2(e)`, the
//! integer part as `floor(x + 0.5)` in double precision (C++ promotes the `0.5`), the same
//! fused-multiply-add polynomial, exponent bits by shifting, the same NaN/overflow selects, then
//! `σ = 1 / (1 + exp|x|)` mirrored for `x ≥ 0`, then `(g · σ) · u` — eight values per AVX2+FMA
//! instruction, each operation rounded exactly as the scalar one.
use super::pool;

/// Values per parallel task: big enough to amortize scheduling.
const CHUNK: usize = 16 * 1024;

/// `out[i] = (g[i] · σ(g[i])) · u[i]`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert_eq!(gate.len(), up.len());
    assert_eq!(gate.len(), out.len());
    pool::chunks_mut(out, CHUNK, |at, o| chunk(&gate[at.clone()], &up[at], o));
}

fn chunk(g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        let done = unsafe { avx2::swiglu(g, u, o) };
        for i in done..g.len() {
            o[i] = silu(g[i]) * u[i];
        }
        return;
    }
    for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
        *o = silu(*g) * u;
    }
}

/// log2(e) as MLX's source writes it (`1.442695f`), kept literally rather than `LOG2_E`.
#[allow(clippy::approx_constant)]
const LOG2_E_MLX: f32 = 1.442695;

/// The polynomial for `2^f`, highest power first, written exactly as MLX's source has it.
#[allow(clippy::excessive_precision)]
const POLY: [f32; 7] = [
    1.535336188319500e-4,
    1.339887440266574e-3,
    9.618437357674640e-3,
    5.550332471162809e-2,
    2.402264791363012e-1,
    6.931472028550421e-1,
    1.000000000000000,
];

/// MLX's `simd::exp` for one value.
pub(crate) fn exp(x0: f32) -> f32 {
    let x = x0 * LOG2_E_MLX;
    let ipart = (x as f64 + 0.5).floor() as f32;
    let f = x - ipart;
    let mut p = POLY[0];
    for c in POLY[1..].iter().copied() {
        p = p.mul_add(f, c);
    }
    // Out of range (NaN, beyond ±88) the bits are garbage and the selects below discard them.
    let e = f32::from_bits((ipart as i32).wrapping_add(127).wrapping_shl(23) as u32);
    if x0.is_nan() {
        x0
    } else if x0 > 88.0 {
        f32::INFINITY
    } else if x0 < -88.0 {
        0.0
    } else {
        e * p
    }
}

/// MLX's `Sigmoid` and `silu(x) = x · σ(x)` for one value.
fn silu(x: f32) -> f32 {
    let y = 1.0 / (1.0 + exp(x.abs()));
    x * if x < 0.0 { y } else { 1.0 - y }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{LOG2_E_MLX, POLY};
    use std::arch::x86_64::*;

    /// The vectorized loop over whole groups of eight; returns how many values it wrote.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(g: &[f32], u: &[f32], o: &mut [f32]) -> usize {
        let n = g.len() / 8 * 8;
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= every slice's length.
            unsafe {
                let x = _mm256_loadu_ps(g.as_ptr().add(i));
                let s = silu(x);
                let r = _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i)));
                _mm256_storeu_ps(o.as_mut_ptr().add(i), r);
            }
            i += 8;
        }
        n
    }

    /// MLX's `simd::exp` on eight values.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp(x0: __m256) -> __m256 {
        let x = _mm256_mul_ps(x0, _mm256_set1_ps(LOG2_E_MLX));
        // floor(x + 0.5) in double precision, as C++ evaluates `x + 0.5` with a double literal.
        let half = _mm256_set1_pd(0.5);
        let lo = _mm256_floor_pd(_mm256_add_pd(
            _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
            half,
        ));
        let hi = _mm256_floor_pd(_mm256_add_pd(
            _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)),
            half,
        ));
        let ipart = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        let f = _mm256_sub_ps(x, ipart);
        let mut p = _mm256_set1_ps(POLY[0]);
        for c in POLY[1..].iter().copied() {
            p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
        }
        let e = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvttps_epi32(ipart), _mm256_set1_epi32(127)),
            23,
        );
        let r = _mm256_mul_ps(_mm256_castsi256_ps(e), p);
        let nan = _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q);
        let r = _mm256_blendv_ps(r, x0, nan);
        let big = _mm256_cmp_ps(x0, _mm256_set1_ps(88.0), _CMP_GT_OQ);
        let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::INFINITY), big);
        let small = _mm256_cmp_ps(x0, _mm256_set1_ps(-88.0), _CMP_LT_OQ);
        _mm256_blendv_ps(r, _mm256_setzero_ps(), small)
    }

    #[target_feature(enable = "avx2,fma")]
    fn silu(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
        let y = _mm256_div_ps(one, _mm256_add_ps(one, exp(abs)));
        let neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        let s = _mm256_blendv_ps(_mm256_sub_ps(one, y), y, neg);
        _mm256_mul_ps(x, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{Array, ops};

    /// Values across the whole range sigmoid cares about, the ±88 edges, zeros, infinities and
    /// NaN, plus a dense sweep where rounding of `x + 0.5` decides the integer part.
    fn inputs() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            88.0,
            -88.0,
            88.000_01,
            -88.000_01,
            87.99,
            -87.99,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            1e-30,
            -1e-30,
            0.346_573_6,
            -0.346_573_6,
        ];
        let mut s = 0x1234_5678u32;
        for i in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let unit = s as f32 / u32::MAX as f32;
            v.push(match i % 4 {
                0 => unit * 200.0 - 100.0,
                1 => unit * 16.0 - 8.0,
                2 => (unit * 2.0 - 1.0) * 1e-3,
                _ => {
                    (i as f32 * 0.5 + 0.25) / LOG2_E_MLX
                        * if i % 8 == 3 { 1.0 } else { -1.0 }
                        * 1e-2
                }
            });
        }
        // A length that is not a multiple of 8, so the scalar tail runs too.
        v.push(3.0);
        v
    }

    #[test]
    fn equals_mlx_silu_times_up_bit_for_bit() {
        let g = inputs();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.125).collect();
        let (ga, ua) = (
            Array::from_slice(&g, &[g.len() as i32]),
            Array::from_slice(&u, &[u.len() as i32]),
        );
        let want = ops::multiply(mlx_rs::nn::silu(&ga).unwrap(), &ua).unwrap();
        let want = want.as_slice::<f32>();
        let mut got = vec![0f32; g.len()];
        swiglu(&g, &u, &mut got);
        for i in 0..g.len() {
            let scalar = silu(g[i]) * u[i];
            for (what, v) in [("simd", got[i]), ("scalar", scalar)] {
                assert!(
                    v.to_bits() == want[i].to_bits() || (v.is_nan() && want[i].is_nan()),
                    "{what}: silu({}) · {} = {v} but MLX says {}",
                    g[i],
                    u[i],
                    want[i]
                );
            }
        }
    }
}
