//! The kernels' threads: one per core besides the caller, kept hot between kernels.
//!
//! Decoding one token calls the kernels a few hundred times, each for tens of microseconds of
//! work. A general pool (rayon) parks its threads between calls and wakes them through the
//! kernel every time, and the caller sleeps while they work: the round trip costs as much as a
//! small matrix–vector product. Here the caller works on the tasks too, and the other threads
//! spin for a short while after each job (long enough to span the MLX operations between two
//! kernels of a layer) before they sleep on a condition variable.
//!
//! Tasks are claimed from one atomic ticket (epoch, task count and next task), so a thread that
//! arrives late for a job can never claim a task of the next one. A caller that finds the pool
//! busy (another thread's job, or a kernel called from inside a task) runs its tasks itself.
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle thread spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

type Job = *const (dyn Fn(usize) + Sync);

/// Tasks one published job has at most (16 bits of the ticket); more are run in groups.
const MAX_TASKS: usize = 0xffff;

/// A ticket's epoch, task count and next task.
fn split(t: u64) -> (u64, u64, u64) {
    (t >> 32, (t >> 16) & 0xffff, t & 0xffff)
}

struct Pool {
    /// `epoch << 32 | tasks << 16 | index of the next unclaimed task`: one word, so a claim
    /// checks the job, its size and its next task at once.
    ticket: AtomicU64,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    /// The current job's function, valid while it has unfinished tasks.
    job: UnsafeCell<Option<Job>>,
    /// Serializes callers; holds the last epoch published.
    submit: Mutex<u64>,
    /// Threads asleep, and where they sleep.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    /// Threads a job runs on, the caller included (those actually started).
    threads: AtomicUsize,
}

// SAFETY: `job` is written only by the caller holding `submit`, before the ticket that makes
// its tasks claimable is published (release), and read only by a thread that claimed one of
// those tasks (acquire) — the caller does not return, nor write `job` again, until every task
// is done.
unsafe impl Sync for Pool {}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("MLXK_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let p: &'static Pool = Box::leak(Box::new(Pool {
            ticket: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            submit: Mutex::new(0),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            threads: AtomicUsize::new(1),
        }));
        for i in 1..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("mlxk-kernel-{i}"))
                .spawn(move || p.worker());
            if spawned.is_err() {
                // Fewer threads only means less parallelism: the caller runs every task it
                // finds unclaimed.
                break;
            }
            p.threads.fetch_add(1, Ordering::Relaxed);
        }
        p
    })
}

/// Threads a job runs on (the caller included).
pub fn threads() -> usize {
    pool().threads.load(Ordering::Relaxed)
}

impl Pool {
    /// Claims the next task of the job with `epoch`, if one is left.
    fn claim(&self, epoch: u64) -> Option<usize> {
        let mut t = self.ticket.load(Ordering::Acquire);
        loop {
            let (e, total, next) = split(t);
            if e != epoch || next >= total {
                return None;
            }
            match self
                .ticket
                .compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next as usize),
                Err(now) => t = now,
            }
        }
    }

    /// Runs claimed tasks of `epoch` until none is left.
    fn work(&self, epoch: u64) {
        while let Some(i) = self.claim(epoch) {
            // SAFETY: a task of `epoch` is claimed and not done, so `job` holds its function
            // and the caller is waiting for it (see `unsafe impl Sync`).
            let f = unsafe { (*self.job.get()).expect("a job is published before its tasks") };
            // SAFETY: as above; the function outlives every task of its job.
            unsafe { (*f)(i) };
            self.done.fetch_add(1, Ordering::Release);
        }
    }

    /// The published job's epoch, if it has a task left to claim.
    fn pending(&self) -> Option<u64> {
        let (e, total, next) = split(self.ticket.load(Ordering::SeqCst));
        (e != 0 && next < total).then_some(e)
    }

    fn worker(&self) {
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            let epoch = loop {
                if let Some(e) = self.pending() {
                    break e;
                }
                spins += 1;
                if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                let mut g = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                while self.pending().is_none() {
                    g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(g);
                if let Some(e) = self.pending() {
                    break e;
                }
            };
            self.work(epoch);
        }
    }
}

/// Runs `f(i)` for every `i` in `0..tasks`, on the pool's threads and the caller's; returns when
/// all are done. A panic in a task aborts the process (the kernels' tasks do not panic).
pub fn run(tasks: usize, f: impl Fn(usize) + Sync) {
    run_dyn(tasks, &f)
}

fn run_dyn(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks == 0 {
        return;
    }
    if tasks > MAX_TASKS {
        let per = tasks.div_ceil(MAX_TASKS);
        return run_dyn(tasks.div_ceil(per), &|g| {
            (g * per..((g + 1) * per).min(tasks)).for_each(f)
        });
    }
    let p = pool();
    let guard = (tasks > 1 && p.threads.load(Ordering::Relaxed) > 1)
        .then(|| p.submit.try_lock().ok())
        .flatten();
    let Some(mut epoch) = guard else {
        (0..tasks).for_each(f);
        return;
    };
    // A panicking task would leave the others waiting on a job that never finishes.
    let f = |i: usize| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
            std::process::abort();
        }
    };
    let job: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: the lifetime is erased only for the duration of this call, which waits below
    // until every task has run.
    let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
    *epoch = (*epoch + 1) & 0xffff_ffff;
    if *epoch == 0 {
        *epoch = 1;
    }
    // SAFETY: no task of any earlier job is unfinished (each caller waited for its own), and
    // new tasks are claimable only after the ticket below.
    unsafe { *p.job.get() = Some(job) };
    p.done.store(0, Ordering::Relaxed);
    p.ticket
        .store(*epoch << 32 | (tasks as u64) << 16, Ordering::SeqCst);
    if p.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = p.sleep.lock().unwrap_or_else(|e| e.into_inner());
        p.wake.notify_all();
    }
    p.work(*epoch);
    while p.done.load(Ordering::Acquire) < tasks {
        std::hint::spin_loop();
    }
    // SAFETY: every task is done and none is claimable any more.
    unsafe { *p.job.get() = None };
}

/// `out` in `chunk`-long pieces (the last may be shorter), `f(where the piece is in out,
/// piece)` run for each as a task of [`run`] (the range indexes the kernel's inputs alike).
pub fn chunks_mut(
    out: &mut [f32],
    chunk: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let chunk = chunk.max(1);
    let (len, ptr) = (out.len(), Out(out.as_mut_ptr()));
    run(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        // SAFETY: pieces are disjoint and inside `out`, which the caller borrows mutably for
        // the whole of `run`.
        f(start..start + n, unsafe {
            std::slice::from_raw_parts_mut(ptr.at(start), n)
        })
    });
}

/// A raw output pointer the tasks of one job write through, each to its own part (the
/// kernels' outputs).
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: every task writes only its own part of the output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Element `i`; a method, so closures capture the whole `Send` wrapper rather than its
    /// raw field.
    pub(crate) fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_across_many_jobs_and_callers() {
        let callers: Vec<_> = (0..4)
            .map(|c| {
                std::thread::spawn(move || {
                    for job in 0..300 {
                        let n = 1 + (job * 7 + c) % 40;
                        let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                        run(n, |i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
    }

    #[test]
    fn chunks_cover_the_output_exactly() {
        let mut out = vec![0f32; 1001];
        chunks_mut(&mut out, 100, |at, o| {
            assert_eq!(at.len(), o.len());
            for (j, v) in at.zip(o.iter_mut()) {
                *v = j as f32;
            }
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i as f32));
    }

    #[test]
    fn a_kernel_inside_a_task_runs_inline() {
        let total = AtomicU32::new(0);
        run(8, |_| {
            run(4, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 32);
    }
}
