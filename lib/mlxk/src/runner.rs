//! The runner path that mlxk-gen, mlxk-see, mlxk-hear and mlxk-serve share up to loading
//! (DESIGN.md): which models to run (a spec resolved, probed and gated here, or the `model`
//! records of `mlxk-probe | mlxk-gate` on stdin), whether a runner may run each one (the gate's
//! decision and backend), where records and text go, the report file, and Ctrl-C. What loads
//! and runs a model lives in `mlxk_infer::runner`, which needs MLX; this part does not.
use crate::cli::{self, Exit, ExitStatus, ExitTally, Failure, Written};
use crate::policy::{self, GateConfig};
use crate::records::{Gate, ModelRecord, RecordLine, parse_record_line};
use crate::resolve::{CacheRoot, resolve};
use crate::sys::SysRoot;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One model to run, with the gate's decision about it.
#[derive(Debug, Clone)]
pub struct Job {
    pub record: ModelRecord,
    pub gate: Gate,
}

impl Job {
    /// Whether a runner for `backend` (`text`, `vision`, `audio`) may run this model: the gate
    /// must not block it, and it must be that backend's model (no silent fallback: a vision
    /// model is not run as text by mlxk-gen, nor a text model given images by mlxk-see).
    pub fn admit(&self, backend: &str, tool: &str) -> Result<(), Failure> {
        if let Some(f) = self.gate.refusal() {
            return Err(f);
        }
        match self.gate.backend.as_deref() {
            Some(b) if b == backend => Ok(()),
            Some(other) => Err(Failure::new(
                Exit::Unusable,
                "wrong_backend",
                format!(
                    "the gate chose the {other} backend for this model; {tool} runs {backend} models{}",
                    match other {
                        "text" => " (use mlxk-gen)",
                        "vision" => " (use mlxk-see)",
                        "audio" => " (use mlxk-hear)",
                        _ => "",
                    }
                ),
            )),
            None => Err(Failure::new(
                Exit::Unusable,
                "unusable",
                "the gate found no backend for this model",
            )),
        }
    }
}

/// Gates `record` with this moment's memory, as mlxk-gate would (warnings allowed: a named
/// model is the user's explicit choice; blocks still block).
pub fn gate_here(record: &ModelRecord, sys: &SysRoot) -> Gate {
    let cfg = GateConfig {
        threshold: policy::DEFAULT_THRESHOLD,
        allow_warn: true,
    };
    policy::decide_now(record, sys, &cfg)
}

/// The job for a model spec: resolved, probed and gated in this process.
pub fn job_for_spec(spec: &str) -> Result<Job, Failure> {
    let snap = resolve(spec, &CacheRoot::from_env()).map_err(|e| e.failure())?;
    let record = crate::probe::probe(&snap, crate::probe::Device::current());
    let gate = gate_here(&record, &SysRoot::from_env());
    Ok(Job { record, gate })
}

/// The jobs of a record stream (`mlxk-probe | mlxk-gate`). Records without a `gate` are gated
/// here. Upstream `error` records are passed on and counted; malformed lines are reported
/// (with their line number) and the rest still run; other records are ignored.
pub fn jobs_from_records(input: impl BufRead, out: &mut Output) -> Result<Vec<Job>, Failure> {
    let sys = SysRoot::from_env();
    let mut jobs = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| Failure::io(format!("stdin line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_record_line(&line, i + 1) {
            RecordLine::Model(v, r) => {
                let gate = match v.get("gate") {
                    None => gate_here(&r, &sys),
                    Some(g) => match serde_json::from_value::<Gate>(g.clone()) {
                        Ok(g) => g,
                        Err(e) => {
                            // A gate we cannot read is not silently replaced by our own.
                            out.fail(
                                &Failure::new(
                                    Exit::Failure,
                                    "malformed_input",
                                    format!(
                                        "stdin line {}: the gate object is malformed ({e})",
                                        i + 1
                                    ),
                                ),
                                Some(&r.id),
                            );
                            continue;
                        }
                    },
                };
                jobs.push(Job { record: *r, gate });
            }
            RecordLine::Other(v) if v["type"] == "error" => {
                // An upstream failure (e.g. a name mlxk-probe could not find) is passed on.
                out.note(Exit::Failure);
                out.warn(&format!(
                    "upstream: {}",
                    v["message"].as_str().unwrap_or("error")
                ));
                out.record_if_json(&v)?;
            }
            RecordLine::Other(_) => {}
            RecordLine::Malformed { message, model } => {
                out.fail(
                    &Failure::new(Exit::Failure, "malformed_input", message),
                    model.as_deref(),
                );
            }
        }
    }
    if jobs.is_empty() && !out.tally.failed() {
        return Err(Failure::usage("no model records on stdin"));
    }
    Ok(jobs)
}

/// Where a runner's output goes: JSON Lines records (`--json`) or text, to stdout; one line per
/// failure to stderr; the run's exit status tallied. A closed stdout (`| head`) ends the
/// output quietly, and the runner stops early.
pub struct Output {
    pub tool: &'static str,
    pub json: bool,
    /// With `json`: a `delta` record per piece of text.
    pub stream: bool,
    closed: bool,
    pub tally: ExitTally,
}

impl Output {
    pub fn new(tool: &'static str, json: bool, stream: bool) -> Output {
        Output {
            tool,
            json,
            stream,
            closed: false,
            tally: ExitTally::default(),
        }
    }

    /// The reader went away: nothing more is written, and the runner stops.
    pub fn closed(&self) -> bool {
        self.closed
    }

    pub fn note(&mut self, e: Exit) {
        self.tally.note(e);
    }

    /// A line for a person on stderr: `TOOL: text`.
    pub fn warn(&self, text: &str) {
        eprintln!("{}: {text}", self.tool);
    }

    /// Reports a failure: one line on stderr, an `error` record with `--json`, the exit tallied.
    pub fn fail(&mut self, f: &Failure, model: Option<&str>) {
        self.warn(&format!(
            "{}{}",
            model.map(|m| format!("{m}: ")).unwrap_or_default(),
            f.message
        ));
        if self.json {
            // A write failure here has nowhere better to go than the line just printed.
            let _ = self.record(&f.record(model));
        }
        self.tally.note(f.exit);
    }

    pub fn record(&mut self, v: &Value) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        match cli::write_json(&mut std::io::stdout().lock(), v) {
            Ok(Written::Ok) => Ok(()),
            Ok(Written::Closed) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Failure::io(format!("cannot write output: {e}"))),
        }
    }

    pub fn record_if_json(&mut self, v: &Value) -> Result<(), Failure> {
        if self.json { self.record(v) } else { Ok(()) }
    }

    /// Streams a piece of text: to stdout as is, or as a `delta` record with `--json
    /// --stream`. False once the reader has gone.
    pub fn text(&mut self, model: &str, t: &str) -> Result<bool, Failure> {
        self.text_part(model, t, false)
    }

    /// Like [`Output::text`]; a reasoning model's thinking is marked `"part": "reasoning"` in
    /// its `delta` records.
    pub fn text_part(&mut self, model: &str, t: &str, reasoning: bool) -> Result<bool, Failure> {
        if self.closed {
            return Ok(false);
        }
        if self.json {
            if self.stream {
                let mut d = json!({"type": "delta", "model": model, "text": t});
                if reasoning {
                    d["part"] = json!("reasoning");
                }
                self.record(&d)?;
            }
            return Ok(!self.closed);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(t.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(Failure::io(format!("cannot write output: {e}"))),
        }
    }
}

/// The `--report FILE` a runner appends schema-0.2.2 records to, one per model run — passed,
/// failed or interrupted — each written whole in one `write` so a reader never sees half a line.
#[derive(Debug, Clone)]
pub struct ReportFile(pub PathBuf);

impl ReportFile {
    /// Opens the file once before anything runs, so that a report that cannot be written fails
    /// the run up front instead of after the work.
    pub fn check(path: &Path) -> Result<ReportFile, Failure> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Failure::io(format!("cannot open --report {}: {e}", path.display())))?;
        Ok(ReportFile(path.to_path_buf()))
    }

    pub fn append(&self, rec: &Value) -> Result<(), Failure> {
        let path = &self.0;
        let mut line = rec.to_string();
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| Failure::io(format!("cannot write --report {}: {e}", path.display())))
    }
}

static INTERRUPTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_sigint(_: libc::c_int) {
    if let Some(f) = INTERRUPTED.get() {
        f.store(true, Ordering::SeqCst);
    }
}

fn arm_sigint() {
    // SAFETY: the handler only stores to an atomic that outlives the process; SA_RESETHAND
    // gives the second Ctrl-C the default action, SA_RESTART keeps reads going.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// Ctrl-C for a runner: the first SIGINT sets the flag (the runner stops at the next token,
/// marks what it has as interrupted and still writes its records); a second one ends the
/// process as usual.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let mut first = false;
    let flag = INTERRUPTED.get_or_init(|| {
        first = true;
        Arc::new(AtomicBool::new(false))
    });
    if first {
        arm_sigint();
    }
    flag.clone()
}

/// An interactive session's next answer: the flag is cleared and the next Ctrl-C stops that
/// answer again (a second one during it still ends the process).
pub fn rearm_interrupt() {
    interrupt_flag().store(false, Ordering::SeqCst);
    arm_sigint();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{BlockCause, Capability, Decision, Framework, Health, MemoryEstimate};

    fn job(backend: Option<&str>, decision: Decision, cause: Option<BlockCause>) -> Job {
        Job {
            record: ModelRecord {
                kind: "model".into(),
                id: "org/m".into(),
                path: "/x".into(),
                revision: None,
                framework: Framework::Mlx,
                weight_format: "safetensors".into(),
                model_type: Some("llava".into()),
                quantization: Default::default(),
                size_bytes: 1,
                context_length: None,
                context_length_source: "default".into(),
                capabilities: vec![Capability::Text, Capability::Vision],
                health: Health {
                    ok: true,
                    problems: vec![],
                },
                memory: MemoryEstimate {
                    estimate_bytes: 1,
                    dtype: "float32".into(),
                },
            },
            gate: Gate {
                decision,
                backend: backend.map(str::to_string),
                reasons: vec!["why".into()],
                available_bytes: None,
                ratio: None,
                threshold: 0.7,
                memory: None,
                blocked_by: cause,
            },
        }
    }

    #[test]
    fn a_record_for_another_backend_is_refused() {
        let j = job(Some("vision"), Decision::Allow, None);
        let f = j.admit("text", "mlxk-gen").unwrap_err();
        assert_eq!((f.exit, f.code), (Exit::Unusable, "wrong_backend"));
        assert!(f.message.contains("use mlxk-see"), "{}", f.message);
        assert!(j.admit("vision", "mlxk-see").is_ok());
    }

    #[test]
    fn blocks_map_to_their_exit_status() {
        let mem = job(Some("vision"), Decision::Block, Some(BlockCause::Memory));
        assert_eq!(
            mem.admit("vision", "mlxk-see").unwrap_err().exit,
            Exit::Blocked
        );
        let bad = job(None, Decision::Block, Some(BlockCause::Unusable));
        assert_eq!(
            bad.admit("text", "mlxk-gen").unwrap_err().exit,
            Exit::Unusable
        );
        let warn = job(Some("text"), Decision::Warn, None);
        assert!(warn.admit("text", "mlxk-gen").is_ok());
    }

    #[test]
    fn record_streams_keep_going_past_bad_lines() {
        let mut out = Output::new("t", false, false);
        let input = "{nope\n{\"type\":\"other\"}\n";
        // Nothing runnable and a failure seen: the failure is the result, not a usage error.
        let jobs = jobs_from_records(input.as_bytes(), &mut out).unwrap();
        assert!(jobs.is_empty());
        assert_eq!(out.tally.exit(), Exit::Failure);
        let mut out = Output::new("t", false, false);
        let err = jobs_from_records("\n".as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
    }

    #[test]
    fn report_lines_are_appended_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.jsonl");
        let r = ReportFile::check(&p).unwrap();
        r.append(&json!({"a": 1})).unwrap();
        r.append(&json!({"b": 2})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        let missing = d.path().join("no/such/dir/r.jsonl");
        let f = ReportFile::check(&missing).unwrap_err();
        assert!(
            f.message.starts_with("cannot open --report"),
            "{}",
            f.message
        );
    }
}
