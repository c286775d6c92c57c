//! The generation loop: chunked prefill into the KV cache, then token-by-token decode with
//! sampling, EOS ids and stop strings (never emitted, not even in part), incremental
//! detokenization, cancellation (Ctrl-C, a client gone) and timings.
use crate::error::{InferError, Result};
use crate::layers::KvCache;
use crate::models::Decoder;
use crate::sampling::{Sampling, sample};
use crate::tokenizer::TextTokenizer;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token or a stop string.
    Stop,
    /// `max_tokens` (or the end of the context) was reached.
    Length,
    /// Cancelled (Ctrl-C, a client that went away): the text is partial.
    Interrupted,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Interrupted => "interrupted",
        }
    }
}

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop_strings: Vec<String>,
    /// Prompt tokens per prefill step (mlx-lm: 2048).
    pub prefill_step: usize,
    /// Positions the model supports; generation ends there with `Length`.
    pub context_length: Option<usize>,
    /// Set from elsewhere (a signal handler, a server) to stop at the next token with
    /// `Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_tokens`, no stop strings, prompts prefilled
    /// `prefill_step` tokens at a time, within `context_length` — how the parity tests run
    /// mlx-lm's `generate_step`.
    pub fn greedy(
        max_tokens: usize,
        prefill_step: usize,
        context_length: Option<usize>,
    ) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampling: Sampling::default(),
            stop_strings: vec![],
            prefill_step,
            context_length,
            cancel: None,
        }
    }
}

/// Incremental detokenization: the text of the tokens so far, decoding only the few tokens
/// since the last complete character each step instead of the whole output (as mlx-lm's
/// streaming detokenizers and TGI's `decode_token` do). Text is committed once it ends in a
/// whole character; decoding the window from an earlier committed point keeps tokenizers that
/// strip a leading space (SentencePiece) exact. The result is byte-identical to decoding all
/// tokens at once.
pub struct StreamingDecoder<'t> {
    tokenizer: &'t TextTokenizer,
    tokens: Vec<u32>,
    /// Window start: tokens before it are decoded into `text` for good.
    prefix_offset: usize,
    /// Tokens up to here are in `text`.
    read_offset: usize,
    text: String,
}

impl<'t> StreamingDecoder<'t> {
    pub fn new(tokenizer: &'t TextTokenizer) -> Self {
        StreamingDecoder {
            tokenizer,
            tokens: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
        }
    }

    /// Adds a token; commits its text if it completes a character.
    pub fn push(&mut self, token: u32) -> Result<()> {
        self.tokens.push(token);
        let prefix = self
            .tokenizer
            .decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let window = self.tokenizer.decode(&self.tokens[self.prefix_offset..])?;
        if window.len() > prefix.len() && !window.ends_with('\u{FFFD}') {
            match window.strip_prefix(prefix.as_str()) {
                Some(new) => self.text.push_str(new),
                None => self.resync()?,
            }
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
        }
        Ok(())
    }

    /// The committed text: whole characters only.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// All the text, including tokens that end in an incomplete character (decoded lossily,
    /// as a full decode would): what is left when no more tokens come.
    pub fn finish(mut self) -> Result<String> {
        if self.read_offset < self.tokens.len() {
            let prefix = self
                .tokenizer
                .decode(&self.tokens[self.prefix_offset..self.read_offset])?;
            let window = self.tokenizer.decode(&self.tokens[self.prefix_offset..])?;
            match window.strip_prefix(prefix.as_str()) {
                Some(tail) => self.text.push_str(tail),
                None => self.resync()?,
            }
        }
        Ok(self.text)
    }

    /// A tokenizer whose window decodes differently from its prefix: decode the whole output
    /// once. Text already shown must stay its start, or the stream would contradict itself.
    fn resync(&mut self) -> Result<()> {
        let all = self.tokenizer.decode(&self.tokens)?;
        if !all.starts_with(self.text.as_str()) {
            return Err(InferError::Tokenizer(
                "the tokenizer decodes a longer output into different earlier text".into(),
            ));
        }
        self.text = all;
        Ok(())
    }
}

/// What a generation produced and how fast.
#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// The EOS id that ended generation, if one did.
    pub eos_token: Option<u32>,
    /// The stop string that ended generation, if one did.
    pub stop_string: Option<String>,
    /// Generation ended because the context was full (before `max_tokens`).
    pub context_full: bool,
    pub ttft_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub decode_s: f64,
    pub peak_mem_bytes: u64,
}

/// Text that may be shown now: not a possible start of a stop string, not a split UTF-8 char.
fn safe_prefix_len(text: &str, stops: &[String]) -> usize {
    let mut end = text.len();
    // An incomplete multi-byte character decodes as U+FFFD at the end: wait for the rest.
    while text[..end].ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    for s in stops {
        for k in (1..s.len()).rev() {
            if s.is_char_boundary(k) && text[..end].ends_with(&s[..k]) {
                end = end.min(text[..end].len() - k);
                break;
            }
        }
    }
    end
}

/// The earliest complete stop string in `text`: (byte offset, the string).
fn find_stop<'a>(text: &str, stops: &'a [String]) -> Option<(usize, &'a String)> {
    stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|i| (i, s)))
        .min_by_key(|(i, _)| *i)
}

/// Fresh caches holding all but the last prompt token, fed in chunks of `step` tokens in
/// mlx-lm's order (the last token is the first decoding step's input and yields its logits).
pub fn prefill(model: &Decoder, prompt: &[u32], step: usize) -> Result<Vec<KvCache>> {
    let mut caches = model.new_cache();
    prefill_from(model, &mut caches, prompt, 0, step)?;
    Ok(caches)
}

/// Extends `caches`, which hold `prompt[..done]`, with all but the last prompt token, in chunks
/// of `step` (mlx-lm's order; a reused prompt cache continues the same way).
pub fn prefill_from(
    model: &Decoder,
    caches: &mut [KvCache],
    prompt: &[u32],
    done: usize,
    step: usize,
) -> Result<()> {
    prefill_embedded(model, caches, prompt, None, done, step)
}

/// [`prefill_from`], reading the prompt's embeddings `[1, L, hidden]` from `embeddings` when
/// given (a vision model's prompt: image features stand where its image tokens are) instead of
/// looking its ids up — chunk by chunk, as mlx-vlm prefills.
pub fn prefill_embedded(
    model: &Decoder,
    caches: &mut [KvCache],
    prompt: &[u32],
    embeddings: Option<&Array>,
    mut done: usize,
    step: usize,
) -> Result<()> {
    let step = step.max(1);
    while prompt.len().saturating_sub(done) > 1 {
        let n = step.min(prompt.len() - done - 1);
        match embeddings {
            Some(e) => {
                let chunk = e.index((.., done as i32..(done + n) as i32, ..));
                model.hidden_from_embeddings(&chunk, caches)?;
            }
            None => {
                let x = Array::from_slice(&prompt[done..done + n], &[1, n as i32]);
                model.hidden(&x, caches)?;
            }
        }
        let state: Vec<&Array> = caches.iter().flat_map(|c| c.state()).collect();
        mlx_rs::transforms::eval(state)?;
        done += n;
        mlx_rs::memory::clear_cache()?;
    }
    Ok(())
}

/// Generates from `prompt` ids; `on_text` receives each piece of text as it becomes safe to
/// show and returns `false` to stop early (e.g. the reader went away).
pub fn generate(
    model: &Decoder,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<Generation> {
    let fresh = model.new_cache();
    generate_cached(model, tokenizer, prompt, opts, fresh, 0, on_text).map(|(g, _)| g)
}

/// Like [`generate`], continuing from `caches` that already hold `prompt[..cached]` (a prompt
/// cache); returns the caches too (prompt and generated positions).
pub fn generate_cached(
    model: &Decoder,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    caches: Vec<KvCache>,
    cached: usize,
    on_text: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<(Generation, Vec<KvCache>)> {
    generate_embedded(
        model, tokenizer, prompt, None, opts, caches, cached, on_text,
    )
}

/// [`generate_cached`] with the prompt's embeddings given (a vision model's prompt; see
/// [`prefill_embedded`]).
#[allow(clippy::too_many_arguments)]
pub fn generate_embedded(
    model: &Decoder,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    embeddings: Option<&Array>,
    opts: &GenerateOptions,
    caches: Vec<KvCache>,
    cached: usize,
    on_text: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<(Generation, Vec<KvCache>)> {
    let mut g = Stepper::start_embedded(
        model,
        tokenizer,
        prompt,
        embeddings,
        opts.clone(),
        caches,
        cached,
    )?;
    while g.step(on_text)? {}
    g.finish(on_text)
}

/// A generation in progress, one token at a time: [`Stepper::start`] prefills the prompt,
/// each [`Stepper::step`] decodes one token, [`Stepper::finish`] gives the result. Several may
/// run side by side on one model (a server interleaving its requests), each with its own
/// caches, sampling key and stop strings; [`generate_cached`] is one run to the end.
pub struct Stepper<'m> {
    model: &'m Decoder,
    tokenizer: &'m TextTokenizer,
    opts: GenerateOptions,
    caches: Vec<KvCache>,
    key: Array,
    prompt_len: usize,
    history: Vec<u32>,
    tokens: Vec<u32>,
    detok: StreamingDecoder<'m>,
    emitted: usize,
    finish: FinishReason,
    done: bool,
    eos_token: Option<u32>,
    stop_string: Option<String>,
    stopped_at: Option<usize>,
    start: Instant,
    ttft: f64,
    first_at: Instant,
    limit: usize,
    input: Vec<u32>,
}

impl<'m> Stepper<'m> {
    /// Checks the options and prefills `prompt[cached..]` (all but its last token) into
    /// `caches`, which hold `prompt[..cached]`.
    pub fn start(
        model: &'m Decoder,
        tokenizer: &'m TextTokenizer,
        prompt: &[u32],
        opts: GenerateOptions,
        caches: Vec<KvCache>,
        cached: usize,
    ) -> Result<Stepper<'m>> {
        Self::start_embedded(model, tokenizer, prompt, None, opts, caches, cached)
    }

    /// [`Stepper::start`] with the prompt's embeddings given (see [`prefill_embedded`]). The
    /// last prompt position is decoded from its id, so it must be a text token.
    pub fn start_embedded(
        model: &'m Decoder,
        tokenizer: &'m TextTokenizer,
        prompt: &[u32],
        embeddings: Option<&Array>,
        opts: GenerateOptions,
        mut caches: Vec<KvCache>,
        cached: usize,
    ) -> Result<Stepper<'m>> {
        opts.sampling.validate()?;
        if opts.stop_strings.iter().any(String::is_empty) {
            return Err(InferError::Options(
                "a stop string is empty (it would stop before the first token); give --stop TEXT"
                    .into(),
            ));
        }
        if prompt.is_empty() {
            return Err(InferError::Options(
                "the prompt is empty (no tokens)".into(),
            ));
        }
        mlx_rs::memory::reset_peak_memory()?;
        let key = mlx_rs::random::key(opts.sampling.seed)?;
        let start = Instant::now();
        if cached >= prompt.len() {
            return Err(InferError::Options(
                "a prompt cache must leave the last prompt token to decode".into(),
            ));
        }
        if let Some(e) = embeddings
            && e.shape()[1] as usize != prompt.len()
        {
            return Err(InferError::Options(format!(
                "{} prompt embeddings for {} prompt tokens",
                e.shape()[1],
                prompt.len()
            )));
        }
        prefill_embedded(
            model,
            &mut caches,
            prompt,
            embeddings,
            cached,
            opts.prefill_step,
        )?;
        let limit = opts
            .context_length
            .map(|c| c.saturating_sub(prompt.len()))
            .unwrap_or(usize::MAX)
            .min(opts.max_tokens);
        Ok(Stepper {
            model,
            tokenizer,
            opts,
            caches,
            key,
            prompt_len: prompt.len(),
            history: prompt.to_vec(),
            tokens: Vec::new(),
            detok: StreamingDecoder::new(tokenizer),
            emitted: 0,
            finish: FinishReason::Length,
            done: false,
            eos_token: None,
            stop_string: None,
            stopped_at: None,
            start,
            ttft: 0.0,
            first_at: start,
            limit,
            input: vec![prompt[prompt.len() - 1]],
        })
    }

    /// Stops it before its next token, as cancelled (`Interrupted`: the text is partial).
    pub fn interrupt(&mut self) {
        if !self.done {
            self.finish = FinishReason::Interrupted;
            self.done = true;
        }
    }

    /// Decodes one token and hands `on_text` what became safe to show; `false` once the
    /// generation has ended (EOS, a stop string, the limit, cancelled, or `on_text` said stop).
    pub fn step(&mut self, on_text: &mut dyn FnMut(&str) -> Result<bool>) -> Result<bool> {
        if self.done || self.tokens.len() >= self.limit {
            self.done = true;
            return Ok(false);
        }
        if self
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            self.finish = FinishReason::Interrupted;
            self.done = true;
            return Ok(false);
        }
        let x = Array::from_slice(&self.input, &[1, self.input.len() as i32]);
        let h = self.model.hidden(&x, &mut self.caches)?;
        let last = h.index((.., -1, ..));
        let logits = self.model.logits(&last)?.as_dtype(Dtype::Float32)?;
        let tok = sample(&logits, &self.opts.sampling, &self.history, &mut self.key)?;
        tok.eval()?;
        let tok = tok.item_cast::<u32>();
        if self.tokens.is_empty() {
            self.ttft = self.start.elapsed().as_secs_f64();
            self.first_at = Instant::now();
        }
        if self.tokenizer.eos_ids.contains(&tok) {
            self.finish = FinishReason::Stop;
            self.eos_token = Some(tok);
            self.done = true;
            return Ok(false);
        }
        self.tokens.push(tok);
        self.history.push(tok);
        self.input = vec![tok];
        self.detok.push(tok)?;
        let text = self.detok.text();
        let emitted = self.emitted;
        // A stop string starts after what was shown (a possible start of one is held back).
        if let Some((at, s)) = find_stop(&text[emitted..], &self.opts.stop_strings) {
            self.finish = FinishReason::Stop;
            self.stop_string = Some(s.clone());
            self.stopped_at = Some(emitted + at);
            self.done = true;
            return Ok(false);
        }
        let safe = emitted + safe_prefix_len(&text[emitted..], &self.opts.stop_strings);
        if safe > emitted {
            if !on_text(&text[emitted..safe])? {
                // The caller stopped it (its reader went away): partial, not finished.
                self.finish = FinishReason::Interrupted;
                self.done = true;
                return Ok(false);
            }
            self.emitted = safe;
        }
        Ok(true)
    }

    /// Ends the generation: the held-back text (a partial stop string, now real output) goes
    /// to `on_text`; the result and the caches (prompt and generated positions) come back.
    pub fn finish(
        self,
        on_text: &mut dyn FnMut(&str) -> Result<bool>,
    ) -> Result<(Generation, Vec<KvCache>)> {
        let mut text = self.detok.finish()?;
        if let Some(at) = self.stopped_at {
            text.truncate(at);
        }
        // Nothing more will come: held-back text (a partial stop string) is real output.
        if text.len() > self.emitted && text.is_char_boundary(self.emitted) {
            on_text(&text[self.emitted..])?;
        }
        let tokens = self.tokens;
        let context_full = self.finish == FinishReason::Length
            && tokens.len() == self.limit
            && self.limit < self.opts.max_tokens;
        let decode_s = self.first_at.elapsed().as_secs_f64();
        let decoded = tokens.len().saturating_sub(1) + usize::from(self.eos_token.is_some());
        let ttft = self.ttft;
        let g = Generation {
            prompt_tokens: self.prompt_len,
            prefill_tok_s: if ttft > 0.0 {
                self.prompt_len as f64 / ttft
            } else {
                0.0
            },
            decode_tok_s: if decode_s > 0.0 && decoded > 0 {
                decoded as f64 / decode_s
            } else {
                0.0
            },
            decode_s,
            ttft_s: ttft,
            text,
            tokens,
            finish_reason: self.finish,
            eos_token: self.eos_token,
            stop_string: self.stop_string,
            context_full,
            peak_mem_bytes: mlx_rs::memory::peak_memory()? as u64,
        };
        Ok((g, self.caches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn partial_stop_strings_are_held_back() {
        let s = stops(&["</answer>"]);
        assert_eq!(safe_prefix_len("Paris</ans", &s), "Paris".len());
        assert_eq!(safe_prefix_len("Paris<", &s), "Paris".len());
        assert_eq!(safe_prefix_len("Paris.", &s), "Paris.".len());
    }

    #[test]
    fn incomplete_utf8_is_held_back() {
        assert_eq!(safe_prefix_len("caf\u{FFFD}", &[]), 3);
    }

    /// Every prefix of `ids`, decoded incrementally, equals the full decode of that prefix.
    fn assert_streams_exactly(t: &TextTokenizer, ids: &[u32]) {
        let mut d = StreamingDecoder::new(t);
        for (i, &id) in ids.iter().enumerate() {
            d.push(id).unwrap();
            let full = t.decode(&ids[..=i]).unwrap();
            assert!(
                full.starts_with(d.text()),
                "step {i}: {:?} vs {full:?}",
                d.text()
            );
            assert!(!d.text().ends_with('\u{FFFD}'));
        }
        assert_eq!(d.finish().unwrap(), t.decode(ids).unwrap());
    }

    #[test]
    fn streaming_decode_is_byte_identical_on_byte_level_bpe() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::tiny::specs().remove(0);
        crate::tiny::write(&spec, dir.path()).unwrap();
        let t = TextTokenizer::from_dir(dir.path(), &[]).unwrap();
        let text = "Grüße, 日本語 and 🎉🎉 — ok\n\ttabs";
        let ids = t.encode(text, false).unwrap();
        assert!(
            ids.len() > text.chars().count(),
            "multi-byte characters span tokens"
        );
        assert_streams_exactly(&t, &ids);
        // Ending inside a character: the lossy tail is what a full decode gives.
        let cut = &ids[..ids.len() - 1];
        assert_streams_exactly(&t, cut);
        let mut lone = StreamingDecoder::new(&t);
        let e9 = t.encode("é", false).unwrap();
        lone.push(e9[0]).unwrap();
        assert_eq!(lone.text(), "", "half a character is held back");
        assert_eq!(lone.finish().unwrap(), t.decode(&e9[..1]).unwrap());
    }

    #[test]
    fn streaming_decode_is_byte_identical_with_byte_fallback_and_metaspace() {
        // A llama-style SentencePiece BPE: `▁` for spaces, <0xNN> byte-fallback tokens, and a
        // decoder that strips the leading space of the first token.
        let mut vocab = serde_json::Map::new();
        for (i, piece) in ["<unk>", "▁Hi", "▁there", "!", "▁"].iter().enumerate() {
            vocab.insert(piece.to_string(), serde_json::json!(i));
        }
        for b in 0..256u32 {
            vocab.insert(format!("<0x{b:02X}>"), serde_json::json!(5 + b));
        }
        let tj = serde_json::json!({
            "version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
            "post_processor": null, "truncation": null, "padding": null,
            "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": true,
                      "unk_token": "<unk>", "fuse_unk": true, "dropout": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tj.to_string()).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
        let t = TextTokenizer::from_dir(dir.path(), &[]).unwrap();
        let byte = |b: u8| 5 + b as u32;
        // "Hi there! 日" with 日 (E6 97 A5) as three byte-fallback tokens, then an invalid byte.
        let ids = vec![
            1,
            2,
            3,
            4,
            byte(0xE6),
            byte(0x97),
            byte(0xA5),
            1,
            byte(0xFF),
            3,
        ];
        assert_eq!(t.decode(&ids[..7]).unwrap(), "Hi there! 日");
        assert_streams_exactly(&t, &ids);
    }

    #[test]
    fn earliest_stop_string_wins() {
        let s = stops(&["END", "\n\n"]);
        assert_eq!(find_stop("a\n\nb END", &s).map(|x| x.0), Some(1));
        assert_eq!(find_stop("abc", &s), None);
    }
}
