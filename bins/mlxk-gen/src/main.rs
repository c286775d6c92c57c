//! `mlxk-gen`: generate text with a local mlx language model.
use clap::Parser;
use std::process::ExitCode;

/// Generate text with a local MLX language model.
#[derive(Parser, Debug)]
#[command(name = "mlxk-gen", version, about)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it, `model` records are read from stdin
    pub model: Option<String>,
    /// Prompt text; `-` reads it from stdin
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// Maximum number of tokens to generate
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Random seed for sampling
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the chat template and feed the prompt as is
    #[arg(long)]
    pub raw: bool,
    /// Write JSON Lines records
    #[arg(long)]
    pub json: bool,
    /// Append a benchmark report record (schema 0.2.2) to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("mlxk-gen", "generating text")
}

mlxk::man_page_test!(Cli);
