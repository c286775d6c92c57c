//! A model's image processor, read from `preprocessor_config.json`: what transformers' PIL
//! image processors do to a picture before the vision tower sees it — resize (Pillow's
//! filters, bit for bit), centre crop, rescale, normalise — in their order and their float
//! arithmetic, so the pixel values equal the reference's.
use super::image::Rgb8;
use super::resample::{Filter, resize};
use crate::error::{Result, broken, unsupported};
use mlx_rs::Array;
use serde_json::Value;
use std::path::Path;

/// The last two steps of every processor here: rescale (transformers: `f64(v) × factor`, stored
/// as f32), then normalise (`(x − mean) / std` in f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub rescale: Option<f64>,
    pub mean_std: Option<([f32; 3], [f32; 3])>,
}

impl Normalize {
    /// Reads `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean` and `image_std`,
    /// with `default_mean_std` when the means or deviations are not given.
    pub fn from_json(
        path: &Path,
        obj: &serde_json::Map<String, Value>,
        default_mean_std: ([f32; 3], [f32; 3]),
    ) -> Result<Normalize> {
        let flag = |k: &str| -> Result<bool> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(true),
                Some(Value::Bool(b)) => Ok(*b),
                Some(o) => Err(broken(path, format!("`{k}` is not true/false: {o}"))),
            }
        };
        let triple = |k: &str, default: [f32; 3]| -> Result<[f32; 3]> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
                Some(Value::Array(a)) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = x
                            .as_f64()
                            .ok_or_else(|| broken(path, format!("`{k}` holds a non-number")))?
                            as f32;
                    }
                    Ok(out)
                }
                Some(o) => Err(broken(path, format!("`{k}` must be three numbers: {o}"))),
            }
        };
        let rescale = if flag("do_rescale")? {
            Some(match obj.get("rescale_factor") {
                None => 1.0 / 255.0,
                Some(r) => r
                    .as_f64()
                    .ok_or_else(|| broken(path, "`rescale_factor` is not a number"))?,
            })
        } else {
            None
        };
        let mean_std = if flag("do_normalize")? {
            let std = triple("image_std", default_mean_std.1)?;
            if std.contains(&0.0) {
                return Err(broken(path, "`image_std` has a 0"));
            }
            Some((triple("image_mean", default_mean_std.0)?, std))
        } else {
            None
        };
        Ok(Normalize { rescale, mean_std })
    }

    /// Appends the values of an 8-bit RGB picture's bytes to `out`.
    pub fn apply(&self, bytes: &[u8], out: &mut Vec<f32>) {
        for (i, &v) in bytes.iter().enumerate() {
            let mut x = match self.rescale {
                Some(s) => (f64::from(v) * s) as f32,
                None => f32::from(v),
            };
            if let Some((mean, std)) = &self.mean_std {
                let c = i % 3;
                x = (x - mean[c]) / std[c];
            }
            out.push(x);
        }
    }
}

/// How the image is sized before cropping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// The shorter side becomes this, the longer keeps the aspect ratio (CLIP).
    ShortestEdge(usize),
    /// Exactly this height × width.
    Exact { height: usize, width: usize },
}

/// transformers' CLIP-style processing (LLaVA 1.5's `CLIPImageProcessor`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipProcessor {
    pub resize: Option<(Size, Filter)>,
    pub crop: Option<(usize, usize)>,
    pub normalize: Normalize,
}

/// OpenAI CLIP's mean and std, transformers' defaults for CLIP processors.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_55, 0.261_302_6, 0.275_777_1];

/// The `image_processor_type` values this processor computes (LLaVA's `do_pad` is refused
/// when on).
const CLIP_TYPES: &[&str] = &[
    "CLIPImageProcessor",
    "CLIPImageProcessorFast",
    "LlavaImageProcessor",
    "LlavaImageProcessorFast",
];

/// Keys of `preprocessor_config.json` that change nothing in the pixels (names, classes,
/// processor-level settings read elsewhere).
const INERT_KEYS: &[&str] = &[
    "image_processor_type",
    "processor_class",
    "feature_extractor_type",
    "do_convert_rgb",
    "crop_pct",
    "use_square_size",
    "patch_size",
    "vision_feature_select_strategy",
    "num_additional_image_tokens",
    "image_seq_length",
    "_processor_class",
    "auto_map",
];

impl ClipProcessor {
    /// Builds the processor from the parsed settings; `path` names them in errors. A setting
    /// that would change the pixels in a way not implemented here is refused, never ignored.
    pub fn from_json(path: &Path, v: &Value) -> Result<ClipProcessor> {
        let obj = v
            .as_object()
            .ok_or_else(|| broken(path, "not a JSON object"))?;
        // The processors whose defaults and steps these are; SigLIP's (no crop, 0.5 mean/std)
        // and others differ.
        if let Some(t) = obj.get("image_processor_type").and_then(Value::as_str)
            && !CLIP_TYPES.contains(&t)
        {
            return Err(unsupported(
                path,
                format!(
                    "image processor `{t}` is not supported for this model ({})",
                    CLIP_TYPES.join(", ")
                ),
            ));
        }
        let known = [
            "do_resize",
            "size",
            "resample",
            "do_center_crop",
            "crop_size",
            "do_rescale",
            "rescale_factor",
            "do_normalize",
            "image_mean",
            "image_std",
        ];
        for (k, val) in obj {
            if known.contains(&k.as_str()) || INERT_KEYS.contains(&k.as_str()) {
                continue;
            }
            // Other switches that are off change nothing; one that is on would.
            if k.starts_with("do_") && val.as_bool() == Some(false) {
                continue;
            }
            if k.starts_with("do_") || matches!(k.as_str(), "image_grid_pinpoints") {
                return Err(unsupported(
                    path,
                    format!("the image processor setting `{k}` is not supported"),
                ));
            }
        }
        let flag = |k: &str, default: bool| -> Result<bool> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(broken(path, format!("`{k}` is not true/false: {other}"))),
            }
        };
        let int = |val: &Value, what: &str| -> Result<usize> {
            val.as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| broken(path, format!("`{what}` is not a positive whole number")))
        };
        let resize = if flag("do_resize", true)? {
            let size = match obj.get("size") {
                None => Size::ShortestEdge(224),
                Some(Value::Number(_)) => Size::ShortestEdge(int(&obj["size"], "size")?),
                Some(Value::Object(s)) => {
                    if let Some(e) = s.get("shortest_edge") {
                        if s.len() > 1 {
                            return Err(unsupported(
                                path,
                                format!(
                                    "`size` {} is not supported (shortest_edge alone, or height and width)",
                                    obj["size"]
                                ),
                            ));
                        }
                        Size::ShortestEdge(int(e, "size.shortest_edge")?)
                    } else if let (Some(h), Some(w)) = (s.get("height"), s.get("width")) {
                        Size::Exact {
                            height: int(h, "size.height")?,
                            width: int(w, "size.width")?,
                        }
                    } else {
                        return Err(unsupported(
                            path,
                            format!("`size` {} is not supported", obj["size"]),
                        ));
                    }
                }
                Some(other) => return Err(broken(path, format!("`size` is not valid: {other}"))),
            };
            let filter = match obj.get("resample") {
                None => Filter::Bicubic,
                Some(r) => r.as_u64().and_then(Filter::from_pil).ok_or_else(|| {
                    broken(path, format!("`resample` {r} is not a Pillow filter (0–5)"))
                })?,
            };
            Some((size, filter))
        } else {
            None
        };
        let crop = if flag("do_center_crop", true)? {
            Some(match obj.get("crop_size") {
                None => (224, 224),
                Some(Value::Number(_)) => {
                    let n = int(&obj["crop_size"], "crop_size")?;
                    (n, n)
                }
                Some(Value::Object(s)) => match (s.get("height"), s.get("width")) {
                    (Some(h), Some(w)) => (int(h, "crop_size.height")?, int(w, "crop_size.width")?),
                    _ => {
                        return Err(broken(path, "`crop_size` needs height and width"));
                    }
                },
                Some(other) => {
                    return Err(broken(path, format!("`crop_size` is not valid: {other}")));
                }
            })
        } else {
            None
        };
        let normalize = Normalize::from_json(path, obj, (CLIP_MEAN, CLIP_STD))?;
        Ok(ClipProcessor {
            resize,
            crop,
            normalize,
        })
    }

    /// The size `w` × `h` is resized to before the crop (itself without a resize).
    pub fn resized_size(&self, w: usize, h: usize) -> (usize, usize) {
        match self.resize {
            Some((size, _)) => resized(size, w, h),
            None => (w, h),
        }
    }

    /// The pixel values of `img`, channels last: `[height, width, 3]` as f32.
    pub fn pixels(&self, img: &Rgb8) -> (usize, usize, Vec<f32>) {
        let mut img = match self.resize {
            Some((size, filter)) => {
                let (w, h) = resized(size, img.width, img.height);
                resize(img, w, h, filter)
            }
            None => img.clone(),
        };
        if let Some((ch, cw)) = self.crop {
            img = center_crop(&img, ch, cw);
        }
        let mut out = Vec::with_capacity(img.data.len());
        self.normalize.apply(&img.data, &mut out);
        (img.height, img.width, out)
    }

    /// [`ClipProcessor::pixels`] as the vision tower's input `[1, height, width, 3]`.
    pub fn pixel_array(&self, img: &Rgb8) -> Array {
        let (h, w, v) = self.pixels(img);
        Array::from_slice(&v, &[1, h as i32, w as i32, 3])
    }
}

/// transformers' `get_resize_output_image_size` (without `max_size`) as (width, height).
fn resized(size: Size, w: usize, h: usize) -> (usize, usize) {
    match size {
        Size::Exact { height, width } => (width, height),
        Size::ShortestEdge(s) => {
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = (s as f64 * long as f64 / short as f64) as usize;
            if w <= h { (s, new_long) } else { (new_long, s) }
        }
    }
}

/// transformers' `center_crop`: the middle `ch` × `cw` (rounded up and left), padded with
/// zeros around an image smaller than that.
fn center_crop(img: &Rgb8, ch: usize, cw: usize) -> Rgb8 {
    let (h, w) = (img.height as i64, img.width as i64);
    let top = (h - ch as i64) / 2;
    let left = (w - cw as i64) / 2;
    // numpy floor division for a smaller image: (h - ch) // 2 rounds toward -inf.
    let top = if h < ch as i64 {
        (h - ch as i64).div_euclid(2)
    } else {
        top
    };
    let left = if w < cw as i64 {
        (w - cw as i64).div_euclid(2)
    } else {
        left
    };
    let mut out = vec![0u8; ch * cw * 3];
    for y in 0..ch as i64 {
        let sy = y + top;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..cw as i64 {
            let sx = x + left;
            if sx < 0 || sx >= w {
                continue;
            }
            let s = ((sy * w + sx) * 3) as usize;
            let d = ((y * cw as i64 + x) * 3) as usize;
            out[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    Rgb8::new(cw, ch, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio_rounding_down() {
        assert_eq!(resized(Size::ShortestEdge(336), 640, 480), (448, 336));
        assert_eq!(resized(Size::ShortestEdge(336), 480, 641), (336, 448));
        assert_eq!(resized(Size::ShortestEdge(10), 10, 10), (10, 10));
    }

    #[test]
    fn the_centre_crop_takes_the_middle() {
        let img = Rgb8::new(4, 1, vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
        let c = center_crop(&img, 1, 2);
        assert_eq!(c.data, vec![2, 2, 2, 3, 3, 3]);
    }

    #[test]
    fn settings_that_would_change_pixels_unseen_are_refused() {
        let p = Path::new("preprocessor_config.json");
        let e =
            ClipProcessor::from_json(p, &json!({"image_processor_type": "SiglipImageProcessor"}))
                .unwrap_err();
        assert!(e.to_string().contains("SiglipImageProcessor"), "{e}");
        let ok = ClipProcessor::from_json(
            p,
            &json!({"crop_size": 336, "size": {"shortest_edge": 336}, "do_pad": false,
                "image_processor_type": "CLIPImageProcessor"}),
        )
        .unwrap();
        assert_eq!(ok.crop, Some((336, 336)));
        assert_eq!(ok.resize, Some((Size::ShortestEdge(336), Filter::Bicubic)));
        let e = ClipProcessor::from_json(p, &json!({"do_pad": true})).unwrap_err();
        assert!(e.to_string().contains("do_pad"), "{e}");
        let e = ClipProcessor::from_json(p, &json!({"resample": 9})).unwrap_err();
        assert!(e.to_string().contains("resample"), "{e}");
    }
}
