//! `report-gen`: turn benchmark report json lines into a markdown report, optionally compared with an older run.
use clap::Parser;
use std::process::ExitCode;

/// Turn benchmark report JSON Lines into a Markdown report, optionally compared with an older run.
#[derive(Parser, Debug)]
#[command(name = "report-gen", version, about)]
pub struct Cli {
    /// Report file (JSON Lines); default: the newest benchmarks/runs/*_benchmark.jsonl
    #[arg(value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// An older report to compare against
    #[arg(long, value_name = "OLD")]
    pub compare: Option<std::path::PathBuf>,
    /// Output Markdown file
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("report-gen", "generating reports")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_page_is_current() {
        Cli::command().debug_assert();
        let man = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man");
        mlxk::cli::check_man_page(Cli::command(), &man).unwrap();
    }
}
