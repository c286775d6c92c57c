//! `mlxk-serve`: serve local MLX models over OpenAI-compatible HTTP.
use clap::Parser;
use mlxk::cli::{self, Failure};
use mlxk::runner::{self, Output, ReportFile};
use mlxk_serve::worker::Settings;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve local MLX models over OpenAI-compatible HTTP.
///
/// Give models (cache names, `org/name[@rev]` or folders) or pipe `model` records from
/// mlxk-probe | mlxk-gate. Routes: GET /v1/models, GET /health, POST /v1/chat/completions and
/// /v1/completions (whole or streamed as Server-Sent Events) for text and vision models (a
/// chat's pictures as `image_url` parts with data: URLs, run as mlxk-see runs them), POST
/// /v1/audio/transcriptions and /v1/audio/translations (a multipart upload; response_format json,
/// text, srt, vtt or verbose_json) for Whisper models; pictures for a text model answer 501, as
/// does a model asked for a route of another kind. A model loads on
/// its first request (the memory gate first: 507 when it blocks, 501 for a model no backend
/// runs) and stays loaded; up to --parallel generations run interleaved on it (a new request's
/// first token does not wait for the others to finish), more wait in order, and a full queue
/// answers 429.
/// Errors are OpenAI-style objects: 400 bad input (a prompt over the context unless the request
/// sends "truncation": "auto"), 401 wrong key, 404 unknown model, 413 body too large, 500 else.
/// SIGTERM or Ctrl-C drains: requests in flight finish, new ones get 503, then exit 0.
///
/// Exit status: 0 stopped cleanly, 1 failure, 2 usage (incl. a port that cannot be bound),
/// 3 model not found or ambiguous.
#[derive(Parser, Debug)]
#[command(name = "mlxk-serve", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Models to serve; without any, `model` records are read from stdin
    pub models: Vec<String>,
    /// Address to bind; 127.0.0.1 keeps it on this machine, 0.0.0.0 exposes it
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed to stderr)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 route
    #[arg(long, env = "MLXK_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests that may wait beyond the ones running before new ones get 429
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub queue: usize,
    /// Generations run interleaved on the loaded model: a new request is prefilled at once and
    /// its first token does not wait for the others to finish (each holds its own KV cache;
    /// 1 serves them one at a time, in order)
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// Largest request body accepted (413 above it; pictures come inline, base64)
    #[arg(long, default_value_t = 20 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Largest audio upload the /v1/audio routes accept (413 above it)
    #[arg(long, default_value_t = 25 << 20, value_name = "BYTES")]
    pub max_upload_bytes: usize,
    /// Tokens generated when a request gives no max_tokens
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_tokens: usize,
    /// Write the per-request JSON log lines to FILE instead of stderr
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Append a benchmark report record (schema 0.2.2) per generation to FILE (a request's
    /// `X-Mlxk-Test: NAME` header names its test `mlxk-serve::NAME`)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Unpack quantized weights to f32 at load
    #[arg(long)]
    pub dequantize: bool,
    /// Prompt tokens processed per prefill step
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub prefill_step: usize,
}

const EXAMPLES: &str = "Examples:
  mlxk-serve SmolLM2-135M-Instruct --port 8080
  mlxk-probe qwen | mlxk-gate | mlxk-serve --port 8080
  curl -N localhost:8080/v1/chat/completions -d '{\"model\": \"SmolLM2-135M-Instruct\",
    \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'
  mlxk-serve whisper-tiny.en SmolLM2-135M-Instruct
  curl localhost:8080/v1/audio/transcriptions -F model=whisper-tiny.en -F file=@talk.wav \\
    -F response_format=srt";

fn run(cli: &Cli, out: &mut Output) -> Result<(), Failure> {
    let report = cli.report.as_deref().map(ReportFile::check).transpose()?;
    let jobs = if cli.models.is_empty() {
        if std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "name a model, or pipe model records: mlxk-probe NAME | mlxk-gate | mlxk-serve",
            ));
        }
        runner::jobs_from_records(std::io::stdin().lock(), out)?
            .into_iter()
            .map(|j| (j.record.id.clone(), j))
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &cli.models {
            v.push((spec.clone(), runner::job_for_spec(spec)?));
        }
        v
    };
    if jobs.is_empty() {
        return Err(Failure::usage("no models to serve"));
    }
    mlxk_serve::serve(
        jobs,
        mlxk_serve::Options {
            host: cli.host.clone(),
            port: cli.port,
            api_key: cli.api_key.clone(),
            queue: cli.queue,
            max_body_bytes: cli.max_body_bytes,
            max_upload_bytes: cli.max_upload_bytes,
            log: cli.log.clone(),
            settings: Settings {
                dequantize: cli.dequantize,
                prefill_step: cli.prefill_step,
                default_max_tokens: cli.max_tokens,
                report,
                parallel: cli.parallel as usize,
            },
        },
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output::new("mlxk-serve", false, false);
    cli::main_with("mlxk-serve", || {
        if let Err(f) = run(&cli, &mut out) {
            out.fail(&f, None);
        }
        Ok(out.tally.exit())
    })
}

mlxk::man_page_test!(Cli);
