//! Reads a GGUF file's header — metadata and tensor table — without loading tensor data.
//! Enough for probing (architecture, context length, chat template, tensor types, sizes).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {0:?})")]
    Magic([u8; 4]),
    #[error("unsupported GGUF version {0} (expected 2 or 3)")]
    Version(u32),
    #[error("truncated or unreadable GGUF header: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt GGUF header: {0}")]
    Corrupt(String),
}

/// A metadata value; arrays keep their element count, and their values only for strings when
/// asked for (tokenizer vocabularies are large and probing never needs them).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Array { len: u64 },
}

impl GgufValue {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            GgufValue::Int(i) if *i >= 0 => Some(*i as u64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// Dimensions innermost first, as stored.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
}

impl GgufTensor {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensor>,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(GgufValue::as_str)
    }
}

/// Name of a GGML tensor type.
pub fn type_name(t: u32) -> String {
    let name = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        30 => "BF16",
        other => return format!("type{other}"),
    };
    name.to_string()
}

/// Tensor types MLX's GGUF loader turns into MLX arrays; anything else it refuses.
/// GGUF architectures (`general.architecture`) the text backend loads: the one list the gate
/// and the GGUF loader (`mlxk_infer::gguf`) both use.
pub const TEXT_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3"];

pub const MLX_LOADABLE_TYPES: &[&str] = &["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0"];

/// Bytes per element for a tensor once MLX holds it (packed weights + scales + biases for
/// the block types), with `float_bytes` the width of floats after the dtype policy (4 when
/// f16/bf16 are upcast to f32 on a CPU, 2 otherwise). None for types MLX cannot load.
pub fn loaded_bytes_per_element(t: u32, float_bytes: f64) -> Option<f64> {
    match t {
        0 => Some(4.0),
        1 | 30 => Some(float_bytes),
        // 4-bit packed + one scale and one bias per 32 values
        2 | 3 => Some(0.5 + 2.0 * float_bytes / 32.0),
        8 => Some(1.0 + 2.0 * float_bytes / 32.0),
        _ => None,
    }
}

const MAX_STRING: u64 = 64 << 20;
const MAX_COUNT: u64 = 1 << 24;

struct Cursor<R> {
    r: R,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ends inside the header",
            ));
        }
        Ok(())
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(GgufError::Corrupt(format!("string of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf)?;
        String::from_utf8(buf).map_err(|_| GgufError::Corrupt("string is not UTF-8".into()))
    }
    fn value(&mut self, ty: u32) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::Int(self.bytes::<1>()?[0] as i64),
            1 => GgufValue::Int(self.bytes::<1>()?[0] as i8 as i64),
            2 => GgufValue::Int(u16::from_le_bytes(self.bytes()?) as i64),
            3 => GgufValue::Int(i16::from_le_bytes(self.bytes()?) as i64),
            4 => GgufValue::Int(self.u32()? as i64),
            5 => GgufValue::Int(i32::from_le_bytes(self.bytes()?) as i64),
            6 => GgufValue::Float(f32::from_le_bytes(self.bytes()?) as f64),
            7 => GgufValue::Bool(self.bytes::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                let elem = self.u32()?;
                let len = self.u64()?;
                if len > MAX_COUNT * 16 {
                    return Err(GgufError::Corrupt(format!("array of {len} elements")));
                }
                match scalar_size(elem) {
                    Some(size) => self.skip(size * len)?,
                    None if elem == 8 => {
                        for _ in 0..len {
                            let n = self.u64()?;
                            if n > MAX_STRING {
                                return Err(GgufError::Corrupt(format!("string of {n} bytes")));
                            }
                            self.skip(n)?;
                        }
                    }
                    None => return Err(GgufError::Corrupt(format!("array of value type {elem}"))),
                }
                GgufValue::Array { len }
            }
            10 => GgufValue::Int(self.u64()? as i64),
            11 => GgufValue::Int(i64::from_le_bytes(self.bytes()?)),
            12 => GgufValue::Float(f64::from_le_bytes(self.bytes()?)),
            other => return Err(GgufError::Corrupt(format!("metadata value type {other}"))),
        })
    }
}

fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = std::fs::File::open(path)?;
    parse_header(BufReader::with_capacity(1 << 16, file))
}

pub fn parse_header(r: impl Read) -> Result<GgufHeader, GgufError> {
    let mut c = Cursor { r };
    let magic: [u8; 4] = c.bytes()?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic(magic));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let n_tensors = c.u64()?;
    let n_kv = c.u64()?;
    if n_tensors > MAX_COUNT || n_kv > MAX_COUNT {
        return Err(GgufError::Corrupt(format!(
            "{n_tensors} tensors, {n_kv} metadata entries"
        )));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        let value = c.value(ty)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims > 8 {
            return Err(GgufError::Corrupt(format!(
                "tensor {name} has {n_dims} dimensions"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| c.u64())
            .collect::<io::Result<Vec<_>>>()?;
        let ggml_type = c.u32()?;
        let _offset = c.u64()?;
        tensors.push(GgufTensor {
            name,
            dims,
            ggml_type,
        });
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
    })
}

/// Builds GGUF files for tests (metadata + tensor table + zero data). Public so the
/// end-to-end tests can make fixtures with the same code.
/// A GGUF writer for tests and fixtures (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod writer {
    pub enum Meta<'a> {
        Str(&'a str),
        U32(u32),
        StrArray(&'a [&'a str]),
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// `tensors`: (name, dims innermost first, ggml type). Data is zero-filled.
    pub fn build(meta: &[(&str, Meta)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((meta.len() as u64).to_le_bytes());
        for (k, v) in meta {
            string(&mut out, k);
            match v {
                Meta::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(&mut out, s);
                }
                Meta::U32(n) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(n.to_le_bytes());
                }
                Meta::StrArray(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for s in *items {
                        string(&mut out, s);
                    }
                }
            }
        }
        for (name, dims, ty) in tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(0u64.to_le_bytes());
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend([0u8; 64]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::writer::{Meta, build};
    use super::*;

    #[test]
    fn reads_metadata_and_tensor_table() {
        let bytes = build(
            &[
                ("general.architecture", Meta::Str("llama")),
                ("llama.context_length", Meta::U32(8192)),
                (
                    "tokenizer.ggml.tokens",
                    Meta::StrArray(&["a", "b", "<|im_end|>"]),
                ),
            ],
            &[
                ("token_embd.weight", &[576, 49152], 8),
                ("output_norm.weight", &[576], 0),
            ],
        );
        let h = parse_header(&bytes[..]).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(
            h.get("llama.context_length").and_then(GgufValue::as_u64),
            Some(8192)
        );
        assert_eq!(
            h.get("tokenizer.ggml.tokens"),
            Some(&GgufValue::Array { len: 3 })
        );
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensors[0].elements(), 576 * 49152);
        assert_eq!(type_name(h.tensors[0].ggml_type), "Q8_0");
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        assert!(matches!(
            parse_header(&b"GGML\x03\0\0\0"[..]),
            Err(GgufError::Magic(_))
        ));
        let bytes = build(&[("general.architecture", Meta::Str("llama"))], &[]);
        assert!(matches!(parse_header(&bytes[..20]), Err(GgufError::Io(_))));
        let mut v = bytes.clone();
        v[4] = 9;
        assert!(matches!(parse_header(&v[..]), Err(GgufError::Version(9))));
    }

    #[test]
    fn loaded_sizes_follow_the_dtype_policy() {
        // Q4_1 with f32 scales/biases: half a byte + 8 bytes per 32 values.
        assert_eq!(loaded_bytes_per_element(3, 4.0), Some(0.75));
        assert_eq!(loaded_bytes_per_element(1, 4.0), Some(4.0));
        assert_eq!(loaded_bytes_per_element(12, 4.0), None);
    }
}
