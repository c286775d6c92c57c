//! The text runner (mlxk-gen, and the server's completions): a prompt through the chat
//! template (or raw), checked against the context, generated and streamed.
use super::Runner;
use crate::error::{InferError, Result};
use crate::generate::{GenerateOptions, generate};
use crate::loader::{self, TextModel};
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
    Ok(Prompt { ids, truncated })
}

/// How mlxk-gen runs each model.
#[derive(Debug, Clone)]
pub struct TextRunner {
    pub prompt: PromptSpec,
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub truncate_left: bool,
    pub dequantize: bool,
    pub prefill_step: usize,
    /// Print what was loaded and the timings to stderr.
    pub verbose: bool,
    /// Set by Ctrl-C: generation stops at the next token, marked interrupted.
    pub cancel: Option<Arc<AtomicBool>>,
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
        if self.verbose {
            let id = &job.record.id;
            eprintln!(
                "{}: {id}: {} {} ({} layers, hidden {}), {} weights, {:.2} GB in memory, loaded in {:.2} s",
                Self::TOOL,
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
                eprintln!("{}: dtype policy: stored dtypes kept", Self::TOOL);
            }
            for p in &m.policy_applied {
                eprintln!("{}: dtype policy: {p}", Self::TOOL);
            }
        }
    }

    fn run(
        &self,
        model: &TextModel,
        job: &Job,
        out: &mut Output,
        facts: &mut RunFacts,
    ) -> Result<(), Failure> {
        let id = job.record.id.as_str();
        let context = model.context_length();
        let prompt = assemble_prompt(
            &model.tokenizer,
            &self.prompt,
            context,
            self.max_tokens,
            self.truncate_left,
        )?;
        if prompt.truncated > 0 {
            out.warn(&format!(
                "{id}: --truncate left: dropped the first {} prompt tokens (context {})",
                prompt.truncated,
                context.unwrap_or_default()
            ));
        }
        let opts = GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: self.sampling.clone(),
            stop_strings: self.stop.clone(),
            prefill_step: self.prefill_step,
            context_length: context,
            cancel: self.cancel.clone(),
        };
        let mut write_err: Option<Failure> = None;
        let g = generate(
            &model.decoder,
            &model.tokenizer,
            &prompt.ids,
            &opts,
            &mut |t| match out.text(id, t) {
                Ok(more) => Ok(more),
                Err(f) => {
                    write_err = Some(f);
                    Ok(false)
                }
            },
        )?;
        if let Some(f) = write_err {
            return Err(f);
        }
        if g.context_full {
            out.warn(&format!(
                "{id}: stopped after {} tokens at the end of the model's context ({} tokens)",
                g.tokens.len(),
                context.unwrap_or_default()
            ));
        }
        if out.json {
            let mut rec = json!({"type": "result", "model": id, "text": g.text,
                "prompt_tokens": g.prompt_tokens, "generated_tokens": g.tokens.len(),
                "finish_reason": g.finish_reason.as_str(), "ttft_s": g.ttft_s,
                "prefill_tok_s": g.prefill_tok_s, "decode_tok_s": g.decode_tok_s,
                "peak_mem_bytes": g.peak_mem_bytes, "seed": self.sampling.seed});
            if prompt.truncated > 0 {
                rec["truncated_prompt_tokens"] = json!(prompt.truncated);
            }
            if g.context_full {
                rec["context_full"] = json!(true);
            }
            out.record(&rec)?;
        } else {
            out.text(id, "\n")?;
        }
        if self.verbose || (!out.json && std::io::IsTerminal::is_terminal(&std::io::stderr())) {
            out.warn(&format!(
                "{} prompt tokens, {} generated ({}), prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.2} s",
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
        facts.finish_reason = Some(g.finish_reason.as_str().into());
        facts.tokens_per_sec = Some(g.decode_tok_s);
        facts.ttft_s = Some(g.ttft_s);
        facts.peak_bytes = Some(g.peak_mem_bytes);
        facts.prompt_tokens = Some(g.prompt_tokens as u64);
        facts.completion_tokens = Some(g.tokens.len() as u64);
        facts.extra = vec![("prefill_tokens_per_sec".into(), g.prefill_tok_s)];
        facts.stop_configured = eos_strings
            .iter()
            .chain(self.stop.iter())
            .cloned()
            .collect();
        facts.stop_detected = g
            .stop_string
            .clone()
            .into_iter()
            .chain(g.eos_token.and_then(|_| eos_strings.first().cloned()))
            .collect();
        facts.stop_leaked = facts
            .stop_configured
            .iter()
            .any(|s| !s.is_empty() && g.text.contains(s.as_str()));
        Ok(())
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
