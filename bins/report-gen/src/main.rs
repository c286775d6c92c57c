//! `report-gen`: turn benchmark report JSON Lines into a Markdown report.
use clap::Parser;
use mlxk::cli::{self, Exit, Failure};
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

fn load(schemas: &Schemas, path: &Path) -> Result<Vec<Entry>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::io(format!("cannot read {}: {e}", path.display())))?;
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
        return Err(Failure::new(
            Exit::Failure,
            "invalid_report",
            format!(
                "{} is not a valid report; no report written (see report-validate)",
                path.display()
            ),
        ));
    }
    let parsed = report::parse_lines(&bytes);
    if parsed.records.is_empty() {
        return Err(Failure::new(
            Exit::Failure,
            "empty_report",
            format!("{} holds no records; no report written", path.display()),
        ));
    }
    Ok(parsed
        .records
        .iter()
        .map(|(_, r)| Entry::from_record(r))
        .collect())
}

fn default_output(entries: &[Entry]) -> PathBuf {
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
        markdown::run_date(entries)
    ))
}

fn run(cli: &Cli) -> Result<Exit, Failure> {
    let input = cli
        .file
        .clone()
        .or_else(|| newest_run(Path::new("benchmarks/runs")))
        .ok_or_else(|| {
            Failure::usage("no FILE given and no benchmarks/runs/*_benchmark.jsonl here")
        })?;
    let schemas = Schemas::new();
    let entries = load(&schemas, &input)?;
    let old = match &cli.compare {
        Some(p) => Some((p.display().to_string(), load(&schemas, p)?)),
        None => None,
    };
    let text = markdown::render(
        &input.display().to_string(),
        &entries,
        old.as_ref().map(|(s, e)| (s.as_str(), e.as_slice())),
    );
    let output = cli
        .output
        .clone()
        .unwrap_or_else(|| default_output(&entries));
    let mut stdout = std::io::stdout().lock();
    if output == Path::new("-") {
        // A closed stdout (`| head`) ends quietly.
        cli::write_line(&mut stdout, text.trim_end_matches('\n'))
            .map_err(|e| Failure::io(format!("cannot write output: {e}")))?;
        return Ok(Exit::Ok);
    }
    cli::write_atomically(&output, text.as_bytes())
        .map_err(|e| Failure::io(format!("cannot write {}: {e}", output.display())))?;
    cli::write_line(&mut stdout, &output.display().to_string())
        .map_err(|e| Failure::io(format!("cannot write output: {e}")))?;
    Ok(Exit::Ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main_with("report-gen", || run(&cli))
}

mlxk::man_page_test!(Cli);
