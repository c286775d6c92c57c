//! `mlxk-hear`: transcribe speech with a local Whisper model on MLX.
use clap::Parser;
use mlxk::cli::{self, Failure};
use mlxk::runner::{self, Output, ReportFile};
use mlxk_infer::runner::audio::{AudioRunner, Destination};
use mlxk_infer::runner::run_jobs;
use mlxk_infer::transcribe::decoding::Task;
use mlxk_infer::transcribe::formats::Format;
use mlxk_infer::transcribe::tokenizer::language_code;
use mlxk_infer::transcribe::{TranscribeOptions, temperature_schedule};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Transcribe speech with a local Whisper model on MLX.
///
/// Give a model (cache name, `org/name[@rev]` or folder) and audio files, or pipe `model`
/// records from mlxk-probe | mlxk-gate and give only the files. Whisper checkpoints load from
/// the mlx-whisper layout (weights.safetensors + config.json), the Hugging Face transformers
/// layout (model.safetensors, model_type whisper) and CTranslate2 (model.bin, as faster-whisper
/// uses). Audio: WAV, FLAC, MP3, OGG/Vorbis, Opus, M4A/AAC at any rate and channel count (mixed to
/// mono, resampled to 16 kHz); `-` reads a file from stdin. Several files reuse the loaded model.
///
/// Decoding follows mlx-whisper: 30-second windows moved on by the last timestamp, greedy
/// tokens with temperature fallback when a window's text is too repetitive or unlikely,
/// no-speech detection, the previous text as context. A window that repeats one phrase again
/// and again is decoded again, and its repeats cut if it still loops.
///
/// Exit status: 0 ok, 1 failure (incl. an input that is not decodable audio — the other files
/// still run), 2 usage, 3 model not found or ambiguous, 4 model unusable here, 5 blocked by the
/// memory gate, 130 interrupted.
#[derive(Parser, Debug)]
#[command(name = "mlxk-hear", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Model name, `org/name[@rev]` or folder; without it (or when it names a file), `model`
    /// records are read from stdin
    pub model: Option<String>,
    /// Audio files to transcribe; `-` reads one from stdin
    #[arg(value_name = "AUDIO")]
    pub audio: Vec<PathBuf>,
    /// Spoken language, as a code or name (default: detected on multilingual models)
    #[arg(long, value_name = "LANG")]
    pub language: Option<String>,
    /// transcribe, or translate into English
    #[arg(long, default_value = "transcribe", value_parser = ["transcribe", "translate"])]
    pub task: String,
    /// Output format: txt, srt, vtt, tsv, json (one document), jsonl (segment records, then a
    /// transcript record)
    #[arg(short = 'f', long, default_value = "txt", value_parser = ["txt", "srt", "vtt", "tsv", "json", "jsonl"])]
    pub format: String,
    /// Write the transcript to FILE (one input) or into DIR as <name>.<format> (several)
    #[arg(short, long, value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// Text that comes before the audio (names, spellings, style) for the first window
    #[arg(long, value_name = "TEXT")]
    pub initial_prompt: Option<String>,
    /// Decode each window without the previous window's text as context
    #[arg(long)]
    pub no_condition_on_previous_text: bool,
    /// Temperature of the first decoding (0 = greedy)
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Raise the temperature by this much after each failed check, up to 1 (0 = no fallback)
    #[arg(long, default_value_t = 0.2, value_name = "STEP")]
    pub temperature_increment_on_fallback: f32,
    /// A window whose text compresses better than this (gzip ratio) is decoded again
    #[arg(long, default_value_t = 2.4, value_name = "RATIO")]
    pub compression_ratio_threshold: f64,
    /// A window whose average token log-probability is below this is decoded again
    #[arg(long, default_value_t = -1.0, value_name = "LOGPROB", allow_hyphen_values = true)]
    pub logprob_threshold: f64,
    /// A window is silence when <|nospeech|> is likelier than this and its text unlikely
    #[arg(long, default_value_t = 0.6, value_name = "PROB")]
    pub no_speech_threshold: f64,
    /// Text only, no timestamps: the whole window is one segment
    #[arg(long, conflicts_with = "word_timestamps")]
    pub without_timestamps: bool,
    /// Time each word too (cross-attention alignment + DTW, as mlx-whisper): `words` in json,
    /// jsonl and --json records
    #[arg(long)]
    pub word_timestamps: bool,
    /// Beam search with N beams at temperature 0 (1 = greedy, as mlx-whisper; faster-whisper
    /// and whisper.cpp default to 5)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub beam_size: u32,
    /// With --beam-size: stop once N × PATIENCE hypotheses have ended
    #[arg(long, default_value_t = 1.0, value_name = "PATIENCE")]
    pub patience: f32,
    /// Random seed for the fallback temperatures
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write JSON Lines records (`load`, `segment`…, `transcript`, `unload`) to stdout
    #[arg(long)]
    pub json: bool,
    /// Append a benchmark report record (schema 0.2.2) per file to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print what was loaded and where the time went to stderr
    #[arg(short, long)]
    pub verbose: bool,
}

const EXAMPLES: &str = "Examples:
  mlxk-hear whisper-tiny.en talk.mp3
  mlxk-hear whisper-base meeting.flac -f srt -o meeting.srt
  mlxk-hear whisper-base interview.m4a --language de --task translate --json
  mlxk-probe whisper | mlxk-gate | mlxk-hear a.wav b.ogg --report bench.jsonl
  cat call.wav | mlxk-hear whisper-tiny.en -";

fn options(cli: &Cli) -> Result<TranscribeOptions, Failure> {
    let language = match &cli.language {
        None => None,
        Some(l) => Some(
            language_code(l)
                .ok_or_else(|| Failure::usage(format!("--language {l}: not a language Whisper knows (use a code like en, de, or a name like German)")))?
                .to_string(),
        ),
    };
    if cli.patience.is_nan() || cli.patience <= 0.0 {
        return Err(Failure::usage("--patience must be above 0"));
    }
    let temperatures = temperature_schedule(cli.temperature, cli.temperature_increment_on_fallback)
        .map_err(|e| {
            Failure::usage(format!(
                "--temperature / --temperature-increment-on-fallback: {e}"
            ))
        })?;
    Ok(TranscribeOptions {
        task: if cli.task == "translate" {
            Task::Translate
        } else {
            Task::Transcribe
        },
        language,
        temperatures,
        compression_ratio_threshold: Some(cli.compression_ratio_threshold),
        logprob_threshold: Some(cli.logprob_threshold),
        no_speech_threshold: Some(cli.no_speech_threshold),
        condition_on_previous_text: !cli.no_condition_on_previous_text,
        initial_prompt: cli.initial_prompt.clone(),
        without_timestamps: cli.without_timestamps,
        word_timestamps: cli.word_timestamps,
        beam_size: cli.beam_size as usize,
        patience: cli.patience,
        seed: cli.seed,
    })
}

fn run(cli: &Cli, out: &mut Output) -> Result<(), Failure> {
    let report = cli.report.as_deref().map(ReportFile::check).transpose()?;
    let format = Format::parse(&cli.format).ok_or_else(|| Failure::usage("unknown --format"))?;
    // `mlxk-hear a.wav b.wav` with records on stdin: the first word is audio, not a model.
    let (model, mut inputs) = match &cli.model {
        Some(m) if std::io::stdin().is_terminal() || !looks_like_audio(m) => {
            (Some(m.clone()), cli.audio.clone())
        }
        Some(m) => {
            let mut v = vec![PathBuf::from(m)];
            v.extend(cli.audio.iter().cloned());
            (None, v)
        }
        None => (None, cli.audio.clone()),
    };
    if inputs.is_empty() {
        return Err(Failure::usage(
            "no audio: give one or more files (or - for stdin) after the model",
        ));
    }
    if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Failure::usage("stdin (-) can be read only once"));
    }
    if model.is_none() && inputs.iter().any(|p| p.as_os_str() == "-") {
        return Err(Failure::usage(
            "- reads audio from stdin, but stdin carries model records here; name the model",
        ));
    }
    inputs.dedup();
    if cli.json && cli.output.is_none() && !matches!(format, Format::Txt | Format::Jsonl) {
        return Err(Failure::usage(format!(
            "--json writes records to stdout; write the {} with -o FILE beside them",
            cli.format
        )));
    }
    if cli.output.is_some() && inputs.len() > 1 {
        let mut stems: Vec<String> = inputs.iter().map(|p| output_stem(p)).collect();
        stems.sort();
        if let Some(w) = stems.windows(2).find(|w| w[0] == w[1]) {
            return Err(Failure::usage(format!(
                "-o DIR: two inputs are named {}; their transcripts would overwrite each other",
                w[0]
            )));
        }
    }
    let destination = match &cli.output {
        None => Destination::Stdout,
        Some(p) if inputs.len() > 1 => {
            if !p.is_dir() {
                return Err(Failure::usage(format!(
                    "-o {}: with several inputs, -o names an existing directory",
                    p.display()
                )));
            }
            Destination::Dir(p.clone())
        }
        Some(p) if p.is_dir() => Destination::Dir(p.clone()),
        Some(p) => Destination::File(p.clone()),
    };
    let runner = AudioRunner {
        inputs,
        options: options(cli)?,
        format,
        destination,
        verbose: cli.verbose,
        cancel: Some(runner::interrupt_flag()),
    };
    let jobs = match &model {
        Some(spec) => vec![runner::job_for_spec(spec)?],
        None if std::io::stdin().is_terminal() => {
            return Err(Failure::usage(
                "name a model, or pipe model records: mlxk-probe whisper | mlxk-gate | mlxk-hear FILE…",
            ));
        }
        None => runner::jobs_from_records(std::io::stdin().lock(), out)?,
    };
    if jobs.len() > 1 && cli.output.is_some() {
        return Err(Failure::usage(
            "-o writes one model's transcripts; pipe one model record, or drop -o",
        ));
    }
    run_jobs(
        &runner,
        &jobs,
        out,
        report.as_ref(),
        runner.cancel.as_deref(),
    );
    Ok(())
}

/// The name a transcript gets in `-o DIR`: the input's stem (`stdin` for `-`).
fn output_stem(p: &std::path::Path) -> String {
    mlxk_infer::runner::audio::output_stem(p)
}

fn looks_like_audio(s: &str) -> bool {
    let p = std::path::Path::new(s);
    p.is_file()
        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            [
                "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "mp4", "webm", "mkv",
            ]
            .contains(&e.to_ascii_lowercase().as_str())
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output::new("mlxk-hear", cli.json, false);
    cli::main_with("mlxk-hear", || {
        if let Err(f) = run(&cli, &mut out) {
            out.fail(&f, cli.model.as_deref());
        }
        Ok(out.tally.exit())
    })
}

mlxk::man_page_test!(Cli);
