//! `--prompt-cache FILE`: the KV state after a prompt, saved so the next run with the same
//! prefix (a long system prompt, a document) prefills only what is new — mlx-lm's
//! `--prompt-cache-file`. The file is safetensors: per layer the keys and values, plus the
//! prompt's tokens and the model's identity (weight files' sizes and first bytes, dtype policy,
//! quantization, build) in the metadata. A cache from another model or build is refused.
use crate::error::{InferError, Result};
use crate::layers::KvCache;
use crate::loader::TextModel;
use mlx_rs::Array;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// What a saved cache must match to be reused.
pub fn identity(model: &TextModel, dequantize: bool) -> String {
    // FNV-1a over each weight file's name, size and first MiB: cheap, and any other file,
    // conversion or quantization differs in its header.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let files: Vec<std::path::PathBuf> = if model.path.is_file() {
        vec![model.path.clone()]
    } else {
        let mut v: Vec<_> = std::fs::read_dir(&model.path)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension()
                            .is_some_and(|x| x == "safetensors" || x == "gguf")
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for f in &files {
        eat(f
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default());
        if let Ok(m) = std::fs::metadata(f) {
            eat(&m.len().to_le_bytes());
        }
        let mut head = vec![0u8; 1 << 20];
        if let Ok(mut file) = std::fs::File::open(f) {
            let n = file.read(&mut head).unwrap_or(0);
            eat(&head[..n]);
        }
    }
    format!(
        "{:016x} {} layers, {} quantization, {} policy, dequantize={dequantize}, mlxk {} on MLX {}",
        h,
        model.config.num_layers,
        model.quantization_label(),
        model.policy_applied.join("; "),
        env!("CARGO_PKG_VERSION"),
        crate::runtime::mlx_version(),
    )
}

/// A saved prompt's tokens and the caches that hold them.
pub struct PromptCache {
    pub tokens: Vec<u32>,
    pub caches: Vec<KvCache>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> InferError {
    InferError::Options(format!(
        "--prompt-cache {}: {why}; delete it or give another file",
        path.display()
    ))
}

/// A prompt cache is a safetensors file, and MLX reads and writes those by their extension.
pub fn check_path(path: &Path) -> Result<()> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        Ok(())
    } else {
        Err(InferError::Options(format!(
            "--prompt-cache {}: the file name must end in .safetensors (it is a safetensors file)",
            path.display()
        )))
    }
}

/// The cache in `path` for this model, or `None` when there is no file yet.
pub fn load(path: &Path, identity: &str, layers: usize) -> Result<Option<PromptCache>> {
    check_path(path)?;
    if !path.exists() {
        return Ok(None);
    }
    let (arrays, meta) = Array::load_safetensors_with_metadata(path)
        .map_err(|e| bad(path, format!("not a prompt cache ({e})")))?;
    let theirs = meta.get("mlxk_prompt_cache").map(String::as_str);
    if theirs != Some(identity) {
        return Err(bad(
            path,
            format!(
                "it was made for another model or build ({})",
                theirs.unwrap_or("no mlxk identity")
            ),
        ));
    }
    let tokens: Vec<u32> = meta
        .get("tokens")
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| bad(path, "its token list is missing"))?;
    let mut caches = Vec::with_capacity(layers);
    for i in 0..layers {
        let (Some(k), Some(v)) = (
            arrays.get(&format!("{i}.keys")),
            arrays.get(&format!("{i}.values")),
        ) else {
            return Err(bad(path, format!("layer {i} is missing")));
        };
        if k.shape().get(2).copied() != Some(tokens.len() as i32) {
            return Err(bad(
                path,
                format!("layer {i} does not hold the {} tokens", tokens.len()),
            ));
        }
        caches.push(KvCache::restore(k.clone(), v.clone()));
    }
    Ok(Some(PromptCache { tokens, caches }))
}

/// Saves the caches' first `tokens.len()` positions with `tokens`, whole or not at all.
pub fn save(path: &Path, identity: &str, tokens: &[u32], caches: &mut [KvCache]) -> Result<()> {
    let mut arrays: HashMap<String, Array> = HashMap::new();
    for (i, c) in caches.iter_mut().enumerate() {
        c.trim(tokens.len());
        let (k, v) = c
            .snapshot()
            .ok_or_else(|| bad(path, "nothing to save (an empty prompt)"))?;
        arrays.insert(format!("{i}.keys"), k);
        arrays.insert(format!("{i}.values"), v);
    }
    let meta = HashMap::from([
        ("mlxk_prompt_cache".to_string(), identity.to_string()),
        (
            "tokens".to_string(),
            serde_json::to_string(tokens).expect("numbers serialize"),
        ),
    ]);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}.safetensors", std::process::id()));
    Array::save_safetensors(arrays.iter().map(|(k, v)| (k.as_str(), v)), &meta, &tmp)
        .map_err(|e| bad(path, format!("cannot write ({e})")))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        bad(path, format!("cannot write ({e})"))
    })
}

/// How many leading tokens two prompts share.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
