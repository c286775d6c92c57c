//! Transcribing a whole recording, as mlx-whisper's `transcribe` does: the log-Mel features
//! of the audio plus 30 s of silence, 30-second windows moved on by the last timestamp,
//! temperature fallback when a window's text is too repetitive (compression ratio) or too
//! unlikely (average log-probability) unless it is silence (no-speech probability), the
//! previous text as the next window's prompt — and, beyond the reference, a guard that never
//! lets a window repeat the same segment over and over.
use crate::audio::SAMPLE_RATE;
use crate::audio::mel::{HOP_LENGTH, MelSpectrogram, N_FRAMES, N_SAMPLES};
use crate::error::{InferError, Result};
use crate::models::whisper::Whisper;
use decoding::{DecodeOptions, DecodingResult, Task, decode_window, detect_language};
use mlx_rs::Array;
use std::time::Instant;
use tokenizer::WhisperTokenizer;

pub mod decoding;
pub mod formats;
pub mod tiktoken;
pub mod timing;
pub mod tokenizer;

/// How a recording is transcribed (mlx-whisper's defaults).
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    pub task: Task,
    /// Language code; `None` detects it on a multilingual model (English on `.en`).
    pub language: Option<String>,
    /// Temperatures tried in turn until a window's decoding passes the checks.
    pub temperatures: Vec<f32>,
    pub compression_ratio_threshold: Option<f64>,
    pub logprob_threshold: Option<f64>,
    pub no_speech_threshold: Option<f64>,
    pub condition_on_previous_text: bool,
    pub initial_prompt: Option<String>,
    pub without_timestamps: bool,
    /// Word timestamps from the cross-attention (alignment heads + DTW).
    pub word_timestamps: bool,
    /// Beams at temperature 0 (1: greedy, as mlx-whisper; 5: faster-whisper's default).
    pub beam_size: usize,
    pub patience: f32,
    pub seed: u64,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            task: Task::Transcribe,
            language: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            initial_prompt: None,
            without_timestamps: false,
            word_timestamps: false,
            beam_size: 1,
            patience: 1.0,
            seed: 0,
        }
    }
}

/// The temperatures tried in turn: `start`, then up by `step` to 1 (numpy's
/// `arange(start, 1 + 1e-6, step)`, as mlx-whisper's CLI and OpenAI's API build the schedule);
/// `step` 0 is no fallback. The error names what is out of range.
pub fn temperature_schedule(start: f32, step: f32) -> std::result::Result<Vec<f32>, String> {
    if !(0.0..=1.0).contains(&start) {
        return Err("the temperature must be between 0 and 1".into());
    }
    if step != 0.0 && !(0.01..=1.0).contains(&step) {
        return Err("the fallback increment must be 0 (no fallback) or between 0.01 and 1".into());
    }
    let mut temperatures = vec![start];
    if step > 0.0 {
        let n = ((1.0 + 1e-6 - start) / step).floor().max(0.0) as usize;
        for i in 1..=n {
            temperatures.push(((start + i as f32 * step) * 1e4).round() / 1e4);
        }
    }
    Ok(temperatures)
}

/// One stretch of speech.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    pub id: usize,
    pub seek: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f64,
    pub compression_ratio: f64,
    pub no_speech_prob: f64,
    /// With word timestamps: the words, each with its time and probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<timing::Word>>,
}

/// Where the time went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTimes {
    pub mel_s: f64,
    pub encode_s: f64,
    pub decode_s: f64,
    /// Windows decoded, and how many decodings that took (fallbacks included).
    pub windows: usize,
    pub decodings: usize,
    pub tokens: usize,
}

/// A recording's transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub language: String,
    /// Seconds of audio.
    pub duration_s: f64,
    pub times: StageTimes,
    /// Language probabilities, when the language was detected.
    pub language_probs: Vec<(String, f64)>,
    /// Windows the repetition guard had to re-decode or cut.
    pub loops_cut: usize,
}

/// Progress: called after each window with the frames done, the total and the window's new
/// segments; `false` stops the transcription there (the reader of the output went away).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &[Segment]) -> bool;

/// Transcribes `samples` (16 kHz mono); `cancel` stops between windows (the partial transcript
/// comes back with `Err(InferError::Interrupted)` semantics left to the caller through `cancelled`).
pub fn transcribe(
    model: &Whisper,
    tok: &WhisperTokenizer,
    samples: &[f32],
    o: &TranscribeOptions,
    progress: Progress<'_>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<(Transcript, bool)> {
    let mut times = StageTimes::default();
    let t = Instant::now();
    let mel = MelSpectrogram::compute(samples, model.dims.n_mels, N_SAMPLES);
    times.mel_s = t.elapsed().as_secs_f64();
    let content_frames = mel.n_frames - N_FRAMES;
    let duration_s = samples.len() as f64 / SAMPLE_RATE as f64;
    let encode = |start: usize, len: usize, times: &mut StageTimes| -> Result<Array> {
        let t = Instant::now();
        let w = mel.window(start, len);
        let x = Array::from_slice(&w, &[1, N_FRAMES as i32, model.dims.n_mels as i32]);
        let x = x.as_dtype(model_float(model))?;
        let a = model.encode(&x)?;
        times.encode_s += t.elapsed().as_secs_f64();
        Ok(a)
    };

    let mut language_probs = Vec::new();
    let mut first_window: Option<Array> = None;
    if !tok.multilingual && o.task == Task::Translate {
        return Err(InferError::Options(
            "this model is English-only (.en); --task translate needs a multilingual Whisper"
                .into(),
        ));
    }
    if let Some(l) = &o.language
        && tok.multilingual
        && tok.specials.language_token(l).is_none()
    {
        return Err(InferError::Options(format!(
            "this model knows {} languages, and `{l}` is not one of them (large-v3 added yue)",
            tok.specials.languages.len()
        )));
    }
    let language = match (&o.language, tok.multilingual) {
        (_, false) => {
            if o.language.as_deref().is_some_and(|l| l != "en") {
                return Err(InferError::Options(format!(
                    "this model is English-only (.en); --language {} needs a multilingual Whisper",
                    o.language.as_deref().unwrap_or_default()
                )));
            }
            "en".to_string()
        }
        (Some(l), true) => l.clone(),
        (None, true) => {
            // mlx-whisper detects on the first 3000 frames of the whole spectrogram: past the
            // speech those are the features of the appended silence, not zeros.
            let audio = encode(0, N_FRAMES, &mut times)?;
            let t = Instant::now();
            let (best, probs) = detect_language(model, tok, &audio)?;
            times.decode_s += t.elapsed().as_secs_f64();
            language_probs = probs;
            // With 30 s of speech or more these are the first window's frames too.
            if content_frames >= N_FRAMES {
                first_window = Some(audio);
            }
            best
        }
    };
    let input_stride = N_FRAMES / model.dims.n_audio_ctx; // mel frames per audio token: 2
    let time_precision = (input_stride * HOP_LENGTH) as f64 / SAMPLE_RATE as f64; // 0.02 s
    let tb = tok.specials.timestamp_begin;

    let mut all_tokens: Vec<u32> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut prompt_reset_since = 0;
    let initial_prompt_tokens = match &o.initial_prompt {
        Some(p) => tok.encode(&format!(" {}", p.trim()))?,
        None => Vec::new(),
    };
    all_tokens.extend_from_slice(&initial_prompt_tokens);
    let mut seek = 0usize;
    let mut last_speech_timestamp = 0.0f64;
    let mut loops_cut = 0;
    let mut cancelled = false;
    while seek < content_frames {
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            cancelled = true;
            break;
        }
        let time_offset = (seek * HOP_LENGTH) as f64 / SAMPLE_RATE as f64;
        let segment_size = N_FRAMES.min(content_frames - seek);
        let segment_duration = (segment_size * HOP_LENGTH) as f64 / SAMPLE_RATE as f64;
        let audio = match first_window.take() {
            Some(a) if seek == 0 => a,
            _ => encode(seek, segment_size, &mut times)?,
        };
        times.windows += 1;
        let prompt = all_tokens[prompt_reset_since..].to_vec();
        let t = Instant::now();
        let (result, looped) =
            decode_with_fallback(model, tok, &audio, o, &language, prompt, &mut times)?;
        times.decode_s += t.elapsed().as_secs_f64();
        times.tokens += result.tokens.len();
        if looped {
            loops_cut += 1;
        }
        if let Some(th) = o.no_speech_threshold {
            let mut skip = result.no_speech_prob > th;
            if o.logprob_threshold
                .is_some_and(|lp| result.avg_logprob > lp)
            {
                skip = false;
            }
            if skip {
                seek += segment_size;
                if !progress(seek.min(content_frames), content_frames, &[]) {
                    cancelled = true;
                    break;
                }
                continue;
            }
        }
        let previous_seek = seek;
        let tokens = &result.tokens;
        let is_ts: Vec<bool> = tokens.iter().map(|&t| t >= tb).collect();
        let single_timestamp_ending =
            is_ts.len() >= 2 && !is_ts[is_ts.len() - 2] && is_ts[is_ts.len() - 1];
        let consecutive: Vec<usize> = (1..tokens.len())
            .filter(|&i| is_ts[i - 1] && is_ts[i])
            .collect();
        let mut current: Vec<Segment> = Vec::new();
        let new_segment =
            |start: f64, end: f64, toks: &[u32], current: &mut Vec<Segment>| -> Result<()> {
                let text_tokens: Vec<u32> = toks
                    .iter()
                    .copied()
                    .filter(|&t| t < tok.specials.eot)
                    .collect();
                current.push(Segment {
                    id: 0,
                    seek: previous_seek,
                    start,
                    end,
                    text: tok.decode(&text_tokens)?,
                    tokens: toks.to_vec(),
                    temperature: result.temperature,
                    avg_logprob: result.avg_logprob,
                    compression_ratio: result.compression_ratio,
                    no_speech_prob: result.no_speech_prob,
                    words: None,
                });
                Ok(())
            };
        if !consecutive.is_empty() {
            let mut slices = consecutive.clone();
            if single_timestamp_ending {
                slices.push(tokens.len());
            }
            let mut last_slice = 0;
            for &cur in &slices {
                let sliced = &tokens[last_slice..cur];
                let start_pos = (sliced[0] - tb) as f64;
                let end_pos = (sliced[sliced.len() - 1] - tb) as f64;
                new_segment(
                    time_offset + start_pos * time_precision,
                    time_offset + end_pos * time_precision,
                    sliced,
                    &mut current,
                )?;
                last_slice = cur;
            }
            if single_timestamp_ending {
                seek += segment_size;
            } else {
                let last_pos = (tokens[last_slice - 1] - tb) as usize;
                seek += last_pos * input_stride;
            }
        } else {
            let mut duration = segment_duration;
            if let Some(&last) = tokens.iter().rev().find(|&&t| t >= tb)
                && last != tb
            {
                duration = (last - tb) as f64 * time_precision;
            }
            new_segment(time_offset, time_offset + duration, tokens, &mut current)?;
            seek += segment_size;
        }
        if o.word_timestamps {
            let t = Instant::now();
            let sot = decoding::initial_tokens(
                tok,
                model.dims.n_text_ctx,
                &DecodeOptions {
                    task: o.task,
                    language: Some(language.clone()),
                    ..DecodeOptions::default()
                },
            )
            .0;
            timing::add_word_timestamps(
                &mut current,
                model,
                tok,
                &sot,
                &audio,
                segment_size,
                last_speech_timestamp,
            )?;
            if !single_timestamp_ending
                && let Some(end) = timing::last_end(&current)
                && end > time_offset
            {
                seek = (end * 100.0).round_ties_even() as usize;
            }
            if let Some(end) = timing::last_end(&current) {
                last_speech_timestamp = end;
            }
            times.decode_s += t.elapsed().as_secs_f64();
        }
        for s in &mut current {
            if s.start == s.end || s.text.trim().is_empty() {
                s.text.clear();
                s.tokens.clear();
                if s.words.is_some() {
                    s.words = Some(Vec::new());
                }
            }
        }
        let base = segments.len();
        for (i, mut s) in current.into_iter().enumerate() {
            s.id = base + i;
            all_tokens.extend_from_slice(&s.tokens);
            segments.push(s);
        }
        if !o.condition_on_previous_text || result.temperature > 0.5 {
            prompt_reset_since = all_tokens.len();
        }
        // A window that made no progress would be decoded again forever.
        if seek <= previous_seek {
            seek = previous_seek + segment_size;
        }
        if !progress(seek.min(content_frames), content_frames, &segments[base..]) {
            cancelled = true;
            break;
        }
    }
    let text = tok.decode(&all_tokens[initial_prompt_tokens.len()..])?;
    Ok((
        Transcript {
            text,
            segments,
            language,
            duration_s,
            times,
            language_probs,
            loops_cut,
        },
        cancelled,
    ))
}

fn model_float(model: &Whisper) -> mlx_rs::Dtype {
    // The encoder computes in the dtype its weights were converted to by the dtype policy.
    if model.policy_applied.is_empty() && model.stored_dtype != mlx_rs::Dtype::Float32 {
        model.stored_dtype
    } else {
        mlx_rs::Dtype::Float32
    }
}

/// mlx-whisper's `decode_with_fallback`, plus the repetition guard: a decoding whose segments
/// repeat the same text three times or more counts as failed like a too-repetitive one; if
/// every temperature loops, the repeats are cut. Returns whether the guard had to act.
fn decode_with_fallback(
    model: &Whisper,
    tok: &WhisperTokenizer,
    audio: &Array,
    o: &TranscribeOptions,
    language: &str,
    prompt: Vec<u32>,
    times: &mut StageTimes,
) -> Result<(DecodingResult, bool)> {
    let mut last: Option<DecodingResult> = None;
    let mut looped = false;
    for (i, &t) in o.temperatures.iter().enumerate() {
        let opts = DecodeOptions {
            task: o.task,
            language: Some(language.to_string()),
            temperature: t,
            prompt: prompt.clone(),
            without_timestamps: o.without_timestamps,
            seed: o.seed.wrapping_add(i as u64),
            beam_size: o.beam_size,
            patience: o.patience,
            ..DecodeOptions::default()
        };
        let r = decode_window(model, tok, audio, &opts)?;
        times.decodings += 1;
        let mut needs_fallback = false;
        if o.compression_ratio_threshold
            .is_some_and(|th| r.compression_ratio > th)
        {
            needs_fallback = true;
        }
        if o.logprob_threshold.is_some_and(|th| r.avg_logprob < th) {
            needs_fallback = true;
        }
        let repeats = repeated_segments(&r.tokens, tok.specials.timestamp_begin);
        if repeats {
            needs_fallback = true;
            looped = true;
        }
        if o.no_speech_threshold
            .is_some_and(|th| r.no_speech_prob > th)
            && !repeats
        {
            needs_fallback = false;
        }
        last = Some(r);
        if !needs_fallback {
            return Ok((last.expect("set above"), looped));
        }
    }
    let mut r = last.ok_or_else(|| InferError::Options("no temperature to decode with".into()))?;
    if repeated_segments(&r.tokens, tok.specials.timestamp_begin) {
        r.tokens = cut_repeats(&r.tokens, tok.specials.timestamp_begin);
        r.text = tok.decode(&r.tokens)?.trim().to_string();
    }
    Ok((r, looped))
}

/// The text of each timestamped segment in `tokens` (timestamps stripped).
fn segment_texts(tokens: &[u32], tb: u32) -> Vec<(usize, usize, Vec<u32>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut cur: Vec<u32> = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        if t >= tb {
            if !cur.is_empty() {
                out.push((start, i + 1, std::mem::take(&mut cur)));
            }
            start = i + 1;
        } else {
            cur.push(t);
        }
    }
    if !cur.is_empty() {
        out.push((start, tokens.len(), cur));
    }
    out
}

/// Whether a window's decoding says the same thing three or more times in a row (the
/// best-known Whisper failure: one phrase looped at a window edge or after silence).
pub fn repeated_segments(tokens: &[u32], tb: u32) -> bool {
    let segs = segment_texts(tokens, tb);
    segs.windows(3)
        .any(|w| w[0].2 == w[1].2 && w[1].2 == w[2].2)
}

/// `tokens` with every segment that repeats its predecessor removed.
fn cut_repeats(tokens: &[u32], tb: u32) -> Vec<u32> {
    let segs = segment_texts(tokens, tb);
    let mut keep_until = tokens.len();
    for w in segs.windows(2) {
        if w[0].2 == w[1].2 {
            keep_until = w[0].1;
            break;
        }
    }
    tokens[..keep_until].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temperature_schedule_is_numpys_arange_to_one() {
        assert_eq!(
            temperature_schedule(0.0, 0.2).unwrap(),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(temperature_schedule(0.5, 0.2).unwrap(), vec![0.5, 0.7, 0.9]);
        assert_eq!(temperature_schedule(0.3, 0.0).unwrap(), vec![0.3]);
        assert_eq!(temperature_schedule(1.0, 0.2).unwrap(), vec![1.0]);
        assert!(temperature_schedule(1.5, 0.2).is_err());
        assert!(temperature_schedule(0.0, 0.001).is_err());
        assert!(temperature_schedule(f32::NAN, 0.2).is_err());
    }

    #[test]
    fn three_equal_segments_in_a_row_are_a_loop() {
        let tb = 100;
        let looped = [100, 1, 2, 105, 105, 1, 2, 110, 110, 1, 2, 115];
        assert!(repeated_segments(&looped, tb));
        let fine = [100, 1, 2, 105, 105, 3, 4, 110, 110, 1, 2, 115];
        assert!(!repeated_segments(&fine, tb));
        assert_eq!(cut_repeats(&looped, tb), [100, 1, 2, 105]);
    }
}
