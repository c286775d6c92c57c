//! `report-validate`: check benchmark report JSON Lines against the report schemas.
use clap::Parser;
use mlxk::cli::{self, Exit, Failure, OutputMode, Written};
use mlxk::report::{self, Schemas};
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate benchmark report JSON Lines against the report schemas.
///
/// Each line is checked against the schema version it declares in `schema_version` (0.1.0,
/// 0.2.0, 0.2.1 or 0.2.2; the schemas are built in and also kept in benchmarks/schemas/).
/// Problems are printed one per line, like a compiler: FILE:LINE: JSON-PATH: what was expected.
/// Blank lines are allowed; a last line cut off mid-record is reported as truncated.
///
/// With --migrate, records are upgraded to the --to version and written to stdout. Schema
/// changes are additive, so only `schema_version` changes; a record with a field the target
/// does not know is refused, never silently dropped, and then nothing is written.
///
/// Exit status: 0 all valid, 1 an invalid line (or an unreadable file), 2 usage.
#[derive(Parser, Debug)]
#[command(name = "report-validate", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Report files (JSON Lines); stdin when none are given
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write problems (and a closing summary) as JSON Lines records
    #[arg(long)]
    pub json: bool,
    /// Upgrade the records to the --to version and write them to stdout
    #[arg(long, requires = "to")]
    pub migrate: bool,
    /// Target schema version for --migrate
    #[arg(long, value_name = "VERSION", requires = "migrate", default_value = None)]
    pub to: Option<String>,
}

const EXAMPLES: &str = "Examples:
  report-validate benchmarks/runs/*.jsonl
  mlxk-gen m -p hi --report - | report-validate
  report-validate --migrate --to 0.2.2 old.jsonl > new.jsonl";

fn read_inputs(files: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    if files.is_empty() {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(Failure::usage(
                "give report files, or pipe records on stdin",
            ));
        }
        let mut buf = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::io(format!("cannot read stdin: {e}")))?;
        return Ok(vec![("<stdin>".into(), buf)]);
    }
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| (f.display().to_string(), b))
                .map_err(|e| Failure::io(format!("cannot read {}: {e}", f.display())))
        })
        .collect()
}

fn written(w: std::io::Result<Written>) -> Result<Written, Failure> {
    w.map_err(|e| Failure::io(format!("cannot write output: {e}")))
}

fn run(cli: &Cli) -> Result<Exit, Failure> {
    let inputs = read_inputs(&cli.files)?;
    let schemas = Schemas::new();
    if cli.migrate {
        return migrate(
            &schemas,
            &inputs,
            cli.to.as_deref().unwrap_or(report::CURRENT),
        );
    }
    let mode = if cli.json {
        OutputMode::Json
    } else {
        OutputMode::Human
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut records, mut invalid) = (0usize, 0usize);
    for (name, bytes) in &inputs {
        let (problems, lines) = report::validate_bytes(&schemas, bytes);
        records += lines;
        let mut bad_lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        bad_lines.dedup();
        invalid += bad_lines.len();
        for p in problems {
            let w = match mode {
                OutputMode::Json => cli::write_json(
                    &mut out,
                    &json!({"type": "error", "code": "invalid_report", "file": name, "line": p.line,
                            "path": p.problem.path, "message": p.problem.message}),
                ),
                OutputMode::Human => cli::write_line(
                    &mut out,
                    &format!(
                        "{name}:{}: {}: {}",
                        p.line, p.problem.path, p.problem.message
                    ),
                ),
            };
            if written(w)? == Written::Closed {
                return Ok(Exit::Ok);
            }
        }
    }
    let summary = match mode {
        OutputMode::Json => json!({"type": "summary", "files": inputs.len(), "records": records, "invalid": invalid}).to_string(),
        OutputMode::Human if invalid == 0 => format!("{records} records in {} file(s): all valid", inputs.len()),
        OutputMode::Human => format!("{invalid} of {records} records invalid in {} file(s)", inputs.len()),
    };
    written(cli::write_line(&mut out, &summary))?;
    Ok(if invalid == 0 {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

fn migrate(schemas: &Schemas, inputs: &[(String, Vec<u8>)], to: &str) -> Result<Exit, Failure> {
    let mut migrated = Vec::new();
    let mut failed = false;
    for (name, bytes) in inputs {
        match report::migrate(schemas, bytes, to) {
            Ok(records) => migrated.extend(records),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("report-validate: {name}: {e}");
                }
            }
        }
    }
    if failed {
        return Err(Failure::new(
            Exit::Failure,
            "migrate",
            "nothing written: fix or remove the lines above, then migrate again",
        ));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in &migrated {
        if written(cli::write_json(&mut out, r))? == Written::Closed {
            return Ok(Exit::Ok);
        }
    }
    let _ = out.flush();
    Ok(Exit::Ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main_with("report-validate", || run(&cli))
}

mlxk::man_page_test!(Cli);
