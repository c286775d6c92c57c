fn main() {
    let (n, heads, dh) = (1500, 6, 64);
    let d = heads * dh;
    let q: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut out = vec![0f32; n * d];
    for _ in 0..3 {
        let t = std::time::Instant::now();
        mlxk_infer::kernels::attention::full(&q, &q, &q, n, heads, 0.35, &mut out);
        eprintln!("full {:?}", t.elapsed());
    }
    let keys = vec![0.1f32; dh * n];
    let mut s = vec![0f32; n];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        mlxk_infer::kernels::attention::scores_by_dim(&q[..dh], &keys, n, &mut s);
    }
    eprintln!("scores x1000 {:?}", t.elapsed());
    let p = vec![0.001f32; n];
    let mut o = vec![0f32; dh];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        mlxk_infer::kernels::attention::weighted_sum(&p, &q, d, &mut o);
    }
    eprintln!("wsum x1000 {:?}", t.elapsed());
    let mut pp = vec![0f32; n];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        mlxk_infer::kernels::activations::softmax_row(&s, &mut pp);
    }
    eprintln!("softmax x1000 {:?}", t.elapsed());
}
