//! Reading an image file into 8-bit RGB, as the reference processors see it: EXIF orientation
//! applied, the first frame of an animation, alpha dropped (Pillow's `convert("RGB")`, what
//! mlx-vlm's loader and transformers' CLIP processors do) or composited on white with Pillow's
//! integer arithmetic (the processors that do that: Idefics). A file that is not an image, is empty, is cut short, or would decode to more
//! pixels than Pillow allows (a decompression bomb) is an error naming the file — nothing is
//! ever run on a half-decoded picture.
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::io::Cursor;
use std::path::Path;

/// Pillow refuses images over twice `Image.MAX_IMAGE_PIXELS` (89,478,485) as decompression
/// bombs; so do we, before decoding.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

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

/// What becomes of an alpha channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpha {
    /// Dropped: the stored colours as they are (`convert("RGB")`).
    Drop,
    /// Composited on white (`alpha_composite` over an opaque white picture).
    OnWhite,
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
pub fn load(path: &Path, alpha: Alpha) -> Result<Rgb8, ImageError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            "not_found"
        } else {
            "unreadable"
        };
        err(code, &what, format!("cannot read: {e}"))
    })?;
    decode(&bytes, &what, alpha)
}

/// Decodes an image held in memory; `what` names it in errors.
pub fn decode(bytes: &[u8], what: &str, alpha: Alpha) -> Result<Rgb8, ImageError> {
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
    Ok(to_rgb(img, alpha))
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

/// Pillow's `Image.alpha_composite(white, image)` for one channel value `c` with alpha `a`.
fn over_white(c: u8, a: u8) -> u8 {
    // AlphaComposite.c with a fully opaque white destination, PRECISION_BITS 7.
    const PRECISION_BITS: u32 = 7;
    let (c, a) = (u32::from(c), u32::from(a));
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let shifted = ((tmp >> 8) + tmp) >> 8;
    (shifted >> PRECISION_BITS) as u8
}

/// The image as 8-bit RGB: deeper samples scaled down, grey replicated, alpha as `alpha` says.
fn to_rgb(img: DynamicImage, alpha: Alpha) -> Rgb8 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if img.color().has_alpha() && alpha == Alpha::OnWhite {
        let rgba = img.into_rgba8();
        let mut data = Vec::with_capacity(w * h * 3);
        for p in rgba.pixels() {
            let [r, g, b, a] = p.0;
            data.extend_from_slice(&[over_white(r, a), over_white(g, a), over_white(b, a)]);
        }
        Rgb8::new(w, h, data)
    } else {
        Rgb8::new(w, h, img.into_rgb8().into_raw())
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
    fn alpha_is_composited_on_white_like_pillow() {
        // Opaque keeps the colour, transparent is white; values checked against Pillow 13.
        assert_eq!(over_white(10, 255), 10);
        assert_eq!(over_white(10, 0), 255);
        assert_eq!(over_white(0, 128), 127);
        assert_eq!(over_white(200, 100), 233);
        assert_eq!(over_white(128, 77), 217);
    }

    #[test]
    fn grey_and_rgba_become_rgb() {
        let g = decode(
            &png(2, 1, image::ColorType::L8, &[0, 200]),
            "g.png",
            Alpha::Drop,
        )
        .unwrap();
        assert_eq!(g.data, vec![0, 0, 0, 200, 200, 200]);
        let rgba = png(1, 1, image::ColorType::Rgba8, &[10, 20, 30, 0]);
        let a = decode(&rgba, "a.png", Alpha::OnWhite).unwrap();
        assert_eq!(a.data, vec![255, 255, 255]);
        let a = decode(&rgba, "a.png", Alpha::Drop).unwrap();
        assert_eq!(a.data, vec![10, 20, 30]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert_eq!(decode(b"", "e.png", Alpha::Drop).unwrap_err().code, "empty");
        let e = decode(b"hello, this is text", "t.png", Alpha::Drop).unwrap_err();
        assert_eq!(e.code, "not_image");
        assert!(e.message.starts_with("t.png: "), "{}", e.message);
        let full = png(8, 8, image::ColorType::Rgb8, &[7; 8 * 8 * 3]);
        let cut = decode(&full[..full.len() / 2], "cut.png", Alpha::Drop).unwrap_err();
        assert!(
            ["truncated", "corrupt_image"].contains(&cut.code),
            "{cut:?}"
        );
    }
}
