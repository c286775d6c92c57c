//! One query's attention over many keys on the CPU (a decoder step): the scores, each a dot
//! product summed in order with fused multiply-adds, and the softmax-weighted sum of the values,
//! likewise in order over the keys.
//!
//! That is the order OpenBLAS's `sgemm` sums a one-row product in on this machine's kernels
//! (probed against MLX with OpenBLAS preloaded), so these agree with MLX's matmuls in all but a
//! few last bits; what MLX spends here is not the arithmetic (a few hundred thousand
//! multiply-adds a step) but dispatching a dozen small operations per layer.

/// `scores[j] = Σₜ q[t] · keys[t][j]` for keys laid out by dimension: `keys[t · stride + j]`
/// for `j < scores.len()` (Whisper's cross-attention keys, `(heads, d, frames)`).
pub fn scores_by_dim(q: &[f32], keys: &[f32], stride: usize, scores: &mut [f32]) {
    let n = scores.len();
    assert!(stride >= n && (q.is_empty() || keys.len() >= (q.len() - 1) * stride + n));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA; the bounds are checked above.
        unsafe { fma::scores_by_dim(q, keys, stride, scores) };
        return;
    }
    scores_by_dim_any(q, keys, stride, scores)
}

#[inline(always)]
fn scores_by_dim_any(q: &[f32], keys: &[f32], stride: usize, scores: &mut [f32]) {
    let n = scores.len();
    scores.fill(0.0);
    for (t, &qt) in q.iter().enumerate() {
        let row = &keys[t * stride..t * stride + n];
        for (s, &k) in scores.iter_mut().zip(row) {
            *s = qt.mul_add(k, *s);
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

/// `out[t] = Σⱼ p[j] · v[j · stride + t]`, in order over `j`.
pub fn weighted_sum(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    let m = out.len();
    assert!(stride >= m && (p.is_empty() || v.len() >= (p.len() - 1) * stride + m));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA; the bounds are checked above.
        unsafe { fma::weighted_sum(p, v, stride, out) };
        return;
    }
    weighted_sum_any(p, v, stride, out)
}

#[inline(always)]
fn weighted_sum_any(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    let m = out.len();
    out.fill(0.0);
    for (j, &pj) in p.iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(&v[j * stride..j * stride + m]) {
            *o = pj.mul_add(x, *o);
        }
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
                    fma::scores_by_dim4(&qs[r * dh..], dh, kh, n, &mut scores[r * n..]);
                }
                for rr in r..r + 4 {
                    super::activations::softmax_row(
                        &scores[rr * n..(rr + 1) * n],
                        &mut p[rr * n..(rr + 1) * n],
                    );
                }
                // SAFETY: as above.
                unsafe {
                    fma::weighted_sum4(&p[r * n..], n, &v[h * dh..], d, &mut o[r * dh..], dh);
                }
                r += 4;
            }
        }
        for rr in r..rows.len() {
            let sc = &mut scores[rr * n..(rr + 1) * n];
            scores_by_dim(&qs[rr * dh..(rr + 1) * dh], kh, n, sc);
            super::activations::softmax_row(sc, &mut p[rr * n..(rr + 1) * n]);
            weighted_sum(
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

    /// [`super::scores_by_dim_any`] with 32 keys' sums held in four registers while `t` runs
    /// (each still one in-order FMA chain); the last keys as the portable loop computes them.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_by_dim(q: &[f32], keys: &[f32], stride: usize, scores: &mut [f32]) {
        let n = scores.len();
        let kp = keys.as_ptr();
        let mut j = 0;
        // SAFETY (all loads): t < q.len() and j + WIDE <= n, inside `keys` by the caller's check.
        unsafe {
            while j + WIDE <= n {
                let mut a = [_mm256_setzero_ps(); 4];
                for (t, &qt) in q.iter().enumerate() {
                    let qb = _mm256_set1_ps(qt);
                    let r = kp.add(t * stride + j);
                    for (l, acc) in a.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(qb, _mm256_loadu_ps(r.add(8 * l)), *acc);
                    }
                }
                for (l, acc) in a.iter().enumerate() {
                    _mm256_storeu_ps(scores.as_mut_ptr().add(j + 8 * l), *acc);
                }
                j += WIDE;
            }
        }
        for jj in j..n {
            let mut acc = 0f32;
            for (t, &qt) in q.iter().enumerate() {
                acc = qt.mul_add(keys[t * stride + jj], acc);
            }
            scores[jj] = acc;
        }
    }

    /// [`scores_by_dim`] for four queries (`q`: four `dh`-long rows) at once: `scores` gets
    /// four `n`-long rows; each sum the same in-order chain as for one query.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_by_dim4(
        q: &[f32],
        dh: usize,
        keys: &[f32],
        n: usize,
        scores: &mut [f32],
    ) {
        assert!(q.len() >= 4 * dh && keys.len() >= dh * n && scores.len() >= 4 * n);
        let kp = keys.as_ptr();
        let mut j = 0;
        // SAFETY (all loads and stores): t < dh, j + 16 <= n, r < 4, inside the checked slices.
        unsafe {
            while j + 16 <= n {
                let mut a = [[_mm256_setzero_ps(); 2]; 4];
                for t in 0..dh {
                    let r0 = kp.add(t * n + j);
                    let (k0, k1) = (_mm256_loadu_ps(r0), _mm256_loadu_ps(r0.add(8)));
                    for (r, acc) in a.iter_mut().enumerate() {
                        let qb = _mm256_set1_ps(*q.get_unchecked(r * dh + t));
                        acc[0] = _mm256_fmadd_ps(qb, k0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(qb, k1, acc[1]);
                    }
                }
                for (r, acc) in a.iter().enumerate() {
                    let o = scores.as_mut_ptr().add(r * n + j);
                    _mm256_storeu_ps(o, acc[0]);
                    _mm256_storeu_ps(o.add(8), acc[1]);
                }
                j += 16;
            }
        }
        for r in 0..4 {
            for jj in j..n {
                let mut acc = 0f32;
                for t in 0..dh {
                    acc = q[r * dh + t].mul_add(keys[t * n + jj], acc);
                }
                scores[r * n + jj] = acc;
            }
        }
    }

    /// [`weighted_sum`] for four weight rows (`p`: four `n`-long rows) at once into four
    /// `m`-long rows of `out`: value `j` of the sum is `v[j · stride ..][..m]`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum4(
        p: &[f32],
        n: usize,
        v: &[f32],
        stride: usize,
        out: &mut [f32],
        m: usize,
    ) {
        assert!(p.len() >= 4 * n && out.len() >= 4 * m && stride >= m);
        assert!(n == 0 || v.len() >= (n - 1) * stride + m);
        let vp = v.as_ptr();
        let mut t = 0;
        // SAFETY (all loads and stores): j < n, t + 16 <= m, r < 4, inside the checked slices.
        unsafe {
            while t + 16 <= m {
                let mut a = [[_mm256_setzero_ps(); 2]; 4];
                for j in 0..n {
                    let r0 = vp.add(j * stride + t);
                    let (v0, v1) = (_mm256_loadu_ps(r0), _mm256_loadu_ps(r0.add(8)));
                    for (r, acc) in a.iter_mut().enumerate() {
                        let pb = _mm256_set1_ps(*p.get_unchecked(r * n + j));
                        acc[0] = _mm256_fmadd_ps(pb, v0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(pb, v1, acc[1]);
                    }
                }
                for (r, acc) in a.iter().enumerate() {
                    let o = out.as_mut_ptr().add(r * m + t);
                    _mm256_storeu_ps(o, acc[0]);
                    _mm256_storeu_ps(o.add(8), acc[1]);
                }
                t += 16;
            }
        }
        for r in 0..4 {
            for tt in t..m {
                let mut acc = 0f32;
                for j in 0..n {
                    acc = p[r * n + j].mul_add(v[j * stride + tt], acc);
                }
                out[r * m + tt] = acc;
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

    /// [`super::weighted_sum_any`] with 32 outputs held in four registers while `j` runs.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
        let m = out.len();
        let vp = v.as_ptr();
        let mut t = 0;
        // SAFETY (all loads): j < p.len() and t + WIDE <= m, inside `v` by the caller's check.
        unsafe {
            while t + WIDE <= m {
                let mut a = [_mm256_setzero_ps(); 4];
                for (j, &pj) in p.iter().enumerate() {
                    let pb = _mm256_set1_ps(pj);
                    let r = vp.add(j * stride + t);
                    for (l, acc) in a.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(pb, _mm256_loadu_ps(r.add(8 * l)), *acc);
                    }
                }
                for (l, acc) in a.iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(t + 8 * l), *acc);
                }
                t += WIDE;
            }
        }
        for tt in t..m {
            let mut acc = 0f32;
            for (j, &pj) in p.iter().enumerate() {
                acc = pj.mul_add(v[j * stride + tt], acc);
            }
            out[tt] = acc;
        }
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
        scores_by_dim(&q, &keys, stride, &mut got);
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
        weighted_sum(&p, &v, d, &mut got);
        for (t, g) in got.iter().enumerate() {
            let want = seq_fma((0..n).map(|j| (p[j], v[j * d + t])));
            assert_eq!(g.to_bits(), want.to_bits(), "dimension {t}");
        }
    }
}
