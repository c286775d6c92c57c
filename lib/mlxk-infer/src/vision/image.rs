//! Reading an image file into 8-bit RGB, as mlx-vlm's loader hands it to the processors: EXIF
//! orientation applied, the first frame of an animation, alpha dropped (Pillow's
//! `convert("RGB")`; the LLaVA and Idefics3 processors composite nothing on white). A file that is not an image, is empty, is cut short, or would decode to more
//! pixels than Pillow allows (a decompression bomb) is an error naming the file — nothing is
//! ever run on a half-decoded picture.
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::io::Cursor;
use std::path::Path;

/// Pillow refuses images over twice `Image.MAX_IMAGE_PIXELS` (89,478,485) as decompression
/// bombs; so do we, before decoding.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// The file extensions read as images (`--image-dir`, and telling a picture from a model name).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// Whether `p` is named like an image file (by its extension, any case).
pub fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`[r, g, b, r, g, b, …]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Rgb8 {
        assert_eq!(data.len(), width * height * 3, "RGB buffer size");
        Rgb8 {
            width,
            height,
            data,
        }
    }
}

/// Why an image could not be read: a code for records and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, what: &str, message: impl Into<String>) -> ImageError {
    ImageError {
        code,
        message: format!("{what}: {}", message.into()),
    }
}

/// Reads and decodes the image file at `path`.
pub fn load(path: &Path) -> Result<Rgb8, ImageError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            "not_found"
        } else {
            "unreadable"
        };
        err(code, &what, format!("cannot read: {e}"))
    })?;
    decode(&bytes, &what)
}

/// Decodes an image held in memory; `what` names it in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<Rgb8, ImageError> {
    if bytes.is_empty() {
        return Err(err("empty", what, "the file is empty (0 bytes)"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err("unreadable", what, e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(err(
            "not_image",
            what,
            "not an image (PNG, JPEG, WebP, GIF, BMP or TIFF expected)",
        ));
    };
    let name = format!("{format:?}").to_uppercase();
    let mut limits = image::Limits::default();
    // The decoders' own allocation cap would refuse large but legitimate photos first.
    limits.max_alloc = Some(MAX_PIXELS * 8);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(what, &name, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(err(
            "not_image",
            what,
            format!("a {name} of {w}×{h} pixels"),
        ));
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(err(
            "too_large",
            what,
            format!(
                "{w}×{h} pixels is more than {MAX_PIXELS} (a decompression bomb?); scale it down first"
            ),
        ));
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| decode_error(what, &name, e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(what, &name, e))?;
    img.apply_orientation(orientation);
    Ok(Rgb8::new(
        img.width() as usize,
        img.height() as usize,
        img.into_rgb8().into_raw(),
    ))
}

fn decode_error(what: &str, format: &str, e: image::ImageError) -> ImageError {
    use image::ImageError as E;
    match e {
        E::Unsupported(u) => err(
            "unsupported_image",
            what,
            format!("a {format} this build cannot decode: {u}"),
        ),
        E::Limits(l) => err("too_large", what, format!("{l}")),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => err(
            "truncated",
            what,
            format!("the {format} data ends early (a truncated file?)"),
        ),
        e => err(
            "corrupt_image",
            what,
            format!("not a decodable {format}: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, color: image::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::write_buffer_with_format(
            &mut Cursor::new(&mut out),
            data,
            w,
            h,
            color,
            image::ImageFormat::Png,
        )
        .unwrap();
        out
    }

    #[test]
    fn grey_and_rgba_become_rgb() {
        let g = decode(&png(2, 1, image::ColorType::L8, &[0, 200]), "g.png").unwrap();
        assert_eq!(g.data, vec![0, 0, 0, 200, 200, 200]);
        // Alpha dropped, the stored colour kept (Pillow's convert("RGB")).
        let rgba = png(1, 1, image::ColorType::Rgba8, &[10, 20, 30, 0]);
        let a = decode(&rgba, "a.png").unwrap();
        assert_eq!(a.data, vec![10, 20, 30]);
    }

    fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    #[test]
    fn every_format_decodes_to_the_same_pixels() {
        let img = image::RgbImage::from_fn(7, 5, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 50) as u8, ((x + y) * 10) as u8])
        });
        let want = img.clone().into_raw();
        for f in [
            image::ImageFormat::Png,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::WebP,
        ] {
            let got = decode(&encode(&img, f), "x").unwrap();
            assert_eq!((got.width, got.height), (7, 5), "{f:?}");
            assert_eq!(got.data, want, "{f:?} is lossless");
        }
        // Lossy or palette formats: the size, and colours close to the original.
        for f in [image::ImageFormat::Jpeg, image::ImageFormat::Gif] {
            let got = decode(&encode(&img, f), "x").unwrap();
            assert_eq!((got.width, got.height), (7, 5), "{f:?}");
            let worst = got
                .data
                .iter()
                .zip(&want)
                .map(|(a, b)| (i16::from(*a) - i16::from(*b)).abs())
                .max()
                .unwrap();
            assert!(worst < 48, "{f:?}: off by {worst}");
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 3 × 2, each pixel's red its index; EXIF orientation 6 (rotate 90° clockwise).
        let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([(y * 3 + x) as u8, 0, 0]));
        let exif = vec![
            b'M', b'M', 0, 42, 0, 0, 0, 8, // TIFF header, first IFD at 8
            0, 1, // one entry
            0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation, SHORT, 1, value 6
            0, 0, 0, 0, // no next IFD
        ];
        let mut out = Vec::new();
        {
            use image::ImageEncoder;
            let mut enc = image::codecs::png::PngEncoder::new(&mut out);
            enc.set_exif_metadata(exif).unwrap();
            enc.write_image(img.as_raw(), 3, 2, image::ExtendedColorType::Rgb8)
                .unwrap();
        }
        let got = decode(&out, "turned.png").unwrap();
        assert_eq!((got.width, got.height), (2, 3));
        let reds: Vec<u8> = got.data.chunks(3).map(|p| p[0]).collect();
        // Turned clockwise: the bottom row (3 4 5) becomes the left column.
        assert_eq!(reds, vec![3, 0, 4, 1, 5, 2]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert_eq!(decode(b"", "e.png").unwrap_err().code, "empty");
        let e = decode(b"hello, this is text", "t.png").unwrap_err();
        assert_eq!(e.code, "not_image");
        assert!(e.message.starts_with("t.png: "), "{}", e.message);
        let full = png(8, 8, image::ColorType::Rgb8, &[7; 8 * 8 * 3]);
        let cut = decode(&full[..full.len() / 2], "cut.png").unwrap_err();
        assert_eq!(cut.code, "truncated", "{cut:?}");
    }
}
