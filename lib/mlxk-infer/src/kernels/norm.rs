//! RMSNorm, LayerNorm and the residual add on the CPU, bit for bit what MLX's CPU ops compute.
//!
//! Both are tiny, but in decoding each MLX evaluation of them is a round trip to MLX's stream
//! thread (about a tenth of a millisecond here), twice per layer; computed here, on data the
//! matmul kernels have just written, they cost a few microseconds. MLX's x86 build has no SIMD
//! for f32, and its CPU `rms_norm` is `x · rsqrt(mean(x²) + eps) · w` in MLX's scalar ops: the
//! sum of squares in order, times `1 / width`, `1 / sqrt(mean + eps)`, then `(x · scale) · w`
//! (checked bit for bit against `fast::rms_norm` below); its `add` is one rounded `a + b` per
//! element. Its CPU `layer_norm` is the fallback of MLX's ops too: `mean` (in order, times
//! `1 / width`), the centred values, the mean of their squares likewise, `1 / sqrt(var + eps)`,
//! then `((xc · r) · w) + b`, every step rounded on its own (no FMA).
use super::pool;

/// Values per parallel task.
const CHUNK: usize = 16 * 1024;

/// `out` = RMSNorm of each `w.len()`-long row of `x`, scaled by `w`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let width = w.len();
    assert!(width > 0 && x.len() == out.len() && x.len().is_multiple_of(width));
    let rows_per_task = CHUNK.div_ceil(width).max(1);
    let piece = rows_per_task * width;
    pool::chunks_mut(out, piece, |at, o| {
        let x = &x[at];
        for (o, x) in o.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
            rms_norm_row(x, w, eps, o);
        }
    });
}

fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut sum_sq = 0f32;
    for &v in x {
        sum_sq += v * v;
    }
    // MLX's `mean`: the sum times `1 / n` (made f32 from a double), not divided by `n`.
    let mean = sum_sq * (1.0 / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &wv) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * wv;
    }
}

/// `out` = LayerNorm of each `w.len()`-long row of `x`, scaled by `w` and shifted by `b`.
pub fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let width = w.len();
    assert!(width > 0 && b.len() == width);
    assert!(x.len() == out.len() && x.len().is_multiple_of(width));
    let rows_per_task = CHUNK.div_ceil(width).max(1);
    let piece = rows_per_task * width;
    pool::chunks_mut(out, piece, |at, o| {
        let x = &x[at];
        for (o, x) in o.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
            layer_norm_row(x, w, b, eps, o);
        }
    });
}

/// One row of [`layer_norm_rows`]; `out` holds the centred values on the way.
pub fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let inv = (1.0 / x.len() as f64) as f32;
    let mut sum = 0f32;
    for &v in x {
        sum += v;
    }
    let mean = sum * inv;
    let mut sum_sq = 0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let c = v - mean;
        *o = c;
        sum_sq += c * c;
    }
    let r = 1.0 / (sum_sq * inv + eps).sqrt();
    for ((o, &wv), &bv) in out.iter_mut().zip(w).zip(b) {
        *o = *o * r * wv + bv;
    }
}

/// `out = a + b`, elementwise.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    pool::chunks_mut(out, CHUNK, |at, o| {
        for ((o, &x), &y) in o.iter_mut().zip(&a[at.clone()]).zip(&b[at]) {
            *o = x + y;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::unit_values as pseudo;
    use mlx_rs::{Array, fast, ops};

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn rms_norm_is_mlx_bit_for_bit() {
        for (rows, width, eps, scale) in [
            (1, 576, 1e-5, 1.0),
            (3, 64, 1e-6, 30.0),
            (7, 1000, 1e-5, 0.01),
            (40, 333, 1e-6, 3.0),
        ] {
            let x: Vec<f32> = pseudo(5, rows * width).iter().map(|v| v * scale).collect();
            let w = pseudo(9, width);
            let xa = Array::from_slice(&x, &[1, rows as i32, width as i32]);
            let wa = Array::from_slice(&w, &[width as i32]);
            let want = fast::rms_norm(&xa, Some(&wa), eps).unwrap();
            let mut got = vec![0f32; x.len()];
            rms_norm_rows(&x, &w, eps, &mut got);
            assert_eq!(bits(&got), bits(want.as_slice::<f32>()), "{rows}×{width}");
        }
    }

    #[test]
    fn layer_norm_is_mlx_bit_for_bit() {
        for (rows, width, eps, scale, shift) in [
            (1, 384, 1e-5, 1.0, 0.0),
            (3, 64, 1e-6, 30.0, 2.0),
            (7, 1000, 1e-5, 0.01, -0.5),
            (40, 333, 1e-5, 3.0, 100.0),
        ] {
            let x: Vec<f32> = pseudo(5, rows * width)
                .iter()
                .map(|v| v * scale + shift)
                .collect();
            let (w, b) = (pseudo(9, width), pseudo(11, width));
            let xa = Array::from_slice(&x, &[1, rows as i32, width as i32]);
            let wa = Array::from_slice(&w, &[width as i32]);
            let ba = Array::from_slice(&b, &[width as i32]);
            let want = fast::layer_norm(&xa, &wa, &ba, eps).unwrap();
            let mut got = vec![0f32; x.len()];
            layer_norm_rows(&x, &w, &b, eps, &mut got);
            assert_eq!(bits(&got), bits(want.as_slice::<f32>()), "{rows}×{width}");
        }
    }

    #[test]
    fn add_is_mlx_bit_for_bit() {
        let (a, b) = (pseudo(1, 40_000), pseudo(2, 40_000));
        let want = ops::add(
            Array::from_slice(&a, &[40_000]),
            Array::from_slice(&b, &[40_000]),
        )
        .unwrap();
        let mut got = vec![0f32; a.len()];
        add(&a, &b, &mut got);
        assert_eq!(bits(&got), bits(want.as_slice::<f32>()));
    }
}
