//! `mlxk-gen`: generate text with a local MLX language model.
use clap::Parser;
use mlxk::cli::{self, Failure};
use mlxk::runner::{self, Output, ReportFile};
use mlxk_infer::runner::chat::{self, ChatRunner, Terminal};
use mlxk_infer::runner::run_jobs;
use mlxk_infer::runner::text::{
    PromptItem, PromptSpec, TextRunner, read_prompt_batch, read_prompts_file,
};
use mlxk_infer::sampling::Sampling;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate text with a local MLX language model.
///
/// Give a model (cache name, `org/name[@rev]` or folder) or pipe `model` records from
/// mlxk-probe | mlxk-gate; several records run one model after another, each loaded once and
/// released before the next. The prompt goes through the model's chat template unless --raw.
/// Text streams to stdout as it is generated; --json writes JSON Lines records instead
/// (`load`, `delta` with --stream, `result`, `unload`).
///
/// On a terminal with no prompt, it is an interactive chat: the conversation goes through the
/// chat template and the KV cache is kept, so a new turn prefills only its own tokens. Type
/// /help in it for the commands (/clear, /system, /undo, /drop, /save FILE); Ctrl-C stops an
/// answer, Ctrl-D leaves. The line history is kept in $XDG_STATE_HOME/mlxk/chat_history.
///
/// Exit status: 0 ok, 1 failure, 2 usage (incl. a prompt longer than the context), 3 model
/// not found or ambiguous, 4 model unusable here (broken files, unsupported architecture or
/// format, a model of another backend), 5 blocked by the memory gate, 130 interrupted (Ctrl-C:
/// the partial text is marked `finish_reason: "interrupted"`).
#[derive(Parser, Debug)]
#[command(name = "mlxk-gen", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it, `model` records are read from stdin
    pub model: Option<String>,
    /// Prompt text; `-` reads it from stdin
    #[arg(short, long, allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Run every prompt of a JSON Lines file on each model, loaded once: one line per prompt,
    /// `{"prompt": TEXT}` or `{"messages": [{"role", "content"}, …]}`, optionally with
    /// `system`, `raw`, `max_tokens`, `temperature`, `top_p`, `top_k`, `min_p`,
    /// `repetition_penalty`, `seed`, `stop` (the options here are the defaults). A bad line
    /// is an `error` record naming it; the others still run
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "prompt_file"])]
    pub prompts: Option<PathBuf>,
    /// System message for the chat template
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Skip the chat template and feed the prompt as is
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,
    /// Tell templates that support it (`enable_thinking`) not to think first
    #[arg(long)]
    pub no_think: bool,
    /// Reuse the KV state saved in FILE (a .safetensors file) for the part of the prompt it
    /// shares, then save this prompt's there; a cache of another model or build is refused
    #[arg(long, value_name = "FILE")]
    pub prompt_cache: Option<PathBuf>,
    /// Leave a reasoning model's thinking (`<think>…</think>`) out of the text output; on a
    /// terminal it is shown dimmed, with --json it is the result's `reasoning` field and
    /// `delta` records with `"part": "reasoning"`
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
    /// Cut a prompt longer than the context from the left instead of failing
    #[arg(long, value_name = "SIDE", value_parser = ["left"])]
    pub truncate: Option<String>,
    /// Unpack quantized weights to f32 at load (4–8× the memory; the dense f32 kernels instead of the quantized ones)
    #[arg(long)]
    pub dequantize: bool,
    /// Prompt tokens processed per prefill step
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub prefill_step: usize,
    /// Write JSON Lines records instead of plain text
    #[arg(long)]
    pub json: bool,
    /// With --json: also write a `delta` record per piece of text
    #[arg(long, requires = "json")]
    pub stream: bool,
    /// Append a benchmark report record (schema 0.2.2) per model to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print what was loaded and how (dtype policy, quantization, timings) to stderr
    #[arg(short, long)]
    pub verbose: bool,
}

const EXAMPLES: &str = "Examples:
  mlxk-gen SmolLM2-135M-Instruct -p 'The capital of France is' -n 32 --raw
  mlxk-probe qwen3 | mlxk-gate | mlxk-gen -p 'Write a haiku' --temp 0.7 --seed 1
  mlxk-probe --all | mlxk-gate --drop-blocked | mlxk-gen --prompt-file q.txt --json --report bench.jsonl
  echo 'Summarise this' | mlxk-gen my-model -p -
  mlxk-gen SmolLM2-135M-Instruct --prompts prompts.jsonl --json --report bench.jsonl";

fn read_prompt(cli: &Cli) -> Result<String, Failure> {
    let text = match (&cli.prompt, &cli.prompt_file) {
        (Some(p), _) if p == "-" => {
            if cli.model.is_none() {
                return Err(Failure::usage(
                    "-p - reads the prompt from stdin, but stdin carries model records here; \
                     use --prompt-file or name the model",
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
        (None, None) => {
            return Err(Failure::usage(
                "no prompt: give -p TEXT, -p - (stdin) or --prompt-file FILE",
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(Failure::usage("the prompt is empty"));
    }
    Ok(text)
}

/// The prompt and options the command line gives: the one prompt, or every batch line's defaults.
fn prompt_item(cli: &Cli, text: String) -> PromptItem {
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    PromptItem {
        line: None,
        spec: PromptSpec {
            text,
            messages: Vec::new(),
            system: cli.system.clone(),
            raw: cli.raw,
            no_think: cli.no_think,
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
    }
}

fn text_runner(cli: &Cli) -> Result<TextRunner, Failure> {
    let prompts = match &cli.prompts {
        Some(path) => read_prompts_file(path, |text| {
            read_prompt_batch(text, &prompt_item(cli, String::new()))
        })?,
        None => {
            let item = prompt_item(cli, read_prompt(cli)?);
            item.sampling.validate()?;
            vec![Ok(item)]
        }
    };
    Ok(runner_for(cli, prompts))
}

/// The text runner the command line sets up, over `prompts`.
fn runner_for(cli: &Cli, prompts: Vec<Result<PromptItem, Failure>>) -> TextRunner {
    TextRunner {
        prompts,
        truncate_left: cli.truncate.is_some(),
        hide_reasoning: cli.no_reasoning,
        prompt_cache: cli.prompt_cache.clone(),
        dequantize: cli.dequantize,
        prefill_step: cli.prefill_step,
        verbose: cli.verbose,
        cancel: Some(runner::interrupt_flag()),
    }
}

/// No prompt, and a person at a terminal on both ends: the chat.
fn wants_chat(cli: &Cli) -> bool {
    cli.prompt.is_none()
        && cli.prompt_file.is_none()
        && cli.prompts.is_none()
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
}

fn chat(cli: &Cli, out: &mut Output) -> Result<(), Failure> {
    chat::check_options(cli.json, cli.raw, cli.prompt_cache.is_some())?;
    let Some(spec) = &cli.model else {
        return Err(Failure::usage(
            "name the model to chat with: mlxk-gen MODEL (or give -p TEXT to pipe records)",
        ));
    };
    let defaults = prompt_item(cli, String::new());
    defaults.sampling.validate()?;
    let report = cli.report.as_deref().map(ReportFile::check).transpose()?;
    let job = runner::job_for_spec(spec)?;
    let chat = ChatRunner {
        // The turns come from the terminal; --prompt-cache was refused above.
        text: runner_for(cli, Vec::new()),
        defaults,
        input: std::cell::RefCell::new(Box::new(Terminal::open()?)),
    };
    run_jobs(&chat, &[job], out, report.as_ref(), None);
    Ok(())
}

fn run(cli: &Cli, out: &mut Output) -> Result<(), Failure> {
    if wants_chat(cli) {
        return chat(cli, out);
    }
    let report = cli.report.as_deref().map(ReportFile::check).transpose()?;
    let text = text_runner(cli)?;
    if let Some(p) = &cli.prompt_cache {
        mlxk_infer::prompt_cache::check_path(p)?;
    }
    let jobs = match &cli.model {
        Some(spec) => vec![runner::job_for_spec(spec)?],
        None if std::io::stdin().is_terminal() => {
            return Err(Failure::usage(
                "name a model, or pipe model records: mlxk-probe NAME | mlxk-gate | mlxk-gen -p TEXT",
            ));
        }
        None => runner::jobs_from_records(std::io::stdin().lock(), out)?,
    };
    run_jobs(&text, &jobs, out, report.as_ref(), text.cancel.as_deref());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output::new("mlxk-gen", cli.json, cli.stream);
    cli::main_with("mlxk-gen", || {
        if let Err(f) = run(&cli, &mut out) {
            out.fail(&f, cli.model.as_deref());
        }
        Ok(out.tally.exit())
    })
}

mlxk::man_page_test!(Cli);
