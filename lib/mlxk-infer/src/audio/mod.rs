//! Audio in: any file symphonia or hound decodes (WAV, FLAC, MP3, OGG/Vorbis, M4A/AAC) and Ogg
//! Opus (symphonia's demuxer, libopus's decoder), brought to what Whisper's reference loader
//! (`ffmpeg … -f s16le -ac 1 -ar 16000`) makes of it — mixed to mono, converted to 16 kHz by
//! swresample's own filter ([`resample`]), quantised to 16 bits, an MP4's priming frames
//! dropped ([`mp4`]) — and the log-Mel front end ([`mel`]). A file that is not audio, is
//! empty, is cut off mid-stream or uses a codec this build cannot decode is an error naming
//! the file — never a shorter stream.
use std::io::Cursor;
use std::path::{Path, PathBuf};

pub mod mel;
pub mod mp4;
pub mod resample;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Why an input is not usable audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: cannot read: {msg}", name.display())]
    Unreadable { name: PathBuf, msg: String },
    #[error("{}: not audio this tool can read ({found}); give WAV, FLAC, MP3, OGG/Vorbis, Opus or M4A/AAC", name.display())]
    NotAudio { name: PathBuf, found: String },
    #[error("{}: {codec} audio cannot be decoded by this build; convert it first, e.g. `ffmpeg -i {} -ar 16000 -ac 1 out.wav`", name.display(), name.display())]
    UnsupportedCodec { name: PathBuf, codec: String },
    #[error("{}: no audio samples in the file", name.display())]
    Empty { name: PathBuf },
    #[error("{}: the stream is damaged or cut off after {at_s:.2} s ({msg}); nothing was transcribed from it", name.display())]
    Truncated {
        name: PathBuf,
        at_s: f64,
        msg: String,
    },
}

impl mlxk::cli::ExitStatus for AudioError {
    fn exit(&self) -> mlxk::cli::Exit {
        match self {
            AudioError::Unreadable { .. } => mlxk::cli::Exit::Usage,
            _ => mlxk::cli::Exit::Failure,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AudioError::Unreadable { .. } => "unreadable",
            AudioError::NotAudio { .. } => "not_audio",
            AudioError::UnsupportedCodec { .. } => "unsupported_codec",
            AudioError::Empty { .. } => "empty_audio",
            AudioError::Truncated { .. } => "truncated_audio",
        }
    }
}

impl From<AudioError> for mlxk::cli::Failure {
    fn from(e: AudioError) -> mlxk::cli::Failure {
        mlxk::cli::ExitStatus::failure(&e)
    }
}

/// Decoded audio: 16 kHz mono samples in [-1, 1], and what the source was.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub source_rate: u32,
    pub source_channels: usize,
    /// `wav/pcm_s16le`, `mp3`, `flac`, …
    pub codec: String,
}

impl Audio {
    /// Seconds of audio.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / SAMPLE_RATE as f64
    }
}

/// Reads and decodes `path` (`-` reads standard input).
pub fn load(path: &Path) -> Result<Audio, AudioError> {
    let bytes = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b).map_err(|e| {
            AudioError::Unreadable {
                name: path.into(),
                msg: e.to_string(),
            }
        })?;
        b
    } else {
        std::fs::read(path).map_err(|e| AudioError::Unreadable {
            name: path.into(),
            msg: e.to_string(),
        })?
    };
    let name = if path == Path::new("-") {
        PathBuf::from("<stdin>")
    } else {
        path.to_path_buf()
    };
    decode(&name, bytes)
}

/// Decodes a whole file held in memory; `name` is for messages and the format hint.
pub fn decode(name: &Path, bytes: Vec<u8>) -> Result<Audio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty { name: name.into() });
    }
    let (channels, rate, codec, interleaved) = if is_riff_wave(&bytes) {
        match decode_wav(name, &bytes)? {
            Some(d) => d,
            // Not PCM/float, or a header hound refuses (ffmpeg's piped WAV declares 4 GB):
            // symphonia reads those (µ-law, ADPCM, unknown length).
            None => decode_symphonia(name, bytes, true)?,
        }
    } else {
        decode_symphonia(name, bytes, false)?
    };
    if interleaved.is_empty() || channels == 0 {
        return Err(AudioError::Empty { name: name.into() });
    }
    if !(1_000..=768_000).contains(&rate) {
        return Err(AudioError::NotAudio {
            name: name.into(),
            found: format!("a sample rate of {rate} Hz"),
        });
    }
    let samples = to_whisper_input(interleaved, channels, rate);
    Ok(Audio {
        samples,
        source_rate: rate,
        source_channels: channels,
        codec,
    })
}

fn is_riff_wave(b: &[u8]) -> bool {
    b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE"
}

type Decoded = (usize, u32, String, Pcm);

/// WAV through hound: integer PCM of any width and float PCM; a data chunk shorter than its
/// header says is a truncated file. `None`: a WAV for symphonia instead.
fn decode_wav(name: &Path, bytes: &[u8]) -> Result<Option<Decoded>, AudioError> {
    let Ok(reader) = hound::WavReader::new(Cursor::new(bytes)) else {
        return Ok(None);
    };
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let total = reader.len() as usize;
    let per_s = (spec.sample_rate as f64 * channels.max(1) as f64).max(1.0);
    // The header's length is a claim: reserve no more than the bytes can hold.
    let width = (spec.bits_per_sample as usize).div_ceil(8).max(1);
    let room = total.min(bytes.len() / width);
    let cut = |i: usize, e: hound::Error| AudioError::Truncated {
        name: name.into(),
        at_s: i as f64 / per_s,
        msg: e.to_string(),
    };
    let bits = spec.bits_per_sample.clamp(1, 32);
    let pcm = match spec.sample_format {
        hound::SampleFormat::Float => {
            let mut out = Vec::with_capacity(room);
            for (i, s) in reader.into_samples::<f32>().enumerate() {
                out.push(s.map_err(|e| cut(i, e))?);
            }
            Pcm::F32(out)
        }
        // 8 to 16 bits: ffmpeg widens them to 16 and resamples in integers.
        hound::SampleFormat::Int if bits <= 16 => {
            let mut out = Vec::with_capacity(room);
            for (i, s) in reader.into_samples::<i32>().enumerate() {
                out.push((s.map_err(|e| cut(i, e))? << (16 - bits)) as i16);
            }
            Pcm::I16(out)
        }
        // Wider: ffmpeg reads them as s32 and works on them in f32 (exact up to 24 bits), as
        // here, rounding to 16 bits at the end even when nothing else is done to them.
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let mut out = Vec::with_capacity(room);
            for (i, s) in reader.into_samples::<i32>().enumerate() {
                out.push(s.map_err(|e| cut(i, e))? as f32 * scale);
            }
            Pcm::F32(out)
        }
    };
    let got = pcm.len();
    if got < total {
        return Err(AudioError::Truncated {
            name: name.into(),
            at_s: got as f64 / per_s,
            msg: format!("{got} of {total} samples present"),
        });
    }
    let codec = match spec.sample_format {
        hound::SampleFormat::Float => format!("wav/pcm_f{}", spec.bits_per_sample),
        hound::SampleFormat::Int => format!("wav/pcm_s{}", spec.bits_per_sample),
    };
    Ok(Some((channels, spec.sample_rate, codec, pcm)))
}

/// Any format symphonia reads; `wav` for a WAV hound refused (its declared length may be a
/// placeholder, as in a piped WAV, so only a decoding error counts as damage there).
fn decode_symphonia(name: &Path, bytes: Vec<u8>, wav: bool) -> Result<Decoded, AudioError> {
    use symphonia::core::codecs::{
        CODEC_TYPE_ADPCM_IMA_WAV, CODEC_TYPE_ADPCM_MS, CODEC_TYPE_NULL, CODEC_TYPE_OPUS,
        DecoderOptions,
    };
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let edit = mp4::start_edit(&bytes);
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = name.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::NotAudio {
            name: name.into(),
            found: match e {
                Error::Unsupported(_) => "no known audio container or stream".into(),
                other => other.to_string(),
            },
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::NotAudio {
            name: name.into(),
            found: "a container without an audio track".into(),
        })?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let codec_name = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .map(|d| d.short_name.to_string());
    let unsupported = || AudioError::UnsupportedCodec {
        name: name.into(),
        codec: codec_name
            .clone()
            .unwrap_or_else(|| codec_label(params.codec)),
    };
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let mut opus_pre_skip = 0u64;
    let mut decoder = if params.codec == CODEC_TYPE_OPUS {
        // symphonia demuxes Ogg Opus but has no Opus decoder: libopus decodes the packets.
        let layout = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => {
                return Err(AudioError::UnsupportedCodec {
                    name: name.into(),
                    codec: format!("Opus with {n} channels (multistream)"),
                });
            }
        };
        // OpusHead: pre-skip (frames at 48 kHz) at bytes 10–11, output gain (Q7.8 dB) at 16–17,
        // the channel mapping family at 18 (0: one mono or stereo stream).
        let head = params.extra_data.as_deref().unwrap_or(&[]);
        if head.len() < 19 || &head[..8] != b"OpusHead" || head[18] != 0 {
            return Err(AudioError::UnsupportedCodec {
                name: name.into(),
                codec: "Opus with a channel mapping other than one mono or stereo stream".into(),
            });
        }
        let mut decoder = opus::Decoder::new(48_000, layout).map_err(|_| unsupported())?;
        let gain = i16::from_le_bytes([head[16], head[17]]);
        if gain != 0 {
            decoder.set_gain(gain.into()).map_err(|_| unsupported())?;
        }
        opus_pre_skip = u16::from_le_bytes([head[10], head[11]]) as u64;
        PacketDecoder::Opus {
            decoder,
            skip: opus_pre_skip as usize,
            pcm: vec![0f32; 5760 * channels],
        }
    } else {
        PacketDecoder::Symphonia(
            symphonia::default::get_codecs()
                .make(&params, &DecoderOptions::default())
                .map_err(|_| unsupported())?,
            None,
        )
    };
    let mut out: Vec<f32> = Vec::new();
    let mut narrow = true;
    let at = |out: &Vec<f32>, rate: u32, channels: usize| {
        out.len() as f64 / (rate.max(1) as f64 * channels.max(1) as f64)
    };
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(Error::ResetRequired) => {
                return Err(AudioError::UnsupportedCodec {
                    name: name.into(),
                    codec: "a chained stream (its format changes mid-file)".into(),
                });
            }
            Err(e) => {
                return Err(AudioError::Truncated {
                    name: name.into(),
                    at_s: at(&out, rate, channels),
                    msg: e.to_string(),
                });
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let before = at(&out, rate, channels);
        let width;
        (rate, channels, width) =
            decoder
                .decode(&packet, channels, &mut out)
                .map_err(|msg| AudioError::Truncated {
                    name: name.into(),
                    at_s: before,
                    msg,
                })?;
        // Integers of at most 16 bits (in a buffer of their own width, or a wider one the
        // stream says holds 16-bit samples, as FLAC's does) are resampled as integers.
        // ADPCM comes in a 32-bit buffer without a bit depth; ffmpeg's decoders give s16.
        let adpcm = matches!(params.codec, CODEC_TYPE_ADPCM_MS | CODEC_TYPE_ADPCM_IMA_WAV);
        narrow &= width
            .is_some_and(|w| w <= 16 || adpcm || params.bits_per_sample.is_some_and(|b| b <= 16));
    }
    // A stream that declares its length must deliver all of it.
    if let Some(n) = params.n_frames
        && channels > 0
        && !wav
    {
        // Opus streams count their pre-skip in the length; it is dropped from the output.
        let got = (out.len() / channels) as u64 + opus_pre_skip;
        // Encoder delay/padding trimming can differ by a frame or so; a cut file loses far more.
        let tolerance = params.max_frames_per_packet.unwrap_or(4096).max(4096);
        if got + tolerance < n {
            return Err(AudioError::Truncated {
                name: name.into(),
                at_s: at(&out, rate, channels),
                msg: format!("{got} of {n} frames present"),
            });
        }
    }
    // An MP4's edit list: the encoder's priming frames, which ffmpeg drops and symphonia keeps.
    if let Some(edit) = edit
        && params.codec != CODEC_TYPE_OPUS
        && channels > 0
    {
        let skip = edit.frames_at(rate) as usize;
        out.drain(..skip.saturating_mul(channels).min(out.len()));
    }
    let codec = codec_name.unwrap_or_else(|| codec_label(params.codec));
    let pcm = if narrow {
        // Exact: each value is a 16-bit integer over 32768.
        Pcm::I16(out.into_iter().map(|v| (v * 32768.0) as i16).collect())
    } else {
        // Wider integers (exact up to 24 bits) and floats: swresample works on both in f32.
        Pcm::F32(out)
    };
    Ok((channels, rate, codec, pcm))
}

/// A track's packets into interleaved f32 samples: symphonia's decoder for its codecs,
/// libopus for Opus.
enum PacketDecoder {
    Symphonia(
        Box<dyn symphonia::core::codecs::Decoder>,
        Option<symphonia::core::audio::SampleBuffer<f32>>,
    ),
    /// `skip`: frames of the stream's start still to drop (OpusHead's pre-skip); `pcm`: room
    /// for the longest packet (120 ms: 5760 frames at 48 kHz).
    Opus {
        decoder: opus::Decoder,
        skip: usize,
        pcm: Vec<f32>,
    },
}

impl PacketDecoder {
    /// Appends `packet`'s samples (less the frames the container trims off its start and
    /// end: encoder delay and padding) to `out`; the stream's rate and channel count after it,
    /// and the bits of the decoder's samples if they are integers.
    fn decode(
        &mut self,
        packet: &symphonia::core::formats::Packet,
        channels: usize,
        out: &mut Vec<f32>,
    ) -> Result<(u32, usize, Option<u32>), String> {
        use symphonia::core::audio::AudioBufferRef as B;
        match self {
            PacketDecoder::Symphonia(decoder, buf) => {
                let decoded = decoder.decode(packet).map_err(|e| e.to_string())?;
                let width = match &decoded {
                    B::U8(_) | B::S8(_) => Some(8),
                    B::U16(_) | B::S16(_) => Some(16),
                    B::U24(_) | B::S24(_) => Some(24),
                    B::U32(_) | B::S32(_) => Some(32),
                    B::F32(_) | B::F64(_) => None,
                };
                let spec = *decoded.spec();
                let channels = spec.channels.count();
                let b = match buf {
                    Some(b) if b.capacity() >= decoded.capacity() * channels => b,
                    _ => buf.insert(symphonia::core::audio::SampleBuffer::<f32>::new(
                        decoded.capacity() as u64,
                        spec,
                    )),
                };
                b.copy_interleaved_ref(decoded);
                out.extend_from_slice(b.samples());
                Ok((spec.rate, channels, width))
            }
            PacketDecoder::Opus { decoder, skip, pcm } => {
                let frames = decoder
                    .decode_float(&packet.data, pcm, false)
                    .map_err(|e| format!("Opus: {e}"))?;
                // The pre-skip, whether or not the demuxer marked it on the packets.
                let start = (packet.trim_start as usize).max(*skip).min(frames);
                *skip -= start.min(*skip);
                let end = frames.saturating_sub(packet.trim_end as usize).max(start);
                out.extend_from_slice(&pcm[start * channels..end * channels]);
                Ok((48_000, channels, None))
            }
        }
    }
}

fn codec_label(c: symphonia::core::codecs::CodecType) -> String {
    use symphonia::core::codecs::*;
    match c {
        CODEC_TYPE_OPUS => "Opus".into(),
        CODEC_TYPE_SPEEX => "Speex".into(),
        CODEC_TYPE_WMA => "WMA".into(),
        other => format!("{other}"),
    }
}

/// Decoded samples, interleaved, in the form ffmpeg's swresample works on them: integer PCM of
/// at most 16 bits stays `I16` (resampled in Q15 integers), everything else (wider integers
/// included) is `F32`.
#[derive(Debug, Clone, PartialEq)]
pub enum Pcm {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

impl Pcm {
    pub fn len(&self) -> usize {
        match self {
            Pcm::I16(x) => x.len(),
            Pcm::F32(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What Whisper's reference loader (`ffmpeg -f s16le -ac 1 -ar 16000`, then `/ 32768`) makes of
/// decoded audio: converted to 16 kHz by swresample's filter ([`resample`]), mixed to mono
/// and quantised to 16 bits.
///
/// Mono and stereo are mixed as ffmpeg mixes them (the mean of the two channels, rounded
/// half up in integers or summed as `0.5·l + 0.5·r` in `f32`), after the rate conversion as
/// swresample orders it; more channels are averaged (ffmpeg weights them by their layout).
/// `rate` must be one the decoder accepts (1 kHz to 768 kHz).
pub fn to_whisper_input(pcm: Pcm, channels: usize, rate: u32) -> Vec<f32> {
    let channels = channels.max(1);
    let Some(r) = resample::Resampler::new(rate, SAMPLE_RATE) else {
        return quantised(mix_to_mono(pcm, channels));
    };
    // swresample converts the rate before it mixes channels down: each channel on its own,
    // then the mix, so the mix sees the resampled (and, in integers, rounded) channels.
    let resampled = match pcm {
        Pcm::I16(x) => Pcm::I16(per_channel(&x, channels, |c| r.run_i16(c))),
        Pcm::F32(x) => Pcm::F32(per_channel(&x, channels, |c| r.run_f32(c))),
    };
    quantised(mix_to_mono(resampled, channels))
}

/// `f` applied to each channel of interleaved `x`, the results interleaved again.
fn per_channel<T: Copy>(x: &[T], channels: usize, f: impl Fn(&[T]) -> Vec<T>) -> Vec<T> {
    if channels == 1 {
        return f(x);
    }
    let per: Vec<Vec<T>> = (0..channels)
        .map(|c| {
            f(&x.iter()
                .skip(c)
                .step_by(channels)
                .copied()
                .collect::<Vec<_>>())
        })
        .collect();
    let n = per.iter().map(Vec::len).min().unwrap_or(0);
    (0..n).flat_map(|i| per.iter().map(move |c| c[i])).collect()
}

/// Mono samples as the reference reads its 16-bit output: `v / 32768`.
fn quantised(mono: Pcm) -> Vec<f32> {
    let s16: Vec<i16> = match mono {
        Pcm::I16(x) => x,
        Pcm::F32(x) => x.into_iter().map(to_s16).collect(),
    };
    s16.into_iter().map(|v| v as f32 / 32768.0).collect()
}

/// swresample's `f32` → `s16`: `av_clip_int16(lrintf(v · 32768))`.
fn to_s16(v: f32) -> i16 {
    (v * 32768.0)
        .round_ties_even()
        .clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// One channel from `channels` interleaved ones (see [`to_whisper_input`]).
fn mix_to_mono(pcm: Pcm, channels: usize) -> Pcm {
    match (pcm, channels) {
        (pcm, 0 | 1) => pcm,
        (Pcm::I16(x), 2) => Pcm::I16(
            x.chunks_exact(2)
                .map(|f| ((f[0] as i32 + f[1] as i32 + 1) >> 1) as i16)
                .collect(),
        ),
        (Pcm::F32(x), 2) => Pcm::F32(x.chunks_exact(2).map(|f| 0.5 * f[0] + 0.5 * f[1]).collect()),
        (pcm, n) => {
            let x: Vec<f32> = match pcm {
                Pcm::I16(x) => x.into_iter().map(|v| v as f32 / 32768.0).collect(),
                Pcm::F32(x) => x,
            };
            let inv = 1.0 / n as f32;
            Pcm::F32(
                x.chunks_exact(n)
                    .map(|f| f.iter().sum::<f32>() * inv)
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(rate: u32, channels: u16, bits: u16, frames: &[Vec<i32>]) -> Vec<u8> {
        let mut c = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
        for f in frames {
            for s in f {
                w.write_sample(*s).unwrap();
            }
        }
        w.finalize().unwrap();
        c.into_inner()
    }

    #[test]
    fn sixteen_bit_mono_at_16k_is_read_as_is() {
        let frames: Vec<Vec<i32>> = [0, 16384, -32768, 32767].iter().map(|&s| vec![s]).collect();
        let a = decode(Path::new("x.wav"), wav_bytes(16000, 1, 16, &frames)).unwrap();
        assert_eq!(a.samples, vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]);
        assert_eq!(a.codec, "wav/pcm_s16");
    }

    #[test]
    fn stereo_is_averaged() {
        let frames = vec![vec![16384, 0], vec![-16384, -16384]];
        let a = decode(Path::new("x.wav"), wav_bytes(16000, 2, 16, &frames)).unwrap();
        assert_eq!(a.samples, vec![0.25, -0.5]);
        assert_eq!(a.source_channels, 2);
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_length_through_resampling() {
        // 1 s of 440 Hz at 44.1 kHz → 16000 samples of 440 Hz.
        let n = 44100;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44100.0).sin() * 0.5)
            .collect();
        let y = to_whisper_input(Pcm::F32(x), 1, 44100);
        assert_eq!(y.len(), 16000);
        // Compare with the exact tone away from the edges.
        let max_err = (2000..14000)
            .map(|i| {
                let t = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin() * 0.5;
                (y[i] - t).abs()
            })
            .fold(0.0f32, f32::max);
        assert!(max_err < 1e-2, "max error {max_err}");
    }

    #[test]
    fn a_cut_wav_is_an_error_not_a_shorter_stream() {
        let frames: Vec<Vec<i32>> = (0..1000).map(|i| vec![i]).collect();
        let mut b = wav_bytes(16000, 1, 16, &frames);
        b.truncate(b.len() - 500);
        let e = decode(Path::new("cut.wav"), b).unwrap_err();
        assert!(matches!(e, AudioError::Truncated { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("cut.wav: the stream is damaged or cut off"),
            "{e}"
        );
    }

    #[test]
    fn a_piped_wav_of_unknown_length_is_read_whole() {
        // ffmpeg writing a WAV to a pipe cannot seek back: RIFF and data sizes say 4 GB.
        let frames: Vec<Vec<i32>> = (0..1600).map(|i| vec![(i % 200 - 100) * 100]).collect();
        let good = wav_bytes(16000, 1, 16, &frames);
        let mut piped = good.clone();
        piped[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let data = piped.windows(4).position(|w| w == b"data").unwrap();
        piped[data + 4..data + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let a = decode(Path::new("-"), piped).unwrap();
        let b = decode(Path::new("x.wav"), good).unwrap();
        assert_eq!(a.samples, b.samples);
    }

    #[test]
    fn an_impossible_sample_rate_is_refused() {
        let frames: Vec<Vec<i32>> = (0..100).map(|i| vec![i]).collect();
        let mut b = wav_bytes(16000, 1, 16, &frames);
        // fmt chunk: sample rate at byte 24, byte rate at 28.
        b[24..28].copy_from_slice(&0u32.to_le_bytes());
        b[28..32].copy_from_slice(&0u32.to_le_bytes());
        let e = decode(Path::new("zero.wav"), b).unwrap_err();
        assert!(matches!(e, AudioError::NotAudio { .. }), "{e}");
    }

    #[test]
    fn text_and_empty_files_are_named_errors() {
        let e = decode(
            Path::new("notes.txt"),
            b"hello, this is not audio\n".to_vec(),
        )
        .unwrap_err();
        assert!(matches!(e, AudioError::NotAudio { .. }), "{e}");
        let e = decode(Path::new("empty.wav"), Vec::new()).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
        let header_only = wav_bytes(16000, 1, 16, &[]);
        let e = decode(Path::new("h.wav"), header_only).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
    }
}
