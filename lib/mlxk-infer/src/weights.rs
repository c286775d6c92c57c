//! Loading a checkpoint into named MLX arrays: safetensors (single or sharded with an index);
//! GGUF files are read by [`crate::gguf`]. Applies the dtype policy and hands
//! the architectures typed layers ([`Linear`], [`Embedding`]) with strict bookkeeping: a missing
//! tensor and a tensor nobody used are both errors, as in mlx-lm's strict load.
use crate::config::{QuantSpec, Quantization};
use crate::error::{Result, broken};
use crate::layers::{Embedding, Linear, RmsNorm};
use mlx_rs::{Array, Dtype, ops};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where tensors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    Gguf,
}

/// How stored dtypes are turned into compute dtypes on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypePolicy {
    /// CPU: bf16/f16 arrays (incl. quantization scales and biases) become f32, because MLX's
    /// half-precision kernels are an order of magnitude slower there.
    UpcastHalfToF32,
    /// GPU: keep stored dtypes.
    Keep,
}

impl DtypePolicy {
    /// The policy for MLX's default device.
    pub fn for_default_device() -> DtypePolicy {
        if crate::runtime::default_device_is_cpu() {
            DtypePolicy::UpcastHalfToF32
        } else {
            DtypePolicy::Keep
        }
    }
}

/// Named arrays of one checkpoint, handed out once each.
pub struct Weights {
    path: PathBuf,
    map: HashMap<String, Array>,
    quantization: Option<Quantization>,
    format: WeightFormat,
    /// What the dtype policy did, e.g. `bf16 → f32: 290 arrays`.
    pub policy_applied: Vec<String>,
}

impl Weights {
    pub fn new(path: PathBuf, map: HashMap<String, Array>, format: WeightFormat) -> Weights {
        Weights {
            path,
            map,
            quantization: None,
            format,
            policy_applied: Vec::new(),
        }
    }

    /// The checkpoint these weights come from (named in errors).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn set_quantization(&mut self, q: Option<Quantization>) {
        self.quantization = q;
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Takes a tensor; missing is a broken checkpoint.
    pub fn take(&mut self, name: &str) -> Result<Array> {
        self.map
            .remove(name)
            .ok_or_else(|| broken(&self.path, format!("tensor `{name}` is missing")))
    }

    pub fn take_opt(&mut self, name: &str) -> Option<Array> {
        self.map.remove(name)
    }

    /// Drops tensors the model does not use by design (e.g. precomputed rotary tables).
    pub fn discard(&mut self, pred: impl Fn(&str) -> bool) {
        self.map.retain(|k, _| !pred(k));
    }

    fn quant_spec(&self, prefix: &str, weight: &Array, scales: &Array) -> Result<QuantSpec> {
        if self.format == WeightFormat::Gguf {
            // GGUF blocks hold 32 values; MLX packs `bits` per value into u32 words.
            let packed = *weight.shape().last().unwrap_or(&0);
            let groups = *scales.shape().last().unwrap_or(&1);
            return Ok(QuantSpec {
                group_size: 32,
                bits: packed / groups.max(1),
            });
        }
        self.quantization
            .as_ref()
            .and_then(|q| q.for_layer(prefix))
            .ok_or_else(|| {
                broken(
                    &self.path,
                    format!(
                        "`{prefix}` is quantized (it has scales) but config.json has no \
                         `quantization` entry for it"
                    ),
                )
            })
    }

    fn check_dims(&self, prefix: &str, got: (i32, i32), want: (usize, usize)) -> Result<()> {
        if got != (want.0 as i32, want.1 as i32) {
            return Err(broken(
                &self.path,
                format!(
                    "`{prefix}` is {}×{} but the config implies {}×{}",
                    got.0, got.1, want.0, want.1
                ),
            ));
        }
        Ok(())
    }

    /// A linear layer `prefix.{weight,scales,biases,bias}` mapping `in_dim` → `out_dim`.
    pub fn linear(
        &mut self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = self.take(&format!("{prefix}.weight"))?;
        let b = if bias {
            Some(self.take(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        match self.take_opt(&format!("{prefix}.scales")) {
            None => {
                let s = weight.shape();
                if s.len() != 2 {
                    return Err(broken(
                        &self.path,
                        format!("`{prefix}.weight` is not a matrix"),
                    ));
                }
                self.check_dims(prefix, (s[0], s[1]), (out_dim, in_dim))?;
                Ok(Linear::Dense { weight, bias: b })
            }
            Some(scales) => {
                let biases = self.take(&format!("{prefix}.biases"))?;
                let spec = self.quant_spec(prefix, &weight, &scales)?;
                let (rows, groups) = (scales.shape()[0], *scales.shape().last().unwrap_or(&0));
                self.check_dims(prefix, (rows, groups * spec.group_size), (out_dim, in_dim))?;
                Linear::quantized(weight, scales, biases, b, spec)
            }
        }
    }

    /// The token embedding `prefix.{weight,scales,biases}` of `vocab` × `dim`.
    pub fn embedding(&mut self, prefix: &str, vocab: usize, dim: usize) -> Result<Embedding> {
        match self.linear(prefix, dim, vocab, false)? {
            Linear::Dense { weight, .. } => Ok(Embedding::Dense(weight)),
            Linear::Packed { weight, .. } => Ok(Embedding::Packed(weight)),
            Linear::Quantized {
                weight,
                scales,
                biases,
                spec,
                ..
            } => Ok(Embedding::Quantized {
                weight,
                scales,
                biases,
                spec,
            }),
        }
    }

    /// A LayerNorm `prefix.{weight,bias}`.
    pub fn layer_norm(&mut self, prefix: &str, eps: f32) -> Result<crate::layers::LayerNorm> {
        Ok(crate::layers::LayerNorm {
            weight: self.take(&format!("{prefix}.weight"))?,
            bias: self.take(&format!("{prefix}.bias"))?,
            eps,
        })
    }

    /// An RMSNorm weight of `dim` values.
    pub fn norm(&mut self, name: &str, dim: usize, eps: f32, one_plus: bool) -> Result<RmsNorm> {
        let w = self.take(&format!("{name}.weight"))?;
        if w.shape() != [dim as i32] {
            return Err(broken(
                &self.path,
                format!(
                    "`{name}.weight` has shape {:?}, expected [{dim}]",
                    w.shape()
                ),
            ));
        }
        if one_plus {
            RmsNorm::one_plus(w, eps)
        } else {
            Ok(RmsNorm::new(w, eps))
        }
    }

    /// Every tensor must have been used: leftovers mean the checkpoint is not what the config says.
    pub fn finish(self) -> Result<()> {
        if self.map.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
        Err(broken(
            &self.path,
            format!(
                "{} tensor(s) do not belong to the architecture in config.json: {}{}",
                names.len(),
                shown.join(", "),
                if names.len() > 5 { ", …" } else { "" }
            ),
        ))
    }

    /// Converts arrays under `policy` and records what was done.
    pub fn apply_policy(&mut self, policy: DtypePolicy) -> Result<()> {
        self.apply_policy_keeping_f16(policy, |_| false)
    }

    /// [`Weights::apply_policy`], but the f16 arrays `keep` names stay f16: matrices only our
    /// CPU kernels multiply on the host, which widen each value exactly as it is read (half
    /// the bytes per token, the same sums).
    pub fn apply_policy_keeping_f16(
        &mut self,
        policy: DtypePolicy,
        keep: impl Fn(&str) -> bool,
    ) -> Result<()> {
        if policy == DtypePolicy::Keep {
            return Ok(());
        }
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut kept = 0;
        for (name, a) in self.map.iter_mut() {
            let from = match a.dtype() {
                Dtype::Bfloat16 => "bf16",
                Dtype::Float16 if keep(name) => {
                    kept += 1;
                    continue;
                }
                Dtype::Float16 => "f16",
                _ => continue,
            };
            *a = a.as_dtype(Dtype::Float32)?;
            *counts.entry(from).or_default() += 1;
        }
        if kept > 0 {
            self.policy_applied.push(format!(
                "f16 kept for {kept} matrices the CPU kernels read as stored (widened exactly)"
            ));
        }
        for (from, n) in counts {
            self.policy_applied.push(format!(
                "{from} → f32 for {n} arrays (CPU: MLX's half-precision kernels are slow there)"
            ));
        }
        Ok(())
    }

    /// Unpacks every quantized matrix to dense f32 (`--dequantize`): 4–8× the memory; the
    /// matmuls then take the dense f32 paths instead of the quantized kernels (for comparisons).
    pub fn dequantize_all(&mut self) -> Result<()> {
        let prefixes: Vec<String> = self
            .map
            .keys()
            .filter_map(|k| k.strip_suffix(".scales").map(String::from))
            .collect();
        let n = prefixes.len();
        for p in prefixes {
            let w = self.take(&format!("{p}.weight"))?;
            let s = self.take(&format!("{p}.scales"))?;
            let b = self.take(&format!("{p}.biases"))?;
            let spec = self.quant_spec(&p, &w, &s)?;
            let d = ops::dequantize(&w, &s, &b, spec.group_size, spec.bits)?
                .as_dtype(Dtype::Float32)?;
            self.map.insert(format!("{p}.weight"), d);
        }
        if n > 0 {
            self.policy_applied.push(format!(
                "--dequantize: {n} quantized matrices unpacked to f32"
            ));
        }
        Ok(())
    }

    /// Evaluates every array so loading really happens now, not during the first token.
    pub fn materialize(&self) -> Result<()> {
        let all: Vec<&Array> = self.map.values().collect();
        mlx_rs::transforms::eval(all)?;
        Ok(())
    }

    /// Total bytes of the arrays.
    pub fn nbytes(&self) -> usize {
        self.map.values().map(Array::nbytes).sum()
    }
}

/// Reads all safetensors of a folder: `model.safetensors`, or the shards an index names, or
/// every `*.safetensors` file.
pub fn load_safetensors_dir(dir: &Path) -> Result<HashMap<String, Array>> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| broken(&index, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| broken(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| broken(&index, "no `weight_map` object"))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| broken(dir, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        f.sort();
        f
    };
    if files.is_empty() {
        return Err(broken(
            dir,
            "no *.safetensors or *.gguf weights in the folder",
        ));
    }
    let mut all = HashMap::new();
    for f in files {
        if !f.is_file() {
            return Err(broken(
                &f,
                "shard named by model.safetensors.index.json is missing",
            ));
        }
        let arrays = Array::load_safetensors(&f)
            .map_err(|e| broken(&f, format!("cannot read safetensors: {e}")))?;
        all.extend(arrays);
    }
    Ok(all)
}

/// The quantizations of a checkpoint's packed tensors, most common first (empty: dense).
pub fn quantizations(weights: &Weights) -> Vec<QuantSpec> {
    let mut seen: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    for (k, w) in &weights.map {
        if let Some(prefix) = k.strip_suffix(".weight")
            && let Some(scales) = weights.map.get(&format!("{prefix}.scales"))
            && let Ok(spec) = weights.quant_spec(prefix, w, scales)
        {
            *seen.entry((spec.bits, spec.group_size)).or_default() += 1;
        }
    }
    let mut v: Vec<((i32, i32), usize)> = seen.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.into_iter()
        .map(|((bits, group_size), _)| QuantSpec { group_size, bits })
        .collect()
}

impl Weights {
    /// The floating-point dtype holding the most bytes (what dense layers compute in).
    pub fn float_dtype(&self) -> Option<Dtype> {
        let mut bytes: Vec<(Dtype, usize)> = Vec::new();
        for a in self.map.values() {
            let d = a.dtype();
            if matches!(d, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
                match bytes.iter_mut().find(|(k, _)| *k == d) {
                    Some((_, n)) => *n += a.nbytes(),
                    None => bytes.push((d, a.nbytes())),
                }
            }
        }
        bytes.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d)
    }
}
