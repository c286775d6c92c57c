//! The layout of CTranslate2's `model.bin` (format versions 5–6, faster-whisper's Whisper
//! files): a little-endian header — version, spec name, spec revision, variable count — then
//! per variable its name, rank, dims, dtype id, byte count and raw bytes, then aliases. Read
//! without the data (seeking over it), so the probe can check a file and the loader can map it.
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One stored variable: where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub dims: Vec<u32>,
    /// CTranslate2's dtype id: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
    pub dtype: u8,
    pub offset: u64,
    pub nbytes: u64,
}

impl Variable {
    /// Bytes per element, if the dtype is one CTranslate2 defines.
    pub fn width(&self) -> Option<u64> {
        Some(match self.dtype {
            0 | 3 => 4,
            1 => 1,
            2 | 4 | 5 => 2,
            _ => return None,
        })
    }

    /// Elements in all; `None` when the dims overflow (a lying header).
    pub fn checked_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
    }

    pub fn elements(&self) -> u64 {
        self.checked_elements().unwrap_or(u64::MAX)
    }

    pub fn is_float(&self) -> bool {
        matches!(self.dtype, 0 | 4 | 5)
    }
}

/// What a `model.bin` header holds.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    /// `WhisperSpec`, `TransformerSpec`, …
    pub spec: String,
    pub revision: u32,
    pub variables: Vec<Variable>,
    /// (alias, target) pairs, e.g. `decoder/projection/weight` → `decoder/embeddings/weight`.
    pub aliases: Vec<(String, String)>,
}

/// Whether `path` starts like a CTranslate2 model (version 1–6, then a spec name).
pub fn looks_like_ct2(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut b = [0u8; 6];
    if f.read_exact(&mut b).is_err() {
        return false;
    }
    let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let name_len = u16::from_le_bytes([b[4], b[5]]) as usize;
    (1..=6).contains(&version) && (2..=64).contains(&name_len)
}

/// Reads the header of the file at `path`; an error says what is wrong (cut off, not CT2).
pub fn read_header(path: &Path) -> Result<Header, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    parse(std::io::BufReader::new(f), len)
}

struct Src<R> {
    r: R,
    at: u64,
    len: u64,
}

impl<R: Read + Seek> Src<R> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        if self.at + n as u64 > self.len {
            return Err(format!(
                "cut off: the header runs past the end of the file ({} bytes)",
                self.len
            ));
        }
        let mut b = vec![0u8; n];
        self.r.read_exact(&mut b).map_err(|e| e.to_string())?;
        self.at += n as u64;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        let mut b = self.bytes(n)?;
        if b.last() == Some(&0) {
            b.pop();
        }
        String::from_utf8(b).map_err(|_| "a name that is not UTF-8".to_string())
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        if self.at + n > self.len {
            return Err(format!(
                "cut off: a variable's data ends at byte {} but the file has {} bytes",
                self.at + n,
                self.len
            ));
        }
        self.r
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| e.to_string())?;
        self.at += n;
        Ok(())
    }
}

/// Parses a header from `r` (`len` bytes in all), seeking over the data.
pub fn parse<R: Read + Seek>(r: R, len: u64) -> Result<Header, String> {
    let mut s = Src { r, at: 0, len };
    let version = s.u32()?;
    if !(5..=6).contains(&version) {
        return Err(format!(
            "CTranslate2 model format version {version}; versions 5 and 6 are read"
        ));
    }
    let spec = s.string()?;
    let revision = s.u32()?;
    let count = s.u32()?;
    // The count is a claim: each variable takes at least 9 header bytes.
    let mut variables = Vec::with_capacity((count as u64).min(len / 9) as usize);
    for _ in 0..count {
        let name = s.string()?;
        let rank = s.u8()? as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(s.u32()?);
        }
        let dtype = s.u8()?;
        let nbytes = s.u32()? as u64;
        let v = Variable {
            name,
            dims,
            dtype,
            offset: s.at,
            nbytes,
        };
        if v.dims.iter().any(|&d| d > i32::MAX as u32) {
            return Err(format!(
                "`{}` has a dimension beyond 2^31 ({:?})",
                v.name, v.dims
            ));
        }
        match v.width() {
            Some(w) if v.checked_elements().and_then(|e| e.checked_mul(w)) == Some(nbytes) => {}
            Some(w) => {
                return Err(format!(
                    "`{}` is {:?} × {w} bytes but holds {nbytes} bytes",
                    v.name, v.dims
                ));
            }
            None => return Err(format!("`{}` has unknown dtype id {dtype}", v.name)),
        }
        s.skip(nbytes)?;
        variables.push(v);
    }
    let mut aliases = Vec::new();
    if s.at < len {
        let n = s.u32()?;
        for _ in 0..n {
            let a = s.string()?;
            let t = s.string()?;
            aliases.push((a, t));
        }
    }
    Ok(Header {
        version,
        spec,
        revision,
        variables,
        aliases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A two-variable file: `w` (2×3 f32), the scalar `num_heads` (i16 6), alias → `w`.
    fn tiny_file() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "w");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&24u32.to_le_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        string(&mut b, "num_heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "alias");
        string(&mut b, "w");
        b
    }

    #[test]
    fn the_table_is_read_without_the_data() {
        let b = tiny_file();
        let h = parse(Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(
            (h.version, h.spec.as_str(), h.revision),
            (6, "WhisperSpec", 3)
        );
        assert_eq!(h.variables.len(), 2);
        let w = &h.variables[0];
        assert_eq!(
            (w.name.as_str(), w.dims.as_slice(), w.nbytes),
            ("w", &[2, 3][..], 24)
        );
        assert_eq!(
            &b[w.offset as usize..w.offset as usize + 4],
            &1.0f32.to_le_bytes()
        );
        assert_eq!(h.aliases, [("alias".to_string(), "w".to_string())]);
    }

    #[test]
    fn a_lying_header_is_an_error_not_an_abort() {
        let mut b = tiny_file();
        // The variable count (after version, spec name, revision) claims 4 billion.
        let at = 4 + 2 + "WhisperSpec".len() + 1 + 4;
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(Cursor::new(&b), b.len() as u64).is_err());
        // A dimension so large that dims × width overflows.
        let mut b = tiny_file();
        let dim = b.windows(2).position(|w| w == [b'w', 0]).unwrap() + 3;
        b[dim..dim + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(Cursor::new(&b), b.len() as u64).is_err());
    }

    #[test]
    fn a_cut_file_says_so() {
        let b = tiny_file();
        let e = parse(Cursor::new(&b[..40]), 40).unwrap_err();
        assert!(e.starts_with("cut off"), "{e}");
    }
}
