//! `mlxk-hear`: transcribe speech with a local mlx whisper model.
use clap::Parser;
use std::process::ExitCode;

/// Transcribe speech with a local MLX Whisper model.
#[derive(Parser, Debug)]
#[command(name = "mlxk-hear", version, about)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it, `model` records are read from stdin
    pub model: Option<String>,
    /// Audio files to transcribe (WAV, FLAC, OGG, MP3)
    #[arg(value_name = "AUDIO")]
    pub audio: Vec<std::path::PathBuf>,
    /// Spoken language (default: detect)
    #[arg(long)]
    pub language: Option<String>,
    /// Write JSON Lines records
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    mlxk::cli::not_built_yet("mlxk-hear", "transcribing audio")
}

mlxk::man_page_test!(Cli);
