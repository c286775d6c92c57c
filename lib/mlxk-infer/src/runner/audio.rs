//! The audio runner (mlxk-hear): every input file through one loaded Whisper model — decoded,
//! transcribed, written as text, subtitles or records — one report record per file. A file
//! that cannot be decoded fails alone; the others still run.
use super::{Runner, Runs};
use crate::audio;
use crate::models::whisper::{self, Whisper};
use crate::transcribe::formats::{self, Format};
use crate::transcribe::tokenizer::WhisperTokenizer;
use crate::transcribe::{Segment, TranscribeOptions, Transcript, transcribe};
use crate::weights::DtypePolicy;
use mlx_rs::Dtype;
use mlxk::cli::Failure;
use mlxk::report::run::{RunFacts, WeightPrecision};
use mlxk::runner::{Job, Output};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A loaded Whisper model and its tokenizer.
pub struct AudioModel {
    pub whisper: Whisper,
    pub tokenizer: WhisperTokenizer,
    pub load_time_s: f64,
}

/// Where a transcript goes.
#[derive(Debug, Clone)]
pub enum Destination {
    Stdout,
    /// `-o FILE` (one input).
    File(PathBuf),
    /// `-o DIR` (several inputs): `DIR/<stem>.<ext>`.
    Dir(PathBuf),
}

/// mlxk-hear's settings.
pub struct AudioRunner {
    pub inputs: Vec<PathBuf>,
    pub options: TranscribeOptions,
    pub format: Format,
    pub destination: Destination,
    pub verbose: bool,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Runner for AudioRunner {
    type Model = AudioModel;
    const TOOL: &'static str = "mlxk-hear";
    const BACKEND: &'static str = "audio";

    fn load(&self, job: &Job) -> Result<(AudioModel, f64), Failure> {
        let t = Instant::now();
        let dir = Path::new(&job.record.path);
        let dir = if dir.is_file() {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        let whisper = whisper::load(dir, DtypePolicy::for_default_device())?;
        let tokenizer = WhisperTokenizer::load(dir, &whisper.dims)?;
        let load_time_s = t.elapsed().as_secs_f64();
        Ok((
            AudioModel {
                whisper,
                tokenizer,
                load_time_s,
            },
            load_time_s,
        ))
    }

    fn describe(&self, m: &AudioModel, job: &Job, facts: &mut RunFacts) {
        let w = &m.whisper;
        facts.framework = Some(w.layout.label().into());
        facts.quantization = Some(match w.quantization {
            Some((bits, group)) => WeightPrecision::Quantized {
                bits: bits as u32,
                group_size: group as u32,
            },
            None => WeightPrecision::Dense(
                match w.stored_dtype {
                    Dtype::Float16 => "f16",
                    Dtype::Bfloat16 => "bf16",
                    _ => "f32",
                }
                .into(),
            ),
        });
        if self.verbose {
            eprintln!(
                "{}: {}: Whisper ({} layout), {} mel bins, {}+{} layers, width {}, {}, {:.2} GB in memory, loaded in {:.2} s",
                Self::TOOL,
                job.record.id,
                w.layout.label(),
                w.dims.n_mels,
                w.dims.n_audio_layer,
                w.dims.n_text_layer,
                w.dims.n_audio_state,
                if w.dims.is_multilingual() {
                    "multilingual"
                } else {
                    "English-only"
                },
                w.weight_bytes as f64 / 1e9,
                m.load_time_s
            );
            for p in &w.policy_applied {
                eprintln!("{}: dtype policy: {p}", Self::TOOL);
            }
        }
    }

    fn run(
        &self,
        model: &AudioModel,
        job: &Job,
        out: &mut Output,
        runs: &mut Runs,
    ) -> Result<(), Failure> {
        let several = self.inputs.len() > 1;
        for (i, input) in self.inputs.iter().enumerate() {
            if out.closed() || runs.interrupted() {
                break;
            }
            let mut facts = runs.start();
            // The report's test name says which recording it timed.
            let name = if input == Path::new("-") {
                "stdin".into()
            } else {
                input.file_name().map_or_else(
                    || input.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            };
            facts.tool = format!("{}::{name}", Self::TOOL);
            let outcome = self.transcribe_one(model, job, input, several && i > 0, out, &mut facts);
            runs.finish(out, facts, outcome);
        }
        Ok(())
    }
}

impl AudioRunner {
    fn transcribe_one(
        &self,
        model: &AudioModel,
        job: &Job,
        input: &Path,
        separate: bool,
        out: &mut Output,
        facts: &mut RunFacts,
    ) -> Result<(), Failure> {
        let id = job.record.id.as_str();
        let started = Instant::now();
        let t = Instant::now();
        let audio = audio::load(input)?;
        let audio_load_s = t.elapsed().as_secs_f64();
        let file = input.display().to_string();
        let show_progress = !out.json && std::io::stderr().is_terminal();
        let stream_segments = out.json || self.format == Format::Jsonl;
        // Segment records go to stdout as each window is done; a file gets them once complete.
        let live = stream_segments && matches!(self.destination, Destination::Stdout);
        let mut emitted = Vec::<serde_json::Value>::new();
        let mut write_error = None;
        let mut progress = |done: usize, total: usize, new: &[Segment]| {
            if show_progress {
                eprint!(
                    "\r{}: {file}: {:>3}%",
                    Self::TOOL,
                    (done * 100).checked_div(total).unwrap_or(100)
                );
            }
            if stream_segments {
                for s in new {
                    let mut r = json!({"type": "segment", "model": id, "file": file, "id": s.id,
                        "start": round3(s.start), "end": round3(s.end), "text": s.text,
                        "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob,
                        "temperature": s.temperature});
                    if let Some(w) = &s.words {
                        r["words"] = json!(w);
                    }
                    if live {
                        if let Err(e) = out.record(&r) {
                            write_error.get_or_insert(e);
                        }
                    } else {
                        emitted.push(r);
                    }
                }
            }
            !out.closed()
        };
        let (transcript, cancelled) = transcribe(
            &model.whisper,
            &model.tokenizer,
            &audio.samples,
            &self.options,
            &mut progress,
            self.cancel.as_deref(),
        )?;
        if show_progress {
            eprint!("\r\x1b[K");
        }
        if let Some(e) = write_error {
            return Err(e);
        }
        let wall = started.elapsed().as_secs_f64();
        let rtf = transcription_facts(facts, &transcript, wall, audio_load_s, cancelled);
        let times = &transcript.times;
        if self.verbose {
            eprintln!(
                "{}: {file}: {:.1} s of {} audio ({} Hz, {} ch) in {:.2} s (RTF {:.3}): read {:.2} s, mel {:.2} s, encode {:.2} s, decode {:.2} s ({} windows, {} decodings, {} tokens){}",
                Self::TOOL,
                transcript.duration_s,
                audio.codec,
                audio.source_rate,
                audio.source_channels,
                wall,
                rtf,
                audio_load_s,
                times.mel_s,
                times.encode_s,
                times.decode_s,
                times.windows,
                times.decodings,
                times.tokens,
                if transcript.loops_cut > 0 {
                    format!(
                        ", repetition guard acted on {} window(s)",
                        transcript.loops_cut
                    )
                } else {
                    String::new()
                }
            );
        }
        if cancelled {
            // Partial: marked so on stdout (records, or the text so far on a text output); no
            // file is written under its name.
            if !out.closed() {
                if out.json || self.format == Format::Jsonl {
                    out.record(&json!({"type": "transcript", "model": id, "file": file,
                        "text": transcript.text.trim(), "language": transcript.language,
                        "duration_s": round3(transcript.duration_s),
                        "segments": transcript.segments.len(), "finish_reason": "interrupted"}))?;
                } else if matches!(self.destination, Destination::Stdout) {
                    out.text(id, &formats::render(&transcript, self.format))?;
                }
            }
            return Ok(());
        }
        self.write(id, &file, input, &transcript, rtf, emitted, separate, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        id: &str,
        file: &str,
        input: &Path,
        t: &Transcript,
        rtf: f64,
        segments: Vec<serde_json::Value>,
        separate: bool,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let summary = json!({"type": "transcript", "model": id, "file": file, "text": t.text.trim(),
            "language": t.language, "duration_s": round3(t.duration_s), "rtf": round3(rtf),
            "segments": t.segments.len()});
        let body = if self.format == Format::Jsonl {
            let mut s = String::new();
            for r in segments.iter().chain(std::iter::once(&summary)) {
                s.push_str(&r.to_string());
                s.push('\n');
            }
            s
        } else {
            formats::render(t, self.format)
        };
        match &self.destination {
            Destination::File(p) => write_file(p, &body)?,
            Destination::Dir(d) => {
                let stem = output_stem(input);
                write_file(
                    &d.join(format!("{stem}.{}", self.format.extension())),
                    &body,
                )?
            }
            Destination::Stdout if out.json || self.format == Format::Jsonl => {
                // The segments went out as they were done.
                out.record(&summary)?;
                return Ok(());
            }
            Destination::Stdout => {
                if separate {
                    out.text(id, "\n")?;
                }
                if self.inputs.len() > 1 && std::io::stdout().is_terminal() {
                    out.text(id, &format!("==> {file} <==\n"))?;
                }
                out.text(id, &body)?;
                return Ok(());
            }
        }
        // Written to a file: the records still go to stdout with --json.
        if out.json {
            for r in &segments {
                out.record(r)?;
            }
            out.record(&summary)?;
        }
        Ok(())
    }
}

/// What a transcription measured, into its report facts (mlxk-hear's and the server's
/// records alike); returns the real-time factor (wall time over audio time).
pub fn transcription_facts(
    facts: &mut RunFacts,
    transcript: &Transcript,
    wall_s: f64,
    audio_decode_s: f64,
    cancelled: bool,
) -> f64 {
    let rtf = if transcript.duration_s > 0.0 {
        wall_s / transcript.duration_s
    } else {
        0.0
    };
    let times = &transcript.times;
    facts.finish_reason = Some(if cancelled { "interrupted" } else { "stop" }.into());
    facts.completion_tokens = Some(times.tokens as u64);
    if times.decode_s > 0.0 {
        facts.tokens_per_sec = Some(times.tokens as f64 / times.decode_s);
    }
    facts.peak_bytes = mlx_rs::memory::peak_memory().ok().map(|b| b as u64);
    facts.extra = vec![
        ("audio_duration_s".into(), transcript.duration_s),
        ("real_time_factor".into(), rtf),
        ("audio_decode_s".into(), audio_decode_s),
        ("mel_s".into(), times.mel_s),
        ("encode_s".into(), times.encode_s),
        ("decode_s".into(), times.decode_s),
        ("windows".into(), times.windows as f64),
    ];
    rtf
}

/// The name a transcript of `input` gets in an output folder: its stem, `stdin` for `-`.
pub fn output_stem(input: &Path) -> String {
    if input == Path::new("-") {
        return "stdin".into();
    }
    input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audio".into())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes the whole file under its name only when complete.
fn write_file(p: &Path, body: &str) -> Result<(), Failure> {
    mlxk::cli::write_atomically(p, body.as_bytes())
        .map_err(|e| Failure::io(format!("cannot write {}: {e}", p.display())))
}
