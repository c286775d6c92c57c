//! `y = x Wᵀ` for MLX affine-quantized `W` (2, 4 or 8 bits) on the CPU, several times faster
//! than MLX's own CPU kernel: bit for bit what it computes for several input rows (prefill),
//! and within the last bits of it for one row (decoding), where fused multiply-adds pay.
//!
//! MLX's CPU `QuantizedMatmul` (on x86 it has no SIMD path) computes every output on one thread
//! as one strictly sequential sum over `k`: `sum += x[k] * (scale * q[k] + bias)`, rounding after
//! each multiply and add (no fused multiply-add). Here each output keeps that chain — same
//! operations, same order — but outputs run side by side in SIMD lanes, a dequantized weight
//! serves a whole tile of input rows, and blocks of outputs are spread over all cores; Rust
//! never contracts `a * b + c` into an FMA, so for several rows the rounding matches. For one
//! row the AVX2 kernel fuses both steps (`fma(scale, q, bias)`, then `fma(x, w, sum)`): the
//! same chain in the same order with two roundings fewer per weight, 1.3× faster decoding
//! on this VM (SmolLM2 4-bit 80–84 → 98–111 tok/s), sums within ~1e-6 relative of MLX's, and
//! the parity tests' greedy tokens and log-probabilities unchanged.
//!
//! The weights are repacked once, at load, into [`PackedQuant`]: blocks of [`ROWS`] rows whose
//! words, scales and biases are interleaved row by row, so a block streams from one contiguous
//! run of memory with vector loads (MLX's layout would make every lane gather its word from
//! another row). The repacked matrix replaces MLX's arrays: it costs no extra memory.
use super::pool::{self, Out};

/// Rows of `W` one block interleaves (four 256-bit vectors of f32 outputs).
pub const ROWS: usize = 32;
/// Outputs side by side in the portable code (one 256-bit vector of f32).
const LANES: usize = 8;
/// Input rows sharing one dequantized block of weights.
const ROW_TILE: usize = 32;

/// A packed weight matrix `[n, k]` in the interleaved block layout: for block `b`, group `g`,
/// word `i` of the group and row `j` of the block, the word is at
/// `((b · groups + g) · words_per_group + i) · ROWS + j`, and the scale and bias at
/// `(b · groups + g) · ROWS + j`. A last, short block repeats its last row.
pub struct PackedQuant {
    words: Vec<u32>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    pub n: usize,
    pub k: usize,
    pub group: usize,
    pub bits: u32,
}

impl std::fmt::Debug for PackedQuant {
    /// The shape and format, not the hundreds of megabytes of weights.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedQuant")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("group", &self.group)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl PackedQuant {
    /// Whether this kernel computes the layout (else MLX's own op must).
    pub fn supported(bits: i32, group: i32, k: usize) -> bool {
        matches!(bits, 2 | 4 | 8)
            && group > 0
            && (group * bits) % 32 == 0
            && k.is_multiple_of(group as usize)
            && k > 0
    }

    /// Repacks a matrix stored as MLX stores it: `k · bits / 32` little-endian `u32` words per
    /// row (low bits first), one scale and bias per `group` values.
    pub fn pack(
        words: &[u32],
        scales: &[f32],
        biases: &[f32],
        n: usize,
        k: usize,
        group: usize,
        bits: u32,
    ) -> PackedQuant {
        assert!(Self::supported(bits as i32, group as i32, k) && n > 0);
        let wpr = k * bits as usize / 32;
        let groups = k / group;
        let wpg = wpr / groups;
        assert_eq!(words.len(), n * wpr);
        assert_eq!(scales.len(), n * groups);
        assert_eq!(biases.len(), scales.len());
        let blocks = n.div_ceil(ROWS);
        let mut pw = vec![0u32; blocks * ROWS * wpr];
        let mut ps = vec![0f32; blocks * ROWS * groups];
        let mut pb = vec![0f32; ps.len()];
        for b in 0..blocks {
            for j in 0..ROWS {
                let r = (b * ROWS + j).min(n - 1);
                for g in 0..groups {
                    let s = (b * groups + g) * ROWS + j;
                    ps[s] = scales[r * groups + g];
                    pb[s] = biases[r * groups + g];
                    for i in 0..wpg {
                        pw[((b * groups + g) * wpg + i) * ROWS + j] = words[r * wpr + g * wpg + i];
                    }
                }
            }
        }
        PackedQuant {
            words: pw,
            scales: ps,
            biases: pb,
            n,
            k,
            group,
            bits,
        }
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        4 * (self.words.len() + self.scales.len() + self.biases.len())
    }

    fn groups(&self) -> usize {
        self.k / self.group
    }

    fn words_per_group(&self) -> usize {
        self.group * self.bits as usize / 32
    }

    /// Row `r` dequantized as MLX's `dequantize` computes it (`scale · q + bias`, rounded
    /// after the multiply and after the add).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.n && out.len() == self.k);
        let (b, j) = (r / ROWS, r % ROWS);
        let (groups, wpg, bits) = (self.groups(), self.words_per_group(), self.bits);
        let per = 32 / bits as usize;
        let mask = (1u32 << bits) - 1;
        for g in 0..groups {
            let s = (b * groups + g) * ROWS + j;
            let (scale, bias) = (self.scales[s], self.biases[s]);
            for i in 0..wpg {
                let word = self.words[((b * groups + g) * wpg + i) * ROWS + j];
                for p in 0..per {
                    let q = ((word >> (p as u32 * bits)) & mask) as f32;
                    out[g * self.group + i * per + p] = scale * q + bias;
                }
            }
        }
    }
}

/// `out[m, n] = x[m, k] · Wᵀ`, all rows of `x` contiguous.
pub fn qmatmul_t(x: &[f32], m: usize, w: &PackedQuant, out: &mut [f32]) {
    assert_eq!(x.len(), m * w.k);
    assert_eq!(out.len(), m * w.n);
    if m == 0 {
        return;
    }
    let ptr = Out(out.as_mut_ptr());
    let blocks = w.n.div_ceil(ROWS);
    // Enough blocks per task to amortize scheduling, enough tasks to balance the cores.
    let per_task = (blocks / (4 * pool::threads())).clamp(1, 16);
    pool::run(blocks.div_ceil(per_task), |t| {
        for b in t * per_task..((t + 1) * per_task).min(blocks) {
            run_block(x, m, w, b, ptr);
        }
    });
}

fn run_block(x: &[f32], m: usize, w: &PackedQuant, b: usize, out: Out) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        if m > 1 || !std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2.
            unsafe { blocks_avx2(x, m, w, b, out) };
            return;
        }
        // SAFETY: the CPU has AVX2 and FMA; `b` is a block of `w`, `x` holds `k` values.
        unsafe {
            match w.bits {
                2 => avx2::matvec::<2, 16>(x, w, b, out),
                4 => avx2::matvec::<4, 8>(x, w, b, out),
                8 => avx2::matvec::<8, 4>(x, w, b, out),
                _ => unreachable!("checked by PackedQuant::supported"),
            }
        }
        return;
    }
    blocks(x, m, w, b, out);
}

/// Several input rows: the portable blocks, vectorized for AVX2 by the compiler (each weight
/// is dequantized once for a tile of rows, then used from registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks_avx2(x: &[f32], m: usize, w: &PackedQuant, b: usize, out: Out) {
    blocks(x, m, w, b, out);
}

/// Block `b` in portable sub-blocks of `LANES` rows.
#[inline(always)]
fn blocks(x: &[f32], m: usize, w: &PackedQuant, b: usize, out: Out) {
    for sub in (0..ROWS).step_by(LANES) {
        if b * ROWS + sub >= w.n {
            break;
        }
        match w.bits {
            2 => block::<2, 16>(x, m, w, b, sub, out),
            4 => block::<4, 8>(x, m, w, b, sub, out),
            8 => block::<8, 4>(x, m, w, b, sub, out),
            _ => unreachable!("checked by PackedQuant::supported"),
        }
    }
}

/// Rows `sub .. sub + LANES` of block `b` for all rows of `x`. `PER` values are packed in a
/// word.
#[inline(always)]
fn block<const BITS: u32, const PER: usize>(
    x: &[f32],
    m: usize,
    w: &PackedQuant,
    b: usize,
    sub: usize,
    out: Out,
) {
    let k = w.k;
    let (groups, wpg) = (w.groups(), w.words_per_group());
    let mask = (1u32 << BITS) - 1;
    let n0 = b * ROWS + sub;
    let live = (w.n - n0).min(LANES);
    let mut acc = [[0f32; LANES]; ROW_TILE];
    for mt in (0..m).step_by(ROW_TILE) {
        let mm = ROW_TILE.min(m - mt);
        acc[..mm].iter_mut().for_each(|a| *a = [0.0; LANES]);
        for g in 0..groups {
            let s = (b * groups + g) * ROWS + sub;
            let scale: [f32; LANES] = w.scales[s..s + LANES].try_into().expect("LANES");
            let bias: [f32; LANES] = w.biases[s..s + LANES].try_into().expect("LANES");
            for wi in 0..wpg {
                let at = ((b * groups + g) * wpg + wi) * ROWS + sub;
                let packed: [u32; LANES] = w.words[at..at + LANES].try_into().expect("LANES");
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
                unsafe { *out.at((mt + mi) * w.n + n0 + j) = *v };
            }
        }
    }
}

/// One input row (decoding) with explicit AVX2 and FMA: the block's `ROWS` outputs in four
/// vectors whose sums stay in registers as independent chains; words, scales and biases are
/// vector loads from the interleaved block, weights shifted out of the packed words in
/// registers.
/// No closures: a closure does not inherit `target_feature`, and intrinsics in one become calls.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Out, PackedQuant, ROWS};
    use std::arch::x86_64::*;

    const V: usize = ROWS / 8;

    /// # Safety
    /// The CPU has AVX2 and FMA, `b` is a block of `w`, and `x` holds `w.k` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matvec<const BITS: u32, const PER: usize>(
        x: &[f32],
        w: &PackedQuant,
        b: usize,
        out: Out,
    ) {
        debug_assert!(x.len() == w.k && b * ROWS < w.n);
        let (groups, wpg) = (w.groups(), w.words_per_group());
        let maskv = _mm256_set1_epi32(((1u32 << BITS) - 1) as i32);
        let shift = _mm_cvtsi32_si128(BITS as i32);
        let mut acc = [_mm256_setzero_ps(); V];
        // SAFETY (all pointer arithmetic below): block `b` holds `groups · ROWS` scales and
        // biases and `groups · wpg · ROWS` words, all inside the packed vectors.
        let sp = unsafe { w.scales.as_ptr().add(b * groups * ROWS) };
        let bp = unsafe { w.biases.as_ptr().add(b * groups * ROWS) };
        let wp = unsafe { w.words.as_ptr().add(b * groups * wpg * ROWS) };
        let xp = x.as_ptr();
        for g in 0..groups {
            let mut scale = [_mm256_setzero_ps(); V];
            let mut bias = [_mm256_setzero_ps(); V];
            for v in 0..V {
                scale[v] = unsafe { _mm256_loadu_ps(sp.add(g * ROWS + 8 * v)) };
                bias[v] = unsafe { _mm256_loadu_ps(bp.add(g * ROWS + 8 * v)) };
            }
            for wi in 0..wpg {
                let base = unsafe { wp.add((g * wpg + wi) * ROWS) };
                let mut packed = [_mm256_setzero_si256(); V];
                for (v, p) in packed.iter_mut().enumerate() {
                    *p = unsafe { _mm256_loadu_si256(base.add(8 * v) as *const __m256i) };
                }
                let kb = g * w.group + wi * PER;
                for p in 0..PER {
                    // SAFETY: kb + p < k.
                    let xv = _mm256_set1_ps(unsafe { *xp.add(kb + p) });
                    for v in 0..V {
                        let qv = _mm256_and_si256(packed[v], maskv);
                        // fma(scale, q, bias), then fma(x, w, sum): MLX's chain, fused.
                        let wf = _mm256_fmadd_ps(scale[v], _mm256_cvtepi32_ps(qv), bias[v]);
                        acc[v] = _mm256_fmadd_ps(xv, wf, acc[v]);
                        packed[v] = _mm256_srl_epi32(packed[v], shift);
                    }
                }
            }
        }
        let mut res = [0f32; ROWS];
        for (chunk, a) in res.chunks_exact_mut(8).zip(acc) {
            // SAFETY: `chunk` holds 8 f32.
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), a) };
        }
        let n0 = b * ROWS;
        for (j, val) in res.iter().enumerate().take((w.n - n0).min(ROWS)) {
            // SAFETY: column `n0 + j` < n is inside `out`, and no other block writes it.
            unsafe { *out.at(n0 + j) = *val };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{Array, ops};

    use crate::tiny::unit_values as pseudo;

    fn packed(n: usize, k: usize, group: i32, bits: i32) -> (Array, Array, Array, PackedQuant) {
        let w = Array::from_slice(&pseudo(7, n * k), &[n as i32, k as i32]);
        let (wq, s, b) = ops::quantize(&w, group, bits).unwrap();
        let p = PackedQuant::pack(
            wq.as_slice::<u32>(),
            s.as_slice::<f32>(),
            b.as_slice::<f32>(),
            n,
            k,
            group as usize,
            bits as u32,
        );
        (wq, s, b, p)
    }

    /// The kernel equals MLX's `quantized_matmul` bit for bit for several rows, and within
    /// rounding (the fused one-row kernel) for one.
    fn same_as_mlx(m: usize, n: usize, k: usize, group: i32, bits: i32) {
        let (wq, s, b, q) = packed(n, k, group, bits);
        let x = Array::from_slice(&pseudo(3, m * k), &[m as i32, k as i32]);
        let want = ops::quantized_matmul(&x, &wq, &s, &b, true, group, bits).unwrap();
        let mut got = vec![0f32; m * n];
        qmatmul_t(x.as_slice::<f32>(), m, &q, &mut got);
        let want = want.as_slice::<f32>();
        let fused = m == 1 && cfg!(target_arch = "x86_64") && fused_available();
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if fused {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "m={m} n={n} k={k} g={group} b={bits}: element {i}: {g} vs MLX {w}"
                );
            } else {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "m={m} n={n} k={k} g={group} b={bits}: element {i}: {g} vs MLX {w}"
                );
            }
        }
    }

    fn fused_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    #[test]
    fn matches_mlx() {
        for (m, n, k, g, b) in [
            (1, 64, 64, 32, 4),
            (1, 72, 128, 64, 4),
            (3, 13, 256, 32, 8),
            (1, 40, 128, 128, 4),
            (5, 24, 64, 32, 2),
            (1, 24, 64, 32, 2),
            (33, 17, 128, 64, 8),
            (70, 9, 64, 64, 4),
            (1, 1000, 64, 64, 8),
            (1, 1, 32, 32, 4),
            (2, 1000, 64, 32, 4),
        ] {
            same_as_mlx(m, n, k, g, b);
        }
    }

    /// A repacked row dequantizes to MLX's `dequantize` bit for bit.
    #[test]
    fn rows_dequantize_as_mlx_does() {
        for (n, k, g, bits) in [(37, 64, 32, 4), (5, 128, 64, 8), (33, 64, 32, 2)] {
            let (wq, s, b, p) = packed(n, k, g, bits);
            let want = ops::dequantize(&wq, &s, &b, g, bits).unwrap();
            let want = want.as_slice::<f32>();
            let mut row = vec![0f32; k];
            for r in 0..n {
                p.dequantize_row(r, &mut row);
                let w: Vec<u32> = want[r * k..(r + 1) * k]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let got: Vec<u32> = row.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, w, "n={n} k={k} g={g} bits={bits} row {r}");
            }
        }
    }

    #[test]
    fn supported_layouts() {
        assert!(PackedQuant::supported(4, 32, 64));
        assert!(PackedQuant::supported(8, 128, 256));
        assert!(!PackedQuant::supported(3, 32, 64));
        assert!(!PackedQuant::supported(4, 32, 48));
        assert!(!PackedQuant::supported(4, 32, 0));
    }
}
