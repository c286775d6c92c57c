//! The resampler against the installed ffmpeg (5.1, the one Whisper's reference loader runs):
//! a deterministic test signal (a chirp over the whole band plus noise, near full scale) at
//! several rates, as 16-bit and as 32-bit float PCM, must come out of both as the same 16 kHz
//! 16-bit samples. Covers the exact-ratio phases (44.1, 48, 22.05 kHz), upsampling (8 kHz),
//! and a rate whose ratio needs interpolation between 1024 phases (44 057 Hz); and stereo
//! mixed down as ffmpeg mixes it.
use mlxk_infer::audio::{Pcm, to_whisper_input};
use std::io::Write;
use std::process::{Command, Stdio};

fn signal(rate: u32, seconds: f64) -> Vec<f32> {
    let n = (rate as f64 * seconds) as usize;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            // A chirp from 50 Hz to the source's Nyquist frequency, and white noise.
            let f = 50.0 + (rate as f64 / 2.0 - 50.0) * t / seconds;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            (0.6 * (std::f64::consts::PI * f * t).sin() + 0.2 * noise) as f32
        })
        .collect()
}

fn ffmpeg(input: &[u8], fmt: &str, rate: u32, channels: u32) -> Vec<i16> {
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            fmt,
            "-ar",
            &rate.to_string(),
        ])
        .args(["-ac", &channels.to_string()])
        .args(["-i", "-", "-f", "s16le", "-ac", "1", "-ar", "16000", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg (scripts/bootstrap installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn compare(what: &str, ours: Vec<f32>, theirs: Vec<i16>) {
    let ours: Vec<i16> = ours.iter().map(|&v| (v * 32768.0) as i16).collect();
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    let bad: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != theirs[i]).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} samples differ, first at {} ({} against ffmpeg's {})",
        bad.len(),
        ours.len(),
        bad[0],
        ours[bad[0]],
        theirs[bad[0]]
    );
}

#[test]
fn sixteen_bit_and_float_pcm_resample_to_ffmpegs_samples() {
    for rate in [44_100u32, 48_000, 22_050, 8_000, 44_057] {
        let x = signal(rate, 1.3);
        let s16: Vec<i16> = x.iter().map(|&v| (v * 32767.0) as i16).collect();
        let bytes: Vec<u8> = s16.iter().flat_map(|v| v.to_le_bytes()).collect();
        compare(
            &format!("s16 at {rate} Hz"),
            to_whisper_input(Pcm::I16(s16), 1, rate),
            ffmpeg(&bytes, "s16le", rate, 1),
        );
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        compare(
            &format!("f32 at {rate} Hz"),
            to_whisper_input(Pcm::F32(x), 1, rate),
            ffmpeg(&bytes, "f32le", rate, 1),
        );
    }
}

#[test]
fn stereo_is_mixed_as_ffmpeg_mixes_it() {
    let l = signal(44_100, 0.7);
    let r = signal(48_000, 0.7);
    let x: Vec<f32> = l
        .iter()
        .zip(&r)
        .flat_map(|(&a, &b)| [a, -0.7 * b])
        .collect();
    let s16: Vec<i16> = x.iter().map(|&v| (v * 32767.0) as i16).collect();
    let bytes: Vec<u8> = s16.iter().flat_map(|v| v.to_le_bytes()).collect();
    compare(
        "stereo s16",
        to_whisper_input(Pcm::I16(s16), 2, 44_100),
        ffmpeg(&bytes, "s16le", 44_100, 2),
    );
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    compare(
        "stereo f32",
        to_whisper_input(Pcm::F32(x), 2, 44_100),
        ffmpeg(&bytes, "f32le", 44_100, 2),
    );
}

#[test]
fn twenty_four_bit_wavs_come_out_as_ffmpegs_samples() {
    // ffmpeg reads them as s32 and rounds them to 16 bits through f32, resampled or not.
    let dir = tempfile::tempdir().unwrap();
    for (rate, channels) in [(16_000u32, 1u16), (16_000, 2), (44_100, 2)] {
        let x = signal(rate, 0.9);
        let path = dir.path().join(format!("s24_{rate}_{channels}.wav"));
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for (i, &v) in x.iter().enumerate() {
            for c in 0..channels {
                let v = if c == 0 {
                    v
                } else {
                    -0.5 * x[(i * 7) % x.len()]
                };
                w.write_sample((v * 8_388_607.0) as i32).unwrap();
            }
        }
        w.finalize().unwrap();
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "s16le", "-ac", "1", "-ar", "16000", "-"])
            .output()
            .unwrap();
        let theirs = out
            .stdout
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let ours = mlxk_infer::audio::load(&path).unwrap().samples;
        compare(&format!("24-bit {rate} Hz × {channels}"), ours, theirs);
    }
}
