//! The quantized matmul kernel (`mlxk_infer::kernels::qmatmul`) against MLX's CPU `quantized_matmul` on
//! SmolLM2-135M's shapes, one token (decode) and 128 tokens (prefill): milliseconds per call,
//! speed-up, and the weight bytes streamed per second.
//! Run: `cargo bench -p mlxk-infer --bench qmatmul`.
use mlx_rs::{Array, ops};
use mlxk_infer::config::QuantSpec;
use mlxk_infer::kernels::{pack_quantized, packed_matmul};
use std::time::Instant;

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    println!(
        "{:<10} {:>5} {:>6} {:>6} {:>5} {:>10} {:>10} {:>8} {:>8}",
        "layer", "m", "n", "k", "bits", "mlx_ms", "mlxk_ms", "speedup", "GB/s"
    );
    for (name, n, k, bits) in [
        ("q_proj", 576, 576, 4),
        ("k_proj", 192, 576, 4),
        ("gate", 1536, 576, 4),
        ("down", 576, 1536, 4),
        ("lm_head", 49152, 576, 8),
    ] {
        let w = ops::multiply(
            mlx_rs::random::normal::<f32>(&[n, k], None, None, None).unwrap(),
            Array::from_f32(0.05),
        )
        .unwrap();
        let spec = QuantSpec {
            group_size: 32,
            bits,
        };
        let (wq, s, b) = ops::quantize(&w, spec.group_size, bits).unwrap();
        for t in [&wq, &s, &b] {
            t.eval().unwrap();
        }
        let bytes = (wq.nbytes() + s.nbytes() + b.nbytes()) as f64;
        let packed = pack_quantized(&wq, &s, &b, spec)
            .unwrap()
            .expect("the kernel computes this layout");
        for m in [1, 128] {
            let x = mlx_rs::random::normal::<f32>(&[1, m, k], None, None, None).unwrap();
            x.eval().unwrap();
            let reps = if m == 1 { 50 } else { 5 };
            let theirs = median_ms(reps, || {
                ops::quantized_matmul(&x, &wq, &s, &b, true, 32, bits)
                    .unwrap()
                    .eval()
                    .unwrap()
            });
            let ours = median_ms(reps, || packed_matmul(&x, &packed).unwrap().eval().unwrap());
            println!(
                "{name:<10} {m:>5} {n:>6} {k:>6} {bits:>5} {theirs:>10.3} {ours:>10.3} {:>7.1}x {:>8.1}",
                theirs / ours,
                bytes / (ours / 1e3) / 1e9
            );
        }
    }
}
