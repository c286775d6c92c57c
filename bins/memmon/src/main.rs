//! `memmon`: sample memory, CPU and GPU while a command runs, as JSON Lines (or CSV).
use clap::Parser;
use mlxk::cli::Exit;
use mlxk::monitor::{self, RunFacts, Sampler, Sink, SummaryBuilder};
use mlxk::sys::SysRoot;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sample memory, CPU and GPU while a command runs, as JSON Lines (or CSV).
///
/// Every --interval milliseconds one sample is written and flushed: ts, elapsed_s, ram_free_gb
/// (memory obtainable without swapping), ram_available_gb (what this process tree can still get
/// under a cgroup limit), swap_used_mb, memory_pressure (1 normal, 2 warning, 4 critical; from
/// PSI on Linux), psi_some_avg10, psi_full_avg10, cgroup_usage_mb/cgroup_limit_mb when confined,
/// load_1/5/15, cpu_user/cpu_sys/cpu_idle (%), proc_rss_mb (the wrapped command and all its
/// descendants) and gpu_* where a GPU can be read. Fields a machine cannot give are left out.
/// The file ends with one {"summary": {...}} line, written in every case (with --csv, into
/// FILE.summary.json).
///
/// The command keeps stdin, stdout and stderr. SIGTERM and SIGHUP sent to memmon are passed to
/// it (SIGINT too when sent with kill; Ctrl-C already reaches the whole foreground job). Samples
/// are taken on a fixed clock; ticks missed under load are counted, not drifted over.
///
/// Exit status: the command's own; 128+N when it was killed by signal N; 127 when it could not
/// be started; 130 when memmon alone was interrupted; 2 usage, 1 other failures.
#[derive(Parser, Debug)]
#[command(name = "memmon", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Output file; `-` writes the samples to stdout (only without a command)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sampling interval in milliseconds
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Stop after this many seconds (only without a command)
    #[arg(long, value_name = "SECONDS", conflicts_with = "command")]
    pub duration: Option<f64>,
    /// Write CSV with a header instead of JSON Lines
    #[arg(long)]
    pub csv: bool,
    /// Read /proc and /sys below DIR instead of / (for tests; also MLXK_SYS_ROOT)
    #[arg(long, value_name = "DIR", hide = true)]
    pub sys_root: Option<PathBuf>,
    /// The command to run and watch (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

const EXAMPLES: &str = "Examples:
  memmon -o runs/2026-11-23_wet-memory.jsonl -- pytest -m live_e2e
  memmon --duration 60 --interval 200 -o mem.jsonl
  memmon -o - --duration 5 | jq .ram_free_gb
  memmon --csv -o mem.csv -- ./bench.sh";

/// The last signal delivered to memmon (0: none), and whether a process sent it with kill(2)
/// rather than the terminal. Signal handlers can only reach process-wide state.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNAL_FROM_KILL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SI_USER/SI_QUEUE (kill, sigqueue) are ≤ 0; the terminal's SIGINT comes from the kernel.
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let from_kill = unsafe { info.as_ref() }.is_some_and(|i| i.si_code <= 0);
    SIGNAL_FROM_KILL.store(from_kill as i32, Ordering::SeqCst);
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with our handler and SA_SIGINFO is a valid argument; the
        // handler only stores to atomics, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match (&cli.output, cli.command.is_empty()) {
        (Some(p), false) if p == std::path::Path::new("-") => {
            eprintln!("memmon: -o - writes to stdout, which belongs to the command; give -o FILE");
            return Exit::Usage.into();
        }
        (Some(p), _) => p.clone(),
        (None, true) => PathBuf::from("-"),
        (None, false) => {
            eprintln!("memmon: give -o FILE for the samples (stdout belongs to the command)");
            return Exit::Usage.into();
        }
    };
    if cli.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
        eprintln!("memmon: --duration must be a positive number of seconds");
        return Exit::Usage.into();
    }
    let mut sink = match Sink::open(&output, cli.csv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "memmon: cannot create {}: {e}; nothing was started (check the path, create its folder first)",
                output.display()
            );
            return Exit::Failure.into();
        }
    };
    install_signal_handlers();
    let sys = cli
        .sys_root
        .clone()
        .map(SysRoot::new)
        .unwrap_or_else(SysRoot::from_env);
    let interval = Duration::from_millis(cli.interval);
    let start = Instant::now();
    let mut sampler = Sampler::new(sys, None);
    let mut summary = SummaryBuilder::default();

    // Start the command; a waiter thread reports its exit.
    let (done_tx, done_rx) = mpsc::channel();
    let mut child_pid = None;
    let mut start_error = None;
    if let Some((program, args)) = cli.command.split_first() {
        match std::process::Command::new(program).args(args).spawn() {
            Ok(mut child) => {
                child_pid = Some(child.id());
                sampler.set_pid(Some(child.id()));
                std::thread::spawn(move || {
                    let _ = done_tx.send(child.wait());
                });
            }
            Err(e) => start_error = Some(format!("cannot run '{program}': {e}")),
        }
    }

    let mut exit_code: Option<i32> = None;
    let mut missed: u64 = 0;
    let mut tick: u64 = 0;
    // With --duration: the last tick that is due (at or after the end), on the fixed clock.
    let last_tick = cli
        .duration
        .map(|d| ((d * 1000.0).round() as u64).div_ceil(cli.interval.max(1)));
    let mut write_failed = None;
    if start_error.is_none() {
        loop {
            let next = start + interval.mul_f64(tick as f64);
            let now = Instant::now();
            if write_failed.is_none() && now >= next {
                let s = sampler.sample();
                summary.add(&s);
                if let Err(e) = sink.sample(&s) {
                    // Samples are lost from here on: say so now, stop sampling, but let the
                    // command finish (it is not ours to abandon) and fail the run after.
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        eprintln!(
                            "memmon: cannot write samples to {}: {e}; sampling stopped, waiting for the command",
                            output.display()
                        );
                    }
                    write_failed = Some(e);
                    if child_pid.is_none() {
                        break;
                    }
                    continue;
                }
                tick += 1;
                // Fixed clock: if we fell behind by whole intervals, skip them and count them.
                let behind =
                    Instant::now().saturating_duration_since(start + interval.mul_f64(tick as f64));
                let mut skip = (behind.as_nanos() / interval.as_nanos().max(1)) as u64;
                // Ticks past the end of --duration were never due: they are not missed.
                if let Some(last) = last_tick {
                    skip = skip.min((last + 1).saturating_sub(tick));
                }
                if skip > 0 {
                    missed += skip;
                    tick += skip;
                }
                if last_tick.is_some_and(|last| tick > last) {
                    break;
                }
                continue;
            }
            let wait = if write_failed.is_some() {
                Duration::from_millis(50)
            } else {
                next.saturating_duration_since(now)
                    .min(Duration::from_millis(50))
            };
            match done_rx.recv_timeout(wait) {
                Ok(status) => {
                    exit_code = Some(match status {
                        Ok(st) => exit_status_code(st),
                        Err(_) => Exit::Failure.code() as i32,
                    });
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout)
                | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            let sig = SIGNAL.swap(0, Ordering::SeqCst);
            if sig != 0 {
                match child_pid {
                    Some(pid) => {
                        // Ctrl-C from the terminal already reached the command; anything sent to
                        // memmon alone is passed on. Then keep sampling until the command ends.
                        let from_kill = SIGNAL_FROM_KILL.load(Ordering::SeqCst) != 0;
                        if sig != libc::SIGINT || from_kill {
                            // SAFETY: kill with a pid we spawned and a valid signal number.
                            unsafe { libc::kill(pid as libc::pid_t, sig) };
                        }
                    }
                    None => {
                        exit_code = Some(128 + sig);
                        break;
                    }
                }
            }
        }
    }

    let code = match (&start_error, exit_code) {
        (Some(e), _) => {
            eprintln!("memmon: {e}");
            127
        }
        (None, Some(c)) => c,
        (None, None) => 0,
    };
    let facts = RunFacts {
        duration_s: start.elapsed().as_secs_f64(),
        interval_ms: cli.interval,
        missed_ticks: missed,
        exit_code: if cli.command.is_empty() && exit_code.is_none() {
            None
        } else {
            Some(code)
        },
        command: cli.command.clone(),
        error: start_error.clone(),
        end_ts: monitor::unix_now(),
    };
    if let Some(e) = write_failed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            // The command's own failure says more; a successful one still lost its samples.
            return ExitCode::from(if code != 0 {
                code.clamp(1, 255) as u8
            } else {
                1
            });
        }
        // `memmon -o - | head`: the reader left; end quietly.
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    if let Err(e) = sink.summary(&summary.build(facts))
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!(
            "memmon: cannot write the summary to {}: {e}",
            output.display()
        );
        return Exit::Failure.into();
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn exit_status_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

mlxk::man_page_test!(Cli);
