//! The runner path's second half (DESIGN.md), shared by mlxk-gen, mlxk-see, mlxk-hear and the
//! server: for each model the first half ([`mlxk::runner`]) hands over — admit it for this
//! runner's backend, load it, run it, write `load`/`result`/`unload`/`error` records, release
//! it, and append a report record for every run, passed, failed or interrupted. What differs
//! between the tools is a [`Runner`]: how a model loads and what one run does and prints.
use mlxk::cli::{Exit, Failure};
use mlxk::report::run::{RunFacts, record as report_record};
use mlxk::runner::{Job, Output, ReportFile};
use mlxk::sys::{ProcessTree, SysRoot};
use serde_json::json;

pub mod audio;
pub mod chat;
pub mod text;
pub mod vision;

/// One kind of runner: its tool name, its backend, how it loads a model and runs it.
pub trait Runner {
    type Model;
    /// `mlxk-gen`, …: names the tool in messages and in reports.
    const TOOL: &'static str;
    /// The gate backend it runs: `text`, `vision` or `audio`.
    const BACKEND: &'static str;

    /// Loads the job's model; returns it with its load time in seconds.
    fn load(&self, job: &Job) -> Result<(Self::Model, f64), Failure>;

    /// Fills what the loaded model says about itself (framework, precision) into `facts`.
    fn describe(&self, model: &Self::Model, job: &Job, facts: &mut RunFacts);

    /// Runs the model on this runner's inputs — one run, or one per item of a batch — printing
    /// through `out` and ending every run with [`Runs::finish`]. `Err` for a failure that ends
    /// the whole job.
    fn run(
        &self,
        model: &Self::Model,
        job: &Job,
        out: &mut Output,
        runs: &mut Runs,
    ) -> Result<(), Failure>;
}

/// The runs of one loaded model: each starts from the model's facts and, once finished, is
/// reported (a failure on stderr and as an `error` record at once; the report record after
/// the model is released, with the release time).
pub struct Runs {
    base: RunFacts,
    finished: Vec<RunFacts>,
    interrupted: bool,
}

impl Runs {
    /// The facts of a run that starts now.
    pub fn start(&self) -> RunFacts {
        RunFacts {
            start_ts: mlxk::monitor::unix_now(),
            ..self.base.clone()
        }
    }

    /// Ends a run: passed, failed (`Err`), or interrupted (`finish_reason` says so).
    pub fn finish(&mut self, out: &mut Output, mut facts: RunFacts, outcome: Result<(), Failure>) {
        end_facts(&mut facts);
        let id = facts.model_id.clone();
        match outcome {
            // `| head`: the reader went away; the tool ends quietly, the run did not finish.
            Ok(()) if out.closed() => {
                facts.error = Some((
                    "output_closed".into(),
                    "the reader of stdout went away; the output is partial".into(),
                ));
            }
            Ok(()) if facts.finish_reason.as_deref() == Some("interrupted") => {
                facts.error = Some(("interrupted".into(), "interrupted (Ctrl-C)".into()));
                out.warn(&format!("{id}: interrupted; the output above is partial"));
                out.note(Exit::Interrupted);
                self.interrupted = true;
            }
            Ok(()) => facts.passed = true,
            Err(f) => {
                facts.error = Some((f.code.into(), f.message.clone()));
                out.fail(&f, Some(&id));
            }
        }
        self.finished.push(facts);
    }

    /// Ends one turn of an interactive session: as [`Runs::finish`], but Ctrl-C ends only that
    /// answer — the session goes on, and the exit status does not become 130.
    pub fn finish_turn(
        &mut self,
        out: &mut Output,
        mut facts: RunFacts,
        outcome: Result<(), Failure>,
    ) {
        if outcome.is_ok() && !out.closed() && facts.finish_reason.as_deref() == Some("interrupted")
        {
            end_facts(&mut facts);
            facts.error = Some(("interrupted".into(), "interrupted (Ctrl-C)".into()));
            self.finished.push(facts);
            return;
        }
        self.finish(out, facts, outcome)
    }

    /// Whether a run was interrupted: nothing more runs.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }
}

/// The facts every run of `job` by `tool` starts from: the model, the modality, the MLX build.
pub fn job_facts(tool: &str, backend: &str, job: &Job) -> RunFacts {
    RunFacts {
        tool: tool.into(),
        model_id: job.record.id.clone(),
        size_bytes: Some(job.record.size_bytes),
        family: job.record.model_type.clone(),
        modality: backend.into(),
        start_ts: mlxk::monitor::unix_now(),
        mlx_version: crate::runtime::mlx_version(),
        ..Default::default()
    }
}

/// A run has ended: its end time and the machine's state then (memory, zombie processes).
pub fn end_facts(facts: &mut RunFacts) {
    facts.end_ts = mlxk::monitor::unix_now();
    let sys = SysRoot::from_env();
    facts.memory = sys.memory().ok();
    facts.zombies = sys.zombies();
}

fn rss_bytes() -> Option<u64> {
    ProcessTree::new(std::process::id()).rss(&SysRoot::from_env())
}

/// Codes of failures that mean the model never ran (the gate refused it).
const NEVER_RAN: &[&str] = &["blocked", "unusable", "wrong_backend"];

/// Runs every job, one model at a time, each loaded once and released before the next. The
/// exit status is tallied in `out`; an interruption (Ctrl-C) ends the batch with 130 after the
/// interrupted run's records are complete.
pub fn run_jobs<R: Runner>(
    runner: &R,
    jobs: &[Job],
    out: &mut Output,
    report: Option<&ReportFile>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) {
    for job in jobs {
        if out.closed() {
            break;
        }
        // Ctrl-C while reading input or between models: load nothing more.
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            out.warn("interrupted before the next model was loaded");
            out.note(Exit::Interrupted);
            break;
        }
        let mut runs = Runs {
            base: job_facts(R::TOOL, R::BACKEND, job),
            finished: Vec::new(),
            interrupted: false,
        };
        let facts = runs.start();
        if let Err(f) = load_and_run(runner, job, out, &mut runs) {
            runs.finish(out, facts, Err(f));
        }
        if let Some(r) = report {
            for facts in &runs.finished {
                let mut rec = report_record(facts);
                if facts
                    .error
                    .as_ref()
                    .is_some_and(|(code, _)| NEVER_RAN.contains(&code.as_str()))
                {
                    // Never ran: a benchmark file shows it as skipped, with the gate's reason.
                    rec["outcome"] = json!("skipped");
                }
                if let Err(f) = r.append(&rec) {
                    out.fail(&f, Some(&job.record.id));
                }
            }
        }
        if runs.interrupted() {
            break;
        }
    }
}

/// Admits, loads, runs and releases one job's model. Runs that ended are in `runs`, with the
/// release time; `Err` for a failure before any run (refused, not loadable) or one that ended
/// the job.
fn load_and_run<R: Runner>(
    runner: &R,
    job: &Job,
    out: &mut Output,
    runs: &mut Runs,
) -> Result<(), Failure> {
    job.admit(R::BACKEND, R::TOOL)?;
    if job.gate.decision == mlxk::records::Decision::Warn {
        out.warn(&format!(
            "{}: warning: {}",
            job.record.id,
            job.gate.reasons.join("; ")
        ));
    }
    let (model, load_time_s) = runner.load(job)?;
    let id = &job.record.id;
    runs.base.load_time_s = Some(load_time_s);
    runs.base.stable_bytes = mlx_rs::memory::active_memory().ok().map(|b| b as u64);
    out.record_if_json(
        &json!({"type": "load", "model": id, "ts": mlxk::monitor::unix_now(),
        "load_time_s": load_time_s, "rss_bytes": rss_bytes()}),
    )?;
    runner.describe(&model, job, &mut runs.base);
    let result = runner.run(&model, job, out, runs);
    // Unload: drop every array, return MLX's cached buffers to the system, measure it.
    let t = std::time::Instant::now();
    drop(model);
    mlx_rs::memory::clear_cache().ok();
    let cleanup = t.elapsed().as_secs_f64();
    for f in &mut runs.finished {
        f.cleanup_time_s = Some(cleanup);
    }
    runs.base.cleanup_time_s = Some(cleanup);
    out.record_if_json(
        &json!({"type": "unload", "model": id, "ts": mlxk::monitor::unix_now(),
        "cleanup_time_s": cleanup, "rss_bytes": rss_bytes()}),
    )?;
    result
}
