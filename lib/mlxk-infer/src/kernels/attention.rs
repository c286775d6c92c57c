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
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
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
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
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

/// `out[t] = Σⱼ p[j] · value(j)[t]`, in order over `j`.
pub fn weighted_sum<'a>(p: &[f32], value: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
        unsafe { fma::weighted_sum(p, &value, out) };
        return;
    }
    weighted_sum_any(p, &value, out)
}

#[inline(always)]
fn weighted_sum_any<'a>(p: &[f32], value: &impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    out.fill(0.0);
    for (j, &pj) in p.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(value(j)) {
            *o = pj.mul_add(v, *o);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    /// [`super::scores_by_dim_any`] compiled with FMA (`mul_add` becomes one instruction and
    /// the loop over keys vectorizes).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_by_dim(q: &[f32], keys: &[f32], stride: usize, scores: &mut [f32]) {
        super::scores_by_dim_any(q, keys, stride, scores)
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

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum<'a>(
        p: &[f32],
        value: &impl Fn(usize) -> &'a [f32],
        out: &mut [f32],
    ) {
        super::weighted_sum_any(p, value, out)
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
        let (d, n, stride) = (64, 37, 40);
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

    #[test]
    fn the_weighted_sum_runs_over_keys_in_order() {
        let (d, n) = (24, 300);
        let (p, v) = (pseudo(4, n), pseudo(5, n * d));
        let mut got = vec![f32::NAN; d];
        weighted_sum(&p, |j| &v[j * d..(j + 1) * d], &mut got);
        for (t, g) in got.iter().enumerate() {
            let want = seq_fma((0..n).map(|j| (p[j], v[j * d + t])));
            assert_eq!(g.to_bits(), want.to_bits(), "dimension {t}");
        }
    }
}
