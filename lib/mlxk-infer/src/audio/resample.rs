//! Sample-rate conversion as Whisper's reference loader does it.
//!
//! mlx-whisper (like openai-whisper) reads every file through `ffmpeg … -f s16le -ac 1 -ar 16000`,
//! that is through libswresample with its default options, then quantises to 16 bits. Whisper
//! tiny is sensitive enough that a different (even a better) low-pass filter changes words, so
//! this module computes what swresample 5.1 computes, not merely something as good:
//!
//! - a Kaiser-windowed sinc polyphase bank (filter size 32, cutoff 0.97, β 9, 1024 phases, or
//!   exactly `out / gcd` phases when that is at most 1024 — swresample's `exact_rational`),
//!   built in double precision with swresample's Bessel I₀, normalised by phase 0's sum, its
//!   second half mirrored from the first;
//! - the signal's start mirrored around its first sample and its end reflected at the flush, so
//!   the output's length and first and last samples are swresample's;
//! - 16-bit sources resampled in integers (Q15 taps, `+0x4000`, `>> 15`, saturated), every other
//!   source in `f32` summed in the order of swresample's FMA3 kernel (eight lanes, then the
//!   lanes folded 4+4, 2+2, 1+1) — the kernel it picks on x86-64 CPUs with FMA3 (without FMA,
//!   the eight lanes are multiplied and added apart, as its AVX kernel does; AMD's FMA4-only
//!   CPUs and SSE-only ones sum in four lanes there and may differ by a rounding);
//! - rates whose ratio needs more than 1024 phases interpolate linearly between adjacent phases,
//!   as swresample's `linear_interp` (on by default) does.
//!
//! Inputs shorter than a window are still converted here, where swresample gives nothing
//! (below ~1.4 ms of audio). The unit tests check the bank's shape; `tests/resample_ffmpeg.rs`
//! and `tests/parity_whisper.rs` compare signals and whole files with the installed ffmpeg's
//! output sample for sample.

/// swresample's defaults (`libswresample/options.c`, 5.1).
const FILTER_SIZE: f64 = 32.0;
const PHASE_SHIFT: u32 = 10;
const CUTOFF: f64 = 0.97;
const KAISER_BETA: f64 = 9.0;

/// A converter from one rate to another; build once per rate pair.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Taps per phase.
    taps: usize,
    /// The row stride of the banks (taps rounded up to eight; the taps past `taps` are zero).
    alloc: usize,
    phases: usize,
    /// `phases + 1` rows each: the last is phase 0 shifted by one tap, for linear interpolation.
    bank_f32: Vec<f32>,
    bank_i16: Vec<i16>,
    /// Phases the position advances per output sample…
    div: usize,
    /// …plus `rem / src_incr` of a phase.
    rem: u64,
    src_incr: u64,
    /// Whether the CPU has FMA3 (and AVX): the summation order then is swresample's FMA3 kernel's.
    fma: bool,
}

impl Resampler {
    /// `None` when the rates are equal (nothing to convert) or one is zero. Exact for the rates
    /// ffmpeg accepts with its defaults, up to a ratio whose reduced terms pass 2^30.
    pub fn new(from: u32, to: u32) -> Option<Resampler> {
        if from == to || from == 0 || to == 0 {
            return None;
        }
        let factor = (to as f64 * CUTOFF / from as f64).min(1.0);
        let mut taps = ((FILTER_SIZE / factor).ceil() as usize).max(1);
        if taps > 1 {
            taps = taps.next_multiple_of(2);
        }
        let mut phases = 1usize << PHASE_SHIFT;
        let g = gcd(to as u64, from as u64);
        let exact = (to as u64 / g) as usize;
        if exact <= phases {
            phases = exact;
        }
        let alloc = taps.next_multiple_of(8);
        let (bank_f32, bank_i16) = build_banks(factor, taps, alloc, phases);
        // av_reduce(out, in · phases), then both doubled until one reaches 2^20.
        let (num, den) = (to as u64, from as u64 * phases as u64);
        let g = gcd(num, den);
        let (mut src_incr, mut dst_incr) = (num / g, den / g);
        while dst_incr < (1 << 20) && src_incr < (1 << 20) {
            dst_incr *= 2;
            src_incr *= 2;
        }
        Some(Resampler {
            taps,
            alloc,
            phases,
            bank_f32,
            bank_i16,
            div: (dst_incr / src_incr) as usize,
            rem: dst_incr % src_incr,
            src_incr,
            fma: has_fma(),
        })
    }

    /// Converts a whole `f32` signal.
    pub fn run_f32(&self, x: &[f32]) -> Vec<f32> {
        self.run(x, |s, row, next, frac| self.dot_f32(s, row, next, frac))
    }

    /// Converts a whole 16-bit signal in swresample's integer arithmetic.
    pub fn run_i16(&self, x: &[i16]) -> Vec<i16> {
        self.run(x, |s, row, next, frac| self.dot_i16(s, row, next, frac))
    }

    /// The positions swresample visits: the signal is preceded by its mirror image around the
    /// first sample (`x[-n] = x[n]`), outputs are made while a whole window fits, then the end
    /// is reflected (`x[N+j] = x[N-1-j]`, for half a window or half of what is left) and the
    /// remaining windows are made. `dot(window, phase, interpolate_to_next, frac)`.
    fn run<T: Copy + Default>(&self, x: &[T], dot: impl Fn(&[T], usize, bool, u64) -> T) -> Vec<T> {
        let n = x.len();
        if n == 0 {
            return Vec::new();
        }
        let c = (self.taps - 1) / 2;
        let mut buf: Vec<T> = Vec::with_capacity(c + n + self.taps + self.alloc);
        buf.extend((1..=c).rev().map(|i| x[i.min(n - 1)]));
        buf.extend_from_slice(x);
        let mut end = buf.len();
        // With an exact ratio the fraction stays zero and swresample never interpolates.
        let linear = self.rem != 0;
        let step = (self.div as u64 * self.src_incr + self.rem) as f64;
        let per_sample = (self.phases as u64 * self.src_incr) as f64 / step;
        let mut out = Vec::with_capacity((n as f64 * per_sample) as usize + 2);
        let (mut start, mut phase, mut frac) = (0usize, 0usize, 0u64);
        for flush in [false, true] {
            if flush {
                // resample_flush: reflect half of what is left, at most half a window.
                buf.truncate(end);
                let reflect = end.saturating_sub(start).min(self.taps).div_ceil(2);
                for j in 0..reflect {
                    buf.push(buf[end - 1 - j.min(end - 1)]);
                }
                end = buf.len();
            }
            // The kernels read whole blocks of eight taps; the taps past the window are zero.
            buf.resize(end + self.alloc, T::default());
            while start + self.taps <= end {
                out.push(dot(&buf[start..start + self.alloc], phase, linear, frac));
                frac += self.rem;
                phase += self.div;
                if frac >= self.src_incr {
                    frac -= self.src_incr;
                    phase += 1;
                }
                while phase >= self.phases {
                    phase -= self.phases;
                    start += 1;
                }
            }
        }
        out
    }

    fn row_f32(&self, phase: usize) -> &[f32] {
        &self.bank_f32[phase * self.alloc..(phase + 1) * self.alloc]
    }

    fn row_i16(&self, phase: usize) -> &[i16] {
        &self.bank_i16[phase * self.alloc..(phase + 1) * self.alloc]
    }

    fn dot_f32(&self, s: &[f32], phase: usize, linear: bool, frac: u64) -> f32 {
        let v1 = lanes_f32(s, self.row_f32(phase), self.fma);
        if !linear {
            return fold8(v1);
        }
        // resample_linear_float_fma3: each folded lane is v1 + (v2 − v1)·(frac · (1/src_incr)).
        let v2 = lanes_f32(s, self.row_f32(phase + 1), self.fma);
        let f = frac as f32 * (1.0f32 / self.src_incr as f32);
        let a = fold4(v1);
        let b = fold4(v2);
        let l: [f32; 4] = std::array::from_fn(|j| {
            if self.fma {
                (b[j] - a[j]).mul_add(f, a[j])
            } else {
                (b[j] - a[j]) * f + a[j]
            }
        });
        (l[0] + l[2]) + (l[1] + l[3])
    }

    fn dot_i16(&self, s: &[i16], phase: usize, linear: bool, frac: u64) -> i16 {
        let sum = |row: &[i16]| {
            s.iter().zip(row).fold(0x4000i32, |acc, (&a, &b)| {
                acc.wrapping_add(a as i32 * b as i32)
            })
        };
        let mut v = sum(self.row_i16(phase));
        if linear {
            let v2 = sum(self.row_i16(phase + 1));
            let d = v2.wrapping_sub(v) as i64 * frac as i64 / self.src_incr as i64;
            v = v.wrapping_add(d as i32);
        }
        (v >> 15).clamp(i16::MIN as i32, i16::MAX as i32) as i16
    }
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Eight lane sums over k in order: `acc[j] = fma(s[8k+j], h[8k+j], acc[j])` as swresample's
/// FMA3 kernel (`fma`: the CPU has it), else `acc[j] + s[8k+j]·h[8k+j]` as its AVX kernel.
fn lanes_f32(s: &[f32], h: &[f32], fma: bool) -> [f32; 8] {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: `fma` is only true where FMA3 and AVX were detected (`has_fma`).
        return unsafe { lanes_f32_fma(s, h) };
    }
    let _ = fma;
    let mut acc = [0f32; 8];
    for (sb, hb) in s.chunks_exact(8).zip(h.chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += sb[j] * hb[j];
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
unsafe fn lanes_f32_fma(s: &[f32], h: &[f32]) -> [f32; 8] {
    use std::arch::x86_64::*;
    let n = s.len().min(h.len()) / 8;
    let mut acc = _mm256_setzero_ps();
    for k in 0..n {
        // SAFETY: k·8 + 8 ≤ len of both slices.
        unsafe {
            let a = _mm256_loadu_ps(s.as_ptr().add(k * 8));
            let b = _mm256_loadu_ps(h.as_ptr().add(k * 8));
            acc = _mm256_fmadd_ps(a, b, acc);
        }
    }
    let mut out = [0f32; 8];
    // SAFETY: `out` holds eight floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

fn fold4(v: [f32; 8]) -> [f32; 4] {
    std::array::from_fn(|j| v[j] + v[j + 4])
}

/// vextractf128 + addps, movhlps + addps, shufps + addss.
fn fold8(v: [f32; 8]) -> f32 {
    let l = fold4(v);
    (l[0] + l[2]) + (l[1] + l[3])
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// swresample's `build_filter` for the Kaiser window, in `f32` and in Q15, plus the extra row
/// (phase 0 moved one tap on) that linear interpolation reads after the last phase.
fn build_banks(factor: f64, taps: usize, alloc: usize, phases: usize) -> (Vec<f32>, Vec<i16>) {
    use std::f64::consts::PI;
    let mut f = vec![0f32; alloc * (phases + 1)];
    let mut q = vec![0i16; alloc * (phases + 1)];
    let ph_nb = if phases % 2 == 1 {
        phases
    } else {
        phases / 2 + 1
    };
    let center = (taps as i64 - 1) / 2;
    let sin_lut: Vec<f64> = (0..ph_nb)
        .map(|ph| {
            if factor == 1.0 {
                (PI * ph as f64 / phases as f64).sin() * if center & 1 == 1 { 1.0 } else { -1.0 }
            } else {
                0.0
            }
        })
        .collect();
    let mut norm = 0f64;
    let mut tab = vec![0f64; taps];
    for ph in 0..ph_nb {
        let mut s = sin_lut[ph];
        for (i, t) in tab.iter_mut().enumerate() {
            let x = PI * ((i as i64 - center) as f64 - ph as f64 / phases as f64) * factor;
            let mut y = if x == 0.0 {
                1.0
            } else if factor == 1.0 {
                s / x
            } else {
                x.sin() / x
            };
            let w = 2.0 * x / (factor * taps as f64 * PI);
            y *= bessel_i0(KAISER_BETA * (1.0 - w * w).max(0.0).sqrt());
            *t = y;
            s = -s;
            if ph == 0 {
                norm += y;
            }
        }
        for (i, &t) in tab.iter().enumerate() {
            f[ph * alloc + i] = (t / norm) as f32;
            q[ph * alloc + i] = lrintf_i16(t * 32768.0 / norm);
        }
        if phases.is_multiple_of(2) {
            // The later phases are the earlier ones reversed (written in swresample's order,
            // which matters for the middle phase, mirrored onto itself).
            for i in 0..taps {
                f[(phases - ph) * alloc + taps - 1 - i] = f[ph * alloc + i];
                q[(phases - ph) * alloc + taps - 1 - i] = q[ph * alloc + i];
            }
        }
    }
    // Row `phases`: tap 0 is row 0's last stored tap, taps 1.. are row 0's taps 0..alloc-1.
    let last = phases * alloc;
    f.copy_within(0..alloc - 1, last + 1);
    q.copy_within(0..alloc - 1, last + 1);
    f[last] = f[alloc - 1];
    q[last] = q[alloc - 1];
    (f, q)
}

/// C's `av_clip_int16(lrintf(v))`: to float, then to the nearest integer (ties to even).
fn lrintf_i16(v: f64) -> i16 {
    ((v as f32).round_ties_even() as i64).clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// swresample's I₀ (Blair and Edwards' rational approximations, as in Boost), with its
/// constants as written there.
#[allow(clippy::excessive_precision)]
fn bessel_i0(x: f64) -> f64 {
    const P1: [f64; 15] = [
        -2.2335582639474375249e+15,
        -5.5050369673018427753e+14,
        -3.2940087627407749166e+13,
        -8.4925101247114157499e+11,
        -1.1912746104985237192e+10,
        -1.0313066708737980747e+08,
        -5.9545626019847898221e+05,
        -2.4125195876041896775e+03,
        -7.0935347449210549190e+00,
        -1.5453977791786851041e-02,
        -2.5172644670688975051e-05,
        -3.0517226450451067446e-08,
        -2.6843448573468483278e-11,
        -1.5982226675653184646e-14,
        -5.2487866627945699800e-18,
    ];
    const Q1: [f64; 6] = [
        -2.2335582639474375245e+15,
        7.8858692566751002988e+12,
        -1.2207067397808979846e+10,
        1.0377081058062166144e+07,
        -4.8527560179962773045e+03,
        1.0,
    ];
    const P2: [f64; 7] = [
        -2.2210262233306573296e-04,
        1.3067392038106924055e-02,
        -4.4700805721174453923e-01,
        5.5674518371240761397e+00,
        -2.3517945679239481621e+01,
        3.1611322818701131207e+01,
        -9.6090021968656180000e+00,
    ];
    const Q2: [f64; 8] = [
        -5.5194330231005480228e-04,
        3.2547697594819615062e-02,
        -1.1151759188741312645e+00,
        1.3982595353892851542e+01,
        -6.0228002066743340583e+01,
        8.5539563258012929600e+01,
        -3.1446690275135491500e+01,
        1.0,
    ];
    fn poly(c: &[f64], x: f64) -> f64 {
        let mut sum = c[c.len() - 1];
        for &k in c[..c.len() - 1].iter().rev() {
            sum *= x;
            sum += k;
        }
        sum
    }
    if x == 0.0 {
        return 1.0;
    }
    let x = x.abs();
    if x <= 15.0 {
        let y = x * x;
        poly(&P1, y) / poly(&Q1, y)
    } else {
        let y = 1.0 / x - 1.0 / 15.0;
        let r = poly(&P2, y) / poly(&Q2, y);
        x.exp() / x.sqrt() * r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_four_one_to_sixteen_uses_160_exact_phases_of_92_taps() {
        let r = Resampler::new(44_100, 16_000).unwrap();
        assert_eq!((r.phases, r.taps, r.alloc), (160, 92, 96));
        assert_eq!((r.div, r.rem), (441, 0));
        // Phase 0 sums to one (its own norm); its centre tap is the largest.
        let row = r.row_f32(0);
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        let peak = (0..92).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(peak, 45);
        // Later phases mirror earlier ones.
        for i in 0..92 {
            assert_eq!(r.row_f32(160 - 7)[91 - i], r.row_f32(7)[i]);
        }
        assert!(row[92..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn output_length_is_swresamples() {
        // `ffmpeg -f f32le -ar 44100 -i <N samples> -f s16le -ar 16000 -` (5.1) makes these many:
        // not always ceil(N·160/441), because the end is reflected by what is left.
        let r = Resampler::new(44_100, 16_000).unwrap();
        for (n, want) in [
            (1000usize, 363),
            (44_100, 16_000),
            (215_407, 78_152),
            (215_410, 78_153),
        ] {
            assert_eq!(r.run_f32(&vec![0.25; n]).len(), want, "{n}");
        }
    }

    #[test]
    fn a_constant_stays_constant_and_a_tone_keeps_its_pitch() {
        let r = Resampler::new(48_000, 16_000).unwrap();
        let y = r.run_i16(&vec![1000i16; 4800]);
        assert!(y.iter().all(|&v| (v - 1000).abs() <= 1), "{:?}", &y[..8]);
        let x: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin() * 0.5)
            .collect();
        let y = Resampler::new(48_000, 16_000).unwrap().run_f32(&x);
        assert_eq!(y.len(), 16_000);
        let crossings = y.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((438..=442).contains(&crossings), "{crossings}");
        let amp = y[1000..15_000].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((amp - 0.5).abs() < 0.01, "{amp}");
    }

    #[test]
    fn upsampling_and_rates_needing_interpolated_phases_work() {
        // 8 kHz → 16 kHz: two phases, no low-pass (factor 1).
        let r = Resampler::new(8_000, 16_000).unwrap();
        assert_eq!((r.phases, r.taps), (2, 32));
        let y = r.run_f32(&vec![0.5; 800]);
        assert_eq!(y.len(), 1600);
        assert!(y[100..1500].iter().all(|v| (v - 0.5).abs() < 1e-3));
        // 44 057 Hz has no exact ratio within 1024 phases: interpolated between phases.
        let r = Resampler::new(44_057, 16_000).unwrap();
        assert_eq!(r.phases, 1024);
        assert_ne!(r.rem, 0);
        let y = r.run_i16(&vec![-2000; 44_057]);
        assert_eq!(y.len(), 16_000);
        assert!(y[100..15_900].iter().all(|&v| (v + 2000).abs() <= 2));
    }

    #[test]
    fn bessel_matches_the_series() {
        for x in [0.0, 0.5, 3.0, 9.0, 20.0] {
            let mut t = 1.0f64;
            let mut s = 1.0f64;
            for k in 1..200 {
                t *= (x / 2.0) * (x / 2.0) / (k * k) as f64;
                s += t;
            }
            assert!((bessel_i0(x) - s).abs() / s < 1e-12, "{x}");
        }
    }
}
