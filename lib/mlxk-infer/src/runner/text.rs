//! The text runner (mlxk-gen, and the server's completions): a prompt through the chat
//! template (or raw), checked against the context, generated and streamed.
use super::{Runner, Runs};
use crate::error::{InferError, Result};
use crate::generate::{GenerateOptions, Generation, generate_embedded};
use crate::layers::KvCache;
use crate::loader::{self, TextModel};
use crate::reasoning::{Part, ReasoningSplitter};
use crate::sampling::Sampling;
use crate::tokenizer::{Message, TextTokenizer};
use crate::weights::{DtypePolicy, WeightFormat};
use mlx_rs::Dtype;
use mlxk::cli::Failure;
use mlxk::report::run::{RunFacts, WeightPrecision};
use mlxk::runner::{Job, Output};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What the user asked to be said to the model.
#[derive(Debug, Clone, Default)]
pub struct PromptSpec {
    pub text: String,
    /// A whole conversation instead of `text` (`--prompts` lines with `messages`).
    pub messages: Vec<Message>,
    pub system: Option<String>,
    /// Feed the text as is, without the chat template.
    pub raw: bool,
    /// Ask templates that support it (`enable_thinking`) not to think.
    pub no_think: bool,
}

/// A prompt as token ids, ready to prefill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Tokens dropped from the start by `--truncate left`.
    pub truncated: usize,
    /// The template left `<think>` open: the model's output starts inside its reasoning.
    pub opens_thinking: bool,
}

/// Renders and encodes `spec` and checks it against `context`: a prompt that leaves no room to
/// generate is an error naming `--truncate left`, or — with `truncate_left` — loses its first
/// tokens so that `max_tokens` (at most half the context) still fit.
pub fn assemble_prompt(
    tokenizer: &TextTokenizer,
    spec: &PromptSpec,
    context: Option<usize>,
    max_tokens: usize,
    truncate_left: bool,
) -> Result<Prompt> {
    let text = if spec.raw {
        spec.text.clone()
    } else if !spec.messages.is_empty() {
        tokenizer.render_chat(&spec.messages, spec.no_think.then_some(false))?
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &spec.system {
            messages.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        messages.push(Message {
            role: "user".into(),
            content: spec.text.clone(),
        });
        tokenizer.render_chat(&messages, spec.no_think.then_some(false))?
    };
    // A raw prompt gets what the tokenizer adds (BOS); a rendered chat already has it.
    let mut ids = tokenizer.encode(&text, spec.raw)?;
    let mut truncated = 0;
    if let Some(c) = context
        && ids.len() >= c
    {
        if !truncate_left {
            return Err(InferError::ContextOverflow {
                prompt: ids.len(),
                context: c,
                reserved: 1,
            });
        }
        let keep = c.saturating_sub(max_tokens.min(c / 2)).max(1);
        truncated = ids.len() - keep;
        ids.drain(..truncated);
    }
    Ok(Prompt {
        ids,
        truncated,
        opens_thinking: !spec.raw && ReasoningSplitter::prompt_opens_thinking(&text),
    })
}

/// One prompt to run, with its generation options.
#[derive(Debug, Clone)]
pub struct PromptItem {
    /// Its line in a `--prompts` file (none for `-p`).
    pub line: Option<usize>,
    pub spec: PromptSpec,
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
}

/// The options any `--prompts` line may carry (mlxk-gen's and mlxk-see's).
pub const OPTION_KEYS: &[&str] = &[
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
];

/// The keys of an mlxk-gen `--prompts` line besides [`OPTION_KEYS`]; anything else is an
/// error, never ignored.
const PROMPT_KEYS: &[&str] = &["prompt", "messages", "raw"];

/// Reads a `--prompts` file (JSON Lines, each `{"prompt"|"messages", …options}`): one item per
/// non-empty line, options defaulting to `defaults`'. A bad line is an error naming its line
/// number; the others are still read.
pub fn read_prompt_batch(text: &str, defaults: &PromptItem) -> Vec<Result<PromptItem, Failure>> {
    read_json_lines(text, |o, line| {
        check_keys(o, &[PROMPT_KEYS, OPTION_KEYS])?;
        let mut p = prompt_fields(o, defaults)?;
        p.line = Some(line);
        Ok(p)
    })
}

/// Reads the `--prompts` file at `path` and its items with `parse` (its text in, one item or
/// error per line out); a file that cannot be read, or holds no prompts, is a usage error.
pub fn read_prompts_file<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&str) -> Vec<Result<T, Failure>>,
) -> Result<Vec<Result<T, Failure>>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read --prompts {}: {e}", path.display())))?;
    let items = parse(&text);
    if items.is_empty() {
        return Err(Failure::usage(format!(
            "--prompts {} holds no prompts",
            path.display()
        )));
    }
    Ok(items)
}

/// The non-empty lines of a `--prompts` file, each a JSON object read by `parse` (with its line
/// number); a line that is not one, or that `parse` refuses, is an error naming the line.
pub fn read_json_lines<T>(
    text: &str,
    parse: impl Fn(&serde_json::Map<String, serde_json::Value>, usize) -> std::result::Result<T, String>,
) -> Vec<Result<T, Failure>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<serde_json::Value>(l)
                .map_err(|e| format!("not valid JSON ({e})"))
                .and_then(|v| match v {
                    serde_json::Value::Object(o) => parse(&o, i + 1),
                    _ => Err("not a JSON object".into()),
                })
                .map_err(|m| {
                    Failure::new(
                        mlxk::cli::Exit::Failure,
                        "malformed_input",
                        format!("--prompts line {}: {m}", i + 1),
                    )
                })
        })
        .collect()
}

/// Refuses a key outside the `allowed` lists: an option is never ignored.
pub fn check_keys(
    o: &serde_json::Map<String, serde_json::Value>,
    allowed: &[&[&str]],
) -> std::result::Result<(), String> {
    match o
        .keys()
        .find(|k| !allowed.iter().any(|l| l.contains(&k.as_str())))
    {
        Some(k) => Err(format!(
            "unknown key `{k}` (allowed: {})",
            allowed.concat().join(", ")
        )),
        None => Ok(()),
    }
}

/// A prompt line's text (`prompt` or `messages`) and options over `defaults`.
pub fn prompt_fields(
    o: &serde_json::Map<String, serde_json::Value>,
    defaults: &PromptItem,
) -> std::result::Result<PromptItem, String> {
    let mut p = defaults.clone();
    let num = |k: &str| -> std::result::Result<Option<f64>, String> {
        match o.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or(format!("`{k}` must be a number")),
        }
    };
    let count = |k: &str| -> std::result::Result<Option<u64>, String> {
        match o.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .map(Some)
                .ok_or(format!("`{k}` must be a whole number ≥ 0")),
        }
    };
    match (o.get("prompt"), o.get("messages")) {
        (Some(t), None) => {
            p.spec.text = t.as_str().ok_or("`prompt` must be a string")?.to_string();
            p.spec.messages.clear();
        }
        (None, Some(m)) => {
            p.spec.messages = serde_json::from_value::<Vec<MessageIn>>(m.clone())
                .map_err(|e| format!("`messages` must be a list of {{role, content}}: {e}"))?
                .into_iter()
                .map(|m| Message {
                    role: m.role,
                    content: m.content,
                })
                .collect();
            if p.spec.messages.is_empty() {
                return Err("`messages` is empty".into());
            }
            p.spec.text.clear();
        }
        _ => return Err("give exactly one of `prompt` or `messages`".into()),
    }
    if let Some(s) = o.get("system") {
        p.spec.system = Some(s.as_str().ok_or("`system` must be a string")?.to_string());
    }
    if let Some(r) = o.get("raw") {
        p.spec.raw = r.as_bool().ok_or("`raw` must be true or false")?;
    }
    if p.spec.raw && !p.spec.messages.is_empty() {
        return Err("`raw` sends text as is; it cannot go with `messages`".into());
    }
    if p.spec.text.trim().is_empty() && p.spec.messages.is_empty() {
        return Err("the prompt is empty".into());
    }
    if let Some(n) = count("max_tokens")? {
        p.max_tokens = n as usize;
    }
    if let Some(t) = num("temperature")? {
        p.sampling.temp = t as f32;
    }
    if let Some(t) = num("top_p")? {
        p.sampling.top_p = t as f32;
    }
    if let Some(k) = count("top_k")? {
        p.sampling.top_k = k as usize;
    }
    if let Some(m) = num("min_p")? {
        p.sampling.min_p = m as f32;
    }
    if let Some(r) = num("repetition_penalty")? {
        p.sampling.repetition_penalty = Some(r as f32);
    }
    if let Some(s) = count("seed")? {
        p.sampling.seed = s;
    }
    match o.get("stop") {
        None => {}
        Some(serde_json::Value::String(s)) => p.stop = vec![s.clone()],
        Some(v) => {
            p.stop = serde_json::from_value(v.clone())
                .map_err(|_| "`stop` must be a string or a list of strings".to_string())?
        }
    }
    p.sampling.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    role: String,
    content: String,
}

/// How mlxk-gen runs each model: every prompt (one, or a `--prompts` batch) on it, in order.
#[derive(Debug, Clone)]
pub struct TextRunner {
    pub prompts: Vec<Result<PromptItem, Failure>>,
    pub truncate_left: bool,
    pub dequantize: bool,
    pub prefill_step: usize,
    /// Leave a reasoning model's thinking out of the text output (`--no-reasoning`); `--json`
    /// records still carry it.
    pub hide_reasoning: bool,
    /// `--prompt-cache FILE`: reuse the KV state of the prompt saved there (as far as the new
    /// prompt shares its tokens) and save this prompt's.
    pub prompt_cache: Option<std::path::PathBuf>,
    /// Print what was loaded and the timings to stderr.
    pub verbose: bool,
    /// Set by Ctrl-C: generation stops at the next token, marked interrupted.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Writes one split piece: `delta` records say which part it is; text output dims the
/// reasoning on a terminal, leaves it out with `--no-reasoning`, and on a pipe passes the
/// stream as the model wrote it (tags included) unless `--no-reasoning`.
fn write_piece(
    out: &mut Output,
    id: &str,
    part: Part,
    piece: &str,
    hide: bool,
    dim: bool,
) -> Result<bool, Failure> {
    let reasoning = part == Part::Reasoning;
    if out.json {
        return out.text_part(id, piece, reasoning);
    }
    match (reasoning, hide, dim) {
        (true, true, _) => Ok(!out.closed()),
        (true, false, true) => out.text(id, &format!("\x1b[2m{piece}\x1b[0m")),
        _ => out.text(id, piece),
    }
}

impl Runner for TextRunner {
    type Model = TextModel;
    const TOOL: &'static str = "mlxk-gen";
    const BACKEND: &'static str = "text";

    fn load(&self, job: &Job) -> Result<(TextModel, f64), Failure> {
        let m = loader::load_with(
            Path::new(&job.record.path),
            DtypePolicy::for_default_device(),
            self.dequantize,
        )?;
        let t = m.load_time_s;
        Ok((m, t))
    }

    fn describe(&self, m: &TextModel, job: &Job, facts: &mut RunFacts) {
        describe_text_model(Self::TOOL, self.verbose, m, job, facts);
    }

    fn run(
        &self,
        model: &TextModel,
        job: &Job,
        out: &mut Output,
        runs: &mut Runs,
    ) -> Result<(), Failure> {
        for item in &self.prompts {
            if out.closed() || runs.interrupted() {
                break;
            }
            let mut facts = runs.start();
            let outcome = match item {
                Ok(p) => self.generate_one(model, job, p, out, &mut facts),
                Err(f) => Err(f.clone()),
            };
            runs.finish(out, facts, outcome);
        }
        Ok(())
    }
}

/// What a loaded text model says about itself into a run's facts (framework, precision), and
/// with `verbose` what was loaded and how on stderr, as `tool`.
pub fn describe_text_model(
    tool: &str,
    verbose: bool,
    m: &TextModel,
    job: &Job,
    facts: &mut RunFacts,
) {
    {
        facts.framework = Some(
            match m.format {
                WeightFormat::Gguf => "GGUF",
                WeightFormat::Safetensors => "MLX",
            }
            .into(),
        );
        facts.quantization = Some(match m.quantization.first() {
            Some(q) => WeightPrecision::Quantized {
                bits: q.bits as u32,
                group_size: q.group_size as u32,
            },
            None => WeightPrecision::Dense(
                match m.float_dtype {
                    Some(Dtype::Float16) => "f16",
                    Some(Dtype::Bfloat16) => "bf16",
                    _ => "f32",
                }
                .into(),
            ),
        });
        if verbose {
            let id = &job.record.id;
            eprintln!(
                "{}: {id}: {} {} ({} layers, hidden {}), {} weights, {:.2} GB in memory, loaded in {:.2} s",
                tool,
                match m.format {
                    WeightFormat::Gguf => "GGUF",
                    WeightFormat::Safetensors => "safetensors",
                },
                m.config.model_type,
                m.config.num_layers,
                m.config.hidden_size,
                m.quantization_label(),
                m.weight_bytes as f64 / 1e9,
                m.load_time_s
            );
            if m.policy_applied.is_empty() {
                eprintln!("{tool}: dtype policy: stored dtypes kept");
            }
            for p in &m.policy_applied {
                eprintln!("{tool}: dtype policy: {p}");
            }
        }
    }
}

/// What a generation measured, into its run's facts.
pub fn generation_facts(facts: &mut RunFacts, g: &Generation) {
    facts.finish_reason = Some(g.finish_reason.as_str().into());
    facts.tokens_per_sec = Some(g.decode_tok_s);
    facts.ttft_s = Some(g.ttft_s);
    facts.peak_bytes = Some(g.peak_mem_bytes);
    facts.prompt_tokens = Some(g.prompt_tokens as u64);
    facts.completion_tokens = Some(g.tokens.len() as u64);
    facts.extra = vec![("prefill_tokens_per_sec".into(), g.prefill_tok_s)];
}

/// What a runner built on the text runner adds to a generation: the prompt's embeddings (a
/// vision model's, image features in place), the seconds spent before its prefill (counted
/// into the time to the first token), fields for the `result` record and measurements for
/// the report.
#[derive(Default)]
pub struct Extras {
    pub embeddings: Option<mlx_rs::Array>,
    pub lead_s: f64,
    pub fields: Vec<(String, serde_json::Value)>,
    pub facts: Vec<(String, f64)>,
}

/// A generation streamed to the output: what it produced, its split into reasoning and answer,
/// and the caches (prompt and generated positions) for the next turn or the prompt cache.
pub struct Streamed {
    pub generation: Generation,
    pub split: ReasoningSplitter,
    pub caches: Vec<KvCache>,
}

impl TextRunner {
    fn generate_one(
        &self,
        model: &TextModel,
        job: &Job,
        item: &PromptItem,
        out: &mut Output,
        facts: &mut RunFacts,
    ) -> Result<(), Failure> {
        let id = job.record.id.as_str();
        let context = model.context_length();
        let prompt = assemble_prompt(
            &model.tokenizer,
            &item.spec,
            context,
            item.max_tokens,
            self.truncate_left,
        )?;
        if prompt.truncated > 0 {
            out.warn(&format!(
                "{id}: --truncate left: dropped the first {} prompt tokens (context {})",
                prompt.truncated,
                context.unwrap_or_default()
            ));
        }
        // The prompt cache: what the saved prompt shares with this one is not prefilled again.
        let layers = model.decoder.blocks.len();
        let ident = self
            .prompt_cache
            .as_ref()
            .map(|_| crate::prompt_cache::identity(model, self.dequantize));
        let (caches, cached) = match (&self.prompt_cache, &ident) {
            (Some(path), Some(ident)) => match crate::prompt_cache::load(path, ident, layers)? {
                Some(mut pc) => {
                    let prefill = &prompt.ids[..prompt.ids.len().saturating_sub(1)];
                    let shared = crate::prompt_cache::common_prefix(&pc.tokens, prefill);
                    for c in &mut pc.caches {
                        c.trim(shared);
                    }
                    (pc.caches, shared)
                }
                None => (model.decoder.new_cache(), 0),
            },
            _ => (model.decoder.new_cache(), 0),
        };
        if self.verbose && self.prompt_cache.is_some() {
            out.warn(&format!(
                "{id}: prompt cache: {cached} of {} prompt tokens reused",
                prompt.ids.len()
            ));
        }
        let mut s = self.stream(
            model,
            job,
            item,
            &prompt,
            caches,
            cached,
            out,
            facts,
            &Extras::default(),
        )?;
        if let (Some(path), Some(ident)) = (&self.prompt_cache, &ident) {
            let prefill = &prompt.ids[..prompt.ids.len().saturating_sub(1)];
            crate::prompt_cache::save(path, ident, prefill, &mut s.caches)?;
        }
        Ok(())
    }

    /// Generates from `prompt`, whose first `cached` tokens `caches` already hold, streaming the
    /// text to `out` (split into reasoning and answer) and ending with the `result` record (or
    /// a newline), the timings line and the run's facts.
    #[allow(clippy::too_many_arguments)]
    pub fn stream(
        &self,
        model: &TextModel,
        job: &Job,
        item: &PromptItem,
        prompt: &Prompt,
        caches: Vec<KvCache>,
        cached: usize,
        out: &mut Output,
        facts: &mut RunFacts,
        extras: &Extras,
    ) -> Result<Streamed, Failure> {
        let id = job.record.id.as_str();
        let context = model.context_length();
        let opts = GenerateOptions {
            max_tokens: item.max_tokens,
            sampling: item.sampling.clone(),
            stop_strings: item.stop.clone(),
            prefill_step: self.prefill_step,
            context_length: context,
            cancel: self.cancel.clone(),
        };
        let mut write_err: Option<Failure> = None;
        let mut split = ReasoningSplitter::new(prompt.opens_thinking);
        let dim = !out.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
        // On a pipe the text goes as the model wrote it, tags and all (or only the answer).
        let raw_pipe = !out.json && !dim && !self.hide_reasoning;
        let hide = self.hide_reasoning;
        let (mut g, caches) = generate_embedded(
            &model.decoder,
            &model.tokenizer,
            &prompt.ids,
            extras.embeddings.as_ref(),
            &opts,
            caches,
            cached,
            &mut |t| {
                let pieces = split.push(t);
                let written = if raw_pipe {
                    out.text(id, t)
                } else {
                    let mut more = Ok(true);
                    for (part, piece) in &pieces {
                        more = write_piece(out, id, *part, piece, hide, dim);
                        if !matches!(more, Ok(true)) {
                            break;
                        }
                    }
                    more
                };
                match written {
                    Ok(more) => Ok(more),
                    Err(f) => {
                        write_err = Some(f);
                        Ok(false)
                    }
                }
            },
        )?;
        if let Some(f) = write_err {
            return Err(f);
        }
        if extras.lead_s > 0.0 {
            // Work done before the prompt's prefill (encoding its images) delays the first token.
            g.ttft_s += extras.lead_s;
            g.prefill_tok_s = g.prompt_tokens as f64 / g.ttft_s;
        }
        for (part, piece) in split.finish() {
            if !raw_pipe {
                write_piece(out, id, part, &piece, hide, dim)?;
            }
        }
        // The reasoning's share of the tokens, closing marker included.
        let reasoning_tokens = split.has_reasoning().then(|| {
            crate::reasoning::tokens_for_bytes(g.tokens.len(), split.reasoning_bytes(), |k| {
                model
                    .tokenizer
                    .decode(&g.tokens[..k])
                    .map_or(0, |t| t.len())
            })
        });
        if g.context_full {
            out.warn(&format!(
                "{id}: stopped after {} tokens at the end of the model's context ({} tokens)",
                g.tokens.len(),
                context.unwrap_or_default()
            ));
        }
        if out.json {
            let text = if split.has_reasoning() {
                &split.answer
            } else {
                &g.text
            };
            let mut rec = json!({"type": "result", "model": id, "text": text,
                "prompt_tokens": g.prompt_tokens, "generated_tokens": g.tokens.len(),
                "finish_reason": g.finish_reason.as_str(), "ttft_s": g.ttft_s,
                "prefill_tok_s": g.prefill_tok_s, "decode_tok_s": g.decode_tok_s,
                "peak_mem_bytes": g.peak_mem_bytes, "seed": item.sampling.seed});
            if let Some(n) = item.line {
                rec["prompt_line"] = json!(n);
            }
            if let Some(n) = reasoning_tokens {
                rec["reasoning"] = json!(split.reasoning);
                rec["reasoning_tokens"] = json!(n);
            }
            if self.prompt_cache.is_some() {
                rec["cached_prompt_tokens"] = json!(cached);
            }
            if prompt.truncated > 0 {
                rec["truncated_prompt_tokens"] = json!(prompt.truncated);
            }
            if g.context_full {
                rec["context_full"] = json!(true);
            }
            for (k, v) in &extras.fields {
                rec[k.as_str()] = v.clone();
            }
            out.record(&rec)?;
        } else {
            out.text(id, "\n")?;
        }
        if self.verbose || (!out.json && std::io::IsTerminal::is_terminal(&std::io::stderr())) {
            let reused = if cached > 0 {
                format!(" ({cached} reused)")
            } else {
                String::new()
            };
            let thought = match reasoning_tokens {
                Some(n) => format!(", {n} of them reasoning"),
                None => String::new(),
            };
            out.warn(&format!(
                "{} prompt tokens{reused}, {} generated ({}){thought}, prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.2} s",
                g.prompt_tokens,
                g.tokens.len(),
                g.finish_reason.as_str(),
                g.prefill_tok_s,
                g.decode_tok_s,
                g.ttft_s
            ));
        }
        let eos_strings: Vec<String> = model
            .tokenizer
            .eos_ids
            .iter()
            .filter_map(|&id| model.tokenizer.decode(&[id]).ok())
            .collect();
        if let Some(n) = item.line {
            facts.tool = format!("{}::prompts[{n}]", facts.tool);
        }
        generation_facts(facts, &g);
        facts.extra.extend(extras.facts.iter().cloned());
        facts.reasoning_tokens = reasoning_tokens.map(|n| n as u64);
        facts.stop_configured = eos_strings
            .iter()
            .chain(item.stop.iter())
            .cloned()
            .collect();
        facts.stop_detected = g
            .stop_string
            .clone()
            .into_iter()
            .chain(g.eos_token.and_then(|t| model.tokenizer.decode(&[t]).ok()))
            .collect();
        facts.stop_leaked = facts
            .stop_configured
            .iter()
            .any(|s| !s.is_empty() && g.text.contains(s.as_str()));
        Ok(Streamed {
            generation: g,
            split,
            caches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::tiny::specs().remove(0);
        crate::tiny::write(&spec, dir.path()).unwrap();
        let t = TextTokenizer::from_dir(dir.path(), &[]).unwrap();
        (dir, t)
    }

    fn spec(text: &str, raw: bool) -> PromptSpec {
        PromptSpec {
            text: text.into(),
            raw,
            ..Default::default()
        }
    }

    #[test]
    fn a_prompt_that_fits_is_kept_whole() {
        let (_d, t) = tiny_tokenizer();
        let p = assemble_prompt(&t, &spec("hello", true), Some(100), 10, false).unwrap();
        assert_eq!(p.ids, t.encode("hello", true).unwrap());
        assert_eq!(p.truncated, 0);
        // Through the chat template: more tokens than the raw text, same ending text.
        let c = assemble_prompt(&t, &spec("hello", false), Some(100), 10, false).unwrap();
        assert!(c.ids.len() > p.ids.len());
    }

    #[test]
    fn a_prompt_over_the_context_names_the_fix() {
        let (_d, t) = tiny_tokenizer();
        let long = "x".repeat(40);
        let n = t.encode(&long, true).unwrap().len();
        let e = assemble_prompt(&t, &spec(&long, true), Some(n), 8, false).unwrap_err();
        assert!(
            matches!(e, InferError::ContextOverflow { prompt, context, .. } if prompt == n && context == n)
        );
        assert!(e.to_string().contains("--truncate left"));
        // Exactly one token of room is enough.
        assert!(assemble_prompt(&t, &spec(&long, true), Some(n + 1), 8, false).is_ok());
    }

    #[test]
    fn truncate_left_keeps_the_end_and_room_to_generate() {
        let (_d, t) = tiny_tokenizer();
        let long: String = (0..60).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let all = t.encode(&long, true).unwrap();
        let p = assemble_prompt(&t, &spec(&long, true), Some(32), 8, true).unwrap();
        assert_eq!(p.ids.len(), 32 - 8);
        assert_eq!(p.truncated, all.len() - 24);
        assert_eq!(p.ids[..], all[all.len() - 24..], "the last tokens are kept");
        // max_tokens beyond half the context still leaves half for the prompt.
        let p = assemble_prompt(&t, &spec(&long, true), Some(32), 1000, true).unwrap();
        assert_eq!(p.ids.len(), 16);
    }

    fn defaults() -> PromptItem {
        PromptItem {
            line: None,
            spec: PromptSpec::default(),
            max_tokens: 16,
            sampling: Sampling::default(),
            stop: vec![],
        }
    }

    #[test]
    fn a_prompt_batch_reads_every_line_and_names_the_bad_ones() {
        let text = concat!(
            "{\"prompt\": \"hi\", \"max_tokens\": 3, \"stop\": \"x\"}\n",
            "\n",
            "{not json\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}], \"temperature\": 0.5, \"seed\": 7}\n",
            "{\"prompt\": \"a\", \"max_tokns\": 3}\n",
            "{\"prompt\": \"a\", \"messages\": []}\n",
            "{\"prompt\": \"a\", \"top_p\": 0}\n",
        );
        let b = read_prompt_batch(text, &defaults());
        assert_eq!(b.len(), 6, "blank lines are skipped");
        let first = b[0].as_ref().unwrap();
        assert_eq!(
            (
                first.line,
                first.spec.text.as_str(),
                first.max_tokens,
                first.stop.clone()
            ),
            (Some(1), "hi", 3, vec!["x".to_string()])
        );
        let msg = |i: usize| b[i].as_ref().unwrap_err().message.clone();
        assert!(
            msg(1).starts_with("--prompts line 3: not valid JSON"),
            "{}",
            msg(1)
        );
        let chat = b[2].as_ref().unwrap();
        assert_eq!(
            (
                chat.spec.messages.len(),
                chat.sampling.temp,
                chat.sampling.seed
            ),
            (1, 0.5, 7)
        );
        assert_eq!(chat.max_tokens, 16, "defaults fill what a line leaves out");
        assert!(
            msg(3).contains("line 5: unknown key `max_tokns`"),
            "{}",
            msg(3)
        );
        assert!(
            msg(4).contains("exactly one of `prompt` or `messages`"),
            "{}",
            msg(4)
        );
        assert!(msg(5).contains("--top-p"), "{}", msg(5));
        assert_eq!(b[1].as_ref().unwrap_err().exit, mlxk::cli::Exit::Failure);
    }

    #[test]
    fn messages_go_through_the_chat_template_as_given() {
        let (_d, t) = tiny_tokenizer();
        let spec = PromptSpec {
            messages: vec![
                Message {
                    role: "user".into(),
                    content: "a".into(),
                },
                Message {
                    role: "assistant".into(),
                    content: "b".into(),
                },
                Message {
                    role: "user".into(),
                    content: "c".into(),
                },
            ],
            ..Default::default()
        };
        let p = assemble_prompt(&t, &spec, None, 8, false).unwrap();
        let text = t.decode(&p.ids).unwrap();
        assert!(
            text.contains('a') && text.contains('b') && text.ends_with("assistant\n"),
            "{text:?}"
        );
    }

    #[test]
    fn errors_map_to_the_exit_contract() {
        use mlxk::cli::{Exit, ExitStatus};
        let broken = InferError::BrokenModel {
            path: "m".into(),
            msg: "x".into(),
        };
        let unsupported = InferError::Unsupported {
            path: "m".into(),
            msg: "x".into(),
        };
        assert_eq!(broken.failure().exit, Exit::Unusable);
        assert_eq!(unsupported.failure().exit, Exit::Unusable);
        assert_eq!(InferError::Options("x".into()).failure().exit, Exit::Usage);
    }
}
