//! The vision runner (mlxk-see): each prompt with its images — read, processed, encoded by the
//! tower and put in place of the prompt's image tokens — generated and streamed through the
//! text runner's path, so records, reasoning, stop strings and reports are mlxk-gen's.
use super::text::{
    Extras, OPTION_KEYS, Prompt, PromptItem, TextRunner, check_keys, describe_text_model,
    prompt_fields, read_json_lines,
};
use super::{Runner, Runs};
use crate::vision::{self, VisionModel, image};
use crate::weights::DtypePolicy;
use mlxk::cli::{Exit, Failure};
use mlxk::report::run::RunFacts;
use mlxk::runner::{Job, Output};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One prompt and the images it is about (none: text only through the vision model).
#[derive(Debug, Clone)]
pub struct VisionItem {
    pub images: Vec<PathBuf>,
    pub prompt: PromptItem,
}

/// The vision runner: its prompts (a `--prompts` line that could not be read is its error, run
/// in its turn), and the text runner's settings (prefill step, verbosity, reasoning, Ctrl-C)
/// that generation goes through.
#[derive(Debug, Clone)]
pub struct VisionRunner {
    pub items: Vec<Result<VisionItem, Failure>>,
    pub text: TextRunner,
}

/// The keys of a vision `--prompts` line besides [`OPTION_KEYS`]. The chat goes through the
/// vision model's own template with the pictures in the user turn, so `messages` and `raw`
/// have no place here.
const VISION_PROMPT_KEYS: &[&str] = &["prompt", "images"];

/// Reads mlxk-see's `--prompts` file: JSON Lines, each `{"prompt": TEXT, "images": [FILE…],
/// …options}` (`images` a list, one file name, or absent for a text-only prompt), options
/// defaulting to `defaults`'. Relative image paths are taken from `base` (the file's folder),
/// so a batch and its pictures move together. A bad line is an error naming its number.
pub fn read_vision_batch(
    text: &str,
    defaults: &PromptItem,
    base: &Path,
) -> Vec<Result<VisionItem, Failure>> {
    read_json_lines(text, |o, line| {
        check_keys(o, &[VISION_PROMPT_KEYS, OPTION_KEYS])?;
        if !o.contains_key("prompt") {
            return Err("`prompt` is missing".into());
        }
        let names: Vec<String> = match o.get("images") {
            None => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| "`images` must be a file name or a list of them".to_string())?,
        };
        let mut fields = o.clone();
        fields.remove("images");
        let mut prompt = prompt_fields(&fields, defaults)?;
        prompt.line = Some(line);
        Ok(VisionItem {
            images: names.iter().map(|n| base.join(n)).collect(),
            prompt,
        })
    })
}

impl Runner for VisionRunner {
    type Model = VisionModel;
    const TOOL: &'static str = "mlxk-see";
    const BACKEND: &'static str = "vision";

    fn load(&self, job: &Job) -> Result<(VisionModel, f64), Failure> {
        let m = vision::load(
            Path::new(&job.record.path),
            DtypePolicy::for_default_device(),
        )?;
        let t = m.text.load_time_s;
        Ok((m, t))
    }

    fn describe(&self, m: &VisionModel, job: &Job, facts: &mut RunFacts) {
        describe_text_model(Self::TOOL, self.text.verbose, &m.text, job, facts);
        if self.text.verbose {
            eprintln!(
                "{}: {}: {} over {}",
                Self::TOOL,
                job.record.id,
                m.model_type,
                m.describe_tower()
            );
        }
    }

    fn run(
        &self,
        model: &VisionModel,
        job: &Job,
        out: &mut Output,
        runs: &mut Runs,
    ) -> Result<(), Failure> {
        for item in &self.items {
            if out.closed() || runs.interrupted() {
                break;
            }
            let mut facts = runs.start();
            let outcome = match item {
                Ok(item) => self.see_one(model, job, item, out, &mut facts),
                Err(f) => Err(f.clone()),
            };
            runs.finish(out, facts, outcome);
        }
        Ok(())
    }
}

/// The failure of an image that cannot be read: exit 1, its code, the file named.
fn image_failure(e: image::ImageError) -> Failure {
    Failure::new(Exit::Failure, e.code, e.message)
}

impl VisionRunner {
    fn see_one(
        &self,
        model: &VisionModel,
        job: &Job,
        item: &VisionItem,
        out: &mut Output,
        facts: &mut RunFacts,
    ) -> Result<(), Failure> {
        let start = Instant::now();
        let images = item
            .images
            .iter()
            .map(|p| image::load(p).map_err(image_failure))
            .collect::<Result<Vec<_>, Failure>>()?;
        let prepared = item
            .images
            .iter()
            .zip(&images)
            .map(|(p, i)| {
                model.prepare(i).map_err(|why| {
                    Failure::new(
                        Exit::Failure,
                        "too_large",
                        format!("{}: {why}", p.display()),
                    )
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        let spec = &item.prompt.spec;
        let ids = model.prompt_ids(spec.system.as_deref(), &spec.text, &prepared)?;
        let image_tokens: usize = prepared.iter().map(|p| model.image_tokens(p)).sum();
        if let Some(c) = model.text.context_length()
            && ids.len() >= c
        {
            // Cutting the prompt could cut a picture's tokens: no truncation here.
            return Err(Failure::usage(format!(
                "the prompt is {} tokens ({image_tokens} of them the pictures') but the model's context is {c}; shorten the prompt or give fewer or smaller pictures",
                ids.len()
            )));
        }
        let (embeddings, caches) = model.ready(&ids, &prepared)?;
        let encode_s = start.elapsed().as_secs_f64();
        let names: Vec<String> = item
            .images
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let extras = Extras {
            embeddings,
            lead_s: encode_s,
            fields: vec![
                ("images".into(), json!(names)),
                ("image_tokens".into(), json!(image_tokens)),
                ("image_encode_s".into(), json!(encode_s)),
            ],
            facts: vec![("image_encode_s".into(), encode_s)],
        };
        let prompt = Prompt {
            ids,
            truncated: 0,
            opens_thinking: false,
        };
        self.text.stream(
            &model.text,
            job,
            &item.prompt,
            &prompt,
            caches,
            0,
            out,
            facts,
            &extras,
        )?;
        Ok(())
    }
}

/// The images of --image-dir DIR, in file-name order (by bytes); hidden files left out.
pub fn image_dir(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::usage(format!("--image-dir {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Failure::usage(format!("--image-dir {}: {e}", dir.display())))?;
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if !hidden && p.is_file() && image::is_image_name(&p) {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(Failure::usage(format!(
            "--image-dir {}: no image files in it ({})",
            dir.display(),
            image::EXTENSIONS.join(", ")
        )));
    }
    Ok(files)
}
