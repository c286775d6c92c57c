//! Probe: what a model folder holds, whether it is complete, and what it needs to run
//! (seeds/003, "Probe"). Reads only small files and weight-file headers.

use crate::gguf;
use crate::records::{Capability, Framework, Health, MemoryEstimate, ModelRecord, Quantization};
use crate::resolve::SnapshotDir;
use crate::safetensors;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the weights will live, which decides the dtype policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// MLX on a CPU: bf16/f16 are upcast to f32 (MLX's half-precision matmul is very slow there).
    Cpu,
    /// Metal or CUDA: weights stay as stored.
    Gpu,
}

impl Device {
    /// `MLXK_DEVICE=cpu|gpu` when set; else GPU on Apple silicon, CPU elsewhere.
    pub fn current() -> Self {
        match std::env::var("MLXK_DEVICE").as_deref() {
            Ok("gpu") => Device::Gpu,
            Ok("cpu") => Device::Cpu,
            _ if cfg!(all(target_os = "macos", target_arch = "aarch64")) => Device::Gpu,
            _ => Device::Cpu,
        }
    }
}

/// Model types with a vision tower (seed's list).
pub const VISION_MODEL_TYPES: &[&str] = &[
    "llava",
    "llava_next",
    "pixtral",
    "qwen2_vl",
    "qwen2_5_vl",
    "phi3_v",
    "mllama",
    "paligemma",
    "idefics3",
    "smolvlm",
    "gemma3",
];
pub const AUDIO_MODEL_TYPES: &[&str] = &["whisper", "voxtral"];
pub const EMBEDDING_MODEL_TYPES: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "nomic_bert",
    "mpnet",
    "modernbert",
    "distilbert",
];

/// Keys that declare a context length, in the order they are trusted.
const CONTEXT_KEYS: &[&str] = &[
    "max_position_embeddings",
    "n_positions",
    "context_length",
    "max_sequence_length",
    "seq_len",
];

const LFS_POINTER_PREFIX: &[u8] = b"version https://git-lfs.github.com/spec";

struct Folder {
    root: PathBuf,
    /// Relative file names (recursive), sorted.
    files: Vec<String>,
}

impl Folder {
    fn scan(root: &Path) -> Folder {
        let mut files = Vec::new();
        walk(root, root, &mut files);
        files.sort();
        Folder {
            root: root.to_path_buf(),
            files,
        }
    }
    fn has(&self, name: &str) -> bool {
        self.files.iter().any(|f| f == name)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn json(&self, name: &str) -> Option<Result<Value, String>> {
        if !self.has(name) {
            return None;
        }
        Some(
            std::fs::read(self.path(name))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())),
        )
    }
    fn with_ext(&self, ext: &str) -> Vec<&String> {
        self.files.iter().filter(|f| f.ends_with(ext)).collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Follow links (hub snapshots link to blobs) but keep broken links visible as files.
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().to_string());
        }
    }
}

/// The weight file at `path`, if it is there and holds weights; an LFS pointer is a problem.
fn weight_file(name: &str, path: &Path, problems: &mut Vec<String>) -> Option<PathBuf> {
    if !path.exists() {
        return None;
    }
    if is_lfs_pointer(path) {
        problems.push(format!(
            "{name} is a Git LFS pointer, not the weights (fetch with git lfs pull)"
        ));
        return None;
    }
    Some(path.to_path_buf())
}

fn is_lfs_pointer(path: &Path) -> bool {
    let mut buf = [0u8; 64];
    match std::fs::File::open(path) {
        Ok(mut f) => {
            use std::io::Read;
            let n = f.read(&mut buf).unwrap_or(0);
            buf[..n].starts_with(LFS_POINTER_PREFIX)
        }
        Err(_) => false,
    }
}

/// `-00001-of-00004` → (1, 4).
fn shard_index(name: &str) -> Option<(u32, u32)> {
    let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
    let (head, total) = stem.rsplit_once("-of-")?;
    let (_, idx) = head.rsplit_once('-')?;
    if idx.len() != 5 || total.len() != 5 {
        return None;
    }
    Some((idx.parse().ok()?, total.parse().ok()?))
}

/// Everything `probe` learns, collected while reading.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    float_dtype_bytes: BTreeMap<String, u64>,
    estimate: f64,
    gguf_types: BTreeSet<String>,
    gguf: Option<gguf::GgufHeader>,
    safetensors_formats: BTreeSet<String>,
}

pub fn probe(snap: &SnapshotDir, device: Device) -> ModelRecord {
    // A `.gguf` file is probed with its folder's other files (a tokenizer beside it), but
    // without the folder's other GGUF files.
    let file = snap.path.is_file().then(|| snap.path.clone());
    let dir = match &file {
        Some(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => snap.path.clone(),
    };
    let mut folder = Folder::scan(&dir);
    if let Some(name) = file.as_ref().and_then(|f| f.file_name()) {
        let name = name.to_string_lossy();
        folder.files.retain(|n| !n.ends_with(".gguf") || *n == name);
    }
    let mut f = Findings::default();
    let float_bytes = if device == Device::Cpu { 4.0 } else { 2.0 };

    if !dir.is_dir() {
        f.problems
            .push(format!("folder {} does not exist", dir.display()));
    }

    // Partial downloads: in the folder, and in the cache repo's blobs/.
    let partial = |name: &str| {
        name.ends_with(".incomplete")
            || name.ends_with(".part")
            || name.ends_with(".tmp")
            || name.ends_with(".partial")
    };
    for name in folder.files.iter().filter(|n| partial(n)) {
        f.problems.push(format!("partial download: {name}"));
    }
    if snap.cached
        && let Some(blobs) = dir.parent().and_then(Path::parent).map(|r| r.join("blobs"))
        && let Ok(entries) = std::fs::read_dir(blobs)
    {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if partial(&n) {
                f.problems.push(format!("partial download: blobs/{n}"));
            }
        }
    }
    for name in &folder.files {
        if !folder.path(name).exists() {
            f.problems
                .push(format!("{name}: broken link (its blob is missing)"));
        }
    }

    let gguf_files = folder.with_ext(".gguf");
    let st_files = folder.with_ext(".safetensors");
    // CTranslate2 (faster-whisper): a `model.bin` that starts with its header, not PyTorch's zip.
    let ct2 = folder.has("model.bin") && crate::ct2::looks_like_ct2(&folder.path("model.bin"));
    let bin_files: Vec<&String> = folder
        .files
        .iter()
        .filter(|n| n.ends_with(".bin") && (n.contains("pytorch_model") || n.starts_with("model")))
        .filter(|n| !(ct2 && n.as_str() == "model.bin"))
        .collect();
    let npz = folder.has("weights.npz");
    let mut ct2_spec = None;
    if ct2 && let Some(path) = weight_file("model.bin", &folder.path("model.bin"), &mut f.problems)
    {
        match crate::ct2::read_header(&path) {
            Ok(h) => {
                for v in &h.variables {
                    if v.is_float() {
                        f.estimate += v.elements() as f64 * float_bytes;
                        let label = match v.dtype {
                            0 => "F32",
                            4 => "F16",
                            _ => "BF16",
                        };
                        *f.float_dtype_bytes.entry(label.into()).or_default() += v.nbytes;
                    } else {
                        f.estimate += v.nbytes as f64;
                    }
                }
                ct2_spec = Some(h.spec);
            }
            Err(e) => f.problems.push(format!("model.bin (CTranslate2): {e}")),
        }
    }

    // config.json: required unless the folder is GGUF-only (GGUF carries its own metadata).
    let config = match folder.json("config.json") {
        // mlx-knife's health check: a config is a non-empty object that names its model type.
        Some(Ok(v)) if v.as_object().is_some_and(|o| o.is_empty()) => {
            f.problems
                .push("config.json is an empty object (no model_type)".into());
            None
        }
        Some(Ok(v)) if v.is_object() => {
            let named = |c: &Value| c["model_type"].as_str().is_some_and(|t| !t.is_empty());
            // CTranslate2 and mlx-whisper configs describe the model without naming its type.
            let whisper_layout = ct2 || is_mlx_whisper_config(&v);
            if !named(&v) && !named(&v["text_config"]) && !whisper_layout {
                f.problems.push("config.json has no model_type".into());
            }
            Some(v)
        }
        Some(Ok(_)) => {
            f.problems.push("config.json is not a JSON object".into());
            None
        }
        Some(Err(e)) => {
            f.problems
                .push(format!("config.json is not valid JSON: {e}"));
            None
        }
        None => {
            if gguf_files.is_empty() {
                f.problems.push("config.json missing".into());
            }
            None
        }
    };

    // Weights named by an index must all be there.
    for index_name in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        match folder.json(index_name) {
            Some(Ok(idx)) => {
                let named: BTreeSet<&str> = idx["weight_map"]
                    .as_object()
                    .map(|m| m.values().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if named.is_empty() {
                    f.problems.push(format!("{index_name} has no weight_map"));
                }
                for file in named {
                    if !folder.has(file) {
                        f.problems
                            .push(format!("{file} missing (named by {index_name})"));
                    }
                }
            }
            Some(Err(e)) => f
                .problems
                .push(format!("{index_name} is not valid JSON: {e}")),
            None => {}
        }
    }
    // Sharded sets complete: -00001-of-00004 … -00004-of-00004.
    let mut shard_sets: BTreeMap<(String, u32), BTreeSet<u32>> = BTreeMap::new();
    for name in folder.files.iter().filter(|n| !partial(n)) {
        if let Some((i, n)) = shard_index(name) {
            let ext = name.rsplit('.').next().unwrap_or("").to_string();
            shard_sets.entry((ext, n)).or_default().insert(i);
        }
    }
    for ((ext, total), have) in &shard_sets {
        let missing: Vec<String> = (1..=*total)
            .filter(|i| !have.contains(i))
            .map(|i| format!("{i:05}"))
            .collect();
        if !missing.is_empty() {
            f.problems.push(format!(
                "sharded .{ext} set incomplete: shard {} of {total:05} missing",
                missing.join(", ")
            ));
        }
    }

    for name in &st_files {
        let Some(path) = weight_file(name, &folder.path(name), &mut f.problems) else {
            continue;
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            f.problems.push(format!("{name} is empty"));
            continue;
        }
        match safetensors::read_header(&path) {
            Ok(h) => {
                if size < h.expected_file_bytes {
                    f.problems.push(format!(
                        "{name} is truncated ({size} of {} bytes)",
                        h.expected_file_bytes
                    ));
                }
                if let Some(fmt) = h.metadata.get("format").and_then(Value::as_str) {
                    f.safetensors_formats.insert(fmt.to_string());
                }
                for t in &h.tensors {
                    let elements: u64 = t.shape.iter().product();
                    let loaded = match t.dtype.as_str() {
                        "BF16" | "F16" => elements as f64 * float_bytes,
                        _ => t.data_bytes as f64,
                    };
                    f.estimate += loaded;
                    if matches!(t.dtype.as_str(), "BF16" | "F16" | "F32" | "F64") {
                        *f.float_dtype_bytes.entry(t.dtype.clone()).or_default() += t.data_bytes;
                    }
                }
            }
            Err(e) => f.problems.push(format!("{name}: {e}")),
        }
    }

    for name in &gguf_files {
        let Some(path) = weight_file(name, &folder.path(name), &mut f.problems) else {
            continue;
        };
        match gguf::read_header(&path) {
            Ok(h) => {
                for t in &h.tensors {
                    let name = gguf::type_name(t.ggml_type);
                    match gguf::loaded_bytes_per_element(t.ggml_type, float_bytes) {
                        Some(b) => f.estimate += b * t.elements() as f64,
                        // Not loadable by MLX: the gate refuses it; count it at its file size.
                        None => f.estimate += t.elements() as f64,
                    }
                    f.gguf_types.insert(name);
                }
                if f.gguf.is_none() {
                    f.gguf = Some(h);
                }
            }
            Err(e) => f.problems.push(format!("{name}: invalid GGUF header: {e}")),
        }
    }
    if gguf_files.len() > 1 {
        f.problems.push(format!(
            "{} GGUF files in one folder ({}); give the folder of one of them",
            gguf_files.len(),
            gguf_files
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    for name in &bin_files {
        weight_file(name, &folder.path(name), &mut f.problems);
    }
    if npz {
        weight_file("weights.npz", &folder.path("weights.npz"), &mut f.problems);
        // The archive's dtypes are not read here: on the CPU, where half floats are upcast,
        // the estimate is twice the archive (an upper bound), as stored elsewhere.
        if st_files.is_empty() && gguf_files.is_empty() && !ct2 {
            let bytes = std::fs::metadata(folder.path("weights.npz")).map_or(0, |m| m.len());
            f.estimate += bytes as f64 * if device == Device::Cpu { 2.0 } else { 1.0 };
        }
    }
    if st_files.is_empty() && gguf_files.is_empty() && bin_files.is_empty() && !ct2 && !npz {
        f.problems.push(
            "no weight files (*.safetensors, *.gguf, pytorch_model*.bin, CTranslate2 model.bin)"
                .into(),
        );
    }

    let text_config = config
        .as_ref()
        .and_then(|c| c.get("text_config"))
        .filter(|v| v.is_object());
    let gguf_arch = f
        .gguf
        .as_ref()
        .and_then(|h| h.architecture())
        .map(str::to_string);
    let model_type = config
        .as_ref()
        .and_then(|c| c["model_type"].as_str())
        .or_else(|| text_config.and_then(|t| t["model_type"].as_str()))
        .map(str::to_string)
        .or_else(|| gguf_arch.clone())
        .or_else(|| {
            let whisper = ct2_spec.as_deref() == Some("WhisperSpec")
                || config.as_ref().is_some_and(is_mlx_whisper_config);
            whisper.then(|| "whisper".to_string())
        });

    // Tokenizer: a tokenizer_config.json implies the tokenizer itself.
    let tokenizer_config = match folder.json("tokenizer_config.json") {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            f.problems
                .push(format!("tokenizer_config.json is not valid JSON: {e}"));
            None
        }
        None => None,
    };
    let tokenizer_present = folder.has("tokenizer.json")
        || folder
            .files
            .iter()
            .any(|n| n.ends_with(".model") && n.contains("tokenizer"))
        || (folder.has("vocab.json") && folder.has("merges.txt"));
    if folder.has("tokenizer_config.json") && !tokenizer_present {
        f.problems.push(
            "tokenizer_config.json present but tokenizer.json (or tokenizer.model) missing".into(),
        );
    }

    let has_vision_config = config
        .as_ref()
        .is_some_and(|c| c.get("vision_config").is_some_and(Value::is_object));
    let is_vision = has_vision_config
        || model_type
            .as_deref()
            .is_some_and(|m| VISION_MODEL_TYPES.contains(&m));
    if is_vision && !folder.has("preprocessor_config.json") {
        f.problems.push(
            "vision model without preprocessor_config.json (image preprocessing unknown)".into(),
        );
    }
    let preprocessor = folder.json("preprocessor_config.json").and_then(Result::ok);
    let is_audio = model_type
        .as_deref()
        .is_some_and(|m| AUDIO_MODEL_TYPES.contains(&m))
        || config
            .as_ref()
            .is_some_and(|c| c.get("audio_config").is_some_and(Value::is_object))
        || preprocessor.as_ref().is_some_and(|p| {
            p["feature_extractor_type"].as_str() == Some("WhisperFeatureExtractor")
        });
    let is_embeddings = model_type
        .as_deref()
        .is_some_and(|m| EMBEDDING_MODEL_TYPES.contains(&m))
        || folder.has("modules.json");
    let has_chat = tokenizer_config
        .as_ref()
        .is_some_and(|t| t.get("chat_template").is_some_and(|c| !c.is_null()))
        || folder.has("chat_template.jinja")
        || folder.has("chat_template.json")
        || f.gguf
            .as_ref()
            .is_some_and(|h| h.get("tokenizer.chat_template").is_some());

    let mut capabilities = Vec::new();
    // Whisper transcribes; it is not a text generator. Embedding models only embed.
    let speech_only = is_audio && !is_vision && model_type.as_deref() == Some("whisper");
    if !is_embeddings && !speech_only {
        capabilities.push(Capability::Text);
        if has_chat {
            capabilities.push(Capability::Chat);
        }
    }
    if is_vision {
        capabilities.push(Capability::Vision);
    }
    if is_audio {
        capabilities.push(Capability::Audio);
    }
    if is_embeddings {
        capabilities.push(Capability::Embeddings);
    }

    // Context length: top level first, then text_config; GGUF from its metadata.
    let mut context = None;
    let mut context_source = "not declared".to_string();
    'outer: for (scope, obj) in [
        ("config.json", config.as_ref()),
        ("config.json text_config", text_config),
    ] {
        if let Some(obj) = obj {
            for key in CONTEXT_KEYS {
                if let Some(n) = obj.get(*key).and_then(Value::as_u64) {
                    context = Some(n);
                    context_source = format!("{scope}:{key}");
                    break 'outer;
                }
            }
        }
    }
    if context.is_none()
        && let (Some(h), Some(arch)) = (f.gguf.as_ref(), gguf_arch.as_deref())
    {
        let key = format!("{arch}.context_length");
        if let Some(n) = h.get(&key).and_then(gguf::GgufValue::as_u64) {
            context = Some(n);
            context_source = format!("gguf:{key}");
        }
    }

    // Quantization.
    let qcfg = config
        .as_ref()
        .and_then(|c| {
            c.get("quantization")
                .or_else(|| c.get("quantization_config"))
        })
        .filter(|q| q.get("bits").is_some());
    let dominant_float = f
        .float_dtype_bytes
        .iter()
        .max_by_key(|(_, b)| **b)
        .map(|(d, _)| d.clone());
    let quantization = if !f.gguf_types.is_empty() {
        Quantization {
            method: "gguf".into(),
            gguf_types: f.gguf_types.iter().cloned().collect(),
            ..Default::default()
        }
    } else if let Some(q) = qcfg {
        Quantization {
            method: q["mode"].as_str().unwrap_or("affine").to_string(),
            bits: q["bits"].as_u64().map(|b| b as u32),
            group_size: q["group_size"].as_u64().map(|g| g as u32),
            overrides: q
                .as_object()
                .map(|m| {
                    m.values()
                        .filter(|v| v.is_object() || v.is_boolean())
                        .count() as u32
                })
                .unwrap_or(0),
            dtype: dominant_float.as_deref().map(safetensors::dtype_label),
            gguf_types: Vec::new(),
        }
    } else {
        Quantization {
            method: "none".into(),
            dtype: dominant_float.as_deref().map(safetensors::dtype_label),
            ..Default::default()
        }
    };

    let framework = if f.gguf.is_some() {
        Framework::Gguf
    } else if ct2 {
        Framework::Ctranslate2
    } else if !st_files.is_empty() {
        if f.safetensors_formats.contains("mlx") || qcfg.is_some() {
            Framework::Mlx
        } else if f
            .safetensors_formats
            .iter()
            .any(|s| s == "pt" || s == "tf" || s == "flax")
        {
            Framework::Pytorch
        } else {
            Framework::Unknown
        }
    } else if !bin_files.is_empty() {
        Framework::Pytorch
    } else if npz {
        // weights.npz is what MLX's savez writes (mlx-whisper's older folders).
        Framework::Mlx
    } else {
        Framework::Unknown
    };

    let memory_dtype = if npz && st_files.is_empty() && gguf_files.is_empty() && !ct2 {
        if device == Device::Cpu {
            "at most twice the archive (half floats upcast to float32 on CPU)".into()
        } else {
            "as stored".into()
        }
    } else {
        memory_policy_label(&quantization, dominant_float.as_deref(), device)
    };
    let size_bytes = folder
        .files
        .iter()
        .filter_map(|n| std::fs::metadata(folder.path(n)).ok())
        .map(|m| m.len())
        .sum();

    let weight_format = if !gguf_files.is_empty() {
        "gguf"
    } else if ct2 {
        "ctranslate2"
    } else if !st_files.is_empty() {
        "safetensors"
    } else if npz {
        "npz"
    } else if !bin_files.is_empty() {
        "pytorch_bin"
    } else {
        "none"
    };

    ModelRecord {
        kind: "model".into(),
        weight_format: weight_format.into(),
        id: snap.id.clone(),
        path: snap.path.display().to_string(),
        revision: snap.revision.clone(),
        framework,
        model_type,
        quantization,
        size_bytes,
        context_length: context,
        context_length_source: context_source,
        capabilities,
        health: Health {
            ok: f.problems.is_empty(),
            problems: f.problems,
        },
        memory: MemoryEstimate {
            estimate_bytes: f.estimate.round() as u64,
            dtype: memory_dtype,
        },
    }
}

/// mlx-whisper's config.json: Whisper's `ModelDimensions`, no `model_type` needed.
fn is_mlx_whisper_config(c: &Value) -> bool {
    c.get("n_mels").is_some() && c.get("n_audio_ctx").is_some() && c.get("n_text_ctx").is_some()
}

fn memory_policy_label(q: &Quantization, float: Option<&str>, device: Device) -> String {
    let cpu = device == Device::Cpu;
    let half = matches!(float, Some("BF16" | "F16"));
    match q.method.as_str() {
        "gguf" if cpu => {
            "GGUF blocks packed; float16 scales and tensors upcast to float32 (CPU)".into()
        }
        "gguf" => "as stored".into(),
        "none" => match float {
            Some(d) if cpu && half => format!(
                "float32 (upcast from {} on CPU)",
                safetensors::dtype_label(d)
            ),
            Some(d) => safetensors::dtype_label(d),
            None => "unknown".into(),
        },
        _ => {
            let bits = q
                .bits
                .map(|b| format!("{b}-bit"))
                .unwrap_or_else(|| q.method.clone());
            if cpu && half {
                format!("{bits} packed; scales upcast to float32 (CPU)")
            } else {
                format!("{bits} packed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_index("model-00002-of-00004.safetensors"),
            Some((2, 4))
        );
        assert_eq!(shard_index("model.safetensors"), None);
        assert_eq!(
            shard_index("pytorch_model-00001-of-00002.bin"),
            Some((1, 2))
        );
    }
}
