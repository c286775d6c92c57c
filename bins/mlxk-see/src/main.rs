//! `mlxk-see`: describe images with a local mlx vision-language model.
use clap::Parser;
use std::process::ExitCode;

/// Describe images with a local MLX vision-language model.
#[derive(Parser, Debug)]
#[command(name = "mlxk-see", version, about)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it, `model` records are read from stdin
    pub model: Option<String>,
    /// Image files to describe
    #[arg(short, long = "image", value_name = "FILE")]
    pub images: Vec<std::path::PathBuf>,
    /// Prompt text
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// Write JSON Lines records
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("mlxk-see", "describing images")
}

mlxk::man_page_test!(Cli);
