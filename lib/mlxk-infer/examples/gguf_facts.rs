//! Loads a GGUF model with MLX and prints facts computed from its real tensors: architecture,
//! tensor and parameter counts, per-tensor quantization, and one embedding row dequantized and
//! measured. Used by `make demo` until `mlxk-gen` generates text.
//!
//!     cargo run --release -p mlxk-infer --example gguf_facts -- MODEL.gguf

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, ops};
use mlxk_infer::runtime;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gguf_facts MODEL.gguf")?;
    let t = Instant::now();
    let gguf = mlx_rs::io::GgufFile::load(&path)?;
    let arrays = gguf.arrays()?;
    let load_s = t.elapsed().as_secs_f64();
    let arch = gguf
        .get_metadata_string("general.architecture")?
        .unwrap_or_default();
    let name = gguf
        .get_metadata_string("general.name")?
        .unwrap_or_default();
    let tokens = gguf
        .get_metadata_strings("tokenizer.ggml.tokens")?
        .unwrap_or_default();
    println!(
        "MLX {} with {}",
        runtime::mlx_version(),
        runtime::blas_in_use()
    );
    println!("{path}");
    println!(
        "  model: {name} (architecture {arch}), vocabulary {} tokens",
        tokens.len()
    );
    println!("  {} arrays loaded by MLX in {load_s:.2} s", arrays.len());

    // A packed weight `x` has companions `x.scales`/`x.biases` (key without `.weight`).
    let mut bits_hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut params: u64 = 0;
    for (key, a) in &arrays {
        if key.ends_with(".scales") || key.ends_with(".biases") {
            continue;
        }
        let base = key.strip_suffix(".weight").unwrap_or(key);
        let n: u64 = a.shape().iter().map(|&d| d as u64).product();
        let kind = match arrays.get(&format!("{base}.scales")) {
            Some(scales) => {
                // GGUF blocks hold 32 values: logical columns = scale groups × 32, and the
                // packed u32 columns hold those at `bits` each.
                let packed_cols = *a.shape().last().unwrap_or(&1) as u64;
                let logical_cols = *scales.shape().last().unwrap_or(&1) as u64 * 32;
                let bits = packed_cols * 32 / logical_cols;
                params += n / packed_cols * logical_cols;
                format!("{bits}-bit, group 32")
            }
            None => {
                params += n;
                format!("{:?}", a.dtype())
            }
        };
        *bits_hist.entry(kind).or_default() += 1;
    }
    println!("  {:.1} M parameters", params as f64 / 1e6);
    for (kind, count) in &bits_hist {
        println!("  {count:>4} tensors {kind}");
    }

    // Dequantize the embedding row of the end-of-turn token and measure it.
    if let (Some(w), Some(s), Some(b)) = (
        arrays.get("token_embd.weight"),
        arrays.get("token_embd.scales"),
        arrays.get("token_embd.biases"),
    ) {
        let id = tokens.iter().position(|t| t == "<|im_end|>").unwrap_or(0) as i32;
        let row = |a: &Array| a.index(id..id + 1);
        let bits = 32 * w.shape()[1] / (s.shape()[1] * 32);
        let e = ops::dequantize(row(w), row(s), &row(b), 32, bits)?.as_type::<f32>()?;
        let norm = e.square()?.sum(None)?.sqrt()?;
        norm.eval()?;
        println!(
            "  embedding of token {id} {:?}: {} values, L2 norm {:.4}",
            tokens.get(id as usize).map(String::as_str).unwrap_or("?"),
            e.shape().iter().product::<i32>(),
            norm.item_exact::<f32>()
        );
    }
    Ok(())
}
