//! `memmon`: sample memory, cpu and gpu while a command runs, as json lines.
use clap::Parser;
use std::process::ExitCode;

/// Sample memory, CPU and GPU while a command runs, as JSON Lines.
#[derive(Parser, Debug)]
#[command(name = "memmon", version, about)]
pub struct Cli {
    /// Output file (`-` for stdout when no command is wrapped)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Sampling interval in milliseconds
    #[arg(long, default_value_t = 200)]
    pub interval: u64,
    /// Stop after this many seconds (without a wrapped command)
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Write CSV instead of JSON Lines
    #[arg(long)]
    pub csv: bool,
    /// The command to run and watch (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("memmon", "monitoring")
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
