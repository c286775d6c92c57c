//! One query's attention over many keys on the CPU (a decoder step): the scores, each a dot
//! product summed in order with fused multiply-adds, and the softmax-weighted sum of the values,
//! likewise in order over the keys.
//!
//! That is the order OpenBLAS's `sgemm` sums a one-row product in on this machine's kernels
//! (probed against MLX with OpenBLAS preloaded), so these agree with MLX's matmuls in all but a
//! few last bits; what MLX spends here is not the arithmetic (a few hundred thousand
//! multiply-adds a step) but dispatching a dozen small operations per layer.

/// `out[c] = Σᵢ a[i] · b[i · stride + c]`, summed in order over `i`: a query's scores against
/// keys laid out by dimension (`b[t · stride + j]`, Whisper's cross-attention keys, `(heads, d,
/// frames)`), and a softmax's weighted sum of value rows (`b[j · stride + t]`).
pub fn weighted_rows(a: &[f32], b: &[f32], stride: usize, out: &mut [f32]) {
    let m = out.len();
    assert!(stride >= m && (a.is_empty() || b.len() >= (a.len() - 1) * stride + m));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA; the bounds are checked above.
        unsafe { fma::weighted_rows(a, b, stride, out) };
        return;
    }
    weighted_rows_any(a, b, stride, out)
}

#[inline(always)]
fn weighted_rows_any(a: &[f32], b: &[f32], stride: usize, out: &mut [f32]) {
    let m = out.len();
    out.fill(0.0);
    for (i, &ai) in a.iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(&b[i * stride..i * stride + m]) {
            *o = ai.mul_add(x, *o);
        }
    }
}

/// `scores[j] = Σₜ q[t] · (key(j)[t] · scale)` for keys stored as rows (a decoder's own
/// keys, scaled as MLX scales them before its matmul: each value rounded on its own).
pub fn scores_by_row<'a>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    scale: f32,
    scores: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { fma::scores_by_row(q, &key, scale, scores) };
        return;
    }
    scores_by_row_any(q, &key, scale, scores)
}

#[inline(always)]
fn scores_by_row_any<'a>(
    q: &[f32],
    key: &impl Fn(usize) -> &'a [f32],
    scale: f32,
    scores: &mut [f32],
) {
    for (j, s) in scores.iter_mut().enumerate() {
        let k = key(j);
        let mut acc = 0f32;
        for (&qt, &kt) in q.iter().zip(k) {
            acc = qt.mul_add(kt * scale, acc);
        }
        *s = acc;
    }
}

/// Query rows one task of [`full`] attends.
const ROWS_PER_TASK: usize = 16;

/// Unmasked multi-head attention over a whole sequence (an encoder's self-attention), never
/// materialising the `heads × n × n` scores: `q`, `k`, `v` and `out` are `n × d` row-major
/// with `heads` heads side by side; q and k are each scaled by `scale` (value by value, as MLX
/// multiplies them) before their dot products, which sum in order with FMA; the softmax is
/// MLX's precise one bit for bit; the weighted sum of values runs over keys in order.
pub fn full(q: &[f32], k: &[f32], v: &[f32], n: usize, heads: usize, scale: f32, out: &mut [f32]) {
    let d = q.len().checked_div(n).unwrap_or(0);
    assert!(heads > 0 && d.is_multiple_of(heads));
    assert!(q.len() == n * d && k.len() == n * d && v.len() == n * d && out.len() == n * d);
    if n == 0 {
        return;
    }
    let dh = d / heads;
    // Keys by head and dimension, scaled: `keys[h][t][j]`, so a query's scores are one pass.
    let mut keys = vec![0f32; heads * dh * n];
    let kp = super::pool::Out(keys.as_mut_ptr());
    super::pool::run(heads, |h| {
        // SAFETY: each task writes only its own head's block of `keys`.
        let kh = unsafe { std::slice::from_raw_parts_mut(kp.at(h * dh * n), dh * n) };
        for j in 0..n {
            for t in 0..dh {
                kh[t * n + j] = k[j * d + h * dh + t] * scale;
            }
        }
    });
    let blocks = n.div_ceil(ROWS_PER_TASK);
    let op = super::pool::Out(out.as_mut_ptr());
    super::pool::run(heads * blocks, |task| {
        let (h, b) = (task / blocks, task % blocks);
        let kh = &keys[h * dh * n..(h + 1) * dh * n];
        let rows = b * ROWS_PER_TASK..((b + 1) * ROWS_PER_TASK).min(n);
        let mut qs = vec![0f32; rows.len() * dh];
        for (r, i) in rows.clone().enumerate() {
            let src = &q[i * d + h * dh..i * d + (h + 1) * dh];
            for (qs, &qv) in qs[r * dh..(r + 1) * dh].iter_mut().zip(src) {
                *qs = qv * scale;
            }
        }
        let (mut scores, mut p) = (vec![0f32; rows.len() * n], vec![0f32; rows.len() * n]);
        let mut o = vec![0f32; rows.len() * dh];
        let mut r = 0;
        // Four rows at a time share each load of the keys and of the values (they would
        // otherwise stream a head's keys and values from L2 once per row).
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            while r + 4 <= rows.len() {
                // SAFETY: the CPU has AVX2 and FMA; every slice holds four rows.
                unsafe {
                    fma::weighted_rows4(&qs[r * dh..], dh, kh, n, &mut scores[r * n..], n);
                }
                for rr in r..r + 4 {
                    super::activations::softmax_row(
                        &scores[rr * n..(rr + 1) * n],
                        &mut p[rr * n..(rr + 1) * n],
                    );
                }
                // SAFETY: as above.
                unsafe {
                    fma::weighted_rows4(&p[r * n..], n, &v[h * dh..], d, &mut o[r * dh..], dh);
                }
                r += 4;
            }
        }
        for rr in r..rows.len() {
            let sc = &mut scores[rr * n..(rr + 1) * n];
            weighted_rows(&qs[rr * dh..(rr + 1) * dh], kh, n, sc);
            super::activations::softmax_row(sc, &mut p[rr * n..(rr + 1) * n]);
            weighted_rows(
                &p[rr * n..(rr + 1) * n],
                &v[h * dh..],
                d,
                &mut o[rr * dh..(rr + 1) * dh],
            );
        }
        for (r, i) in rows.enumerate() {
            // SAFETY: each task writes only its own rows of its own head.
            let dst = unsafe { std::slice::from_raw_parts_mut(op.at(i * d + h * dh), dh) };
            dst.copy_from_slice(&o[r * dh..(r + 1) * dh]);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use std::arch::x86_64::*;

    /// Outputs one pass keeps in registers: four vectors of eight.
    const WIDE: usize = 32;

    /// [`super::weighted_rows_any`] with 32 outputs held in four registers while `i` runs (each
    /// still one in-order FMA chain); the last outputs as the portable loop computes them.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_rows(a: &[f32], b: &[f32], stride: usize, out: &mut [f32]) {
        let m = out.len();
        let bp = b.as_ptr();
        let mut c = 0;
        // SAFETY (all loads): i < a.len() and c + WIDE <= m, inside `b` by the caller's check.
        unsafe {
            while c + WIDE <= m {
                let mut acc = [_mm256_setzero_ps(); 4];
                for (i, &ai) in a.iter().enumerate() {
                    let ab = _mm256_set1_ps(ai);
                    let r = bp.add(i * stride + c);
                    for (l, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(ab, _mm256_loadu_ps(r.add(8 * l)), *acc);
                    }
                }
                for (l, acc) in acc.iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * l), *acc);
                }
                c += WIDE;
            }
        }
        for cc in c..m {
            let mut acc = 0f32;
            for (i, &ai) in a.iter().enumerate() {
                acc = ai.mul_add(b[i * stride + cc], acc);
            }
            out[cc] = acc;
        }
    }

    /// [`weighted_rows`] for four `inner`-long rows of `a` at once, into four `m`-long rows of
    /// `out`, sharing each load of `b` (whose row `i` is `b[i · stride ..][..m]`); each sum the
    /// same in-order chain as for one row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_rows4(
        a: &[f32],
        inner: usize,
        b: &[f32],
        stride: usize,
        out: &mut [f32],
        m: usize,
    ) {
        assert!(a.len() >= 4 * inner && out.len() >= 4 * m && stride >= m);
        assert!(inner == 0 || b.len() >= (inner - 1) * stride + m);
        let bp = b.as_ptr();
        let mut c = 0;
        // SAFETY (all loads and stores): i < inner, c + 16 <= m, r < 4, inside the checked slices.
        unsafe {
            while c + 16 <= m {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for i in 0..inner {
                    let row = bp.add(i * stride + c);
                    let (b0, b1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let ab = _mm256_set1_ps(*a.get_unchecked(r * inner + i));
                        acc[0] = _mm256_fmadd_ps(ab, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(ab, b1, acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let o = out.as_mut_ptr().add(r * m + c);
                    _mm256_storeu_ps(o, acc[0]);
                    _mm256_storeu_ps(o.add(8), acc[1]);
                }
                c += 16;
            }
        }
        for r in 0..4 {
            for cc in c..m {
                let mut s = 0f32;
                for i in 0..inner {
                    s = a[r * inner + i].mul_add(b[i * stride + cc], s);
                }
                out[r * m + cc] = s;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_by_row<'a>(
        q: &[f32],
        key: &impl Fn(usize) -> &'a [f32],
        scale: f32,
        scores: &mut [f32],
    ) {
        super::scores_by_row_any(q, key, scale, scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::unit_values as pseudo;

    fn seq_fma(a: impl Iterator<Item = (f32, f32)>) -> f32 {
        a.fold(0f32, |acc, (x, y)| x.mul_add(y, acc))
    }

    #[test]
    fn scores_sum_in_order_with_fma() {
        let (d, n, stride) = (64, 77, 80);
        let (q, keys) = (pseudo(1, d), pseudo(2, d * stride));
        let mut got = vec![f32::NAN; n];
        weighted_rows(&q, &keys, stride, &mut got);
        for (j, g) in got.iter().enumerate() {
            let want = seq_fma((0..d).map(|t| (q[t], keys[t * stride + j])));
            assert_eq!(g.to_bits(), want.to_bits(), "key {j}");
        }
        let rows = pseudo(3, n * d);
        scores_by_row(&q, |j| &rows[j * d..(j + 1) * d], 0.35, &mut got);
        for (j, g) in got.iter().enumerate() {
            let want = seq_fma((0..d).map(|t| (q[t], rows[j * d + t] * 0.35)));
            assert_eq!(g.to_bits(), want.to_bits(), "row {j}");
        }
    }

    /// Against the same arithmetic written out plainly: scaled q and k, in-order FMA dot
    /// products, MLX's softmax, in-order weighted sum; every head and a ragged last block.
    #[test]
    fn full_attention_is_the_plain_computation() {
        let (n, heads, dh) = (37, 3, 24);
        let d = heads * dh;
        let (q, k, v) = (pseudo(6, n * d), pseudo(7, n * d), pseudo(8, n * d));
        let scale = (dh as f64).powf(-0.25) as f32;
        let mut got = vec![f32::NAN; n * d];
        full(&q, &k, &v, n, heads, scale, &mut got);
        for h in 0..heads {
            for i in 0..n {
                let scores: Vec<f32> = (0..n)
                    .map(|j| {
                        seq_fma((0..dh).map(|t| {
                            (q[i * d + h * dh + t] * scale, k[j * d + h * dh + t] * scale)
                        }))
                    })
                    .collect();
                let mut p = vec![0f32; n];
                crate::kernels::activations::softmax_row(&scores, &mut p);
                for t in 0..dh {
                    let want = seq_fma((0..n).map(|j| (p[j], v[j * d + h * dh + t])));
                    let g = got[i * d + h * dh + t];
                    assert_eq!(g.to_bits(), want.to_bits(), "head {h} row {i} dim {t}");
                }
            }
        }
    }

    #[test]
    fn the_weighted_sum_runs_over_keys_in_order() {
        let (d, n) = (72, 300);
        let (p, v) = (pseudo(4, n), pseudo(5, n * d));
        let mut got = vec![f32::NAN; d];
        weighted_rows(&p, &v, d, &mut got);
        for (t, g) in got.iter().enumerate() {
            let want = seq_fma((0..n).map(|j| (p[j], v[j * d + t])));
            assert_eq!(g.to_bits(), want.to_bits(), "dimension {t}");
        }
    }
}
