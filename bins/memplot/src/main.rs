//! `memplot`: draw a memory/CPU/GPU timeline from memmon samples, reports and events.
use clap::{Parser, ValueEnum};
use mlxk::cli::{self, Exit, Failure};
use mlxk::timeline::{self, Inputs};
use std::path::PathBuf;
use std::process::ExitCode;

const PLOTLY_JS_GZ_B64: &str = include_str!(concat!(env!("OUT_DIR"), "/plotly.min.js.gz.b64"));

/// Draw a memory/CPU/GPU timeline from memmon samples, benchmark reports and load/unload events.
///
/// Inputs are JSON Lines files in any order, recognised line by line: memmon samples (ours or
/// the Python tool's), benchmark report records (schema 0.1.0–0.2.2; test windows from
/// test_start_ts/test_end_ts, else timestamp − duration) and load/unload events from mlxk-gen,
/// mlxk-see and mlxk-hear (exact "model in RAM" spans).
///
/// Rows sharing the time axis: RAM free with memory-pressure markers, swap (right axis, only
/// when used), 50 %/25 % RAM lines and the process-tree RSS; CPU user/sys/idle with the 1-min
/// load (right axis); GPU when any sample has it. Gray regions: a model in RAM; light blue:
/// tests without a model. Model names at switches (top), test names at starts (bottom).
///
/// HTML is one self-contained, interactive file (zoom, hover, range slider) that works offline;
/// SVG is a static picture. Long runs are decimated for display (min/max per bucket, peaks
/// kept) and the plot says so. Malformed lines are reported as FILE:LINE and skipped.
///
/// Exit status: 0 ok, 1 no samples / unreadable input / cannot write, 2 usage.
#[derive(Parser, Debug)]
#[command(name = "memplot", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// memmon samples, benchmark reports and load/unload event streams (JSON Lines), in any order
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Output file (.html or .svg); default: <first input>-timeline.html
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format; default: from the output file's extension
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Html,
    Svg,
}

const EXAMPLES: &str = "Examples:
  memplot mem.jsonl bench.jsonl -o timeline.html
  memplot mem.jsonl bench.jsonl gen-events.jsonl -o t.svg";

fn run(cli: &Cli) -> Result<Exit, Failure> {
    let mut inputs = Inputs::default();
    for path in &cli.inputs {
        let bytes = std::fs::read(path)
            .map_err(|e| Failure::io(format!("cannot read {}: {e}", path.display())))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(Failure::new(
                Exit::Failure,
                "empty_input",
                format!("{} is empty", path.display()),
            ));
        }
        inputs.add_text(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
    for s in &inputs.skipped {
        eprintln!("memplot: skipped {s}");
    }
    let t = timeline::build(&inputs)
        .map_err(|e| Failure::new(Exit::Failure, "no_timeline", e.to_string()))?;
    let output = cli.output.clone().unwrap_or_else(|| {
        let stem = cli.inputs[0]
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "memplot".into());
        PathBuf::from(format!("{stem}-timeline.html"))
    });
    let format = match (cli.format, output.extension().and_then(|e| e.to_str())) {
        (Some(f), _) => f,
        (None, Some("svg")) => Format::Svg,
        (None, Some("html" | "htm")) => Format::Html,
        (None, _) => {
            return Err(Failure::usage(format!(
                "cannot tell the format of {}: use .html or .svg, or --format",
                output.display()
            )));
        }
    };
    let text = match format {
        Format::Html => timeline::to_html(&t, PLOTLY_JS_GZ_B64),
        Format::Svg => t.to_svg(),
    };
    cli::write_atomically(&output, text.as_bytes())
        .map_err(|e| Failure::io(format!("cannot write {}: {e}", output.display())))?;
    cli::write_line(&mut std::io::stdout().lock(), &output.display().to_string())
        .map_err(|e| Failure::io(format!("cannot write output: {e}")))?;
    Ok(Exit::Ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main_with("memplot", || run(&cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_plotly_is_small_and_present() {
        assert!(PLOTLY_JS_GZ_B64.len() > 300_000, "plotly.js is embedded");
        assert!(
            PLOTLY_JS_GZ_B64.len() < 1_000_000,
            "compressed: {} bytes",
            PLOTLY_JS_GZ_B64.len()
        );
    }
}

mlxk::man_page_test!(Cli);
