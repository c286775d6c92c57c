//! Vision-language models: images read and processed as the reference processors do, a
//! vision tower's features put in place of the prompt's image tokens, then the text model's
//! generation loop from those embeddings (mlxk-see, and the server's image messages).
pub mod idefics3;
pub mod image;
pub mod processor;
pub mod qwen2_vl;
pub mod resample;

use crate::config::ModelConfig;
use crate::error::{InferError, Result, broken, unsupported};
use crate::layers::KvCache;
use crate::loader::{self, TextModel};
use crate::models::idefics3::{self as idefics3_model, Idefics3};
use crate::models::llava::{self, Llava};
use crate::models::qwen2_vl::{self as qwen2_vl_model, Qwen2Vl};
use crate::tokenizer::TextTokenizer;
use crate::weights::{self, DtypePolicy, WeightFormat, Weights};
use idefics3::Idefics3Processor;
use image::Rgb8;
use mlx_rs::Array;
use processor::ClipProcessor;
use qwen2_vl::Qwen2VlProcessor;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The vision `model_type` values this build runs: the gate's list
/// ([`mlxk::policy::VISION_MODEL_TYPES`]), which the tests hold equal to what is built here.
pub fn supported_model_types() -> &'static [&'static str] {
    mlxk::policy::VISION_MODEL_TYPES
}

/// The vision half of a loaded model.
#[derive(Debug)]
pub enum VisionPart {
    Llava(Llava),
    Idefics3(Idefics3),
    Qwen2Vl(Qwen2Vl),
}

/// A model's image processor.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageProcessor {
    Clip(ClipProcessor),
    Idefics3(Idefics3Processor),
    Qwen2Vl(Qwen2VlProcessor),
}

/// One picture, processed: the tower's input for each of its tiles `[n, H, W, 3]` and the grid
/// the prompt describes (0 × 0 for a single tile) — or, for Qwen2-VL, its patches
/// `[patches, values]` and their grid (frames, rows, columns of patches).
pub struct Prepared {
    pub pixels: Array,
    pub tiles: usize,
    pub rows: usize,
    pub cols: usize,
    pub grid: Option<qwen2_vl_model::Grid>,
}

/// A vision-language model ready to run: the text model (decoder, tokenizer, facts), the
/// vision half and the image processor.
pub struct VisionModel {
    pub text: TextModel,
    pub vision: VisionPart,
    pub processor: ImageProcessor,
    /// The root `model_type` (`llava`, `smolvlm`, …).
    pub model_type: String,
    /// Idefics3's image tokens per tile as the processor writes them (`image_seq_len`).
    image_seq_len: usize,
}

/// A piece of a message's content: text, or the conversation's next picture.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    Picture,
}

/// One message of a conversation with a vision model: its role, its content in order, and
/// what to call it in an error.
#[derive(Debug, Clone)]
pub struct VisionMessage {
    pub role: String,
    pub parts: Vec<Segment>,
    pub what: String,
}

/// The image token's text in the chat template's output (Qwen2-VL's is [`QWEN_IMAGE_TOKEN`]).
const IMAGE_TOKEN: &str = "<image>";
const QWEN_IMAGE_TOKEN: &str = "<|image_pad|>";

impl VisionModel {
    pub fn image_token(&self) -> u32 {
        match &self.vision {
            VisionPart::Llava(l) => l.image_token,
            VisionPart::Idefics3(m) => m.image_token,
            VisionPart::Qwen2Vl(m) => m.tokens.image,
        }
    }

    /// The vision half in one line (for `--verbose`).
    pub fn describe_tower(&self) -> String {
        let (t, per) = match &self.vision {
            VisionPart::Llava(l) => (&l.tower.config, l.tokens_per_image()),
            VisionPart::Idefics3(i) => (&i.tower.config, i.tokens_per_tile()),
            VisionPart::Qwen2Vl(m) => {
                let c = &m.config;
                let kind = if c.windows.is_some() {
                    "Qwen2.5-VL"
                } else {
                    "Qwen2-VL"
                };
                return format!(
                    "a {kind} tower ({} layers, hidden {}, patch {}, {}×{} patches a token), image tokens by picture size",
                    c.depth, c.embed_dim, c.patch_size, c.merge_size, c.merge_size
                );
            }
        };
        format!(
            "a {:?} tower ({} layers, hidden {}, {}×{} pictures or tiles, patch {}), {per} image tokens each",
            t.kind, t.num_layers, t.hidden_size, t.image_size, t.image_size, t.patch_size
        )
    }

    /// The image token's text.
    fn image_marker(&self) -> &'static str {
        match &self.vision {
            VisionPart::Qwen2Vl(_) => QWEN_IMAGE_TOKEN,
            _ => IMAGE_TOKEN,
        }
    }

    /// Whether the model's chat messages list their images before their text (mlx-vlm's
    /// message format for the architecture).
    pub fn images_first(&self) -> bool {
        match &self.vision {
            VisionPart::Llava(_) => false,
            VisionPart::Idefics3(_) => true,
            // mlx-vlm: Qwen2-VL lists its pictures after the text, Qwen2.5-VL before.
            VisionPart::Qwen2Vl(m) => m.config.windows.is_some(),
        }
    }

    /// The tower's input for `img`; `Err` (why, for people) when the processor would make a
    /// picture too large to hold (a very long and thin one, resized by its short side).
    pub fn prepare(&self, img: &Rgb8) -> std::result::Result<Prepared, String> {
        match &self.processor {
            ImageProcessor::Clip(p) => {
                let (w, h) = p.resized_size(img.width, img.height);
                if (w as u64) * (h as u64) > image::MAX_PIXELS {
                    return Err(format!(
                        "{}×{} pixels would be resized to {w}×{h} before the crop; crop it closer to square first",
                        img.width, img.height
                    ));
                }
                Ok(Prepared {
                    pixels: p.pixel_array(img),
                    tiles: 1,
                    rows: 0,
                    cols: 0,
                    grid: None,
                })
            }
            ImageProcessor::Idefics3(p) => {
                let t = p.process(img);
                let side = p.tile as i32;
                Ok(Prepared {
                    pixels: Array::from_slice(&t.pixels, &[t.count as i32, side, side, 3]),
                    tiles: t.count,
                    rows: t.rows,
                    cols: t.cols,
                    grid: None,
                })
            }
            ImageProcessor::Qwen2Vl(p) => {
                if let VisionPart::Qwen2Vl(m) = &self.vision {
                    let (w, h) = p.resized_size(img.width, img.height)?;
                    let patches = (w / p.patch) as u64 * (h / p.patch) as u64;
                    // The tower's attention holds each head's patches × patches scores (and
                    // their softmax) at once: refuse a picture whose scores would not fit.
                    let bytes = 2 * 4 * m.config.num_heads as u64 * patches * patches;
                    let room = mlxk::sys::SysRoot::from_env()
                        .memory()
                        .map_or(16 << 30, |s| s.total_bytes / 2);
                    if bytes > room {
                        return Err(format!(
                            "{}×{} pixels would be resized to {w}×{h}, {patches} patches, whose attention needs {:.1} GB; resize the picture or lower max_pixels in preprocessor_config.json",
                            img.width,
                            img.height,
                            bytes as f64 / 1e9
                        ));
                    }
                }
                let t = p.process(img)?;
                let [_, rows, cols] = t.grid;
                let n = (t.grid.iter().product::<usize>()) as i32;
                Ok(Prepared {
                    pixels: Array::from_slice(&t.values, &[n, t.values.len() as i32 / n]),
                    tiles: 1,
                    rows,
                    cols,
                    grid: Some(t.grid),
                })
            }
        }
    }

    /// Image tokens `p` stands for in the prompt.
    pub fn image_tokens(&self, p: &Prepared) -> usize {
        match &self.vision {
            VisionPart::Llava(l) => p.tiles * l.tokens_per_image(),
            VisionPart::Idefics3(m) => p.tiles * m.tokens_per_tile(),
            VisionPart::Qwen2Vl(m) => {
                p.grid.map_or(0, |g| g.iter().product::<usize>()) / m.merge_area()
            }
        }
    }

    /// The text that stands for a picture in the prompt.
    fn image_text(&self, p: &Prepared) -> String {
        match &self.vision {
            VisionPart::Llava(_) | VisionPart::Qwen2Vl(_) => {
                self.image_marker().repeat(self.image_tokens(p))
            }
            VisionPart::Idefics3(_) => idefics3::prompt_text(p.rows, p.cols, self.image_seq_len),
        }
    }

    /// A prompt with its pictures made ready to generate from: its embeddings with the
    /// pictures' features in place (evaluated; none without pictures) and fresh caches.
    pub fn ready(&self, ids: &[u32], images: &[Prepared]) -> Result<(Option<Array>, Vec<KvCache>)> {
        let embeddings = if images.is_empty() {
            None
        } else {
            let e = self.embeddings(ids, images)?;
            e.eval()?;
            Some(e)
        };
        Ok((embeddings, self.new_caches(ids, images)?))
    }

    /// Fresh caches for a prompt of `ids` with `images`: Qwen2-VL's carry the prompt's M-RoPE
    /// positions (a text-only prompt's are the plain ones, delta 0).
    pub fn new_caches(&self, ids: &[u32], images: &[Prepared]) -> Result<Vec<KvCache>> {
        let mut caches = self.text.decoder.new_cache();
        if let VisionPart::Qwen2Vl(m) = &self.vision {
            let grids: Vec<_> = images.iter().filter_map(|p| p.grid).collect();
            let positions = std::sync::Arc::new(m.positions(ids, &grids)?);
            for c in &mut caches {
                c.positions = Some(positions.clone());
            }
        }
        Ok(caches)
    }

    /// The prompt's embeddings with the pictures' features in place of its image tokens.
    pub fn embeddings(&self, ids: &[u32], images: &[Prepared]) -> Result<Array> {
        let x = Array::from_slice(ids, &[1, ids.len() as i32]);
        let text = self.text.decoder.embed.forward(&x)?;
        let pixels: Vec<&Array> = images.iter().map(|p| &p.pixels).collect();
        let pixels = mlx_rs::ops::concatenate(&pixels, 0)?;
        let features = match &self.vision {
            VisionPart::Llava(l) => l.image_features(&pixels)?,
            VisionPart::Idefics3(m) => m.image_features(&pixels)?,
            VisionPart::Qwen2Vl(m) => {
                let grids: Vec<_> = images.iter().filter_map(|p| p.grid).collect();
                m.image_features(&pixels, &grids)?
            }
        };
        llava::merge_features(&text, ids, self.image_token(), &features)
    }

    /// Renders the chat for `user` text with `images` (and a `system` message), puts each
    /// picture's text in place of its image token, and encodes it as mlx-vlm's processor does
    /// (the tokenizer's special tokens added).
    pub fn prompt_ids(
        &self,
        system: Option<&str>,
        user: &str,
        images: &[Prepared],
    ) -> Result<Vec<u32>> {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(VisionMessage {
                role: "system".into(),
                parts: vec![Segment::Text(s.into())],
                what: "the system message".into(),
            });
        }
        // mlx-vlm's message format for the architecture: pictures before or after the text.
        let mut parts = vec![Segment::Text(user.into())];
        let pictures = vec![Segment::Picture; images.len()];
        if self.images_first() {
            parts.splice(0..0, pictures);
        } else {
            parts.extend(pictures);
        }
        messages.push(VisionMessage {
            role: "user".into(),
            parts,
            what: "the prompt".into(),
        });
        self.chat_ids(&messages, images)
    }

    /// [`VisionModel::prompt_ids`] of a conversation: each message's parts in their order, its
    /// pictures taken from `images` in turn.
    pub fn chat_ids(&self, chat: &[VisionMessage], images: &[Prepared]) -> Result<Vec<u32>> {
        let tok: &TextTokenizer = &self.text.tokenizer;
        let marker = self.image_marker();
        let mut placed = 0;
        for m in chat {
            for p in &m.parts {
                match p {
                    Segment::Text(t) if t.contains(marker) => {
                        return Err(InferError::Options(format!(
                            "{} contains {marker}, which marks where a picture goes; give pictures as files",
                            m.what
                        )));
                    }
                    Segment::Text(_) => {}
                    Segment::Picture => placed += 1,
                }
            }
        }
        if placed != images.len() {
            return Err(InferError::Options(format!(
                "the messages place {placed} pictures for {} given",
                images.len()
            )));
        }
        if tok.chat_template.is_none() {
            return Err(InferError::Options(
                "the model has no chat template (chat_template.json, chat_template.jinja or tokenizer_config.json), and its pictures need one to find their place".into(),
            ));
        }
        // mlx-vlm's message parts: text under both keys, images as {"type": "image"}.
        let part = |t: &str| json!({"type": "text", "text": t, "content": t});
        let mut messages = Vec::new();
        for m in chat {
            let content: Vec<Value> = m
                .parts
                .iter()
                .map(|p| match p {
                    Segment::Text(t) => part(t),
                    Segment::Picture => json!({"type": "image"}),
                })
                .collect();
            messages.push(json!({"role": m.role, "content": content}));
        }
        let text = tok.render_chat_values(&messages, Some(false))?;
        let pieces: Vec<&str> = text.split(marker).collect();
        if pieces.len() != images.len() + 1 {
            return Err(InferError::Options(format!(
                "the chat template wrote {} image tokens for {} images",
                pieces.len() - 1,
                images.len()
            )));
        }
        let mut expanded = String::from(pieces[0]);
        for (p, rest) in images.iter().zip(&pieces[1..]) {
            expanded.push_str(&self.image_text(p));
            expanded.push_str(rest);
        }
        let ids = tok.encode(&expanded, true)?;
        if ids.last() == Some(&self.image_token()) {
            // The last prompt position is decoded from its id, not its embedding.
            return Err(InferError::Options(
                "the chat template ends the prompt with a picture; its features would be lost"
                    .into(),
            ));
        }
        Ok(ids)
    }
}

/// The checkpoint's tensors split into the text model's (named as a text checkpoint names
/// them) and the rest; both the classic (`language_model.model.…`) and transformers 5
/// (`model.language_model.…`) layouts are read.
fn split_weights(map: HashMap<String, Array>) -> (HashMap<String, Array>, HashMap<String, Array>) {
    let mut text = HashMap::new();
    let mut rest = HashMap::new();
    for (k, v) in map {
        // `language_model.model.…` (LLaVA) and `language_model.layers.…` (mlx-vlm's Idefics3)
        // both become the text checkpoint's `model.…`; heads stay `lm_head.…`.
        if k.starts_with("language_model.") {
            text.insert(llava::text_layer_name(&k), v);
        } else if let Some(t) = k
            .strip_prefix("model.language_model.")
            .or_else(|| k.strip_prefix("model.text_model."))
        {
            text.insert(format!("model.{t}"), v);
        } else if k.starts_with("lm_head.") {
            text.insert(k, v);
        } else if let Some(t) = k.strip_prefix("model.") {
            rest.insert(t.to_string(), v);
        } else {
            rest.insert(k, v);
        }
    }
    (text, rest)
}

/// Loads the vision-language model at `path` under `policy`.
pub fn load(path: &Path, policy: DtypePolicy) -> Result<VisionModel> {
    let start = Instant::now();
    let cfg_path = path.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| broken(&cfg_path, format!("cannot read: {e}")))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| broken(&cfg_path, format!("not valid JSON: {e}")))?;
    let model_type = root
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| broken(&cfg_path, "`model_type` is missing"))?
        .to_string();
    if !supported_model_types().contains(&model_type.as_str()) {
        return Err(unsupported(
            &cfg_path,
            format!(
                "vision model_type `{model_type}` is not supported; supported: {}",
                supported_model_types().join(", ")
            ),
        ));
    }
    let is_idefics3 = idefics3_model::MODEL_TYPES.contains(&model_type.as_str());
    let is_qwen = qwen2_vl_model::MODEL_TYPES.contains(&model_type.as_str());
    let text_raw = if is_idefics3 {
        idefics3_model::text_config(&cfg_path, &root)?
    } else if is_qwen {
        qwen2_vl_model::text_config(&cfg_path, &root)?
    } else {
        llava::text_config(&cfg_path, &root)?
    };
    let text_cfg = ModelConfig::from_json(&cfg_path, text_raw)?;
    crate::models::architecture(&text_cfg)?;
    let pre_path = path.join("preprocessor_config.json");
    let mut pre: Value = std::fs::read_to_string(&pre_path)
        .map_err(|e| {
            broken(
                &pre_path,
                format!("cannot read the image processor's settings: {e}"),
            )
        })
        .and_then(|t| {
            serde_json::from_str(&t).map_err(|e| broken(&pre_path, format!("not valid JSON: {e}")))
        })?;
    // transformers reads processor_config.json's `image_processor` over it.
    if let Some(Value::Object(over)) = processor_json(path)?.get("image_processor")
        && let Some(obj) = pre.as_object_mut()
    {
        for (k, v) in over {
            obj.insert(k.clone(), v.clone());
        }
    }
    let processor = if is_idefics3 {
        ImageProcessor::Idefics3(Idefics3Processor::from_json(&pre_path, &pre)?)
    } else if is_qwen {
        ImageProcessor::Qwen2Vl(Qwen2VlProcessor::from_json(&pre_path, &pre)?)
    } else {
        ImageProcessor::Clip(ClipProcessor::from_json(&pre_path, &pre)?)
    };
    let map = weights::load_safetensors_dir(path)?;
    let (text_map, vision_map) = if is_qwen {
        qwen2_vl_model::split_weights(map)
    } else {
        split_weights(map)
    };
    let quant = text_cfg.quantization.clone();
    let mut vw = Weights::new(path.to_path_buf(), vision_map, WeightFormat::Safetensors);
    vw.set_quantization(if is_qwen {
        qwen2_vl_model::vision_quantization(&root)
    } else {
        quant.clone()
    });
    vw.apply_policy(policy)?;
    vw.materialize()?;
    let vision_bytes = vw.nbytes();
    let hidden = text_cfg.hidden_size;
    let vision = if is_idefics3 {
        VisionPart::Idefics3(Idefics3::build(&cfg_path, &root, hidden, &mut vw)?)
    } else if is_qwen {
        VisionPart::Qwen2Vl(Qwen2Vl::build(&cfg_path, &root, hidden, &mut vw)?)
    } else {
        VisionPart::Llava(Llava::build(&cfg_path, &root, hidden, &mut vw)?)
    };
    vw.finish()?;
    let mut tokenizer = TextTokenizer::from_dir(path, &text_cfg.eos_token_ids)?;
    // Processor folders keep the template in chat_template.json, which wins as in mlx-vlm.
    let template_json = path.join("chat_template.json");
    if template_json.is_file() {
        let v: Value = std::fs::read_to_string(&template_json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| broken(&template_json, "not valid JSON"))?;
        tokenizer.chat_template = Some(
            v.get("chat_template")
                .and_then(Value::as_str)
                .ok_or_else(|| broken(&template_json, "no `chat_template` string"))?
                .to_string(),
        );
    }
    let (image_token, marker) = match &vision {
        VisionPart::Llava(l) => (l.image_token, IMAGE_TOKEN),
        VisionPart::Idefics3(m) => (m.image_token, IMAGE_TOKEN),
        VisionPart::Qwen2Vl(m) => (m.tokens.image, QWEN_IMAGE_TOKEN),
    };
    if tokenizer.encode(marker, false).ok().as_deref() != Some(&[image_token][..]) {
        return Err(broken(
            path,
            format!(
                "the tokenizer does not read {marker} as the one token {image_token} the config names"
            ),
        ));
    }
    if let (VisionPart::Qwen2Vl(m), ImageProcessor::Qwen2Vl(p)) = (&vision, &processor) {
        let c = &m.config;
        if (p.patch, p.temporal, p.merge) != (c.patch_size, c.temporal_patch_size, c.merge_size) {
            return Err(broken(
                path,
                format!(
                    "preprocessor_config.json cuts {}-pixel patches over {} frames merged {}×{}; the vision tower takes {}, {} and {}×{}",
                    p.patch,
                    p.temporal,
                    p.merge,
                    p.merge,
                    c.patch_size,
                    c.temporal_patch_size,
                    c.merge_size,
                    c.merge_size
                ),
            ));
        }
        let start = m.tokens.vision_start;
        if tokenizer.encode("<|vision_start|>", false).ok().as_deref() != Some(&[start][..]) {
            return Err(broken(
                path,
                format!(
                    "the tokenizer does not read <|vision_start|> as the one token {start} the config names (vision_start_token_id)"
                ),
            ));
        }
    }
    let mut image_seq_len = 0;
    if let VisionPart::Idefics3(m) = &vision {
        image_seq_len = processor_setting(path, "image_seq_len")?.unwrap_or(169);
        if image_seq_len != m.tokens_per_tile() {
            return Err(broken(
                path,
                format!(
                    "processor_config.json's image_seq_len {image_seq_len} is not the {} tokens a tile's features fill",
                    m.tokens_per_tile()
                ),
            ));
        }
        // mlx-vlm's Idefics3 processor stops at the end of an utterance too (SmolVLM's does not).
        if model_type == "idefics3"
            && let Some(id) = tokenizer.token_id("<end_of_utterance>")
        {
            tokenizer.eos_ids.insert(id);
        }
    }
    let mut tw = Weights::new(path.to_path_buf(), text_map, WeightFormat::Safetensors);
    tw.set_quantization(quant);
    let mut text = loader::finish_text(path, text_cfg, tw, tokenizer, policy, false)?;
    if is_qwen {
        // The qwen2 text model turns its queries and keys by M-RoPE.
        let d = text.config.head_dim;
        let section = qwen2_vl_model::mrope_section(&cfg_path, &root, d)?;
        for b in &mut text.decoder.blocks {
            b.attn.rope = crate::layers::Rope::multimodal(d, text.config.rope_theta, section)?;
        }
    }
    text.weight_bytes += vision_bytes;
    text.load_time_s = start.elapsed().as_secs_f64();
    Ok(VisionModel {
        text,
        vision,
        processor,
        model_type,
        image_seq_len,
    })
}

/// `processor_config.json` (`{}` when the folder has none).
fn processor_json(path: &Path) -> Result<Value> {
    let p = path.join("processor_config.json");
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(json!({}));
    };
    serde_json::from_str(&text).map_err(|e| broken(&p, format!("not valid JSON: {e}")))
}

/// A whole-number setting of `processor_config.json`, if the file has it.
fn processor_setting(path: &Path, key: &str) -> Result<Option<usize>> {
    let p = path.join("processor_config.json");
    let v = processor_json(path)?;
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| broken(&p, format!("`{key}` is not a whole number"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gate_and_the_loader_know_the_same_vision_architectures() {
        let mut built: Vec<&str> = super::llava::MODEL_TYPES
            .iter()
            .chain(super::idefics3_model::MODEL_TYPES)
            .chain(super::qwen2_vl_model::MODEL_TYPES)
            .copied()
            .collect();
        built.sort();
        let mut gate = super::supported_model_types().to_vec();
        gate.sort();
        assert_eq!(gate, built);
    }
}
