//! `report-validate`: validate benchmark report json lines against the report schemas.
use clap::Parser;
use std::process::ExitCode;

/// Validate benchmark report JSON Lines against the report schemas.
#[derive(Parser, Debug)]
#[command(name = "report-validate", version, about)]
pub struct Cli {
    /// Report files (JSON Lines); stdin when none are given
    #[arg(value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Write errors as JSON Lines records
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("report-validate", "validating reports")
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
