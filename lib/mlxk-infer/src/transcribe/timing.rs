//! Word timestamps as mlx-whisper computes them: the decoder run once more over a window's
//! text, the cross-attention of the alignment heads normalized per head and median-filtered,
//! dynamic time warping from text tokens to audio frames, words split at spaces, punctuation
//! merged into its word, and the first/last words' times checked against the segments.
use super::Segment;
use super::tokenizer::WhisperTokenizer;
use crate::error::Result;
use crate::models::whisper::Whisper;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, ops};

/// mel frames per second / 2: audio tokens per second.
const TOKENS_PER_SECOND: f64 = 50.0;
const PREPEND: &str = "\"'“¿([{-";
const APPEND: &str = "\"'.。,，!！?？:：”)]}、";
/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// One word with its time and mean token probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

#[derive(Debug, Clone)]
struct Timing {
    word: String,
    tokens: Vec<u32>,
    start: f64,
    end: f64,
    probability: f64,
}

/// Python's `round(x, 2)`: the nearest of the decimal's exact expansion, ties to even.
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// Median of 7 along each row, over reflect padding (scipy `medfilt` as mlx-whisper pads it).
fn median_filter(row: &[f32], width: usize) -> Vec<f32> {
    let pad = width / 2;
    let n = row.len();
    if n <= pad {
        return row.to_vec();
    }
    let at = |i: isize| -> f32 {
        let i = if i < 0 {
            -i
        } else if i as usize >= n {
            2 * (n as isize - 1) - i
        } else {
            i
        };
        row[i as usize]
    };
    let mut w = vec![0.0f32; width];
    (0..n as isize)
        .map(|c| {
            for (k, v) in w.iter_mut().enumerate() {
                *v = at(c - pad as isize + k as isize);
            }
            w.sort_by(f32::total_cmp);
            w[pad]
        })
        .collect()
}

/// mlx-whisper's `dtw` on `x` (`n × m`): the path as (text index, time index) pairs.
fn dtw(x: &[f32], n: usize, m: usize) -> (Vec<usize>, Vec<usize>) {
    let w = m + 1;
    let mut cost = vec![f32::INFINITY; (n + 1) * w];
    let mut trace = vec![-1i8; (n + 1) * w];
    cost[0] = 0.0;
    for j in 1..=m {
        for i in 1..=n {
            let c0 = cost[(i - 1) * w + j - 1];
            let c1 = cost[(i - 1) * w + j];
            let c2 = cost[i * w + j - 1];
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[i * w + j] = x[(i - 1) * m + j - 1] + c;
            trace[i * w + j] = t;
        }
    }
    trace[..=m].fill(2);
    for i in 0..=n {
        trace[i * w] = 1;
    }
    let (mut i, mut j) = (n, m);
    let mut path = Vec::new();
    while i > 0 || j > 0 {
        path.push((i - 1, j - 1));
        match trace[i * w + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path.into_iter().unzip()
}

/// Words of `tokens` (split where a token starts with a space, is punctuation or special),
/// each with its tokens — mlx-whisper's `split_tokens_on_spaces`.
fn split_words(tok: &WhisperTokenizer, tokens: &[u32]) -> Result<(Vec<String>, Vec<Vec<u32>>)> {
    // Subwords at points where the decoded text is whole unicode.
    let full = tok.decode_with_specials(tokens)?;
    let full: Vec<char> = full.chars().collect();
    let mut subwords = Vec::new();
    let mut subtoks: Vec<Vec<u32>> = Vec::new();
    let mut cur = Vec::new();
    let mut offset = 0;
    for &t in tokens {
        cur.push(t);
        let d = tok.decode_with_specials(&cur)?;
        let chars: Vec<char> = d.chars().collect();
        let ok = match chars.iter().position(|&c| c == '\u{FFFD}') {
            None => true,
            Some(p) => full.get(offset + p) == Some(&'\u{FFFD}'),
        };
        if ok {
            offset += chars.len();
            subwords.push(d);
            subtoks.push(std::mem::take(&mut cur));
        }
    }
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<u32>> = Vec::new();
    for (s, t) in subwords.into_iter().zip(subtoks) {
        let special = t[0] >= tok.specials.eot;
        let with_space = s.starts_with(' ');
        // Python's `strip() in string.punctuation`: a substring test (so "" and "()" count).
        let punct = PUNCTUATION.contains(s.trim());
        if special || with_space || punct || words.is_empty() {
            words.push(s);
            word_tokens.push(t);
        } else if let (Some(w), Some(wt)) = (words.last_mut(), word_tokens.last_mut()) {
            w.push_str(&s);
            wt.extend(t);
        }
    }
    Ok((words, word_tokens))
}

fn find_alignment(
    model: &Whisper,
    tok: &WhisperTokenizer,
    sot_sequence: &[u32],
    text_tokens: &[u32],
    audio: &Array,
    num_frames: usize,
) -> Result<Vec<Timing>> {
    if text_tokens.is_empty() {
        return Ok(Vec::new());
    }
    let s = &tok.specials;
    let mut tokens: Vec<u32> = sot_sequence.to_vec();
    tokens.push(s.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(s.eot);
    let mut cache = model.start(audio)?;
    let ids = Array::from_slice(
        &tokens.iter().map(|&t| t as i32).collect::<Vec<_>>(),
        &[1, tokens.len() as i32],
    );
    let (logits, cross_qk) = model.decode(&ids, &mut cache, true)?;
    let sl = sot_sequence.len() as i32;
    let rows = logits.index((0, sl..sl + text_tokens.len() as i32, ..s.eot as i32));
    let probs = ops::softmax_axis(&rows, -1, true)?;
    probs.eval()?;
    let pv = probs.as_slice::<f32>();
    let vocab = s.eot as usize;
    let token_probs: Vec<f64> = text_tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| pv[i * vocab + t as usize] as f64)
        .collect();
    let frames = (num_frames / 2) as i32;
    let heads: Vec<Array> = model
        .alignment_heads
        .iter()
        .filter(|(l, _)| *l < cross_qk.len())
        .map(|&(l, h)| cross_qk[l].index((0, h as i32, .., ..frames)))
        .collect();
    let w = ops::stack(&heads, 0)?;
    let w = ops::softmax_axis(&w, -1, true)?.as_dtype(mlx_rs::Dtype::Float32)?;
    let mean = w.mean_axis(-2, true)?;
    let std = w.var_axis(-2, true, 0)?.sqrt()?;
    let w = ops::divide(&ops::subtract(&w, &mean)?, &std)?;
    w.eval()?;
    let (nh, nt, nf) = (heads.len(), tokens.len(), frames as usize);
    let wv = w.as_slice::<f32>();
    // Median filter each head's rows, then the mean over heads.
    let mut matrix = vec![0.0f32; nt * nf];
    for h in 0..nh {
        for t in 0..nt {
            let row = &wv[(h * nt + t) * nf..(h * nt + t + 1) * nf];
            for (m, v) in matrix[t * nf..(t + 1) * nf]
                .iter_mut()
                .zip(median_filter(row, 7))
            {
                *m += v;
            }
        }
    }
    for m in &mut matrix {
        *m /= nh as f32;
    }
    // Rows from <|notimestamps|> to the last text token.
    let first = sot_sequence.len();
    let n = nt - 1 - first;
    let neg: Vec<f32> = matrix[first * nf..(first + n) * nf]
        .iter()
        .map(|v| -v)
        .collect();
    let (text_idx, time_idx) = dtw(&neg, n, nf);
    let mut all = text_tokens.to_vec();
    all.push(s.eot);
    let (words, word_tokens) = split_words(tok, &all)?;
    if word_tokens.len() <= 1 {
        return Ok(Vec::new());
    }
    let mut boundaries = vec![0usize];
    for t in &word_tokens[..word_tokens.len() - 1] {
        boundaries.push(boundaries.last().copied().unwrap_or(0) + t.len());
    }
    let jump_times: Vec<f64> = (0..text_idx.len())
        .filter(|&i| i == 0 || text_idx[i] != text_idx[i - 1])
        .map(|i| time_idx[i] as f64 / TOKENS_PER_SECOND)
        .collect();
    let mut out = Vec::new();
    for (k, (word, toks)) in words.into_iter().zip(word_tokens).enumerate() {
        if k + 1 >= boundaries.len() {
            break;
        }
        let (a, b) = (boundaries[k], boundaries[k + 1]);
        let (Some(&start), Some(&end)) = (jump_times.get(a), jump_times.get(b)) else {
            break;
        };
        let p = &token_probs[a.min(token_probs.len())..b.min(token_probs.len())];
        let probability = if p.is_empty() {
            f64::NAN
        } else {
            p.iter().sum::<f64>() / p.len() as f64
        };
        out.push(Timing {
            word,
            tokens: toks,
            start,
            end,
            probability,
        });
    }
    Ok(out)
}

fn merge_punctuations(a: &mut [Timing]) {
    if a.len() >= 2 {
        let (mut i, mut j) = (a.len() as isize - 2, a.len() - 1);
        while i >= 0 {
            let iu = i as usize;
            if a[iu].word.starts_with(' ') && PREPEND.contains(a[iu].word.trim()) {
                let (w, t) = (
                    std::mem::take(&mut a[iu].word),
                    std::mem::take(&mut a[iu].tokens),
                );
                a[j].word = w + &a[j].word;
                let mut nt = t;
                nt.extend(std::mem::take(&mut a[j].tokens));
                a[j].tokens = nt;
            } else {
                j = iu;
            }
            i -= 1;
        }
    }
    let (mut i, mut j) = (0usize, 1usize);
    while j < a.len() {
        if !a[i].word.ends_with(' ') && APPEND.contains(a[j].word.as_str()) {
            let w = std::mem::take(&mut a[j].word);
            let t = std::mem::take(&mut a[j].tokens);
            a[i].word.push_str(&w);
            a[i].tokens.extend(t);
        } else {
            i = j;
        }
        j += 1;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Adds words to `segments` (one window's), moving segment edges as mlx-whisper does.
#[allow(clippy::too_many_arguments)]
pub fn add_word_timestamps(
    segments: &mut [Segment],
    model: &Whisper,
    tok: &WhisperTokenizer,
    sot_sequence: &[u32],
    audio: &Array,
    num_frames: usize,
    mut last_speech_timestamp: f64,
) -> Result<()> {
    if segments.is_empty() {
        return Ok(());
    }
    let eot = tok.specials.eot;
    let per_segment: Vec<Vec<u32>> = segments
        .iter()
        .map(|s| s.tokens.iter().copied().filter(|&t| t < eot).collect())
        .collect();
    let text_tokens: Vec<u32> = per_segment.iter().flatten().copied().collect();
    let mut alignment = find_alignment(model, tok, sot_sequence, &text_tokens, audio, num_frames)?;
    let durations: Vec<f64> = alignment
        .iter()
        .map(|t| t.end - t.start)
        .filter(|&d| d != 0.0)
        .collect();
    let median_duration = median(durations.clone()).min(0.7);
    let max_duration = median_duration * 2.0;
    if !durations.is_empty() {
        let marks = ".。!！?？";
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if marks.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if marks.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment);
    let time_offset = segments[0].seek as f64 * 160.0 / 16000.0;
    let mut wi = 0;
    for (seg, toks) in segments.iter_mut().zip(&per_segment) {
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while wi < alignment.len() && saved < toks.len() {
            let t = &alignment[wi];
            if !t.word.is_empty() {
                words.push(Word {
                    word: t.word.clone(),
                    start: round2(time_offset + t.start),
                    end: round2(time_offset + t.end),
                    probability: t.probability,
                });
            }
            saved += t.tokens.len();
            wi += 1;
        }
        if !words.is_empty() {
            let n = words.len();
            if words[0].end - last_speech_timestamp > median_duration * 4.0
                && (words[0].end - words[0].start > max_duration
                    || (n > 1 && words[1].end - words[0].start > max_duration * 2.0))
            {
                if n > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            if seg.start < words[0].end && seg.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median_duration).min(seg.start).max(0.0);
            } else {
                seg.start = words[0].start;
            }
            let last = words.len() - 1;
            if seg.end > words[last].start && seg.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median_duration).max(seg.end);
            } else {
                seg.end = words[last].end;
            }
            last_speech_timestamp = seg.end;
        }
        seg.words = Some(words);
    }
    Ok(())
}

/// The end of the last word of `segments`, or of the last segment (mlx-whisper's `_get_end`).
pub fn last_end(segments: &[Segment]) -> Option<f64> {
    segments
        .iter()
        .rev()
        .find_map(|s| s.words.as_ref().and_then(|w| w.last()).map(|w| w.end))
        .or_else(|| segments.last().map(|s| s.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // 2 tokens × 4 frames: token 0 cheap at frames 0-1, token 1 at frames 2-3.
        let x = [-1.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0];
        let (t, f) = dtw(&x, 2, 4);
        // As mlx-whisper's backtrace: from (n, m) to the start, moves on ties go to time first.
        assert_eq!(t, [0, 0, 1, 1, 1]);
        assert_eq!(f.first(), Some(&0));
        assert_eq!(f.last(), Some(&3));
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        // Token 0 is placed on the cheap frames 0-1, token 1 on frames 2-3.
        let last0 = t.iter().rposition(|&i| i == 0).unwrap();
        assert_eq!(f[last0], 1);
    }

    #[test]
    fn median_of_seven_with_reflected_edges() {
        let row = [5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0];
        let m = median_filter(&row, 7);
        // centre 3: window [5,1,9,2,8,3,7] → 5
        assert_eq!(m[3], 5.0);
        // centre 0: reflect → [2,9,1,5,1,9,2] → 2
        assert_eq!(m[0], 2.0);
    }

    #[test]
    fn rounding_is_pythons() {
        assert_eq!(round2(2.675), 2.67);
        assert_eq!(round2(0.125), 0.12);
        assert_eq!(round2(1.005), 1.0);
        assert_eq!(round2(4.56), 4.56);
    }
}
