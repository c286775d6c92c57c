//! The Idefics3 / SmolVLM image processor (transformers' PIL `Idefics3ImageProcessor`, which
//! SmolVLM's equals): the picture resized so its longest edge is `size.longest_edge`, split
//! into `max_image_size` tiles row by row with a squashed global view last, each tile rescaled
//! and normalised — and the prompt text that stands for it (`<row_r_col_c>` tiles, the
//! `<global-img>` view, `image_seq_len` image tokens each).
use super::image::Rgb8;
use super::processor::Normalize;
use super::resample::{Filter, resize};
use crate::error::{Result, broken, unsupported};
use serde_json::Value;
use std::path::Path;

/// The processor's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics3Processor {
    /// `size.longest_edge`, or none when `do_resize` is off.
    pub longest_edge: Option<usize>,
    /// `max_image_size.longest_edge`: the tile side.
    pub tile: usize,
    pub split: bool,
    pub filter: Filter,
    pub normalize: Normalize,
}

/// One processed picture: its tiles (the global view last), each `tile × tile × 3` f32
/// channels last, and its grid (0 × 0: one tile, no grid).
#[derive(Debug, Clone)]
pub struct Tiles {
    pub rows: usize,
    pub cols: usize,
    pub count: usize,
    pub pixels: Vec<f32>,
}

impl Idefics3Processor {
    pub fn from_json(path: &Path, v: &Value) -> Result<Idefics3Processor> {
        let obj = v
            .as_object()
            .ok_or_else(|| broken(path, "not a JSON object"))?;
        for (k, val) in obj {
            let known = [
                "do_resize",
                "size",
                "resample",
                "do_image_splitting",
                "max_image_size",
                "do_rescale",
                "rescale_factor",
                "do_normalize",
                "image_mean",
                "image_std",
                // One prompt's pictures never need padding (only a batch's do).
                "do_pad",
                "do_convert_rgb",
                "image_processor_type",
                "processor_class",
                "video_sampling",
                "return_row_col_info",
            ];
            if known.contains(&k.as_str()) {
                continue;
            }
            if k.starts_with("do_") && val.as_bool() != Some(false) {
                return Err(unsupported(
                    path,
                    format!("the image processor setting `{k}` is not supported"),
                ));
            }
        }
        let flag = |k: &str| -> Result<bool> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(true),
                Some(Value::Bool(b)) => Ok(*b),
                Some(o) => Err(broken(path, format!("`{k}` is not true/false: {o}"))),
            }
        };
        let edge = |k: &str, default: usize| -> Result<usize> {
            match obj.get(k) {
                None => Ok(default),
                Some(s) => s
                    .get("longest_edge")
                    .and_then(Value::as_u64)
                    .filter(|&n| n > 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        broken(path, format!("`{k}` needs a positive `longest_edge`: {s}"))
                    }),
            }
        };
        let filter = match obj.get("resample") {
            None => Filter::Lanczos,
            Some(r) => r.as_u64().and_then(Filter::from_pil).ok_or_else(|| {
                broken(path, format!("`resample` {r} is not a Pillow filter (0–5)"))
            })?,
        };
        let normalize = Normalize::from_json(path, obj, ([0.5; 3], [0.5; 3]))?;
        Ok(Idefics3Processor {
            longest_edge: if flag("do_resize")? {
                Some(edge("size", 1456)?)
            } else {
                None
            },
            tile: edge("max_image_size", 364)?,
            split: flag("do_image_splitting")?,
            filter,
            normalize,
        })
    }

    /// The 8-bit tiles of `img`, in order (the global view last), and the grid.
    pub fn tiles_u8(&self, img: &Rgb8) -> (usize, usize, Vec<Rgb8>) {
        let t = self.tile;
        let img = match self.longest_edge {
            Some(l) => {
                let (w, h) = longest_edge_size(img.width, img.height, l);
                resize(img, w, h, self.filter)
            }
            None => img.clone(),
        };
        if !self.split {
            return (0, 0, vec![resize(&img, t, t, self.filter)]);
        }
        let (w, h) = (img.width, img.height);
        let ar = w as f64 / h as f64;
        let (w2, h2) = if w >= h {
            let w2 = w.div_ceil(t) * t;
            let h2 = ((w2 as f64 / ar) as usize).div_ceil(t) * t;
            (w2, h2)
        } else {
            let h2 = h.div_ceil(t) * t;
            let w2 = ((h2 as f64 * ar) as usize).div_ceil(t) * t;
            (w2, h2)
        };
        let img = resize(&img, w2, h2, self.filter);
        if h2 <= t && w2 <= t {
            return (0, 0, vec![img]);
        }
        let (rows, cols) = (h2 / t, w2 / t);
        let mut tiles = Vec::with_capacity(rows * cols + 1);
        for r in 0..rows {
            for c in 0..cols {
                let mut data = Vec::with_capacity(t * t * 3);
                for y in r * t..(r + 1) * t {
                    let start = (y * w2 + c * t) * 3;
                    data.extend_from_slice(&img.data[start..start + t * 3]);
                }
                tiles.push(Rgb8::new(t, t, data));
            }
        }
        tiles.push(resize(&img, t, t, self.filter));
        (rows, cols, tiles)
    }

    /// The processed picture: its tiles' pixel values and its grid.
    pub fn process(&self, img: &Rgb8) -> Tiles {
        let (rows, cols, tiles) = self.tiles_u8(img);
        let mut pixels = Vec::with_capacity(tiles.len() * self.tile * self.tile * 3);
        for tile in &tiles {
            self.normalize.apply(&tile.data, &mut pixels);
        }
        Tiles {
            rows,
            cols,
            count: tiles.len(),
            pixels,
        }
    }
}

/// transformers' `get_resize_output_image_size` for `longest_edge` (Idefics3): the longer side
/// becomes `l`, the other keeps the aspect ratio, made even; at most 4096 either way.
fn longest_edge_size(w: usize, h: usize, l: usize) -> (usize, usize) {
    let ar = w as f64 / h as f64;
    let (mut w2, mut h2) = if w >= h {
        let mut h2 = (l as f64 / ar) as usize;
        if h2 % 2 == 1 {
            h2 += 1;
        }
        (l, h2)
    } else {
        let mut w2 = (l as f64 * ar) as usize;
        if w2 % 2 == 1 {
            w2 += 1;
        }
        (w2, l)
    };
    const MAX: usize = 4096;
    if w2.max(h2) > MAX {
        let ar = w2 as f64 / h2 as f64;
        if w2 >= h2 {
            (w2, h2) = (MAX, (MAX as f64 / ar) as usize);
        } else {
            (w2, h2) = ((MAX as f64 * ar) as usize, MAX);
        }
    }
    (w2.max(1), h2.max(1))
}

/// The prompt text for one picture of `rows` × `cols` tiles, each (and the global view)
/// `seq_len` image tokens.
pub fn prompt_text(rows: usize, cols: usize, seq_len: usize) -> String {
    const F: &str = "<fake_token_around_image>";
    const G: &str = "<global-img>";
    let image = "<image>".repeat(seq_len);
    if rows == 0 && cols == 0 {
        return format!("{F}{G}{image}{F}");
    }
    let mut s = String::new();
    for r in 1..=rows {
        for c in 1..=cols {
            s.push_str(&format!("{F}<row_{r}_col_{c}>{image}"));
        }
        s.push('\n');
    }
    s.push_str(&format!("\n{F}{G}{image}{F}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_edge_is_set_and_the_other_made_even() {
        // Checked against transformers 5.17's Idefics3 processor.
        assert_eq!(longest_edge_size(100, 60, 2048), (2048, 1228));
        assert_eq!(longest_edge_size(700, 300, 2048), (2048, 878));
        assert_eq!(longest_edge_size(60, 100, 2048), (1228, 2048));
    }

    #[test]
    fn tiles_come_row_by_row_with_the_global_view_last() {
        let p = Idefics3Processor {
            longest_edge: Some(96),
            tile: 48,
            split: true,
            filter: Filter::Lanczos,
            normalize: Normalize {
                rescale: None,
                mean_std: None,
            },
        };
        let img = Rgb8::new(96, 40, (0..96 * 40 * 3).map(|i| (i % 251) as u8).collect());
        let (rows, cols, tiles) = p.tiles_u8(&img);
        assert_eq!((rows, cols, tiles.len()), (1, 2, 3));
        assert!(tiles.iter().all(|t| (t.width, t.height) == (48, 48)));
        assert_eq!(
            prompt_text(1, 2, 2),
            "<fake_token_around_image><row_1_col_1><image><image><fake_token_around_image><row_1_col_2><image><image>\n\n<fake_token_around_image><global-img><image><image><fake_token_around_image>"
        );
    }
}
