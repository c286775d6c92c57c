//! NumPy `.npz` archives, as mlx-whisper's older folders hold their weights (`weights.npz`,
//! written by `mx.savez`): a zip of `.npy` arrays, stored or deflated, with zip64 records for
//! archives over 4 GB. Every size and offset is checked against the file before it is used;
//! an array that is cut off, Fortran-ordered, big-endian or of a type MLX has not is refused,
//! naming the archive and the array.
use crate::error::{Result, broken};
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// One member of the archive.
struct Entry {
    name: String,
    crc: u32,
    method: u16,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

/// The members of the archive, from its central directory.
fn entries(f: &mut std::fs::File, path: &Path) -> Result<Vec<Entry>> {
    let bad = |m: &str| broken(path, format!("not a readable .npz archive: {m}"));
    let len = f.metadata().map_err(|e| bad(&e.to_string()))?.len();
    let tail_len = len.min(65_557) as usize;
    let mut tail = vec![0u8; tail_len];
    f.seek(SeekFrom::Start(len - tail_len as u64))
        .and_then(|_| f.read_exact(&mut tail))
        .map_err(|e| bad(&e.to_string()))?;
    let at = (0..tail_len.saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD))
        .ok_or_else(|| bad("no end-of-directory record (cut off, or not a zip file)"))?;
    let mut count = u16_at(&tail, at + 10).unwrap_or(0) as u64;
    let mut cd_size = u32_at(&tail, at + 12).unwrap_or(0) as u64;
    let mut cd_offset = u32_at(&tail, at + 16).unwrap_or(0) as u64;
    if count == 0xFFFF || cd_offset == 0xFFFF_FFFF || cd_size == 0xFFFF_FFFF {
        // zip64: the locator sits just before the end record and points at the zip64 record.
        let loc = at
            .checked_sub(20)
            .filter(|&l| u32_at(&tail, l) == Some(ZIP64_LOCATOR))
            .ok_or_else(|| bad("a zip64 archive without its locator"))?;
        let rec_at = u64_at(&tail, loc + 8).ok_or_else(|| bad("a short zip64 locator"))?;
        let mut rec = [0u8; 56];
        f.seek(SeekFrom::Start(rec_at))
            .and_then(|_| f.read_exact(&mut rec))
            .map_err(|e| bad(&e.to_string()))?;
        if u32_at(&rec, 0) != Some(ZIP64_EOCD) {
            return Err(bad("the zip64 locator points at no zip64 record"));
        }
        count = u64_at(&rec, 32).unwrap_or(0);
        cd_size = u64_at(&rec, 40).unwrap_or(0);
        cd_offset = u64_at(&rec, 48).unwrap_or(0);
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) || count > cd_size / 46 {
        return Err(bad("the directory lies outside the file"));
    }
    let mut cd = vec![0u8; cd_size as usize];
    f.seek(SeekFrom::Start(cd_offset))
        .and_then(|_| f.read_exact(&mut cd))
        .map_err(|e| bad(&e.to_string()))?;
    let mut out = Vec::new();
    let mut p = 0usize;
    for _ in 0..count {
        if u32_at(&cd, p) != Some(CENTRAL) {
            return Err(bad("a damaged directory entry"));
        }
        let field = |off: usize| u32_at(&cd, p + off).ok_or_else(|| bad("a short directory entry"));
        let method = u16_at(&cd, p + 10).ok_or_else(|| bad("a short directory entry"))?;
        let crc = field(16)?;
        let mut compressed = field(20)? as u64;
        let mut size = field(24)? as u64;
        let n = u16_at(&cd, p + 28).unwrap_or(0) as usize;
        let e = u16_at(&cd, p + 30).unwrap_or(0) as usize;
        let c = u16_at(&cd, p + 32).unwrap_or(0) as usize;
        let mut local_offset = field(42)? as u64;
        let name = cd
            .get(p + 46..p + 46 + n)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| bad("a short directory entry"))?;
        let extra = cd
            .get(p + 46 + n..p + 46 + n + e)
            .ok_or_else(|| bad("a short directory entry"))?;
        // The zip64 extra field holds, in order, each of these that is 0xFFFFFFFF above.
        let mut q = 0;
        while q + 4 <= extra.len() {
            let id = u16_at(extra, q).unwrap_or(0);
            let sz = u16_at(extra, q + 2).unwrap_or(0) as usize;
            if id == 1 {
                let field = extra
                    .get(q + 4..q + 4 + sz)
                    .ok_or_else(|| bad("a short zip64 field"))?;
                let mut r = 0;
                for v in [&mut size, &mut compressed, &mut local_offset] {
                    if *v == 0xFFFF_FFFF {
                        *v = u64_at(field, r).ok_or_else(|| bad("a short zip64 field"))?;
                        r += 8;
                    }
                }
            }
            q += 4 + sz;
        }
        out.push(Entry {
            name,
            crc,
            method,
            compressed,
            size,
            local_offset,
        });
        p += 46 + n + e + c;
    }
    Ok(out)
}

/// The bytes of one member.
fn member(f: &mut std::fs::File, path: &Path, e: &Entry) -> Result<Vec<u8>> {
    let bad = |m: String| broken(path, format!("{}: {m}", e.name));
    let len = f.metadata().map_err(|x| bad(x.to_string()))?.len();
    let mut head = [0u8; 30];
    f.seek(SeekFrom::Start(e.local_offset))
        .and_then(|_| f.read_exact(&mut head))
        .map_err(|x| bad(x.to_string()))?;
    if u32_at(&head, 0) != Some(LOCAL) {
        return Err(bad(
            "its entry does not start where the directory says".into()
        ));
    }
    let skip = 30 + u16_at(&head, 26).unwrap_or(0) as u64 + u16_at(&head, 28).unwrap_or(0) as u64;
    let start = e.local_offset + skip;
    if start.checked_add(e.compressed).is_none_or(|end| end > len) {
        return Err(bad(
            "cut off (the archive is shorter than its directory says)".into(),
        ));
    }
    // Sizes are not trusted for allocation beyond what the file can hold: a stored member is
    // as large as its bytes, a deflated one at most ~1032 times (deflate's limit).
    let plausible = match e.method {
        0 => e.size == e.compressed,
        _ => e.size <= e.compressed.saturating_mul(1032).saturating_add(1024),
    };
    if !plausible {
        return Err(bad(format!(
            "{} bytes cannot come from {} in the archive (a damaged directory)",
            e.size, e.compressed
        )));
    }
    f.seek(SeekFrom::Start(start))
        .map_err(|x| bad(x.to_string()))?;
    let raw = f.by_ref().take(e.compressed);
    let mut out = Vec::with_capacity(e.size as usize);
    match e.method {
        0 => {
            let mut raw = raw;
            raw.read_to_end(&mut out).map_err(|x| bad(x.to_string()))?;
        }
        8 => {
            flate2::read::DeflateDecoder::new(raw)
                .take(e.size)
                .read_to_end(&mut out)
                .map_err(|x| bad(format!("cannot inflate: {x}")))?;
        }
        m => {
            return Err(bad(format!(
                "compression method {m} is not stored or deflate"
            )));
        }
    }
    if out.len() as u64 != e.size {
        return Err(bad(format!(
            "{} bytes where the directory says {}",
            out.len(),
            e.size
        )));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out);
    if crc.sum() != e.crc {
        return Err(bad(
            "damaged: its checksum does not match (download it again)".into(),
        ));
    }
    Ok(out)
}

/// A `.npy` array: its dtype, shape and data, and whether the data is in Fortran (column)
/// order — MLX's `savez` marks 1-D arrays so, and any array it holds transposed.
struct Npy<'a> {
    dtype: Dtype,
    shape: Vec<i32>,
    data: &'a [u8],
    fortran: bool,
}

fn npy(bytes: &[u8]) -> std::result::Result<Npy<'_>, String> {
    if bytes.get(..6) != Some(b"\x93NUMPY") {
        return Err("not a .npy array".into());
    }
    let (hlen, hstart) = match bytes.get(6) {
        Some(1) => (u16_at(bytes, 8).map(|v| v as usize), 10),
        Some(2 | 3) => (u32_at(bytes, 8).map(|v| v as usize), 12),
        v => return Err(format!(".npy version {v:?} is not 1, 2 or 3")),
    };
    let hlen = hlen.ok_or("a short .npy header")?;
    let header = bytes
        .get(hstart..hstart + hlen)
        .map(String::from_utf8_lossy)
        .ok_or("a short .npy header")?;
    let value = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        let rest = header[at..].trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find(',')?
        };
        Some(rest[..end].trim().to_string())
    };
    let descr = value("descr").ok_or("no descr in the .npy header")?;
    let descr = descr.trim_matches('\'');
    let fortran = match value("fortran_order").as_deref() {
        Some("False") => false,
        Some("True") => true,
        _ => return Err("no fortran_order in the .npy header".into()),
    };
    let (dtype, item) = match descr {
        "<f2" => (Dtype::Float16, 2),
        "<f4" => (Dtype::Float32, 4),
        "<u4" => (Dtype::Uint32, 4),
        "<i4" => (Dtype::Int32, 4),
        "<i8" => (Dtype::Int64, 8),
        "<u2" => (Dtype::Uint16, 2),
        "|u1" => (Dtype::Uint8, 1),
        "|i1" => (Dtype::Int8, 1),
        "|b1" => (Dtype::Bool, 1),
        other => return Err(format!("dtype {other} is not one MLX loads")),
    };
    let shape_s = value("shape").ok_or("no shape in the .npy header")?;
    let mut shape = Vec::new();
    for d in shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        shape.push(
            d.parse::<i32>()
                .ok()
                .filter(|&d| d >= 0)
                .ok_or_else(|| format!("a bad dimension {d:?}"))?,
        );
    }
    let n = shape
        .iter()
        .try_fold(item, |acc: usize, &d| acc.checked_mul(d as usize))
        .ok_or("a shape too large to hold")?;
    let data = &bytes[hstart + hlen..];
    if data.len() != n {
        return Err(format!(
            "{} bytes of data for shape {shape:?} of {descr} ({n} expected): cut off or padded",
            data.len()
        ));
    }
    Ok(Npy {
        dtype,
        shape,
        data,
        fortran,
    })
}

/// Every array of an `.npz` archive by name (without `.npy`).
pub fn load_npz(path: &Path) -> Result<HashMap<String, Array>> {
    let mut f = std::fs::File::open(path).map_err(|e| broken(path, format!("cannot open: {e}")))?;
    let mut out = HashMap::new();
    for e in entries(&mut f, path)? {
        let bytes = member(&mut f, path, &e)?;
        let Npy {
            dtype,
            shape,
            data,
            fortran,
        } = npy(&bytes).map_err(|m| broken(path, format!("{}: {m}", e.name)))?;
        // Column order is the row order of the reversed shape: read so, then transposed.
        let fortran = fortran && shape.len() > 1;
        let stored: Vec<i32> = if fortran {
            shape.iter().rev().copied().collect()
        } else {
            shape.clone()
        };
        // SAFETY: `data` holds exactly prod(shape) items of `dtype` (checked by `npy`), and
        // MLX copies it.
        let mut a = unsafe { Array::from_raw_data(data.as_ptr().cast(), &stored, dtype) };
        if fortran {
            a = a.transpose()?;
        }
        let name = e.name.strip_suffix(".npy").unwrap_or(&e.name).to_string();
        if out.insert(name, a).is_some() {
            return Err(broken(path, format!("{}: in the archive twice", e.name)));
        }
    }
    Ok(out)
}

/// Writes `arrays` as an uncompressed `.npz` (f32 or f16 data given as raw little-endian
/// bytes), with zip64 fields when `zip64` — what the tests read back.
#[cfg(any(test, feature = "test-support"))]
pub fn write_npz(
    path: &Path,
    arrays: &[(&str, &str, &[i32], &[u8])],
    zip64: bool,
) -> std::io::Result<()> {
    write_npz_ordered(path, arrays, zip64, false)
}

/// As [`write_npz`]; `fortran` marks every array column-ordered (its data given so).
#[cfg(any(test, feature = "test-support"))]
pub fn write_npz_ordered(
    path: &Path,
    arrays: &[(&str, &str, &[i32], &[u8])],
    zip64: bool,
    fortran: bool,
) -> std::io::Result<()> {
    let order = if fortran { "True" } else { "False" };
    let mut body = Vec::new();
    let mut central = Vec::new();
    for (name, descr, shape, data) in arrays {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape_s = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_s}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        npy.extend(*data);
        let fname = format!("{name}.npy");
        let offset = body.len() as u64;
        let crc = {
            let mut h = flate2::Crc::new();
            h.update(&npy);
            h.sum()
        };
        let (sz32, extra) = if zip64 {
            let mut x = vec![1u8, 0, 24, 0];
            x.extend((npy.len() as u64).to_le_bytes());
            x.extend((npy.len() as u64).to_le_bytes());
            x.extend(offset.to_le_bytes());
            (0xFFFF_FFFFu32, x)
        } else {
            (npy.len() as u32, Vec::new())
        };
        // Local header (sizes repeated; zip64 readers take the directory's).
        body.extend(LOCAL.to_le_bytes());
        body.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(crc.to_le_bytes());
        body.extend((npy.len() as u32).to_le_bytes());
        body.extend((npy.len() as u32).to_le_bytes());
        body.extend((fname.len() as u16).to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.extend(fname.as_bytes());
        body.extend(&npy);
        central.extend(CENTRAL.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(crc.to_le_bytes());
        central.extend(sz32.to_le_bytes());
        central.extend(sz32.to_le_bytes());
        central.extend((fname.len() as u16).to_le_bytes());
        central.extend((extra.len() as u16).to_le_bytes());
        central.extend([0u8; 10]); // comment length, disk, internal and external attributes
        central.extend(if zip64 { 0xFFFF_FFFFu32 } else { offset as u32 }.to_le_bytes());
        central.extend(fname.as_bytes());
        central.extend(&extra);
    }
    let cd_offset = body.len() as u64;
    let n = arrays.len() as u64;
    body.extend(&central);
    if zip64 {
        let rec_at = body.len() as u64;
        body.extend(ZIP64_EOCD.to_le_bytes());
        body.extend(44u64.to_le_bytes());
        body.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(n.to_le_bytes());
        body.extend(n.to_le_bytes());
        body.extend((central.len() as u64).to_le_bytes());
        body.extend(cd_offset.to_le_bytes());
        body.extend(ZIP64_LOCATOR.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        body.extend(rec_at.to_le_bytes());
        body.extend(1u32.to_le_bytes());
    }
    body.extend(EOCD.to_le_bytes());
    body.extend([0u8; 4]);
    let n16 = if zip64 { 0xFFFF } else { n as u16 };
    body.extend(n16.to_le_bytes());
    body.extend(n16.to_le_bytes());
    body.extend((central.len() as u32).to_le_bytes());
    body.extend(
        if zip64 {
            0xFFFF_FFFFu32
        } else {
            cd_offset as u32
        }
        .to_le_bytes(),
    );
    body.extend(0u16.to_le_bytes());
    std::fs::write(path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn arrays_come_back_with_their_names_shapes_and_values() {
        let d = tempfile::tempdir().unwrap();
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // 1.0 and -2.0 as IEEE half floats.
        let h: Vec<u8> = [0x3C00u16, 0xC000]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        for zip64 in [false, true] {
            let p = d.path().join(format!("w{zip64}.npz"));
            write_npz(
                &p,
                &[
                    ("encoder.conv1.weight", "<f4", &[2, 3], &a),
                    ("decoder.ln.bias", "<f2", &[2], &h),
                ],
                zip64,
            )
            .unwrap();
            let m = load_npz(&p).unwrap();
            let w = &m["encoder.conv1.weight"];
            assert_eq!(w.shape(), &[2, 3]);
            assert_eq!(w.as_slice::<f32>(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            let b = m["decoder.ln.bias"].as_dtype(Dtype::Float32).unwrap();
            assert_eq!(b.as_slice::<f32>(), &[1.0, -2.0]);
        }
    }

    #[test]
    fn column_ordered_arrays_come_back_in_row_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.npz");
        // [[1, 2, 3], [4, 5, 6]] stored column by column, as MLX's savez may write it.
        let cols = f32_bytes(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let v = f32_bytes(&[7.0, 8.0]);
        write_npz_ordered(
            &p,
            &[("m", "<f4", &[2, 3], &cols), ("v", "<f4", &[2], &v)],
            false,
            true,
        )
        .unwrap();
        let m = load_npz(&p).unwrap();
        let a = &m["m"];
        assert_eq!(a.shape(), &[2, 3]);
        let a = a.flatten(None, None).unwrap();
        assert_eq!(a.as_slice::<f32>(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m["v"].as_slice::<f32>(), &[7.0, 8.0]);
    }

    #[test]
    fn damaged_archives_are_refused_naming_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.npz");
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
        write_npz(&p, &[("x", "<f4", &[4], &a)], false).unwrap();
        let good = std::fs::read(&p).unwrap();
        // Cut off: no directory at the end.
        std::fs::write(&p, &good[..good.len() / 2]).unwrap();
        let e = load_npz(&p).unwrap_err().to_string();
        assert!(e.contains("end-of-directory"), "{e}");
        // Not a zip at all.
        std::fs::write(&p, b"hello").unwrap();
        assert!(load_npz(&p).is_err());
        // A shape that does not fit the data.
        write_npz(&p, &[("x", "<f4", &[5], &a)], false).unwrap();
        let e = load_npz(&p).unwrap_err().to_string();
        assert!(e.contains("x.npy") && e.contains("cut off"), "{e}");
        // A damaged byte in the data: its checksum says so.
        write_npz(&p, &[("x", "<f4", &[4], &a)], false).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        let at = b
            .windows(4)
            .position(|w| w == 2.0f32.to_le_bytes())
            .unwrap();
        b[at] ^= 0x40;
        std::fs::write(&p, &b).unwrap();
        let e = load_npz(&p).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // A negative or overflowing shape.
        write_npz(&p, &[("x", "<f4", &[-1], &[])], false).unwrap();
        assert!(
            load_npz(&p)
                .unwrap_err()
                .to_string()
                .contains("bad dimension")
        );
        write_npz(
            &p,
            &[("x", "<f4", &[65536, 65536, 65536, 65536], &[])],
            false,
        )
        .unwrap();
        assert!(load_npz(&p).unwrap_err().to_string().contains("too large"));
        // A type MLX has not.
        write_npz(&p, &[("x", "<c8", &[2], &a)], false).unwrap();
        let e = load_npz(&p).unwrap_err().to_string();
        assert!(e.contains("<c8"), "{e}");
    }
}
