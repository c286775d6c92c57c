//! Choosing the next token from logits: greedy, or mlx-lm's sampler (repetition penalty, top-k,
//! top-p, min-p, temperature) with the same filters in the same order and a seeded key.
use crate::error::{InferError, Result};
use mlx_rs::ops::indexing::{IndexOp, argmax_axis, put_along_axis};
use mlx_rs::{Array, ops};

/// How the next token is chosen (mlx-lm's sampler, same filters and order).
#[derive(Debug, Clone)]
pub struct Sampling {
    /// 0 = greedy.
    pub temp: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` × the most likely one (0 = off).
    pub min_p: f32,
    /// Divide (or multiply, if negative) the logits of recently generated tokens.
    pub repetition_penalty: Option<f32>,
    /// How many recent tokens the repetition penalty looks at.
    pub repetition_context: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temp: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: None,
            repetition_context: 20,
            seed: 0,
        }
    }
}

impl Sampling {
    /// Checks ranges; a bad value is an error, never clamped.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(InferError::Options(m.to_string()));
        if !(self.temp >= 0.0 && self.temp.is_finite()) {
            return bad("--temp must be ≥ 0 (0 = greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("--top-p must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("--min-p must be in [0, 1)");
        }
        if let Some(p) = self.repetition_penalty
            && !(p > 0.0 && p.is_finite())
        {
            return bad("--repetition-penalty must be > 0 (1 = off)");
        }
        Ok(())
    }
}

/// Samples one token id from `logits` `[1, vocab]`.
pub(crate) fn sample(
    logits: &Array,
    s: &Sampling,
    history: &[u32],
    key: &mut Array,
) -> Result<Array> {
    let mut logits = logits.clone();
    if let Some(p) = s.repetition_penalty
        && p != 1.0
        && !history.is_empty()
    {
        let start = history.len().saturating_sub(s.repetition_context);
        let ids: Vec<i32> = history[start..].iter().map(|&t| t as i32).collect();
        let idx = Array::from_slice(&ids, &[ids.len() as i32]);
        let sel = logits.take_axis(&idx, -1)?;
        let pen = Array::from_f32(p);
        let upd = ops::select(
            &ops::lt(&sel, Array::from_f32(0.0))?,
            &ops::multiply(&sel, &pen)?,
            &ops::divide(&sel, &pen)?,
        )?;
        logits = put_along_axis(&logits, idx.reshape(&[1, -1])?, &upd, -1)?;
    }
    let logprobs = ops::subtract(&logits, &ops::logsumexp_axis(&logits, -1, true)?)?;
    if s.temp == 0.0 {
        return Ok(argmax_axis(&logprobs, -1, None)?);
    }
    let neg_inf = Array::from_f32(f32::NEG_INFINITY);
    let mut lp = logprobs;
    // A k at or above the vocabulary keeps everything (and never overflows the index math).
    let vocab = usize::try_from(*lp.shape().last().unwrap_or(&0)).unwrap_or(0);
    if s.top_k > 0 && s.top_k < vocab {
        // Keep the k largest: everything below the k-th largest value is masked.
        let kth = ops::sort_axis(&lp, -1)?;
        let v = kth.shape()[kth.ndim() - 1];
        let thresh = kth.index((.., (v - s.top_k as i32)..(v - s.top_k as i32 + 1)));
        lp = ops::select(&ops::lt(&lp, &thresh)?, &neg_inf, &lp)?;
    }
    if s.top_p < 1.0 {
        let probs = ops::exp(&lp)?;
        let order = ops::argsort_axis(&lp, -1)?;
        let sorted = probs.take_along_axis(&order, -1)?;
        let cum = ops::cumsum(&sorted, -1, None, None)?;
        // Ascending order: drop the tail whose cumulative mass stays within 1 - top_p.
        let keep_sorted = ops::gt(&cum, Array::from_f32(1.0 - s.top_p))?;
        let masked_sorted = ops::select(&keep_sorted, &lp.take_along_axis(&order, -1)?, &neg_inf)?;
        let inverse = ops::argsort_axis(&order, -1)?;
        lp = masked_sorted.take_along_axis(&inverse, -1)?;
    }
    if s.min_p > 0.0 {
        let maxv = lp.max_axis(-1, true)?;
        let thresh = ops::add(&maxv, Array::from_f32(s.min_p.ln()))?;
        lp = ops::select(&ops::lt(&lp, &thresh)?, &neg_inf, &lp)?;
    }
    let (k1, k2) = mlx_rs::random::split(&*key, 2)?;
    *key = k1;
    let scaled = ops::multiply(&lp, Array::from_f32(1.0 / s.temp))?;
    Ok(mlx_rs::random::categorical(&scaled, -1, None, &k2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sampling_values_are_refused() {
        let mut s = Sampling::default();
        assert!(s.validate().is_ok());
        s.top_p = 0.0;
        assert!(s.validate().is_err());
        let s = Sampling {
            temp: -1.0,
            ..Sampling::default()
        };
        assert!(s.validate().is_err());
        let s = Sampling {
            min_p: 1.5,
            ..Sampling::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn sampling_filters_and_seeds() {
        let logits = Array::from_slice(&[0.0f32, 1.0, 3.0, 2.0], &[1, 4]);
        let draw = |s: &Sampling, seed: u64| -> Vec<u32> {
            let mut key = mlx_rs::random::key(seed).unwrap();
            (0..40)
                .map(|_| {
                    let t = sample(&logits, s, &[], &mut key).unwrap();
                    t.eval().unwrap();
                    t.item_cast::<u32>()
                })
                .collect()
        };
        let greedy = Sampling::default();
        assert!(draw(&greedy, 1).iter().all(|&t| t == 2));
        let hot = Sampling {
            temp: 1.0,
            ..Sampling::default()
        };
        assert_eq!(draw(&hot, 7), draw(&hot, 7), "same seed, same draws");
        assert_ne!(draw(&hot, 7), draw(&hot, 8));
        let top2 = Sampling {
            temp: 5.0,
            top_k: 2,
            ..Sampling::default()
        };
        assert!(draw(&top2, 3).iter().all(|&t| t == 2 || t == 3));
        let nucleus = Sampling {
            temp: 5.0,
            top_p: 0.5,
            ..Sampling::default()
        };
        assert!(draw(&nucleus, 3).iter().all(|&t| t == 2));
        let minp = Sampling {
            temp: 5.0,
            min_p: 0.3,
            ..Sampling::default()
        };
        assert!(draw(&minp, 3).iter().all(|&t| t == 2 || t == 3));
        // Penalising the favourite makes the runner-up the greedy choice.
        let pen = Sampling {
            repetition_penalty: Some(4.0),
            ..Sampling::default()
        };
        let mut key = mlx_rs::random::key(0).unwrap();
        let t = sample(&logits, &pen, &[2], &mut key).unwrap();
        t.eval().unwrap();
        assert_eq!(t.item_cast::<u32>(), 3);
    }
}
