//! `mlxk-gen`: generate text with a local MLX language model.
use clap::Parser;
use mlxk::cli::{self, Exit, Written};
use mlxk::policy::{self, GateConfig};
use mlxk::records::{Decision, Gate, ModelRecord, RecordLine, error_record, parse_record_line};
use mlxk::report::run::{RunFacts, record as report_record};
use mlxk::resolve::{CacheRoot, resolve};
use mlxk::sys::{ProcessTree, SysRoot};
use mlxk_infer::error::InferError;
use mlxk_infer::generate::{GenerateOptions, Generation, generate};
use mlxk_infer::loader::{self, TextModel};
use mlxk_infer::sampling::Sampling;
use mlxk_infer::tokenizer::Message;
use mlxk_infer::weights::{DtypePolicy, WeightFormat};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Generate text with a local MLX language model.
///
/// Give a model (cache name, `org/name[@rev]` or folder) or pipe `model` records from
/// mlxk-probe | mlxk-gate; several records run one model after another, each loaded once and
/// released before the next. The prompt goes through the model's chat template unless --raw.
/// Text streams to stdout as it is generated; --json writes JSON Lines records instead
/// (`load`, `delta` with --stream, `result`, `unload`).
///
/// Exit status: 0 ok, 1 failure, 2 usage (incl. a prompt longer than the context), 3 model
/// not found, 4 broken model, 5 blocked by the gate or unsupported architecture.
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
    /// System message for the chat template
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Skip the chat template and feed the prompt as is
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,
    /// Tell templates that support it (`enable_thinking`) not to think first
    #[arg(long)]
    pub no_think: bool,
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
  echo 'Summarise this' | mlxk-gen my-model -p -";

/// A failure and the exit status it maps to.
struct Failure {
    exit: Exit,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(exit: Exit, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            code,
            message: message.into(),
        }
    }
}

impl From<InferError> for Failure {
    fn from(e: InferError) -> Failure {
        let (exit, code) = match &e {
            InferError::BrokenModel { .. } => (Exit::Unusable, "broken_model"),
            InferError::Unsupported { .. } => (Exit::Blocked, "unsupported"),
            InferError::ContextOverflow { .. } => (Exit::Usage, "context_overflow"),
            InferError::Options(_) => (Exit::Usage, "usage"),
            InferError::Tokenizer(_) => (Exit::Failure, "tokenizer"),
            InferError::Mlx(_) => (Exit::Failure, "mlx"),
        };
        Failure::new(exit, code, e.to_string())
    }
}

/// Where output goes and in which form.
struct Output {
    json: bool,
    stream: bool,
    closed: bool,
}

impl Output {
    fn record(&mut self, v: &Value) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        match cli::write_json(&mut out, v) {
            Ok(Written::Ok) => Ok(()),
            Ok(Written::Closed) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Failure::new(
                Exit::Failure,
                "io",
                format!("cannot write output: {e}"),
            )),
        }
    }

    fn record_if_json(&mut self, v: &Value) -> Result<(), Failure> {
        if self.json { self.record(v) } else { Ok(()) }
    }

    /// Streams text; false once the reader has gone.
    fn text(&mut self, model: &str, t: &str) -> Result<bool, Failure> {
        if self.closed {
            return Ok(false);
        }
        if self.json {
            if self.stream {
                self.record(&json!({"type": "delta", "model": model, "text": t}))?;
            }
            return Ok(!self.closed);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(t.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(Failure::new(
                Exit::Failure,
                "io",
                format!("cannot write output: {e}"),
            )),
        }
    }
}

fn read_prompt(cli: &Cli) -> Result<String, Failure> {
    let usage = |m: &str| Failure::new(Exit::Usage, "usage", m);
    let text = match (&cli.prompt, &cli.prompt_file) {
        (Some(p), _) if p == "-" => {
            if cli.model.is_none() {
                return Err(usage(
                    "-p - reads the prompt from stdin, but stdin carries model records here; \
                     use --prompt-file or name the model",
                ));
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| usage(&format!("cannot read the prompt from stdin: {e}")))?;
            s
        }
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| usage(&format!("cannot read --prompt-file {}: {e}", f.display())))?,
        (None, None) => {
            return Err(usage(
                "no prompt: give -p TEXT, -p - (stdin) or --prompt-file FILE",
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(usage("the prompt is empty"));
    }
    Ok(text)
}

/// Model records to run: the named model (resolved, probed and gated here) or stdin's records.
fn model_records(
    cli: &Cli,
    out: &mut Output,
    failed: &mut Option<Exit>,
) -> Result<Vec<(ModelRecord, Gate)>, Failure> {
    let sys = SysRoot::from_env();
    let gate_cfg = GateConfig {
        threshold: policy::DEFAULT_THRESHOLD,
        allow_warn: true,
    };
    let gate = |r: &ModelRecord| -> Gate {
        let memory = sys.memory().map_err(|e| e.to_string());
        policy::decide(r, memory.as_ref().map_err(Clone::clone), &gate_cfg)
    };
    if let Some(spec) = &cli.model {
        let snap = resolve(spec, &CacheRoot::from_env())
            .map_err(|e| Failure::new(Exit::NotFound, "not_found", e.to_string()))?;
        let r = mlxk::probe::probe(&snap, mlxk::probe::Device::current());
        let g = gate(&r);
        return Ok(vec![(r, g)]);
    }
    if std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "usage",
            "name a model, or pipe model records: mlxk-probe NAME | mlxk-gate | mlxk-gen -p TEXT",
        ));
    }
    let mut records = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line
            .map_err(|e| Failure::new(Exit::Failure, "io", format!("stdin line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let (v, r) = match parse_record_line(&line, i + 1) {
            RecordLine::Model(v, r) => (v, *r),
            RecordLine::Other(v) if v["type"] == "error" => {
                // An upstream failure (e.g. a name mlxk-probe could not find) is passed on.
                eprintln!(
                    "mlxk-gen: upstream: {}",
                    v["message"].as_str().unwrap_or("error")
                );
                if out.json {
                    out.record(&v)?;
                }
                failed.get_or_insert(Exit::Failure);
                continue;
            }
            RecordLine::Other(_) => continue,
            RecordLine::Malformed { message, model } => {
                let f = Failure::new(Exit::Failure, "malformed_input", message);
                report_failure(out, &f, model.as_deref(), failed);
                continue;
            }
        };
        let g = match serde_json::from_value::<Gate>(v["gate"].clone()) {
            Ok(g) => g,
            Err(_) => gate(&r),
        };
        records.push((r, g));
    }
    Ok(records)
}

fn report_failure(out: &mut Output, f: &Failure, model: Option<&str>, failed: &mut Option<Exit>) {
    eprintln!(
        "mlxk-gen: {}{}",
        model.map(|m| format!("{m}: ")).unwrap_or_default(),
        f.message
    );
    if out.json {
        let _ = out.record(&error_record(f.code, &f.message, model));
    }
    // The most specific failure wins the exit status: blocked > unhealthy > not found > others.
    let rank = |e: Exit| match e {
        Exit::Blocked => 5,
        Exit::Unusable => 4,
        Exit::NotFound => 3,
        Exit::Usage => 2,
        _ => 1,
    };
    if failed.is_none_or(|old| rank(f.exit) > rank(old)) {
        *failed = Some(f.exit);
    }
}

fn rss_bytes() -> Option<u64> {
    ProcessTree::new(std::process::id()).rss(&SysRoot::from_env())
}

/// Runs one model: load, prompt, generate, unload; returns the report facts.
fn run_model(
    cli: &Cli,
    r: &ModelRecord,
    prompt: &str,
    out: &mut Output,
) -> Result<RunFacts, Failure> {
    let start_ts = mlxk::monitor::unix_now();
    let mut facts = RunFacts {
        tool: "mlxk-gen".into(),
        model_id: r.id.clone(),
        size_bytes: Some(r.size_bytes),
        family: r.model_type.clone(),
        modality: "text".into(),
        start_ts,
        mlx_version: mlxk_infer::runtime::mlx_version(),
        ..Default::default()
    };
    let policy = DtypePolicy::for_default_device();
    let model = loader::load_with(Path::new(&r.path), policy, cli.dequantize)?;
    let load_ts = mlxk::monitor::unix_now();
    let stable = mlxk_infer::mlx_rs::memory::active_memory()
        .ok()
        .map(|b| b as u64);
    out.record_if_json(&json!({"type": "load", "model": r.id, "ts": load_ts,
        "load_time_s": model.load_time_s, "rss_bytes": rss_bytes()}))?;
    if cli.verbose {
        describe(&model, &r.id);
    }
    let result = generate_with(cli, &model, &r.id, prompt, out);
    let eos_strings: Vec<String> = model
        .tokenizer
        .eos_ids
        .iter()
        .filter_map(|&id| model.tokenizer.decode(&[id]).ok())
        .collect();
    let framework = match model.format {
        WeightFormat::Gguf => "GGUF",
        WeightFormat::Safetensors => "MLX",
    };
    let quant = match (&model.quantization, cli.dequantize) {
        (Some(q), false) => q.split('/').next().map(|b| b.replace("-bit", "bit")),
        _ => Some("f32".to_string()),
    };
    // Unload: drop every array, return MLX's cached buffers to the system, measure it.
    let t = std::time::Instant::now();
    drop(model);
    mlxk_infer::mlx_rs::memory::clear_cache().ok();
    let cleanup = t.elapsed().as_secs_f64();
    out.record_if_json(
        &json!({"type": "unload", "model": r.id, "ts": mlxk::monitor::unix_now(),
        "cleanup_time_s": cleanup, "rss_bytes": rss_bytes()}),
    )?;
    let g = result?;
    facts.passed = true;
    facts.end_ts = mlxk::monitor::unix_now();
    facts.framework = Some(framework.into());
    facts.quantization = quant;
    facts.tokens_per_sec = Some(g.decode_tok_s);
    facts.load_time_s = Some(load_ts - start_ts);
    facts.ttft_s = Some(g.ttft_s);
    facts.cleanup_time_s = Some(cleanup);
    facts.peak_bytes = Some(g.peak_mem_bytes);
    facts.stable_bytes = stable;
    facts.extra = vec![
        ("prefill_tokens_per_sec".into(), g.prefill_tok_s),
        ("prompt_tokens".into(), g.prompt_tokens as f64),
        ("generated_tokens".into(), g.tokens.len() as f64),
    ];
    facts.stop_configured = eos_strings.iter().chain(cli.stop.iter()).cloned().collect();
    facts.stop_detected = g
        .stop_string
        .clone()
        .into_iter()
        .chain(g.eos_token.and_then(|_| eos_strings.first().cloned()))
        .collect();
    facts.stop_leaked = facts
        .stop_configured
        .iter()
        .any(|s| !s.is_empty() && g.text.contains(s.as_str()));
    facts.memory = SysRoot::from_env().memory().ok();
    Ok(facts)
}

fn describe(m: &TextModel, id: &str) {
    eprintln!(
        "mlxk-gen: {id}: {} {} ({} layers, hidden {}), {} weights, {:.2} GB in memory, loaded in {:.2} s",
        match m.format {
            WeightFormat::Gguf => "GGUF",
            WeightFormat::Safetensors => "safetensors",
        },
        m.config.model_type,
        m.config.num_layers,
        m.config.hidden_size,
        m.quantization.as_deref().unwrap_or("dense"),
        m.weight_bytes as f64 / 1e9,
        m.load_time_s
    );
    if m.policy_applied.is_empty() {
        eprintln!("mlxk-gen: dtype policy: stored dtypes kept");
    }
    for p in &m.policy_applied {
        eprintln!("mlxk-gen: dtype policy: {p}");
    }
}

fn generate_with(
    cli: &Cli,
    model: &TextModel,
    id: &str,
    prompt: &str,
    out: &mut Output,
) -> Result<Generation, Failure> {
    let text = if cli.raw {
        prompt.to_string()
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &cli.system {
            messages.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        messages.push(Message {
            role: "user".into(),
            content: prompt.to_string(),
        });
        model
            .tokenizer
            .render_chat(&messages, cli.no_think.then_some(false))?
    };
    // A raw prompt gets what the tokenizer adds (BOS); a rendered chat already has it.
    let mut ids = model.tokenizer.encode(&text, cli.raw)?;
    let context = model.context_length();
    let mut truncated = 0usize;
    if let Some(c) = context
        && ids.len() >= c
    {
        if cli.truncate.is_none() {
            return Err(InferError::ContextOverflow {
                prompt: ids.len(),
                context: c,
                reserved: 1,
            }
            .into());
        }
        let keep = c.saturating_sub(cli.max_tokens.min(c / 2)).max(1);
        truncated = ids.len() - keep;
        ids.drain(..truncated);
        eprintln!(
            "mlxk-gen: {id}: --truncate left: dropped the first {truncated} prompt tokens (context {c})"
        );
    }
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let opts = GenerateOptions {
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
        stop_strings: cli.stop.clone(),
        prefill_step: cli.prefill_step,
        context_length: context,
    };
    let mut write_err: Option<Failure> = None;
    let g = generate(
        &model.decoder,
        &model.tokenizer,
        &ids,
        &opts,
        &mut |t| match out.text(id, t) {
            Ok(more) => Ok(more),
            Err(f) => {
                write_err = Some(f);
                Ok(false)
            }
        },
    )?;
    if let Some(f) = write_err {
        return Err(f);
    }
    if g.context_full {
        eprintln!(
            "mlxk-gen: {id}: stopped after {} tokens at the end of the model's context ({} tokens)",
            g.tokens.len(),
            context.unwrap_or_default()
        );
    }
    if out.json {
        let mut rec = json!({"type": "result", "model": id, "text": g.text,
            "prompt_tokens": g.prompt_tokens, "generated_tokens": g.tokens.len(),
            "finish_reason": g.finish_reason.as_str(), "ttft_s": g.ttft_s,
            "prefill_tok_s": g.prefill_tok_s, "decode_tok_s": g.decode_tok_s,
            "peak_mem_bytes": g.peak_mem_bytes, "seed": seed});
        if truncated > 0 {
            rec["truncated_prompt_tokens"] = json!(truncated);
        }
        if g.context_full {
            rec["context_full"] = json!(true);
        }
        out.record(&rec)?;
    } else {
        out.text(id, "\n")?;
    }
    if cli.verbose || (!out.json && std::io::stderr().is_terminal()) {
        eprintln!(
            "mlxk-gen: {} prompt tokens, {} generated ({}), prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.2} s",
            g.prompt_tokens,
            g.tokens.len(),
            g.finish_reason.as_str(),
            g.prefill_tok_s,
            g.decode_tok_s,
            g.ttft_s
        );
    }
    Ok(g)
}

fn append_report(path: &Path, rec: &Value) -> Result<(), Failure> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            Failure::new(
                Exit::Failure,
                "io",
                format!("cannot open --report {}: {e}", path.display()),
            )
        })?;
    writeln!(f, "{rec}").map_err(|e| {
        Failure::new(
            Exit::Failure,
            "io",
            format!("cannot write --report {}: {e}", path.display()),
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output {
        json: cli.json,
        stream: cli.stream,
        closed: false,
    };
    let mut failed: Option<Exit> = None;
    let prompt = match read_prompt(&cli) {
        Ok(p) => p,
        Err(f) => {
            report_failure(&mut out, &f, None, &mut failed);
            return f.exit.into();
        }
    };
    let records = match model_records(&cli, &mut out, &mut failed) {
        Ok(r) => r,
        Err(f) => {
            report_failure(&mut out, &f, cli.model.as_deref(), &mut failed);
            return f.exit.into();
        }
    };
    if records.is_empty() && failed.is_none() {
        let f = Failure::new(Exit::Usage, "usage", "no model records on stdin");
        report_failure(&mut out, &f, None, &mut failed);
    }
    for (r, g) in &records {
        if out.closed {
            break;
        }
        {
            match g.decision {
                Decision::Block => {
                    let f = Failure::new(
                        Exit::Blocked,
                        "blocked",
                        format!("blocked by the gate: {}", g.reasons.join("; ")),
                    );
                    report_failure(&mut out, &f, Some(&r.id), &mut failed);
                    continue;
                }
                Decision::Warn => {
                    eprintln!("mlxk-gen: {}: warning: {}", r.id, g.reasons.join("; "))
                }
                Decision::Allow => {}
            }
        }
        match run_model(&cli, r, &prompt, &mut out) {
            Ok(facts) => {
                if let Some(path) = &cli.report
                    && let Err(f) = append_report(path, &report_record(&facts))
                {
                    report_failure(&mut out, &f, Some(&r.id), &mut failed);
                }
            }
            Err(f) => report_failure(&mut out, &f, Some(&r.id), &mut failed),
        }
    }
    match failed {
        Some(e) => e.into(),
        None => Exit::Ok.into(),
    }
}

mlxk::man_page_test!(Cli);
