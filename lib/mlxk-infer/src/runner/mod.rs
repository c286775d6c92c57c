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

pub mod text;

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

    /// Runs the model on this runner's input, printing through `out` and filling `facts`
    /// (timings, token counts, `finish_reason`). `Err` when the run failed.
    fn run(
        &self,
        model: &Self::Model,
        job: &Job,
        out: &mut Output,
        facts: &mut RunFacts,
    ) -> Result<(), Failure>;
}

fn rss_bytes() -> Option<u64> {
    ProcessTree::new(std::process::id()).rss(&SysRoot::from_env())
}

/// Runs every job, one model at a time, each loaded once and released before the next. The
/// exit status is tallied in `out`; an interruption (Ctrl-C) ends the batch with 130 after the
/// interrupted run's records are complete.
pub fn run_jobs<R: Runner>(
    runner: &R,
    jobs: &[Job],
    out: &mut Output,
    report: Option<&ReportFile>,
) {
    for job in jobs {
        if out.closed() {
            break;
        }
        let id = job.record.id.clone();
        let mut facts = RunFacts {
            tool: R::TOOL.into(),
            model_id: id.clone(),
            size_bytes: Some(job.record.size_bytes),
            family: job.record.model_type.clone(),
            modality: R::BACKEND.into(),
            start_ts: mlxk::monitor::unix_now(),
            mlx_version: crate::runtime::mlx_version(),
            ..Default::default()
        };
        let outcome = admit_and_run(runner, job, out, &mut facts);
        facts.end_ts = mlxk::monitor::unix_now();
        facts.memory = SysRoot::from_env().memory().ok();
        let interrupted = facts.finish_reason.as_deref() == Some("interrupted");
        match &outcome {
            Ok(()) if interrupted => {
                facts.error = Some(("interrupted".into(), "interrupted (Ctrl-C)".into()));
                out.warn(&format!("{id}: interrupted; the output above is partial"));
                out.note(Exit::Interrupted);
            }
            Ok(()) => facts.passed = true,
            Err(f) => {
                facts.error = Some((f.code.into(), f.message.clone()));
                out.fail(f, Some(&id));
            }
        }
        if let Some(r) = report {
            let mut rec = report_record(&facts);
            if matches!(&outcome, Err(f) if f.code == "blocked" || f.code == "unusable" || f.code == "wrong_backend")
            {
                // Never ran: a benchmark file shows it as skipped, with the gate's reason.
                rec["outcome"] = json!("skipped");
            }
            if let Err(f) = r.append(&rec) {
                out.fail(&f, Some(&id));
            }
        }
        if interrupted {
            break;
        }
    }
}

fn admit_and_run<R: Runner>(
    runner: &R,
    job: &Job,
    out: &mut Output,
    facts: &mut RunFacts,
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
    facts.load_time_s = Some(load_time_s);
    facts.stable_bytes = mlx_rs::memory::active_memory().ok().map(|b| b as u64);
    out.record_if_json(
        &json!({"type": "load", "model": id, "ts": mlxk::monitor::unix_now(),
        "load_time_s": load_time_s, "rss_bytes": rss_bytes()}),
    )?;
    runner.describe(&model, job, facts);
    let result = runner.run(&model, job, out, facts);
    // Unload: drop every array, return MLX's cached buffers to the system, measure it.
    let t = std::time::Instant::now();
    drop(model);
    mlx_rs::memory::clear_cache().ok();
    let cleanup = t.elapsed().as_secs_f64();
    facts.cleanup_time_s = Some(cleanup);
    out.record_if_json(
        &json!({"type": "unload", "model": id, "ts": mlxk::monitor::unix_now(),
        "cleanup_time_s": cleanup, "rss_bytes": rss_bytes()}),
    )?;
    result
}
