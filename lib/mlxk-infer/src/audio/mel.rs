//! Whisper's log-Mel spectrogram, computed as mlx-whisper computes it: a 400-point STFT with a
//! periodic Hann window and hop 160 over reflect-padded audio (the last frame dropped), power
//! spectrum, Slaney-style mel filters (librosa's `filters.mel`, norm `slaney`), `log10` of at
//! least 1e-10, clamped to 8 below the maximum, scaled by `(x + 4) / 4`.
use rustfft::{FftPlanner, num_complex::Complex};

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Samples in a 30-second window.
pub const N_SAMPLES: usize = 30 * super::SAMPLE_RATE as usize;
/// Mel frames in a 30-second window.
pub const N_FRAMES: usize = N_SAMPLES / HOP_LENGTH;

/// Frames × mel bins, row-major (`frames[t * n_mels + m]`).
#[derive(Debug, Clone)]
pub struct MelSpectrogram {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl MelSpectrogram {
    /// The log-Mel features of `samples` followed by `padding` zeros.
    pub fn compute(samples: &[f32], n_mels: usize, padding: usize) -> MelSpectrogram {
        let filters = MelFilters::new(n_mels);
        let n = samples.len() + padding;
        let mut x = Vec::with_capacity(n + N_FFT);
        x.extend_from_slice(samples);
        x.resize(n, 0.0);
        let x = reflect_pad(&x, N_FFT / 2);
        // mlx-whisper's frame count, then the last frame dropped.
        let n_frames = (x.len() - N_FFT + HOP_LENGTH) / HOP_LENGTH - 1;
        let window = hann_window();
        let fft = FftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let bins = N_FFT / 2 + 1;
        let mut data = vec![0.0f32; n_frames * n_mels];
        let mut buf = vec![Complex::new(0.0f32, 0.0); N_FFT];
        let mut scratch = vec![Complex::new(0.0f32, 0.0); fft.get_inplace_scratch_len()];
        let mut power = vec![0.0f32; bins];
        for t in 0..n_frames {
            let frame = &x[t * HOP_LENGTH..t * HOP_LENGTH + N_FFT];
            for ((b, s), w) in buf.iter_mut().zip(frame).zip(&window) {
                *b = Complex::new(s * w, 0.0);
            }
            fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buf[..bins]) {
                *p = c.re * c.re + c.im * c.im;
            }
            let row = &mut data[t * n_mels..(t + 1) * n_mels];
            filters.apply(&power, row);
        }
        let mut max = f32::NEG_INFINITY;
        for v in data.iter_mut() {
            *v = v.max(1e-10).log10();
            max = max.max(*v);
        }
        let floor = max - 8.0;
        for v in data.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        MelSpectrogram {
            n_mels,
            n_frames,
            data,
        }
    }

    /// Frames `[start, start + len)` padded with zeros (not the log floor: mlx-whisper pads the
    /// features themselves) to `N_FRAMES`.
    pub fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; N_FRAMES * self.n_mels];
        let end = (start + len).min(self.n_frames).min(start + N_FRAMES);
        if start < end {
            out[..(end - start) * self.n_mels]
                .copy_from_slice(&self.data[start * self.n_mels..end * self.n_mels]);
        }
        out
    }
}

/// numpy's `hanning(401)[:-1]`: the periodic Hann window of length 400.
fn hann_window() -> Vec<f32> {
    (0..N_FFT)
        .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32)
        .collect()
}

/// `x[1..=p]` reversed, `x`, `x[n-1-p..n-1]` reversed (numpy's `reflect`).
fn reflect_pad(x: &[f32], p: usize) -> Vec<f32> {
    let n = x.len();
    let mut out = Vec::with_capacity(n + 2 * p);
    for i in (1..=p).rev() {
        out.push(x[i.min(n - 1)]);
    }
    out.extend_from_slice(x);
    for i in 0..p {
        out.push(x[n.saturating_sub(2 + i)]);
    }
    out
}

/// The mel filter bank as sparse rows: for each mel bin, its first FFT bin and weights.
struct MelFilters {
    rows: Vec<(usize, Vec<f32>)>,
}

impl MelFilters {
    fn new(n_mels: usize) -> MelFilters {
        let dense = mel_filters(super::SAMPLE_RATE as f64, N_FFT, n_mels);
        let bins = N_FFT / 2 + 1;
        let rows = dense
            .chunks(bins)
            .map(|w| {
                let first = w.iter().position(|&v| v != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|&v| v != 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].to_vec())
            })
            .collect();
        MelFilters { rows }
    }

    fn apply(&self, power: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.rows) {
            *o = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
        }
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)` (Slaney mel scale, Slaney area normalization),
/// computed in f64 and returned as f32, `n_mels × (n_fft/2 + 1)` row-major.
pub fn mel_filters(sr: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let fftfreqs: Vec<f64> = (0..bins).map(|i| i as f64 * sr / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0.0f32; n_mels * bins];
    for m in 0..n_mels {
        let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            w[m * bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= MIN_LOG_HZ {
        MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / log_step()
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (m - MIN_LOG_MEL)).exp()
    } else {
        F_SP * m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_follow_mlx_whisper() {
        // 1 s of audio + 30 s of padding: (16000 + 480000) / 160 frames.
        let m = MelSpectrogram::compute(&vec![0.1; 16000], 80, N_SAMPLES);
        assert_eq!(m.n_frames, 3100);
        assert_eq!(m.data.len(), 3100 * 80);
    }

    #[test]
    fn filters_are_slaney_normalized_triangles() {
        let w = mel_filters(16000.0, 400, 80);
        assert_eq!(w.len(), 80 * 201);
        // mlx-whisper's assets/mel_filters.npz (librosa 0.10): mel_80[0, 1] and the totals.
        assert!((w[1] - 0.024_862_59).abs() < 1e-7, "{}", w[1]);
        let total: f64 = w.iter().map(|&v| v as f64).sum();
        assert!((total - 1.999_024_2).abs() < 1e-5, "{total}");
        let w128 = mel_filters(16000.0, 400, 128);
        let total: f64 = w128.iter().map(|&v| v as f64).sum();
        assert!((total - 3.190_985_7).abs() < 1e-5, "{total}");
        // Every filter is non-negative and has some weight.
        for m in 0..80 {
            let row = &w[m * 201..(m + 1) * 201];
            assert!(row.iter().all(|&v| v >= 0.0));
            assert!(row.iter().any(|&v| v > 0.0), "filter {m} is empty");
        }
    }

    #[test]
    fn reflect_padding_mirrors_without_the_edge() {
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2),
            [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn silence_is_the_floor_everywhere() {
        let m = MelSpectrogram::compute(&vec![0.0; 1600], 80, 0);
        assert!(
            m.data
                .iter()
                .all(|&v| (v - (-10.0 + 4.0) / 4.0).abs() < 1e-6)
        );
    }
}
