//! Reads a safetensors file's JSON header (tensor names, dtypes, shapes, metadata) without
//! touching tensor data; writes small files for tests and fixtures (feature `test-support`).

use serde_json::Value;
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    #[error("header length {0} is not plausible (corrupt or not safetensors)")]
    HeaderLength(u64),
    #[error("header is not valid JSON: {0}")]
    Json(String),
    #[error("tensor {0}: {1}")]
    Tensor(String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// As written: `BF16`, `F16`, `F32`, `U32`, …
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SafetensorsHeader {
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` (e.g. `{"format": "mlx"}`).
    pub metadata: serde_json::Map<String, Value>,
    /// Bytes the file must have: 8 + header + the largest data end offset.
    pub expected_file_bytes: u64,
}

/// Byte width of a safetensors dtype name.
pub fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// MLX's name for a safetensors dtype (as reported in records).
pub fn dtype_label(dtype: &str) -> String {
    match dtype {
        "BF16" => "bfloat16",
        "F16" => "float16",
        "F32" => "float32",
        "F64" => "float64",
        "U32" => "uint32",
        "U8" => "uint8",
        "I8" => "int8",
        "I32" => "int32",
        other => return other.to_lowercase(),
    }
    .to_string()
}

const MAX_HEADER: u64 = 100 << 20;

pub fn read_header(path: &Path) -> Result<SafetensorsHeader, SafetensorsError> {
    let mut f = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if !(2..=MAX_HEADER).contains(&len) {
        return Err(SafetensorsError::HeaderLength(len));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)?;
    parse_header(&buf, len)
}

pub fn parse_header(json: &[u8], header_len: u64) -> Result<SafetensorsHeader, SafetensorsError> {
    let v: Value =
        serde_json::from_slice(json).map_err(|e| SafetensorsError::Json(e.to_string()))?;
    let Value::Object(map) = v else {
        return Err(SafetensorsError::Json("header is not an object".into()));
    };
    let mut out = SafetensorsHeader::default();
    let mut data_end = 0u64;
    for (name, entry) in map {
        if name == "__metadata__" {
            if let Value::Object(m) = entry {
                out.metadata = m;
            }
            continue;
        }
        let bad = |what: &str| SafetensorsError::Tensor(name.clone(), what.to_string());
        let dtype = entry["dtype"]
            .as_str()
            .ok_or_else(|| bad("no dtype"))?
            .to_string();
        let shape = entry["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| bad("shape is not unsigned integers"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let offsets = entry["data_offsets"]
            .as_array()
            .ok_or_else(|| bad("no data_offsets"))?;
        let (start, end) = match offsets.as_slice() {
            [a, b] => (
                a.as_u64().ok_or_else(|| bad("bad offset"))?,
                b.as_u64().ok_or_else(|| bad("bad offset"))?,
            ),
            _ => return Err(bad("data_offsets must have two entries")),
        };
        if end < start {
            return Err(bad("data_offsets end before start"));
        }
        data_end = data_end.max(end);
        out.tensors.push(TensorInfo {
            name,
            dtype,
            shape,
            data_bytes: end - start,
        });
    }
    out.expected_file_bytes = 8 + header_len + data_end;
    Ok(out)
}

/// One tensor to write: name, safetensors dtype (`F32`, `BF16`, `U32`, …), shape, raw bytes.
#[cfg(any(test, feature = "test-support"))]
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dtype: &'a str,
    pub shape: &'a [u64],
    pub data: &'a [u8],
}

/// A safetensors file: the tensors in the order given, `__metadata__.format` when `format`
/// is given, the header padded with spaces to a multiple of 8 bytes as MLX writes it — the
/// one writer behind the tests' fixtures and the tiny random models.
#[cfg(any(test, feature = "test-support"))]
pub fn write(tensors: &[TensorData], format: Option<&str>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if let Some(f) = format {
        header.insert("__metadata__".into(), serde_json::json!({ "format": f }));
    }
    let mut offset = 0usize;
    for t in tensors {
        header.insert(
            t.name.into(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape,
                               "data_offsets": [offset, offset + t.data.len()]}),
        );
        offset += t.data.len();
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serializes");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    for t in tensors {
        out.extend(t.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tensors_and_metadata() {
        let json = br#"{"__metadata__":{"format":"mlx"},"a.weight":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]}}"#;
        let h = parse_header(json, json.len() as u64).unwrap();
        assert_eq!(h.metadata["format"], "mlx");
        assert_eq!(h.tensors[0].shape, vec![4, 8]);
        assert_eq!(h.tensors[0].data_bytes, 64);
        assert_eq!(h.expected_file_bytes, 8 + json.len() as u64 + 64);
    }

    #[test]
    fn rejects_broken_entries() {
        let json = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#;
        assert!(parse_header(json, json.len() as u64).is_err());
        assert!(parse_header(b"not json", 8).is_err());
    }

    #[test]
    fn written_files_read_back() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let bytes = write(
            &[TensorData {
                name: "w",
                dtype: "U32",
                shape: &[2],
                data: &data,
            }],
            Some("mlx"),
        );
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(len % 8, 0);
        let h = parse_header(&bytes[8..8 + len as usize], len).unwrap();
        assert_eq!(h.tensors[0].shape, vec![2]);
        assert_eq!(h.metadata["format"], "mlx");
        assert_eq!(h.expected_file_bytes, bytes.len() as u64);
        assert_eq!(&bytes[bytes.len() - 8..], &data);
    }
}
