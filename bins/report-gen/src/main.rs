//! `report-gen`: turn benchmark report JSON Lines into a Markdown report.
use clap::Parser;
use mlxk::cli::Exit;
use mlxk::report::markdown::{self, Entry};
use mlxk::report::{self, Schemas};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Turn benchmark report JSON Lines into a Markdown report, optionally compared with an older run.
///
/// Sections: run summary (tests, outcomes, total duration, wall time, effective compute time
/// from test_start_ts/test_end_ts), hardware and system, quality flags, a per-model table
/// (runs, total and median time, tokens/s, load time, peak RAM, vision/text/audio split with a
/// "legacy" bucket for records without inference_modality), the slowest tests and the failures.
/// With --compare: total duration change (⚠️ above +3 %, ✅ below −1 %), per-model and per-test
/// changes (⚠️ above +5 %), NEW and GONE rows.
///
/// The input is validated first (as report-validate does); an invalid line stops the report,
/// because a report over partial data would look complete. The same input always gives a
/// byte-identical report.
///
/// Exit status: 0 ok, 1 invalid or unreadable input, 2 usage.
#[derive(Parser, Debug)]
#[command(name = "report-gen", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Report file (JSON Lines); default: the newest benchmarks/runs/*_benchmark.jsonl
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// An older report to compare against
    #[arg(long, value_name = "OLD")]
    pub compare: Option<PathBuf>,
    /// Output Markdown file (`-` for stdout); default:
    /// benchmarks/reports/BENCHMARK-<version>-<date>.md
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

const EXAMPLES: &str = "Examples:
  report-gen                                      newest run → benchmarks/reports/
  report-gen runs/new.jsonl --compare runs/old.jsonl -o -
  report-gen new.jsonl -o report.md";

fn newest_run(dir: &Path) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_benchmark.jsonl"))
        })
        .collect();
    // Names start with the date (runs/<YYYY-MM-DD>_<name>_benchmark.jsonl): the last sorts newest.
    runs.sort();
    runs.pop()
}

fn load(schemas: &Schemas, path: &Path) -> Result<Vec<Entry>, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("report-gen: cannot read {}: {e}", path.display());
        ExitCode::from(Exit::Failure)
    })?;
    let (problems, _) = report::validate_bytes(schemas, &bytes);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!(
                "{}:{}: {}: {}",
                path.display(),
                p.line,
                p.problem.path,
                p.problem.message
            );
        }
        eprintln!(
            "report-gen: {} is not a valid report; no report written (see report-validate)",
            path.display()
        );
        return Err(Exit::Failure.into());
    }
    let parsed = report::parse_lines(&bytes);
    if parsed.records.is_empty() {
        eprintln!(
            "report-gen: {} holds no records; no report written",
            path.display()
        );
        return Err(Exit::Failure.into());
    }
    Ok(parsed
        .records
        .iter()
        .map(|(_, r)| Entry::from_record(r))
        .collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let input = match cli
        .file
        .clone()
        .or_else(|| newest_run(Path::new("benchmarks/runs")))
    {
        Some(p) => p,
        None => {
            eprintln!("report-gen: no FILE given and no benchmarks/runs/*_benchmark.jsonl here");
            return Exit::Usage.into();
        }
    };
    let schemas = Schemas::new();
    let entries = match load(&schemas, &input) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let old = match &cli.compare {
        Some(p) => match load(&schemas, p) {
            Ok(e) => Some((p.display().to_string(), e)),
            Err(code) => return code,
        },
        None => None,
    };
    let text = markdown::render(
        &input.display().to_string(),
        &entries,
        old.as_ref().map(|(s, e)| (s.as_str(), e.as_slice())),
    );
    let output = cli.output.clone().unwrap_or_else(|| {
        let version = entries
            .first()
            .map(|e| e.version.clone())
            .unwrap_or_default();
        let safe: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(format!(
            "benchmarks/reports/BENCHMARK-{safe}-{}.md",
            markdown::run_date(&entries)
        ))
    });
    if output == Path::new("-") {
        print!("{text}");
        return Exit::Ok.into();
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("report-gen: cannot create {}: {e}", dir.display());
        return Exit::Failure.into();
    }
    match std::fs::write(&output, &text) {
        Ok(()) => {
            println!("{}", output.display());
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("report-gen: cannot write {}: {e}", output.display());
            Exit::Failure.into()
        }
    }
}

mlxk::man_page_test!(Cli);
