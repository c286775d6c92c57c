//! MLX on this machine: f32 matmul GFLOPS and bandwidth-bound GB/s, next to the machine's own
//! limits (read bandwidth measured here with plain Rust threads; nominal FLOP peak from the CPU).
//! Run: `cargo bench -p mlxk-infer --bench matmul` (or `benchmarks/matmul.sh`);
//! `cargo bench -p mlxk-infer --bench matmul -- bandwidth` prints only the all-cores read
//! bandwidth in GB/s (benchmarks/gen.sh uses it for its bound).

use mlx_rs::ops;
use mlxk_infer::runtime;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `reps` runs of `f` after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Read bandwidth with `threads` threads each summing its own 256 MiB slice.
fn machine_read_bandwidth(threads: usize) -> f64 {
    let per = 256 << 20;
    let bufs: Vec<Vec<u64>> = (0..threads).map(|i| vec![i as u64 + 1; per / 8]).collect();
    let secs = time(5, || {
        std::thread::scope(|s| {
            for b in &bufs {
                s.spawn(|| std::hint::black_box(b.iter().fold(0u64, |a, x| a.wrapping_add(*x))));
            }
        });
    });
    (threads * per) as f64 / secs / 1e9
}

fn nominal_peak_gflops() -> Option<(f64, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    // f32 FLOPs per cycle per core: 2 FMA units × width × 2 (mul+add).
    let (per_cycle, isa) = if flags.contains(" avx512f") {
        (64.0, "AVX-512")
    } else if flags.contains(" fma") {
        (32.0, "AVX2+FMA")
    } else {
        (8.0, "SSE")
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    Some((
        cores * mhz / 1e3 * per_cycle,
        format!(
            "{cores} cores × {:.2} GHz × {per_cycle} f32 FLOP/cycle ({isa})",
            mhz / 1e3
        ),
    ))
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if std::env::args().any(|a| a == "bandwidth") {
        println!("{:.1}", machine_read_bandwidth(threads));
        return;
    }
    println!(
        "MLX {} — BLAS: {}",
        runtime::mlx_version(),
        runtime::blas_in_use()
    );
    let bw = machine_read_bandwidth(threads);
    let bw1 = machine_read_bandwidth(1);
    println!("machine read bandwidth: {bw1:.1} GB/s (1 thread), {bw:.1} GB/s ({threads} threads)");
    let peak = nominal_peak_gflops();
    if let Some((p, how)) = &peak {
        println!(
            "nominal f32 peak at the reported clock: {p:.0} GFLOPS = {how}; boost clocks go higher"
        );
    }

    for n in [512, 1024, 2048] {
        let a = ops::ones::<f32>(&[n, n]).unwrap();
        let b = ops::ones::<f32>(&[n, n]).unwrap();
        let secs = time(5, || ops::matmul(&a, &b).unwrap().eval().unwrap());
        let gflops = 2.0 * (n as f64).powi(3) / secs / 1e9;
        let frac = peak
            .as_ref()
            .map(|(p, _)| format!(" ({:.0}% of nominal)", 100.0 * gflops / p));
        println!(
            "f32 matmul {n}×{n}: {gflops:.1} GFLOPS{}",
            frac.unwrap_or_default()
        );
    }

    // Decode-shaped: one token times a 4096×8192 f32 weight (128 MiB read per call).
    let x = ops::ones::<f32>(&[1, 4096]).unwrap();
    let w = ops::ones::<f32>(&[8192, 4096]).unwrap();
    w.eval().unwrap();
    let secs = time(10, || ops::matmul(&x, w.t()).unwrap().eval().unwrap());
    let gbs = (8192.0 * 4096.0 * 4.0) / secs / 1e9;
    println!(
        "f32 matvec 1×4096 · 4096×8192ᵀ: {gbs:.1} GB/s ({:.0}% of measured read bandwidth)",
        100.0 * gbs / bw
    );

    let big = ops::ones::<f32>(&[64 << 20]).unwrap();
    big.eval().unwrap();
    let secs = time(10, || big.sum(None).unwrap().eval().unwrap());
    let gbs = (256u64 << 20) as f64 / secs / 1e9;
    println!(
        "f32 sum of 256 MiB: {gbs:.1} GB/s ({:.0}% of measured read bandwidth)",
        100.0 * gbs / bw
    );
}
