//! The Qwen2-VL image processor (mlx-vlm's numpy port, `Qwen3VLImageProcessor`, which its
//! `qwen2_vl` uses): the picture resized with Pillow's bicubic filter to the nearest multiple of
//! patch × merge on each side, its area kept between `min_pixels` and `max_pixels`
//! (`smart_resize`); rescaled and normalised in f32; cut into patches, merge windows row by row,
//! each patch's values channel, frame (the picture twice), row, column.
use super::image::Rgb8;
use super::processor::Normalize;
use super::resample::{Filter, resize};
use crate::error::{Result, broken};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlProcessor {
    pub patch: usize,
    pub temporal: usize,
    pub merge: usize,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub rescale: Option<f32>,
    pub mean_std: Option<([f32; 3], [f32; 3])>,
}

/// One processed picture: `[patches, 3 × frames × patch × patch]` values and its grid.
#[derive(Debug, Clone)]
pub struct Patches {
    pub values: Vec<f32>,
    pub grid: [usize; 3],
}

impl Qwen2VlProcessor {
    /// From `preprocessor_config.json` (with `processor_config.json`'s `image_processor` over
    /// it), the keys mlx-vlm reads; `size.shortest_edge` / `longest_edge` are the pixel bounds
    /// unless `min_pixels` / `max_pixels` are given.
    pub fn from_json(path: &Path, v: &Value) -> Result<Qwen2VlProcessor> {
        let num = |k: &str| -> Result<Option<f64>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| broken(path, format!("`{k}` is not a number"))),
            }
        };
        let whole = |k: &str, default: u64| -> Result<u64> {
            match num(k)? {
                None => Ok(default),
                Some(x) if x >= 1.0 && x.fract() == 0.0 => Ok(x as u64),
                Some(x) => Err(broken(
                    path,
                    format!("`{k}` {x} is not a positive whole number"),
                )),
            }
        };
        let size = v.get("size");
        let edge = |k: &str| size.and_then(|s| s.get(k)).and_then(Value::as_u64);
        let mut min_pixels = edge("shortest_edge").unwrap_or(56 * 56);
        let mut max_pixels = edge("longest_edge").unwrap_or(14 * 14 * 4 * 1280);
        min_pixels = whole("min_pixels", min_pixels)?;
        max_pixels = whole("max_pixels", max_pixels)?;
        if min_pixels > max_pixels {
            return Err(broken(
                path,
                format!("min_pixels {min_pixels} is over max_pixels {max_pixels}"),
            ));
        }
        // numpy's defaults: mean and std 0.5 where the file gives none.
        let obj = v
            .as_object()
            .ok_or_else(|| broken(path, "not a JSON object"))?;
        let n = Normalize::from_json(path, obj, ([0.5; 3], [0.5; 3]))?;
        Ok(Qwen2VlProcessor {
            patch: whole("patch_size", 14)? as usize,
            temporal: whole("temporal_patch_size", 2)? as usize,
            merge: whole("merge_size", 2)? as usize,
            min_pixels,
            max_pixels,
            rescale: n.rescale.map(|r| r as f32),
            mean_std: n.mean_std,
        })
    }

    /// `smart_resize`: the size (width, height) a `w` × `h` picture is resized to, or why it
    /// cannot be (an aspect ratio over 200, as the reference refuses).
    pub fn resized_size(&self, w: usize, h: usize) -> std::result::Result<(usize, usize), String> {
        let factor = (self.patch * self.merge) as f64;
        let (hf, wf) = (h as f64, w as f64);
        if hf.max(wf) / hf.min(wf) > 200.0 {
            return Err(format!(
                "{w}×{h} pixels: the aspect ratio must be under 200 (the model's processor refuses it)"
            ));
        }
        let mut hb = (hf / factor).round_ties_even() * factor;
        let mut wb = (wf / factor).round_ties_even() * factor;
        if hb * wb > self.max_pixels as f64 {
            let beta = ((hf * wf) / self.max_pixels as f64).sqrt();
            hb = factor.max((hf / beta / factor).floor() * factor);
            wb = factor.max((wf / beta / factor).floor() * factor);
        } else if hb * wb < self.min_pixels as f64 {
            let beta = (self.min_pixels as f64 / (hf * wf)).sqrt();
            hb = (hf * beta / factor).ceil() * factor;
            wb = (wf * beta / factor).ceil() * factor;
        }
        Ok((wb as usize, hb as usize))
    }

    /// The picture as the model sees it, still 8-bit: resized (bicubic) to [`Self::resized_size`].
    pub fn resized(&self, img: &Rgb8) -> std::result::Result<Rgb8, String> {
        let (w, h) = self.resized_size(img.width, img.height)?;
        if (w as u64) * (h as u64) > super::image::MAX_PIXELS {
            return Err(format!(
                "{}×{} pixels would be resized to {w}×{h}",
                img.width, img.height
            ));
        }
        Ok(if (w, h) == (img.width, img.height) {
            img.clone()
        } else {
            resize(img, w, h, Filter::Bicubic)
        })
    }

    /// The picture's patches.
    pub fn process(&self, img: &Rgb8) -> std::result::Result<Patches, String> {
        let r = self.resized(img)?;
        let (w, h) = (r.width, r.height);
        // f32(v) · f32(factor), then (x − mean) / std, as numpy computes them in f32.
        let value = |i: usize, c: usize| -> f32 {
            let mut x = f32::from(r.data[i * 3 + c]);
            if let Some(s) = self.rescale {
                x *= s;
            }
            if let Some((mean, std)) = &self.mean_std {
                x = (x - mean[c]) / std[c];
            }
            x
        };
        let (p, m, t) = (self.patch, self.merge, self.temporal);
        let (gh, gw) = (h / p, w / p);
        let mut values = Vec::with_capacity(gh * gw * 3 * t * p * p);
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for c in 0..3 {
                            for _ in 0..t {
                                for y in 0..p {
                                    for x in 0..p {
                                        values.push(value((y0 + y) * w + x0 + x, c));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Patches {
            values,
            grid: [1, gh, gw],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn processor(v: Value) -> Qwen2VlProcessor {
        Qwen2VlProcessor::from_json(Path::new("preprocessor_config.json"), &v).unwrap()
    }

    /// Hugging Face's `smart_resize` on Qwen2-VL's defaults (factor 28).
    #[test]
    fn smart_resize_rounds_and_bounds_as_the_reference() {
        let p = processor(json!({"min_pixels": 3136, "max_pixels": 12845056}));
        assert_eq!(p.resized_size(640, 480), Ok((644, 476)));
        // 42 / 28 = 1.5 rounds to even (2), 70 / 28 = 2.5 to even (2).
        assert_eq!(p.resized_size(42, 70), Ok((56, 56)));
        let small = processor(json!({"min_pixels": 3136, "max_pixels": 6272}));
        // 100 × 100 → 112 × 112 = 12544 > 6272: β = √(10000/6272), floor to 56 × 56.
        assert_eq!(small.resized_size(100, 100), Ok((56, 56)));
        // 10 × 20 → rounds to 0 × 28: under min, scaled up by √(3136/200) and ceiled.
        assert_eq!(p.resized_size(10, 20), Ok((56, 84)));
        assert!(p.resized_size(1, 201).is_err());
        let sized = processor(json!({"size": {"shortest_edge": 100, "longest_edge": 200}}));
        assert_eq!((sized.min_pixels, sized.max_pixels), (100, 200));
    }

    /// Patches run merge window by merge window; a patch holds each channel's rows for both
    /// frames.
    #[test]
    fn patches_are_in_the_processors_order() {
        let p = processor(
            json!({"patch_size": 1, "merge_size": 2, "temporal_patch_size": 2,
            "do_rescale": false, "do_normalize": false, "min_pixels": 1, "max_pixels": 100}),
        );
        // 4 × 2 picture, R = x + 10·y, G = 100 + R, B = 200 + R.
        let mut data = vec![];
        for y in 0..2u8 {
            for x in 0..4u8 {
                let r = x + 10 * y;
                data.extend([r, 100 + r, 200 + r]);
            }
        }
        let out = p.process(&Rgb8::new(4, 2, data)).unwrap();
        assert_eq!(out.grid, [1, 2, 4]);
        let firsts: Vec<f32> = out.values.chunks(6).map(|c| c[0]).collect();
        assert_eq!(firsts, [0.0, 1.0, 10.0, 11.0, 2.0, 3.0, 12.0, 13.0]);
        assert_eq!(&out.values[..6], &[0.0, 0.0, 100.0, 100.0, 200.0, 200.0]);
    }
}
