//! `y = x Wᵀ` for MLX affine-quantized `W` (2, 4 or 8 bits) on the CPU, bit for bit what MLX's
//! own CPU kernel computes, several times faster.
//!
//! MLX's CPU `QuantizedMatmul` (on x86 it has no SIMD path) computes every output on one thread
//! as one strictly sequential sum over `k`: `sum += x[k] * (scale * q[k] + bias)`, rounding after
//! each multiply and add (no fused multiply-add). Its speed is bound by the latency of that one
//! dependency chain. Here each output keeps exactly that chain — same operations, same order —
//! but eight outputs run side by side in SIMD lanes, a dequantized weight serves a whole tile of
//! input rows, and blocks of outputs are spread over all cores. Rust never contracts `a * b + c`
//! into an FMA, so the rounding matches.
use rayon::prelude::*;

/// Outputs computed side by side (one 256-bit vector of f32).
const LANES: usize = 8;
/// Outputs one task unit computes (a multiple of `LANES`).
const BLOCK: usize = 16;
/// Input rows sharing one dequantized block of weights.
const ROW_TILE: usize = 32;

/// A packed weight matrix `[n, k]` as MLX stores it: `k · bits / 32` little-endian `u32` words
/// per row (low bits first), one scale and bias per `group` values.
#[derive(Clone, Copy)]
pub struct QuantMatrix<'a> {
    pub words: &'a [u32],
    pub scales: &'a [f32],
    pub biases: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub group: usize,
    pub bits: u32,
}

impl QuantMatrix<'_> {
    /// Whether this kernel computes the layout (else MLX's own op must).
    pub fn supported(bits: i32, group: i32, k: usize) -> bool {
        matches!(bits, 2 | 4 | 8)
            && group > 0
            && (group * bits) % 32 == 0
            && k.is_multiple_of(group as usize)
    }

    fn check(&self) {
        assert!(Self::supported(self.bits as i32, self.group as i32, self.k));
        assert_eq!(self.words.len(), self.n * self.k * self.bits as usize / 32);
        assert_eq!(self.scales.len(), self.n * self.k / self.group);
        assert_eq!(self.biases.len(), self.scales.len());
    }
}

/// A pointer to the output that blocks of disjoint columns write through.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every block writes only its own columns of the output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// `out[m, n] = x[m, k] · Wᵀ`, all rows of `x` contiguous.
pub fn qmatmul_t(x: &[f32], m: usize, w: &QuantMatrix, out: &mut [f32]) {
    w.check();
    assert_eq!(x.len(), m * w.k);
    assert_eq!(out.len(), m * w.n);
    let ptr = Out(out.as_mut_ptr());
    let blocks = w.n.div_ceil(BLOCK);
    // Enough blocks per task to amortize scheduling, enough tasks to balance the cores.
    let per_task = (blocks / (4 * rayon::current_num_threads())).clamp(1, 64);
    (0..blocks.div_ceil(per_task))
        .into_par_iter()
        .for_each(|t| {
            for b in t * per_task..((t + 1) * per_task).min(blocks) {
                run_block(x, m, w, b * BLOCK, ptr);
            }
        });
}

fn run_block(x: &[f32], m: usize, w: &QuantMatrix, n0: usize, out: Out) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        if m > 1 {
            // SAFETY: the CPU has AVX2.
            unsafe { blocks_avx2(x, m, w, n0, out) };
            return;
        }
        // SAFETY: the CPU has AVX2.
        unsafe {
            match w.bits {
                2 => avx2::matvec::<2, 16>(x, w, n0, out),
                4 => avx2::matvec::<4, 8>(x, w, n0, out),
                8 => avx2::matvec::<8, 4>(x, w, n0, out),
                _ => unreachable!("checked by QuantMatrix::supported"),
            }
        }
        return;
    }
    blocks(x, m, w, n0, out);
}

/// Several input rows: the portable blocks, vectorized for AVX2 by the compiler (each weight
/// is dequantized once for a tile of rows, then used from registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks_avx2(x: &[f32], m: usize, w: &QuantMatrix, n0: usize, out: Out) {
    blocks(x, m, w, n0, out);
}

/// Outputs `n0 .. n0 + BLOCK` in portable blocks of `LANES`.
#[inline(always)]
fn blocks(x: &[f32], m: usize, w: &QuantMatrix, n0: usize, out: Out) {
    for sub in (n0..(n0 + BLOCK).min(w.n)).step_by(LANES) {
        match w.bits {
            2 => block::<2, 16>(x, m, w, sub, out),
            4 => block::<4, 8>(x, m, w, sub, out),
            8 => block::<8, 4>(x, m, w, sub, out),
            _ => unreachable!("checked by QuantMatrix::supported"),
        }
    }
}

/// Outputs `n0 .. n0 + 8` (a short last block repeats its last row and drops it) for all rows
/// of `x`. `PER` values are packed in a word.
#[inline(always)]
fn block<const BITS: u32, const PER: usize>(
    x: &[f32],
    m: usize,
    w: &QuantMatrix,
    n0: usize,
    out: Out,
) {
    let k = w.k;
    let words_per_row = k * BITS as usize / 32;
    let groups_per_row = k / w.group;
    let words_per_group = w.group * BITS as usize / 32;
    let mask = (1u32 << BITS) - 1;
    let rows: [usize; LANES] = std::array::from_fn(|j| (n0 + j).min(w.n - 1));
    let live = (w.n - n0).min(LANES);
    let mut acc = [[0f32; LANES]; ROW_TILE];
    for mt in (0..m).step_by(ROW_TILE) {
        let mm = ROW_TILE.min(m - mt);
        acc[..mm].iter_mut().for_each(|a| *a = [0.0; LANES]);
        for g in 0..groups_per_row {
            let scale: [f32; LANES] =
                std::array::from_fn(|j| w.scales[rows[j] * groups_per_row + g]);
            let bias: [f32; LANES] =
                std::array::from_fn(|j| w.biases[rows[j] * groups_per_row + g]);
            for wi in 0..words_per_group {
                let word = g * words_per_group + wi;
                let packed: [u32; LANES] =
                    std::array::from_fn(|j| w.words[rows[j] * words_per_row + word]);
                // The weights of this word for every lane, exactly as MLX rounds them.
                let mut wf = [[0f32; LANES]; PER];
                for (p, wp) in wf.iter_mut().enumerate() {
                    for j in 0..LANES {
                        let q = ((packed[j] >> (p as u32 * BITS)) & mask) as f32;
                        wp[j] = scale[j] * q + bias[j];
                    }
                }
                let kb = g * w.group + wi * PER;
                for (mi, a) in acc[..mm].iter_mut().enumerate() {
                    let xs = &x[(mt + mi) * k + kb..][..PER];
                    for p in 0..PER {
                        let xv = xs[p];
                        for j in 0..LANES {
                            a[j] += xv * wf[p][j];
                        }
                    }
                }
            }
        }
        for (mi, a) in acc[..mm].iter().enumerate() {
            for (j, v) in a.iter().enumerate().take(live) {
                // SAFETY: row `mt + mi` < m and column `n0 + j` < n are inside `out`, and no
                // other block writes column `n0 + j`.
                unsafe { *out.0.add((mt + mi) * w.n + n0 + j) = *v };
            }
        }
    }
}

/// One input row (decoding) with explicit AVX2: `BLOCK` outputs in `BLOCK / 8` vectors whose
/// sums stay in registers as independent chains, weights shifted out of the packed words there.
/// No closures: a closure does not inherit `target_feature`, and intrinsics in one become calls.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK, Out, QuantMatrix};
    use std::arch::x86_64::*;

    const V: usize = BLOCK / 8;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn matvec<const BITS: u32, const PER: usize>(
        x: &[f32],
        w: &QuantMatrix,
        n0: usize,
        out: Out,
    ) {
        let k = w.k;
        let q = k * BITS as usize / 32;
        let groups_per_row = k / w.group;
        let words_per_group = w.group * BITS as usize / 32;
        let maskv = _mm256_set1_epi32(((1u32 << BITS) - 1) as i32);
        let mut rows = [0usize; BLOCK];
        for (j, r) in rows.iter_mut().enumerate() {
            *r = (n0 + j).min(w.n - 1);
        }
        let mut acc = [_mm256_setzero_ps(); V];
        let mut scale = [_mm256_setzero_ps(); V];
        let mut bias = [_mm256_setzero_ps(); V];
        let mut packed = [_mm256_setzero_si256(); V];
        let mut t = [0f32; 8];
        for g in 0..groups_per_row {
            for v in 0..V {
                for j in 0..8 {
                    t[j] = w.scales[rows[8 * v + j] * groups_per_row + g];
                }
                // SAFETY: `t` holds 8 f32.
                scale[v] = unsafe { _mm256_loadu_ps(t.as_ptr()) };
                for j in 0..8 {
                    t[j] = w.biases[rows[8 * v + j] * groups_per_row + g];
                }
                // SAFETY: `t` holds 8 f32.
                bias[v] = unsafe { _mm256_loadu_ps(t.as_ptr()) };
            }
            for wi in 0..words_per_group {
                let i = g * words_per_group + wi;
                for v in 0..V {
                    let (r, ws) = (&rows[8 * v..8 * v + 8], w.words);
                    packed[v] = _mm256_setr_epi32(
                        ws[r[0] * q + i] as i32,
                        ws[r[1] * q + i] as i32,
                        ws[r[2] * q + i] as i32,
                        ws[r[3] * q + i] as i32,
                        ws[r[4] * q + i] as i32,
                        ws[r[5] * q + i] as i32,
                        ws[r[6] * q + i] as i32,
                        ws[r[7] * q + i] as i32,
                    );
                }
                let kb = g * w.group + wi * PER;
                for p in 0..PER {
                    let sh = _mm256_set1_epi32((p as u32 * BITS) as i32);
                    let xv = _mm256_set1_ps(x[kb + p]);
                    for v in 0..V {
                        let qv = _mm256_and_si256(_mm256_srlv_epi32(packed[v], sh), maskv);
                        // (scale · q) + bias, then x · w, then the sum: rounded as MLX rounds.
                        let wf =
                            _mm256_add_ps(_mm256_mul_ps(scale[v], _mm256_cvtepi32_ps(qv)), bias[v]);
                        acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(xv, wf));
                    }
                }
            }
        }
        let mut res = [0f32; BLOCK];
        for (chunk, a) in res.chunks_exact_mut(8).zip(acc) {
            // SAFETY: `chunk` holds 8 f32.
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), a) };
        }
        for (j, val) in res.iter().enumerate().take((w.n - n0).min(BLOCK)) {
            // SAFETY: column `n0 + j` < n is inside `out`, and no other block writes it.
            unsafe { *out.0.add(n0 + j) = *val };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{Array, ops};

    use crate::tiny::unit_values as pseudo;

    /// The kernel equals MLX's `quantized_matmul` bit for bit.
    fn same_as_mlx(m: usize, n: usize, k: usize, group: i32, bits: i32) {
        let w = Array::from_slice(&pseudo(7, n * k), &[n as i32, k as i32]);
        let (wq, s, b) = ops::quantize(&w, group, bits).unwrap();
        let x = Array::from_slice(&pseudo(3, m * k), &[m as i32, k as i32]);
        let want = ops::quantized_matmul(&x, &wq, &s, &b, true, group, bits).unwrap();
        let q = QuantMatrix {
            words: wq.as_slice::<u32>(),
            scales: s.as_slice::<f32>(),
            biases: b.as_slice::<f32>(),
            n,
            k,
            group: group as usize,
            bits: bits as u32,
        };
        let mut got = vec![0f32; m * n];
        qmatmul_t(x.as_slice::<f32>(), m, &q, &mut got);
        let want = want.as_slice::<f32>();
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "m={m} n={n} k={k} g={group} b={bits}: element {i}: {g} vs MLX {w}"
            );
        }
    }

    #[test]
    fn matches_mlx_bit_for_bit() {
        for (m, n, k, g, b) in [
            (1, 64, 64, 32, 4),
            (1, 72, 128, 64, 4),
            (3, 13, 256, 32, 8),
            (1, 40, 128, 128, 4),
            (5, 24, 64, 32, 2),
            (33, 17, 128, 64, 8),
            (70, 9, 64, 64, 4),
            (1, 1000, 64, 64, 8),
            (2, 1000, 64, 32, 4),
        ] {
            same_as_mlx(m, n, k, g, b);
        }
    }

    #[test]
    fn supported_layouts() {
        assert!(QuantMatrix::supported(4, 32, 64));
        assert!(QuantMatrix::supported(8, 128, 256));
        assert!(!QuantMatrix::supported(3, 32, 64));
        assert!(!QuantMatrix::supported(4, 32, 48));
    }
}
