//! `mlxk-probe`: resolve model names to local folders and report what each holds.
use clap::Parser;
use mlxk::cli::{self, Exit, ExitStatus, ExitTally, OutputMode, Written};
use mlxk::probe::{self, Device};
use mlxk::records::{ModelRecord, error_record};
use mlxk::resolve::{self, CacheRoot, ResolveError};
use mlxk::table;
use std::io::Write;
use std::process::ExitCode;

/// Resolve and inspect local models: health, format, quantization, capabilities, memory needs.
///
/// MODEL is a folder path, `org/name`, `org/name@REV` (a ref or snapshot hash prefix), a bare
/// name found as `mlx-community/NAME`, or any case-insensitive part of a cached repo id.
/// Models are looked up in the Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
/// ~/.cache/huggingface/hub. Nothing is downloaded.
///
/// On a terminal the result is a table; on a pipe, one `model` record per line (JSON Lines),
/// ready for `mlxk-gate`.
///
/// Exit status: 0 ok, 2 usage, 3 a model was not found or is ambiguous, 4 a named model is
/// unhealthy (incomplete, corrupt, LFS pointers, …).
#[derive(Parser, Debug)]
#[command(name = "mlxk-probe", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Models to probe (see above); with none, every cached model is listed
    #[arg(value_name = "MODEL")]
    pub models: Vec<String>,
    /// List every model in the cache
    #[arg(long, conflicts_with = "models")]
    pub all: bool,
    /// Write JSON Lines even on a terminal
    #[arg(long, conflicts_with = "human")]
    pub json: bool,
    /// Write a table even on a pipe
    #[arg(long)]
    pub human: bool,
}

const EXAMPLES: &str = "Examples:
  mlxk-probe                          list every cached model
  mlxk-probe qwen3 --json             one model record
  mlxk-probe Qwen/Qwen3-0.6B@a1b2     a specific snapshot
  mlxk-probe ./my-model | mlxk-gate   probe a folder and gate it";

enum Outcome {
    Record(Box<ModelRecord>, bool),
    Error { spec: String, err: ResolveError },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = OutputMode::choose(cli.json, cli.human);
    let cache = CacheRoot::from_env();
    let device = Device::current();

    let mut outcomes = Vec::new();
    if cli.models.is_empty() {
        for (id, snap) in resolve::list(&cache) {
            outcomes.push(match snap {
                Ok(s) => Outcome::Record(Box::new(probe::probe(&s, device)), false),
                Err(err) => Outcome::Error { spec: id, err },
            });
        }
    } else {
        for spec in &cli.models {
            outcomes.push(match resolve::resolve(spec, &cache) {
                Ok(s) => Outcome::Record(Box::new(probe::probe(&s, device)), true),
                Err(err) => Outcome::Error {
                    spec: spec.clone(),
                    err,
                },
            });
        }
    }

    let mut exit = ExitTally::default();
    for o in &outcomes {
        match o {
            Outcome::Error { err, .. } => {
                eprintln!("mlxk-probe: {err}");
                exit.note(err.exit());
            }
            Outcome::Record(r, named) if *named && !r.health.ok => exit.note(Exit::Unusable),
            _ => {}
        }
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match mode {
        OutputMode::Json => write_json(&mut out, &outcomes),
        OutputMode::Human => write_human(&mut out, &outcomes, &cache),
    };
    match written {
        Ok(_) => exit.exit().into(),
        Err(e) => {
            eprintln!("mlxk-probe: cannot write output: {e}");
            Exit::Failure.into()
        }
    }
}

fn write_json(out: &mut impl Write, outcomes: &[Outcome]) -> std::io::Result<Written> {
    for o in outcomes {
        let value = match o {
            Outcome::Record(r, _) => serde_json::to_value(r).map_err(std::io::Error::other)?,
            Outcome::Error { spec, err } => error_record(err.code(), &err.to_string(), Some(spec)),
        };
        if cli::write_json(out, &value)? == Written::Closed {
            return Ok(Written::Closed);
        }
    }
    Ok(Written::Ok)
}

fn write_human(
    out: &mut impl Write,
    outcomes: &[Outcome],
    cache: &CacheRoot,
) -> std::io::Result<Written> {
    let records: Vec<&ModelRecord> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Record(r, _) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        if outcomes.is_empty() {
            return cli::write_line(out, &format!("no models in {}", cache.0.display()));
        }
        return Ok(Written::Ok);
    }
    let rows: Vec<Vec<String>> = records.iter().map(|r| human_row(r)).collect();
    let mut text = table::render(
        &[
            "MODEL",
            "TYPE",
            "FORMAT",
            "QUANT",
            "SIZE",
            "MEMORY",
            "CONTEXT",
            "CAPABILITIES",
            "HEALTH",
        ],
        &rows,
    );
    for r in &records {
        for p in &r.health.problems {
            text.push_str(&format!("{}: {p}\n", r.id));
        }
    }
    cli::write_line(out, text.trim_end())
}

fn human_row(r: &ModelRecord) -> Vec<String> {
    vec![
        r.id.clone(),
        r.model_type.clone().unwrap_or_else(|| "?".into()),
        r.framework.label().to_string(),
        r.quantization.label(),
        table::human_bytes(r.size_bytes),
        table::human_bytes(r.memory.estimate_bytes),
        r.context_length
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into()),
        r.capabilities
            .iter()
            .map(|c| c.label())
            .collect::<Vec<_>>()
            .join(","),
        if r.health.ok {
            "ok".into()
        } else {
            format!("{} problem(s)", r.health.problems.len())
        },
    ]
}

mlxk::man_page_test!(Cli);
