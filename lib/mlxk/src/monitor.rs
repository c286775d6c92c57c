//! memmon's sampling: one `Sample` per tick with the seed's fields (so files from the Python
//! tool and ours plot alike) plus what Linux gives beyond them, and the closing `Summary`.

use crate::sys::{self, CpuTimes, SysRoot};
use crate::table::round_to as round;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const GB: f64 = 1e9;
const MB: f64 = 1e6;

/// One sample. Fields a machine cannot give are absent, never zero.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub ts: f64,
    pub elapsed_s: f64,
    /// Memory obtainable without swapping (Linux MemAvailable; on macOS free + inactive +
    /// purgeable + speculative, as the seed's memmon counts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_free_gb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_total_gb: Option<f64>,
    /// What this process tree can still get: ram_free_gb, or the room under the cgroup v2
    /// limit when that is lower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_available_gb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_used_mb: Option<f64>,
    /// 1 normal, 2 warning, 4 critical (macOS levels; on Linux mapped from PSI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi_some_avg10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi_full_avg10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_usage_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_limit_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_15: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_user: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_sys: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_idle: Option<f64>,
    /// Resident memory of the wrapped command and all its descendants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proc_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_util: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_renderer_util: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_tiler_util: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_mem_used_mb: Option<f64>,
}

/// CSV columns, in order; a cell is empty where the sample has no value.
pub const CSV_COLUMNS: &[&str] = &[
    "ts",
    "elapsed_s",
    "ram_free_gb",
    "ram_total_gb",
    "ram_available_gb",
    "swap_used_mb",
    "memory_pressure",
    "psi_some_avg10",
    "psi_full_avg10",
    "cgroup_usage_mb",
    "cgroup_limit_mb",
    "load_1",
    "load_5",
    "load_15",
    "cpu_user",
    "cpu_sys",
    "cpu_idle",
    "proc_rss_mb",
    "gpu_util",
    "gpu_renderer_util",
    "gpu_tiler_util",
    "gpu_mem_used_mb",
];

impl Sample {
    /// The CSV row for `CSV_COLUMNS`, from the same serialization as the JSON line.
    pub fn csv_row(&self) -> Vec<String> {
        let v = serde_json::to_value(self).unwrap_or_default();
        CSV_COLUMNS
            .iter()
            .map(|c| match &v[*c] {
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect()
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reads one sample per call; keeps the previous CPU counters for the percentages.
pub struct Sampler {
    sys: SysRoot,
    start: Instant,
    prev_cpu: Option<CpuTimes>,
    tree: Option<sys::ProcessTree>,
    gpu: crate::gpu::GpuSource,
}

impl Sampler {
    pub fn new(sys: SysRoot, pid: Option<u32>) -> Self {
        let prev_cpu = sys.cpu_times();
        let tree = pid.map(sys::ProcessTree::new);
        Sampler {
            sys,
            start: Instant::now(),
            prev_cpu,
            tree,
            gpu: crate::gpu::GpuSource::detect(),
        }
    }

    pub fn set_pid(&mut self, pid: Option<u32>) {
        self.tree = pid.map(sys::ProcessTree::new);
    }

    pub fn sample(&mut self) -> Sample {
        let mut s = Sample {
            ts: round(unix_now(), 3),
            elapsed_s: round(self.start.elapsed().as_secs_f64(), 3),
            ..Default::default()
        };
        if let Ok(m) = self.sys.memory() {
            s.ram_free_gb = Some(round(m.mem_available_bytes as f64 / GB, 3));
            s.ram_total_gb = Some(round(m.total_bytes as f64 / GB, 3));
            s.ram_available_gb = Some(round(m.available_bytes as f64 / GB, 3));
            s.swap_used_mb = Some(round(m.swap_used_bytes as f64 / MB, 1));
            s.psi_some_avg10 = m.psi_some_avg10;
            s.psi_full_avg10 = m.psi_full_avg10;
            if let (Some(some), Some(full)) = (m.psi_some_avg10, m.psi_full_avg10) {
                s.memory_pressure = Some(sys::pressure_level(some, full));
            }
            s.cgroup_usage_mb = m.cgroup_usage_bytes.map(|b| round(b as f64 / MB, 1));
            s.cgroup_limit_mb = m.cgroup_limit_bytes.map(|b| round(b as f64 / MB, 1));
        }
        if let Some((a, b, c)) = self.sys.loadavg() {
            (s.load_1, s.load_5, s.load_15) = (Some(a), Some(b), Some(c));
        }
        if let Some(now) = self.sys.cpu_times() {
            if let Some((u, sy, i)) = self.prev_cpu.and_then(|p| now.percent_since(&p)) {
                (s.cpu_user, s.cpu_sys, s.cpu_idle) =
                    (Some(round(u, 1)), Some(round(sy, 1)), Some(round(i, 1)));
            }
            self.prev_cpu = Some(now);
        }
        if let Some(tree) = self.tree.as_mut() {
            s.proc_rss_mb = tree.rss(&self.sys).map(|b| round(b as f64 / MB, 1));
        }
        if let Some(g) = self.gpu.read() {
            s.gpu_util = g.util;
            s.gpu_renderer_util = g.renderer_util;
            s.gpu_tiler_util = g.tiler_util;
            s.gpu_mem_used_mb = g.mem_used_mb;
        }
        s
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stat {
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
}

impl Stat {
    fn add(&mut self, v: Option<f64>) {
        let Some(v) = v else { return };
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.n += 1;
    }
    fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(round(self.min, 3))
    }
    fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(round(self.max, 3))
    }
    fn avg(&self) -> Option<f64> {
        (self.n > 0).then(|| round(self.sum / self.n as f64, 3))
    }
}

/// Running aggregates for the closing `{"summary": …}` line.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    samples: u64,
    ram_free: Stat,
    swap: Stat,
    load: Stat,
    cpu_user: Stat,
    cpu_sys: Stat,
    rss: Stat,
    gpu: Stat,
    gpu_mem: Stat,
}

impl SummaryBuilder {
    pub fn add(&mut self, s: &Sample) {
        self.samples += 1;
        self.ram_free.add(s.ram_free_gb);
        self.swap.add(s.swap_used_mb);
        self.load.add(s.load_1);
        self.cpu_user.add(s.cpu_user);
        self.cpu_sys.add(s.cpu_sys);
        self.rss.add(s.proc_rss_mb);
        self.gpu.add(s.gpu_util);
        self.gpu_mem.add(s.gpu_mem_used_mb);
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The summary object; `run` carries duration, interval, missed ticks, exit code, command.
    pub fn build(&self, run: RunFacts) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(k.into(), serde_json::json!(v));
            }
        };
        put("ram_free_min_gb", self.ram_free.min());
        put("ram_free_max_gb", self.ram_free.max());
        put("ram_free_avg_gb", self.ram_free.avg());
        put("swap_max_mb", self.swap.max());
        put("swap_avg_mb", self.swap.avg());
        put("load_max", self.load.max());
        put("load_avg", self.load.avg());
        put("cpu_user_max", self.cpu_user.max());
        put("cpu_sys_max", self.cpu_sys.max());
        put("proc_rss_peak_mb", self.rss.max());
        put("gpu_max", self.gpu.max());
        put("gpu_avg", self.gpu.avg());
        put("gpu_mem_max_mb", self.gpu_mem.max());
        m.insert(
            "duration_s".into(),
            serde_json::json!(round(run.duration_s, 3)),
        );
        m.insert("samples".into(), serde_json::json!(self.samples));
        m.insert("interval_ms".into(), serde_json::json!(run.interval_ms));
        m.insert("missed_ticks".into(), serde_json::json!(run.missed_ticks));
        m.insert("exit_code".into(), serde_json::json!(run.exit_code));
        m.insert("command".into(), serde_json::json!(run.command));
        if let Some(e) = run.error {
            m.insert("error".into(), serde_json::json!(e));
        }
        m.insert("timestamp".into(), serde_json::json!(round(run.end_ts, 3)));
        serde_json::json!({ "summary": m })
    }
}

/// Facts about the run that the samples do not carry.
pub struct RunFacts {
    pub duration_s: f64,
    pub interval_ms: u64,
    pub missed_ticks: u64,
    pub exit_code: Option<i32>,
    pub command: Vec<String>,
    pub error: Option<String>,
    pub end_ts: f64,
}

/// Where memmon writes: JSON Lines samples then a `{"summary": …}` line, or CSV rows with the
/// summary in a `.summary.json` file beside them.
pub enum Sink {
    Json(Box<dyn Write>),
    Csv(Box<csv::Writer<Box<dyn Write>>>, Option<PathBuf>),
}

impl Sink {
    /// Opens `path` (`-` is stdout); CSV mode writes the header at once.
    pub fn open(path: &std::path::Path, csv_mode: bool) -> std::io::Result<Sink> {
        let w: Box<dyn Write> = if path == std::path::Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            // No folders are made: a mistyped path is an error before the command starts,
            // not a new directory tree.
            Box::new(std::fs::File::create(path)?)
        };
        if csv_mode {
            let mut c = csv::Writer::from_writer(w);
            c.write_record(CSV_COLUMNS)?;
            c.flush()?;
            let sidecar = (path != std::path::Path::new("-")).then(|| {
                let mut p = path.as_os_str().to_owned();
                p.push(".summary.json");
                PathBuf::from(p)
            });
            Ok(Sink::Csv(Box::new(c), sidecar))
        } else {
            Ok(Sink::Json(w))
        }
    }

    /// Writes and flushes one sample, so a crash loses at most one interval.
    pub fn sample(&mut self, s: &Sample) -> std::io::Result<()> {
        match self {
            Sink::Json(w) => {
                serde_json::to_writer(&mut *w, s)?;
                w.write_all(b"\n")?;
                w.flush()
            }
            Sink::Csv(c, _) => {
                c.write_record(s.csv_row())?;
                c.flush()
            }
        }
    }

    /// Writes the summary (after the samples, or beside them for CSV).
    pub fn summary(&mut self, v: &serde_json::Value) -> std::io::Result<()> {
        match self {
            Sink::Json(w) => {
                writeln!(w, "{v}")?;
                w.flush()
            }
            Sink::Csv(_, Some(sidecar)) => std::fs::write(sidecar, format!("{v}\n")),
            Sink::Csv(_, None) => {
                eprintln!("{v}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(free: f64, rss: Option<f64>) -> Sample {
        Sample {
            ts: 1.0,
            elapsed_s: 0.2,
            ram_free_gb: Some(free),
            proc_rss_mb: rss,
            load_1: Some(0.5),
            ..Default::default()
        }
    }

    #[test]
    fn absent_fields_are_left_out_not_zero() {
        let v = serde_json::to_value(sample(3.0, None)).unwrap();
        assert!(v.get("proc_rss_mb").is_none());
        assert!(v.get("gpu_util").is_none());
        assert_eq!(v["ram_free_gb"], 3.0);
    }

    #[test]
    fn csv_row_matches_the_json_line() {
        let s = sample(2.5, Some(100.5));
        let row = s.csv_row();
        assert_eq!(row.len(), CSV_COLUMNS.len());
        let v = serde_json::to_value(&s).unwrap();
        for (col, cell) in CSV_COLUMNS.iter().zip(&row) {
            match v.get(*col) {
                Some(x) => assert_eq!(cell, &x.to_string(), "{col}"),
                None => assert!(cell.is_empty(), "{col}"),
            }
        }
    }

    #[test]
    fn summary_aggregates() {
        let mut b = SummaryBuilder::default();
        b.add(&sample(4.0, Some(10.0)));
        b.add(&sample(2.0, Some(30.0)));
        let s = b.build(RunFacts {
            duration_s: 0.4,
            interval_ms: 200,
            missed_ticks: 0,
            exit_code: Some(0),
            command: vec!["true".into()],
            error: None,
            end_ts: 5.0,
        });
        let m = &s["summary"];
        assert_eq!(m["ram_free_min_gb"], 2.0);
        assert_eq!(m["ram_free_avg_gb"], 3.0);
        assert_eq!(m["proc_rss_peak_mb"], 30.0);
        assert_eq!(m["samples"], 2);
        assert!(m.get("gpu_max").is_none(), "no GPU, no GPU fields");
    }

    #[test]
    fn real_machine_sample_has_linux_fields() {
        let mut s = Sampler::new(SysRoot::default(), Some(std::process::id()));
        let x = s.sample();
        assert!(x.ram_free_gb.is_some_and(|g| g > 0.0));
        assert!(x.proc_rss_mb.is_some_and(|m| m > 0.0));
        assert!(x.load_1.is_some());
    }
}
