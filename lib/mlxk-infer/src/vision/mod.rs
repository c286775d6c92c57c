//! Vision-language models: images read and processed as the reference processors do, a
//! vision tower's features put in place of the prompt's image tokens, then the text model's
//! generation loop from those embeddings (mlxk-see, and the server's image messages).
pub mod image;
pub mod processor;
pub mod resample;

use crate::config::ModelConfig;
use crate::error::{InferError, Result, broken, unsupported};
use crate::loader::{self, TextModel};
use crate::models::llava::{self, Llava};
use crate::tokenizer::TextTokenizer;
use crate::weights::{self, DtypePolicy, WeightFormat, Weights};
use image::Rgb8;
use mlx_rs::Array;
use processor::ClipProcessor;
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
}

/// A vision-language model ready to run: the text model (decoder, tokenizer, facts), the
/// vision half and the image processor.
pub struct VisionModel {
    pub text: TextModel,
    pub vision: VisionPart,
    pub processor: ClipProcessor,
    /// The root `model_type` (`llava`).
    pub model_type: String,
    /// The image token's text in the chat template's output (`<image>`).
    pub image_token_text: String,
}

impl VisionModel {
    pub fn image_token(&self) -> u32 {
        match &self.vision {
            VisionPart::Llava(l) => l.image_token,
        }
    }

    /// Image tokens each image stands for in the prompt.
    pub fn tokens_per_image(&self) -> usize {
        match &self.vision {
            VisionPart::Llava(l) => l.tokens_per_image(),
        }
    }

    /// Most images one prompt may carry (mlx-vlm's LLaVA takes one).
    pub fn max_images(&self) -> usize {
        match &self.vision {
            VisionPart::Llava(_) => 1,
        }
    }

    /// Whether the model's chat messages list their images before their text (mlx-vlm's
    /// message format for the architecture).
    pub fn images_first(&self) -> bool {
        match &self.vision {
            VisionPart::Llava(_) => false,
        }
    }

    /// The vision tower's input for each image.
    pub fn pixels(&self, images: &[Rgb8]) -> Result<Array> {
        let arrays: Vec<Array> = images
            .iter()
            .map(|img| self.processor.pixel_array(img))
            .collect();
        Ok(mlx_rs::ops::concatenate(&arrays, 0)?)
    }

    /// The prompt's embeddings with the images' features in place of its image tokens.
    pub fn embeddings(&self, ids: &[u32], images: &[Rgb8]) -> Result<Array> {
        let x = Array::from_slice(ids, &[1, ids.len() as i32]);
        let text = self.text.decoder.embed.forward(&x)?;
        let pixels = self.pixels(images)?;
        let features = match &self.vision {
            VisionPart::Llava(l) => l.image_features(&pixels)?,
        };
        llava::merge_features(&text, ids, self.image_token(), &features)
    }

    /// Renders the chat for `user` text with `n_images` images (and a `system` message),
    /// expands each image token to the tokens its features fill, and encodes it as mlx-vlm's
    /// processor does (the tokenizer's special tokens added).
    pub fn prompt_ids(
        &self,
        system: Option<&str>,
        user: &str,
        n_images: usize,
    ) -> Result<Vec<u32>> {
        let tok: &TextTokenizer = &self.text.tokenizer;
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": [{"type": "text", "text": s}]}));
        }
        let mut content = vec![json!({"type": "text", "text": user})];
        let images = vec![json!({"type": "image"}); n_images];
        if self.images_first() {
            content.splice(0..0, images);
        } else {
            content.extend(images);
        }
        messages.push(json!({"role": "user", "content": content}));
        let text = tok.render_chat_values(&messages, None)?;
        let marks = text.matches(self.image_token_text.as_str()).count();
        if marks != n_images {
            return Err(InferError::Options(format!(
                "the chat template wrote {marks} image tokens for {n_images} images"
            )));
        }
        let expanded = text.replace(
            self.image_token_text.as_str(),
            &self.image_token_text.repeat(self.tokens_per_image()),
        );
        tok.encode(&expanded, true)
    }
}

/// Whether the folder holds a vision-language model this build knows (by config.json).
pub fn is_vision_folder(path: &Path) -> bool {
    std::fs::read_to_string(path.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("model_type")?.as_str().map(String::from))
        .is_some_and(|mt| supported_model_types().contains(&mt.as_str()))
}

/// The checkpoint's tensors split into the text model's (named as a text checkpoint names
/// them) and the rest; both the classic (`language_model.model.…`) and transformers 5
/// (`model.language_model.…`) layouts are read.
fn split_weights(map: HashMap<String, Array>) -> (HashMap<String, Array>, HashMap<String, Array>) {
    let mut text = HashMap::new();
    let mut rest = HashMap::new();
    for (k, v) in map {
        if let Some(t) = k.strip_prefix("language_model.") {
            text.insert(t.to_string(), v);
        } else if let Some(t) = k.strip_prefix("model.language_model.") {
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
    let text_raw = llava::text_config(&cfg_path, &root)?;
    let text_cfg = ModelConfig::from_json(&cfg_path, text_raw)?;
    crate::models::architecture(&text_cfg)?;
    let processor = ClipProcessor::load(path)?;
    let map = weights::load_safetensors_dir(path)?;
    let (text_map, vision_map) = split_weights(map);
    let quant = text_cfg.quantization.clone();
    let mut vw = Weights::new(path.to_path_buf(), vision_map, WeightFormat::Safetensors);
    vw.set_quantization(quant.clone());
    vw.apply_policy(policy)?;
    vw.materialize()?;
    let vision_bytes = vw.nbytes();
    let llava = Llava::build(&cfg_path, &root, text_cfg.hidden_size, &mut vw)?;
    vw.finish()?;
    let tokenizer = TextTokenizer::from_dir(path, &text_cfg.eos_token_ids)?;
    let image_token_text = tokenizer
        .decode(&[llava.image_token])
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            broken(
                path,
                format!(
                    "the tokenizer has no token {} (the config's image_token_index)",
                    llava.image_token
                ),
            )
        })?;
    let mut tw = Weights::new(path.to_path_buf(), text_map, WeightFormat::Safetensors);
    tw.set_quantization(quant);
    let mut text = loader::finish_text(path, text_cfg, tw, tokenizer, policy, false)?;
    text.weight_bytes += vision_bytes;
    text.load_time_s = start.elapsed().as_secs_f64();
    Ok(VisionModel {
        text,
        vision: VisionPart::Llava(llava),
        processor,
        model_type,
        image_token_text,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gate_and_the_loader_know_the_same_vision_architectures() {
        assert_eq!(super::supported_model_types(), super::llava::MODEL_TYPES);
    }
}
