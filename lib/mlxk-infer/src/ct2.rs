//! A CTranslate2 `model.bin` (faster-whisper's Whisper files) read into MLX arrays under the
//! file's own names; the layout is parsed by [`mlxk::ct2`].
use crate::error::{Result, broken, unsupported};
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use std::path::Path;

/// The variables of a CTranslate2 model.
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    /// Tensors; an alias holds another handle to its target's array.
    pub arrays: HashMap<String, Array>,
    /// Scalars (`decoder/num_heads`, flags) as integers.
    pub scalars: HashMap<String, i64>,
}

/// Reads `path` (a CTranslate2 `model.bin`).
pub fn read(path: &Path) -> Result<Ct2Model> {
    let data = std::fs::read(path).map_err(|e| broken(path, format!("cannot read: {e}")))?;
    parse(path, &data)
}

fn parse(path: &Path, data: &[u8]) -> Result<Ct2Model> {
    let h = mlxk::ct2::parse(std::io::Cursor::new(data), data.len() as u64).map_err(|e| {
        if e.starts_with("CTranslate2 model format") || e.contains("unknown dtype") {
            unsupported(path, e)
        } else {
            broken(path, format!("{e} (fetch the file again)"))
        }
    })?;
    let mut arrays = HashMap::new();
    let mut scalars = HashMap::new();
    for v in &h.variables {
        let Some(bytes) = data.get(v.offset as usize..(v.offset + v.nbytes) as usize) else {
            return Err(broken(
                path,
                format!("`{}` lies beyond the end of the file", v.name),
            ));
        };
        if v.dims.is_empty() {
            let n = match v.dtype {
                1 => bytes[0] as i8 as i64,
                2 => i16::from_le_bytes([bytes[0], bytes[1]]) as i64,
                3 => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64,
                0 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64,
                _ => continue,
            };
            scalars.insert(v.name.clone(), n);
            continue;
        }
        let dtype = match v.dtype {
            0 => Dtype::Float32,
            1 => Dtype::Int8,
            2 => Dtype::Int16,
            3 => Dtype::Int32,
            4 => Dtype::Float16,
            _ => Dtype::Bfloat16,
        };
        let dims: Vec<i32> = v.dims.iter().map(|&d| d as i32).collect();
        // SAFETY: the parser checked that `bytes` holds exactly dims × width bytes of `dtype`;
        // MLX copies them into its own buffer.
        let a = unsafe {
            Array::from_raw_data(bytes.as_ptr() as *const std::ffi::c_void, &dims, dtype)
        };
        arrays.insert(v.name.clone(), a);
    }
    for (alias, target) in &h.aliases {
        let a = arrays.get(target).cloned().ok_or_else(|| {
            broken(
                path,
                format!("alias `{alias}` names `{target}`, which the file does not hold"),
            )
        })?;
        arrays.insert(alias.clone(), a);
    }
    Ok(Ct2Model {
        spec: h.spec,
        revision: h.revision,
        arrays,
        scalars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn arrays_scalars_and_aliases() {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "w");
        b.extend_from_slice(&[1, 2, 0, 0, 0, 4]);
        b.extend_from_slice(&4u32.to_le_bytes());
        // f16 1.5 and -2.0.
        b.extend_from_slice(&0x3E00u16.to_le_bytes());
        b.extend_from_slice(&0xC000u16.to_le_bytes());
        string(&mut b, "num_heads");
        b.extend_from_slice(&[0, 2]);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "alias");
        string(&mut b, "w");
        let m = parse(Path::new("model.bin"), &b).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.scalars["num_heads"], 6);
        let w = m.arrays["alias"].as_dtype(Dtype::Float32).unwrap();
        assert_eq!(w.as_slice::<f32>(), [1.5, -2.0]);
        let e = parse(Path::new("model.bin"), &b[..30]).err().unwrap();
        assert!(e.to_string().contains("cut off"), "{e}");
    }
}
