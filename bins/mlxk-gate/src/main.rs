//! `mlxk-gate`: decide per model record whether this machine can run it now.
use clap::Parser;
use mlxk::cli::{self, Exit, ExitTally, Failure, OutputMode, Written};
use mlxk::policy::{self, GateConfig};
use mlxk::records::{RecordLine, error_record, parse_record_line};
use mlxk::sys::SysRoot;
use mlxk::table;
use serde_json::Value;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// Decide per model record whether this machine can run it now.
///
/// Reads `model` records (from mlxk-probe) on stdin and passes each one on with a `gate`
/// object: the backend that runs it (text, vision or audio), the decision (allow, warn or
/// block), the reasons, and the memory numbers behind them. Fields it does not know are kept;
/// records of other types pass through untouched.
///
/// Blocked: unhealthy models, models no backend supports (unknown model_type, embeddings,
/// PyTorch .bin weights, GGUF types MLX cannot load), and vision/audio models whose estimated
/// memory exceeds THRESHOLD × available memory. Text models over the threshold are warned.
/// Available memory is MemAvailable from /proc/meminfo, or the room left under the cgroup v2
/// limit when that is lower; swap in use and memory pressure (PSI) are reported too.
///
/// Exit status: 0 all passed, 1 an input line was malformed (reported as an `error` record,
/// the gate goes on), 2 usage, 4 a model was blocked because no backend can run it here
/// (unhealthy, unsupported architecture or format), 5 a model was blocked by the memory gate
/// alone — so `set -o pipefail` pipelines stop.
#[derive(Parser, Debug)]
#[command(name = "mlxk-gate", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Largest allowed ratio of estimated model memory to available memory
    #[arg(long, default_value_t = policy::DEFAULT_THRESHOLD, value_parser = parse_threshold)]
    pub threshold: f64,
    /// Let vision/audio models over the memory threshold through with a warning
    #[arg(long)]
    pub allow_warn: bool,
    /// Leave blocked records out of the output (and exit 0 for them)
    #[arg(long)]
    pub drop_blocked: bool,
    /// Write JSON Lines even on a terminal
    #[arg(long, conflicts_with = "human")]
    pub json: bool,
    /// Write a table even on a pipe
    #[arg(long)]
    pub human: bool,
    /// Read /proc and /sys below DIR instead of / (for tests; also MLXK_SYS_ROOT)
    #[arg(long, value_name = "DIR", hide = true)]
    pub sys_root: Option<std::path::PathBuf>,
}

const EXAMPLES: &str = "Examples:
  mlxk-probe qwen3 | mlxk-gate | mlxk-gen -p 'Hello'
  mlxk-probe --all | mlxk-gate --drop-blocked --json > runnable.jsonl
  mlxk-probe llava | mlxk-gate --threshold 0.5 --human";

fn parse_threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err("the threshold must be a positive number, e.g. 0.70".into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main_with("mlxk-gate", || run(&cli))
}

fn run(cli: &Cli) -> Result<Exit, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage(
            "reads model records on stdin, e.g. `mlxk-probe NAME | mlxk-gate`",
        ));
    }
    let mode = OutputMode::choose(cli.json, cli.human);
    let sys = cli
        .sys_root
        .clone()
        .map(SysRoot::new)
        .unwrap_or_else(SysRoot::from_env);
    let cfg = GateConfig {
        threshold: cli.threshold,
        allow_warn: cli.allow_warn,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    let mut exit = ExitTally::default();
    let mut human_rows = Vec::new();
    for (i, line) in stdin.lock().lines().enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mlxk-gate: stdin line {n}: {e}");
                exit.note(Exit::Failure);
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let emitted = match gate_line(&line, n, &sys, &cfg) {
            Gated::PassThrough(v) => Some(v),
            Gated::Malformed(v) => {
                eprintln!(
                    "mlxk-gate: {}",
                    v["message"].as_str().unwrap_or("malformed input")
                );
                exit.note(Exit::Failure);
                Some(v)
            }
            Gated::Model(v, None, _) => Some(v),
            Gated::Model(v, Some(_), id) if cli.drop_blocked => {
                eprintln!("mlxk-gate: dropped {id}: {}", reasons(&v));
                None
            }
            Gated::Model(v, Some(refusal), _) => {
                exit.note(refusal.exit);
                Some(v)
            }
        };
        let Some(v) = emitted else { continue };
        match mode {
            OutputMode::Json => match cli::write_json(&mut out, &v) {
                Ok(Written::Ok) => {}
                Ok(Written::Closed) => return Ok(Exit::Ok),
                Err(e) => return Err(Failure::io(format!("cannot write output: {e}"))),
            },
            OutputMode::Human => human_rows.push(human_row(&v)),
        }
    }
    if mode == OutputMode::Human && !human_rows.is_empty() {
        let text = table::render(
            &["MODEL", "DECISION", "BACKEND", "MEM/AVAIL", "REASONS"],
            &human_rows,
        );
        cli::write_line(&mut out, text.trim_end())
            .map_err(|e| Failure::io(format!("cannot write output: {e}")))?;
    }
    Ok(exit.exit())
}

enum Gated {
    PassThrough(Value),
    Malformed(Value),
    /// The record with its gate, the refusal if the gate blocks it, and its id.
    Model(Value, Option<Failure>, String),
}

fn gate_line(line: &str, n: usize, sys: &SysRoot, cfg: &GateConfig) -> Gated {
    let (mut value, record) = match parse_record_line(line, n) {
        RecordLine::Model(v, r) => (v, r),
        RecordLine::Other(v) => return Gated::PassThrough(v),
        RecordLine::Malformed { message, model } => {
            return Gated::Malformed(error_record("malformed_input", &message, model.as_deref()));
        }
    };
    let gate = policy::decide_now(&record, sys, cfg);
    value["gate"] = serde_json::to_value(&gate).unwrap_or(Value::Null);
    Gated::Model(value, gate.refusal(), record.id)
}

fn reasons(v: &Value) -> String {
    v["gate"]["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn human_row(v: &Value) -> Vec<String> {
    if v["type"] == "model" {
        let ratio = v["gate"]["ratio"]
            .as_f64()
            .map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "?".into());
        vec![
            v["id"].as_str().unwrap_or("?").to_string(),
            v["gate"]["decision"].as_str().unwrap_or("?").to_string(),
            v["gate"]["backend"].as_str().unwrap_or("-").to_string(),
            ratio,
            reasons(v),
        ]
    } else {
        let kind = v["type"].as_str().unwrap_or("?").to_string();
        vec![
            v["model"].as_str().unwrap_or("-").to_string(),
            kind,
            "-".into(),
            "-".into(),
            v["message"].as_str().unwrap_or("").to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_must_be_positive() {
        assert!(parse_threshold("0.5").is_ok());
        assert!(parse_threshold("0").is_err());
        assert!(parse_threshold("abc").is_err());
    }
}

mlxk::man_page_test!(Cli);
