//! `memplot`: draw a memory/cpu/gpu timeline from memmon samples and benchmark reports.
use clap::Parser;
use std::process::ExitCode;

/// Draw a memory/CPU/GPU timeline from memmon samples and benchmark reports.
#[derive(Parser, Debug)]
#[command(name = "memplot", version, about)]
pub struct Cli {
    /// memmon samples, benchmark reports and load/unload event streams (JSON Lines), in any order
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<std::path::PathBuf>,
    /// Output file: .html (interactive, offline) or .svg
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("memplot", "plotting")
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
