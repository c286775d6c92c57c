//! `mlxk-see`: describe images with a local MLX vision-language model.
use clap::Parser;
use mlxk::cli::{self, Failure};
use mlxk::runner::{self, Output, ReportFile};
use mlxk_infer::runner::run_jobs;
use mlxk_infer::runner::text::{PromptItem, PromptSpec, TextRunner, read_prompts_file};
use mlxk_infer::runner::vision::{VisionItem, VisionRunner, image_dir, read_vision_batch};
use mlxk_infer::sampling::Sampling;
use mlxk_infer::vision::image::is_image_name;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Describe images with a local MLX vision-language model.
///
/// Give a model (cache name, `org/name[@rev]` or folder) and image files, or pipe `model`
/// records from mlxk-probe | mlxk-gate and give only the images. The images go into one
/// prompt, in order; --image-dir DIR runs the prompt on each picture of DIR instead, one after
/// another on the loaded model, and --prompts FILE runs a JSON Lines batch of prompts, each
/// with its own pictures. Without images the prompt runs text-only through the vision
/// model. Images: PNG, JPEG, WebP, GIF (first frame), BMP, TIFF; EXIF orientation applied;
/// resized, cropped (or tiled) and normalised exactly as the model's preprocessor_config.json
/// says (Pillow's filters, bit for bit). Models: LLaVA 1.5 (CLIP or SigLIP tower over llama,
/// mistral or qwen2 text; one picture per prompt), SmolVLM / Idefics3 (pictures split into
/// tiles plus a global view) and Qwen2-VL / Qwen2.5-VL (each picture at its own resolution
/// within the processor's pixel bounds); safetensors, dense or MLX-quantized.
///
/// Text streams to stdout; --json writes JSON Lines records instead (`load`, `delta` with
/// --stream, `result` with the images and their token count, `unload`).
///
/// Exit status: 0 ok, 1 failure (incl. an image that cannot be read — the other prompts still
/// run), 2 usage (incl. a prompt longer than the context, more images than the model takes), 3
/// model not found or ambiguous, 4 model unusable here (broken files, unsupported
/// architecture, a text-only model given images), 5 blocked by the memory gate, 130
/// interrupted.
#[derive(Parser, Debug)]
#[command(name = "mlxk-see", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it (or when it names an image), `model`
    /// records are read from stdin
    pub model: Option<String>,
    /// Image files, all in one prompt
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Run the prompt on every image in DIR (png, jpg, jpeg, webp, gif, bmp, tif, tiff; not
    /// hidden files), one at a time, in file-name order
    #[arg(long, value_name = "DIR", conflicts_with = "images")]
    pub image_dir: Option<PathBuf>,
    /// Prompt text; `-` reads it from stdin (default with images: "Describe this image.")
    #[arg(short, long, allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Run a batch on one load: JSON Lines, each {"prompt": TEXT, "images": [FILE…], options}
    /// (images relative to FILE's folder; none for text only; options: system, max_tokens,
    /// temperature, top_p, top_k, min_p, repetition_penalty, seed, stop)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "prompt_file", "images", "image_dir"])]
    pub prompts: Option<PathBuf>,
    /// System message for the chat template
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Leave a reasoning model's thinking out of the text output
    #[arg(long)]
    pub no_reasoning: bool,
    /// Maximum number of tokens to generate
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0 = off)
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Drop tokens less likely than P × the most likely one (0 = off)
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalise the last 20 generated/prompt tokens (1 = off)
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Random seed for sampling (same seed, same output); default: from the clock
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text is generated (not printed); repeatable
    #[arg(long, value_name = "STRING")]
    pub stop: Vec<String>,
    /// Prompt tokens processed per prefill step
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub prefill_step: usize,
    /// Write JSON Lines records instead of plain text
    #[arg(long)]
    pub json: bool,
    /// With --json: also write a `delta` record per piece of text
    #[arg(long, requires = "json")]
    pub stream: bool,
    /// Append a benchmark report record (schema 0.2.2) per prompt to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print what was loaded and how (towers, image tokens, dtype policy, timings) to stderr
    #[arg(short, long)]
    pub verbose: bool,
}

const EXAMPLES: &str = "Examples:
  mlxk-see llava-1.5-7b-4bit photo.jpg -p 'What is in this picture?'
  mlxk-see SmolVLM-256M-Instruct a.png b.webp -p 'Compare these'
  mlxk-probe smolvlm | mlxk-gate | mlxk-see photo.png -p 'Describe it' --json
  mlxk-see llava-1.5-7b-4bit --image-dir shots/ -p 'Describe' --report bench.jsonl
  mlxk-see SmolVLM-256M-Instruct --prompts batch.jsonl --json --report bench.jsonl
  mlxk-see llava-1.5-7b-4bit -p 'Just text, no picture'";

fn read_prompt(cli: &Cli, model: Option<&str>, has_images: bool) -> Result<String, Failure> {
    let text = match (&cli.prompt, &cli.prompt_file) {
        (Some(p), _) if p == "-" => {
            if model.is_none() {
                return Err(Failure::usage(
                    "-p - reads the prompt from stdin, but stdin carries model records here; \
                     name the model",
                ));
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure::usage(format!("cannot read the prompt from stdin: {e}")))?;
            s
        }
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| {
            Failure::usage(format!("cannot read --prompt-file {}: {e}", f.display()))
        })?,
        (None, None) if has_images => "Describe this image.".into(),
        (None, None) => {
            return Err(Failure::usage(
                "no prompt and no image: give -p TEXT, images, or both",
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(Failure::usage("the prompt is empty"));
    }
    Ok(text)
}

/// The model and the images of the command line: with records on stdin, the first word is an
/// image when it is named like one (`mlxk-probe … | mlxk-gate | mlxk-see a.png`).
fn model_and_images(cli: &Cli) -> Result<(Option<String>, Vec<PathBuf>), Failure> {
    let piped = !std::io::stdin().is_terminal();
    Ok(match &cli.model {
        Some(m) if piped && is_image_name(Path::new(m)) => {
            let mut v = vec![PathBuf::from(m)];
            v.extend(cli.images.iter().cloned());
            (None, v)
        }
        Some(m) if !piped && is_image_name(Path::new(m)) && Path::new(m).is_file() => {
            return Err(Failure::usage(format!(
                "{m} is a picture: name the model first (mlxk-see MODEL {m} -p TEXT), or pipe model records"
            )));
        }
        Some(m) => (Some(m.clone()), cli.images.clone()),
        None => (None, cli.images.clone()),
    })
}

fn prompt_item(cli: &Cli, text: String) -> Result<PromptItem, Failure> {
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let item = PromptItem {
        line: None,
        spec: PromptSpec {
            text,
            system: cli.system.clone(),
            ..Default::default()
        },
        max_tokens: cli.max_tokens,
        sampling: Sampling {
            temp: cli.temp,
            top_p: cli.top_p,
            top_k: cli.top_k,
            min_p: cli.min_p,
            repetition_penalty: cli.repetition_penalty,
            seed,
            ..Sampling::default()
        },
        stop: cli.stop.clone(),
    };
    item.sampling.validate()?;
    Ok(item)
}

fn run(
    cli: &Cli,
    model: Option<String>,
    images: Vec<PathBuf>,
    out: &mut Output,
) -> Result<(), Failure> {
    let report = cli.report.as_deref().map(ReportFile::check).transpose()?;
    if cli.image_dir.is_some() && !images.is_empty() {
        return Err(Failure::usage("give pictures or --image-dir DIR, not both"));
    }
    // A missing picture fails before the model is loaded.
    if let Some(p) = images.iter().find(|p| !p.exists()) {
        return Err(Failure::new(
            mlxk::cli::Exit::Failure,
            "not_found",
            format!("{}: no such file", p.display()),
        ));
    }
    if cli.prompts.is_some() && !images.is_empty() {
        return Err(Failure::usage(
            "give pictures or --prompts FILE (whose lines name their pictures), not both",
        ));
    }
    let items: Vec<Result<VisionItem, Failure>> = if let Some(path) = &cli.prompts {
        // The command line's options are each line's defaults.
        let defaults = prompt_item(cli, String::new())?;
        let base = path.parent().unwrap_or(Path::new(""));
        read_prompts_file(path, |text| read_vision_batch(text, &defaults, base))?
    } else {
        let batch = cli.image_dir.as_deref().map(image_dir).transpose()?;
        let has_images = !images.is_empty() || batch.is_some();
        let item = prompt_item(cli, read_prompt(cli, model.as_deref(), has_images)?)?;
        match batch {
            Some(files) => files
                .into_iter()
                .map(|f| {
                    Ok(VisionItem {
                        images: vec![f],
                        prompt: item.clone(),
                    })
                })
                .collect(),
            None => vec![Ok(VisionItem {
                images,
                prompt: item,
            })],
        }
    };
    let runner = VisionRunner {
        items,
        text: TextRunner {
            prompts: Vec::new(),
            truncate_left: false,
            hide_reasoning: cli.no_reasoning,
            prompt_cache: None,
            dequantize: false,
            prefill_step: cli.prefill_step,
            verbose: cli.verbose,
            cancel: Some(runner::interrupt_flag()),
        },
    };
    let jobs = match &model {
        Some(spec) => vec![runner::job_for_spec(spec)?],
        None if std::io::stdin().is_terminal() => {
            return Err(Failure::usage(
                "name a model, or pipe model records: mlxk-probe llava | mlxk-gate | mlxk-see IMAGE… -p TEXT",
            ));
        }
        None => runner::jobs_from_records(std::io::stdin().lock(), out)?,
    };
    run_jobs(
        &runner,
        &jobs,
        out,
        report.as_ref(),
        runner.text.cancel.as_deref(),
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output::new("mlxk-see", cli.json, cli.stream);
    cli::main_with("mlxk-see", || {
        let (model, images) = match model_and_images(&cli) {
            Ok(x) => x,
            Err(f) => {
                out.fail(&f, None);
                return Ok(out.tally.exit());
            }
        };
        let named = model.clone();
        if let Err(f) = run(&cli, model, images, &mut out) {
            out.fail(&f, named.as_deref());
        }
        Ok(out.tally.exit())
    })
}

mlxk::man_page_test!(Cli);
