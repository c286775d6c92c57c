//! Pillow's `Image.resize` on 8-bit RGB, bit for bit (`libImaging/Resample.c`): separable
//! convolution with the filter stretched by the scale when shrinking, coefficients in 22-bit
//! fixed point, a horizontal and a vertical pass (in Pillow 13's order), each rounded to 8 bits. The reference
//! processors resize with Pillow, so anything else would feed the model different pixels.
use super::image::Rgb8;

/// Pillow's resampling filters, by the numbers `preprocessor_config.json` uses for `resample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    /// `PIL.Image.Resampling` values: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box,
    /// 5 hamming.
    pub fn from_pil(n: u64) -> Option<Filter> {
        Some(match n {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if -3.0 < x && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output position: the first input index, the count, and fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size` → `out_size`.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..n {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs { ksize, bounds, k }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes `img` to `width` × `height` exactly as Pillow's `Image.resize(…, resample)` does
/// for an RGB image (no `box`, no `reducing_gap`).
pub fn resize(img: &Rgb8, width: usize, height: usize, filter: Filter) -> Rgb8 {
    assert!(width > 0 && height > 0, "resize to an empty image");
    if (width, height) == (img.width, img.height) {
        return img.clone();
    }
    if filter == Filter::Nearest {
        return nearest(img, width, height);
    }
    let (need_h, need_v) = (width != img.width, height != img.height);
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice what
    // the width shrinks by (fewer rows to filter horizontally); each pass rounds to 8 bits, so
    // the order shows in the output.
    let vertical_first =
        height < img.height && (img.height - height) as i64 > 2 * (img.width as i64 - width as i64);
    let (hc, vc) = (
        need_h.then(|| coeffs(img.width, width, filter)),
        need_v.then(|| coeffs(img.height, height, filter)),
    );
    let mut cur = img.clone();
    if vertical_first {
        if let Some(c) = &vc {
            cur = vertical(&cur, height, c);
        }
        if let Some(c) = &hc {
            cur = horizontal(&cur, width, c);
        }
    } else {
        if let Some(c) = &hc {
            cur = horizontal(&cur, width, c);
        }
        if let Some(c) = &vc {
            cur = vertical(&cur, height, c);
        }
    }
    cur
}

fn horizontal(img: &Rgb8, width: usize, c: &Coeffs) -> Rgb8 {
    let mut out = vec![0u8; width * img.height * 3];
    let half = 1i64 << (PRECISION_BITS - 1);
    for y in 0..img.height {
        let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
        for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
            let k = &c.k[xx * c.ksize..xx * c.ksize + n];
            let mut s = [half; 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                for ch in 0..3 {
                    s[ch] += i64::from(p[ch]) * i64::from(kx);
                }
            }
            let o = (y * width + xx) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(s[ch]);
            }
        }
    }
    Rgb8::new(width, img.height, out)
}

fn vertical(img: &Rgb8, height: usize, c: &Coeffs) -> Rgb8 {
    let stride = img.width * 3;
    let mut out = vec![0u8; stride * height];
    let half = 1i64 << (PRECISION_BITS - 1);
    for (yy, &(ymin, n)) in c.bounds.iter().enumerate() {
        let k = &c.k[yy * c.ksize..yy * c.ksize + n];
        for i in 0..stride {
            let mut s = half;
            for (y, &ky) in k.iter().enumerate() {
                s += i64::from(img.data[(ymin + y) * stride + i]) * i64::from(ky);
            }
            out[yy * stride + i] = clip8(s);
        }
    }
    Rgb8::new(img.width, height, out)
}

/// Pillow's nearest-neighbour resize: the source pixel under each output pixel's centre.
fn nearest(img: &Rgb8, width: usize, height: usize) -> Rgb8 {
    let (sx, sy) = (
        img.width as f64 / width as f64,
        img.height as f64 / height as f64,
    );
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let iy = (((y as f64 + 0.5) * sy) as usize).min(img.height - 1);
        for x in 0..width {
            let ix = (((x as f64 + 0.5) * sx) as usize).min(img.width - 1);
            let o = (iy * img.width + ix) * 3;
            out.extend_from_slice(&img.data[o..o + 3]);
        }
    }
    Rgb8::new(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Rgb8 {
        let data = (0..w * h * 3)
            .map(|i| ((i * 37 + i / 7 * 11) % 256) as u8)
            .collect();
        Rgb8::new(w, h, data)
    }

    #[test]
    fn the_same_size_is_a_copy_and_a_flat_image_stays_flat() {
        let img = ramp(5, 4);
        assert_eq!(resize(&img, 5, 4, Filter::Bicubic), img);
        let flat = Rgb8::new(6, 6, vec![77; 6 * 6 * 3]);
        for f in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
            Filter::Nearest,
        ] {
            let r = resize(&flat, 4, 9, f);
            assert_eq!((r.width, r.height), (4, 9));
            assert!(r.data.iter().all(|&v| v == 77), "{f:?}");
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 7), (7, 100), (336, 336 * 2), (640, 336)] {
            let c = coeffs(i, o, Filter::Bicubic);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let sum: i64 = c.k[xx * c.ksize..xx * c.ksize + n]
                    .iter()
                    .map(|&k| i64::from(k))
                    .sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}→{o}");
            }
        }
    }
}
