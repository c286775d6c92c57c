//! What the machine really has: memory from `/proc/meminfo`, the cgroup v2 limit when the
//! process is confined, swap, and pressure stall information (`/proc/pressure/memory`).
//!
//! Everything is read below a root directory (`/` normally) so tests can point it at fake
//! `/proc` and `/sys` trees (`--sys-root` / `MLXK_SYS_ROOT`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has no {field} line")]
    Missing { path: PathBuf, field: &'static str },
}

/// Memory facts at one moment, with the figure the gate divides by (`available_bytes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemorySnapshot {
    pub total_bytes: u64,
    /// `MemAvailable` from /proc/meminfo.
    pub mem_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// The tightest cgroup v2 `memory.max` on this process's cgroup path, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_usage_bytes: Option<u64>,
    /// PSI `some avg10` / `full avg10` in percent, when the kernel exposes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi_some_avg10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi_full_avg10: Option<f64>,
    /// min(MemAvailable, cgroup limit − usage).
    pub available_bytes: u64,
    /// `meminfo` or `cgroup`: which of the two set `available_bytes`.
    pub available_source: String,
}

/// Where to read system files from.
#[derive(Debug, Clone)]
pub struct SysRoot(PathBuf);

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot(PathBuf::from("/"))
    }
}

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysRoot(root.into())
    }

    /// `MLXK_SYS_ROOT` when set (tests), else `/`.
    pub fn from_env() -> Self {
        match std::env::var_os("MLXK_SYS_ROOT") {
            Some(r) if !r.is_empty() => SysRoot(PathBuf::from(r)),
            _ => SysRoot::default(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Result<String, SysError> {
        let path = self.path(rel);
        std::fs::read_to_string(&path).map_err(|source| SysError::Read { path, source })
    }

    fn read_opt(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// Reads the memory facts (Linux). Missing PSI or cgroup files are not errors: those
    /// fields are left out. A missing or malformed /proc/meminfo is.
    pub fn memory(&self) -> Result<MemorySnapshot, SysError> {
        #[cfg(target_os = "macos")]
        if self.0 == Path::new("/") {
            return macos_memory();
        }
        let meminfo_path = "/proc/meminfo";
        let info = parse_meminfo(&self.read(meminfo_path)?);
        let get = |field: &'static str| {
            info.get(field).copied().ok_or_else(|| SysError::Missing {
                path: self.path(meminfo_path),
                field,
            })
        };
        let total = get("MemTotal")?;
        let available = get("MemAvailable")?;
        let swap_total = info.get("SwapTotal").copied().unwrap_or(0);
        let swap_free = info.get("SwapFree").copied().unwrap_or(swap_total);

        let (cg_limit, cg_usage) = self.cgroup_memory();
        let (psi_some, psi_full) = self
            .read_opt("/proc/pressure/memory")
            .map(|t| parse_psi(&t))
            .unwrap_or((None, None));

        let mut snap = MemorySnapshot {
            total_bytes: total,
            mem_available_bytes: available,
            swap_total_bytes: swap_total,
            swap_used_bytes: swap_total.saturating_sub(swap_free),
            cgroup_limit_bytes: cg_limit,
            cgroup_usage_bytes: cg_usage,
            psi_some_avg10: psi_some,
            psi_full_avg10: psi_full,
            available_bytes: available,
            available_source: "meminfo".into(),
        };
        if let (Some(limit), Some(usage)) = (cg_limit, cg_usage) {
            let room = limit.saturating_sub(usage);
            if room < available {
                snap.available_bytes = room;
                snap.available_source = "cgroup".into();
            }
        }
        Ok(snap)
    }

    /// The tightest `memory.max` along this process's cgroup v2 path and the usage of the
    /// cgroup that sets it.
    fn cgroup_memory(&self) -> (Option<u64>, Option<u64>) {
        let Some(cgroup) = self.read_opt("/proc/self/cgroup") else {
            return (None, None);
        };
        // cgroup v2: a single line "0::/path".
        let Some(rel) = cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
            return (None, None);
        };
        let mut best: Option<(u64, Option<u64>)> = None;
        let mut dir = PathBuf::from("/sys/fs/cgroup").join(rel.trim().trim_start_matches('/'));
        loop {
            let d = dir.to_string_lossy().to_string();
            if let Some(max) = self
                .read_opt(&format!("{d}/memory.max"))
                .and_then(|t| parse_cgroup_max(&t))
            {
                let usage = self
                    .read_opt(&format!("{d}/memory.current"))
                    .and_then(|t| t.trim().parse().ok());
                if best.is_none_or(|(b, _)| max < b) {
                    best = Some((max, usage));
                }
            }
            if dir == Path::new("/sys/fs/cgroup") || !dir.pop() {
                break;
            }
        }
        match best {
            Some((limit, usage)) => (Some(limit), usage),
            None => (None, None),
        }
    }
}

/// `/proc/meminfo` → field → bytes (values are given in kB).
pub fn parse_meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let value: u64 = parts.next()?.parse().ok()?;
            let scale = match parts.next() {
                Some("kB") => 1024,
                _ => 1,
            };
            Some((key.trim().to_string(), value * scale))
        })
        .collect()
}

/// `/proc/pressure/memory` → (some avg10, full avg10) in percent.
pub fn parse_psi(text: &str) -> (Option<f64>, Option<f64>) {
    let avg10 = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("avg10="))?
            .parse()
            .ok()
    };
    (avg10("some"), avg10("full"))
}

/// `memory.max` holds a byte count or `max` (no limit).
pub fn parse_cgroup_max(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" { None } else { t.parse().ok() }
}

/// Cumulative CPU time counters from the `cpu` line of `/proc/stat` (clock ticks).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub total: u64,
}

impl CpuTimes {
    /// (user %, system %, idle %) of the time between `earlier` and `self`.
    pub fn percent_since(&self, earlier: &CpuTimes) -> Option<(f64, f64, f64)> {
        let total = self.total.checked_sub(earlier.total)? as f64;
        if total <= 0.0 {
            return None;
        }
        let p = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total;
        Some((
            p(self.user, earlier.user),
            p(self.system, earlier.system),
            p(self.idle, earlier.idle),
        ))
    }
}

/// `/proc/stat` → aggregate CPU counters. user includes nice; system includes irq/softirq;
/// idle includes iowait.
pub fn parse_cpu_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is already inside user)
    let user = get(0) + get(1);
    let system = get(2) + get(5) + get(6);
    let idle = get(3) + get(4);
    let total = user + system + idle + get(7);
    Some(CpuTimes {
        user,
        system,
        idle,
        total,
    })
}

/// `/proc/loadavg` → (1, 5, 15 minute load).
pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>());
    Some((it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?))
}

/// `/proc/<pid>/stat` → parent pid. The command name may hold spaces and parentheses, so the
/// fields are read after the last `)`.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Maps memory pressure to the seed's levels (macOS `kern.memorystatus_vm_pressure_level`:
/// 1 normal, 2 warning, 4 critical) from Linux PSI: critical when tasks were fully stalled
/// ≥ 10 % or partly stalled ≥ 40 % of the last 10 s, warning when partly stalled ≥ 10 %.
pub fn pressure_level(psi_some_avg10: f64, psi_full_avg10: f64) -> u8 {
    if psi_full_avg10 >= 10.0 || psi_some_avg10 >= 40.0 {
        4
    } else if psi_some_avg10 >= 10.0 {
        2
    } else {
        1
    }
}

impl SysRoot {
    /// Zombie processes (state `Z` in `/proc/<pid>/stat`) on the machine, as a benchmark's
    /// quality flag counts them; None where there is no `/proc`.
    pub fn zombies(&self) -> Option<u64> {
        let entries = std::fs::read_dir(self.path("/proc")).ok()?;
        Some(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    self.read_opt(&format!("/proc/{p}/stat"))
                        .and_then(|s| {
                            let (_, after) = s.rsplit_once(')')?;
                            after.split_whitespace().next().map(|st| st == "Z")
                        })
                        .unwrap_or(false)
                })
                .count() as u64,
        )
    }

    pub fn cpu_times(&self) -> Option<CpuTimes> {
        parse_cpu_stat(&self.read_opt("/proc/stat")?)
    }

    pub fn loadavg(&self) -> Option<(f64, f64, f64)> {
        parse_loadavg(&self.read_opt("/proc/loadavg")?)
    }
}

/// A process and its descendants, followed across samples. The parent of every pid is read
/// once, when the pid first appears in /proc; each sample then costs one directory listing
/// plus one `statm` read per member of the tree.
#[derive(Debug)]
pub struct ProcessTree {
    root: u32,
    parent: HashMap<u32, u32>,
}

impl ProcessTree {
    pub fn new(root: u32) -> Self {
        ProcessTree {
            root,
            parent: HashMap::new(),
        }
    }

    /// Sum of the tree's resident memory in bytes; None once the root is gone.
    pub fn rss(&mut self, sys: &SysRoot) -> Option<u64> {
        let entries = std::fs::read_dir(sys.path("/proc")).ok()?;
        let live: std::collections::HashSet<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        self.parent.retain(|p, _| live.contains(p));
        for &p in &live {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.parent.entry(p)
                && let Some(ppid) = sys
                    .read_opt(&format!("/proc/{p}/stat"))
                    .and_then(|s| parse_ppid(&s))
            {
                slot.insert(ppid);
            }
        }
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (&p, &pp) in &self.parent {
            children.entry(pp).or_default().push(p);
        }
        let page = page_size();
        let rss = |p: u32| {
            sys.read_opt(&format!("/proc/{p}/statm"))
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map(|pages| pages * page)
        };
        let mut total = rss(self.root)?;
        let mut stack = children.get(&self.root).cloned().unwrap_or_default();
        while let Some(p) = stack.pop() {
            total += rss(p).unwrap_or(0);
            if let Some(c) = children.get(&p) {
                stack.extend(c);
            }
        }
        Some(total)
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// macOS: `vm_stat` output → bytes obtainable without swapping (free + inactive + purgeable +
/// speculative pages, as the seed's memmon counts them).
pub fn parse_vm_stat(text: &str) -> Option<u64> {
    let page: u64 = text
        .lines()
        .next()?
        .split("page size of")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let pages = |key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().trim_end_matches('.').parse().ok())
            .unwrap_or(0)
    };
    let free = pages("Pages free")
        + pages("Pages inactive")
        + pages("Pages purgeable")
        + pages("Pages speculative");
    Some(free * page)
}

/// macOS: `sysctl vm.swapusage` value (`total = 2048.00M  used = 512.25M  free = …`) →
/// (total, used) bytes.
pub fn parse_swapusage(text: &str) -> Option<(u64, u64)> {
    let field = |key: &str| -> Option<u64> {
        let v = text
            .split(key)
            .nth(1)?
            .trim_start()
            .trim_start_matches('=')
            .trim_start();
        let num: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let x: f64 = num.parse().ok()?;
        let unit = v[num.len()..].chars().next().unwrap_or('M');
        let scale = match unit {
            'K' => 1024.0,
            'G' => 1024.0 * 1024.0 * 1024.0,
            _ => 1024.0 * 1024.0,
        };
        Some((x * scale) as u64)
    };
    Some((field("total")?, field("used")?))
}

/// macOS memory facts from `sysctl` and `vm_stat` (no /proc there).
#[cfg(target_os = "macos")]
pub fn macos_memory() -> Result<MemorySnapshot, SysError> {
    let run = |cmd: &str, args: &[&str]| -> Result<String, SysError> {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map_err(|source| SysError::Read {
                path: PathBuf::from(cmd),
                source,
            })
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let total: u64 = run("sysctl", &["-n", "hw.memsize"])?
        .trim()
        .parse()
        .unwrap_or(0);
    let free = parse_vm_stat(&run("vm_stat", &[])?).ok_or_else(|| SysError::Missing {
        path: PathBuf::from("vm_stat"),
        field: "page size",
    })?;
    let (swap_total, swap_used) =
        parse_swapusage(&run("sysctl", &["-n", "vm.swapusage"])?).unwrap_or((0, 0));
    Ok(MemorySnapshot {
        total_bytes: total,
        mem_available_bytes: free,
        swap_total_bytes: swap_total,
        swap_used_bytes: swap_used,
        cgroup_limit_bytes: None,
        cgroup_usage_bytes: None,
        psi_some_avg10: None,
        psi_full_avg10: None,
        available_bytes: free,
        available_source: "vm_stat".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\n\
        MemAvailable:   20000000 kB\nSwapTotal:       2000000 kB\nSwapFree:        1500000 kB\n";

    fn fake_root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = dir.path().join(rel.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn cpu_stat_and_percentages() {
        let a = parse_cpu_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = parse_cpu_stat("cpu  160 0 70 900 70 0 0 0 0 0\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                user: 100,
                system: 50,
                idle: 850,
                total: 1000
            }
        );
        let (u, s, i) = b.percent_since(&a).unwrap();
        assert_eq!((u, s, i), (30.0, 10.0, 60.0));
        assert!(b.percent_since(&b).is_none());
    }

    #[test]
    fn loadavg_and_ppid() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/189 12345\n"),
            Some((0.52, 0.58, 0.59))
        );
        assert_eq!(parse_ppid("42 (my (odd) prog) S 7 42 42 0 -1"), Some(7));
    }

    #[test]
    fn pressure_levels() {
        assert_eq!(pressure_level(0.0, 0.0), 1);
        assert_eq!(pressure_level(12.0, 0.0), 2);
        assert_eq!(pressure_level(12.0, 11.0), 4);
    }

    #[test]
    fn process_tree_rss_sums_descendants() {
        let page = page_size();
        let root = fake_root(&[
            ("/proc/10/stat", "10 (memmon) S 1 10"),
            ("/proc/10/statm", "100 5 0 0 0 0 0"),
            ("/proc/20/stat", "20 (sh) S 10 20"),
            ("/proc/20/statm", "100 7 0 0 0 0 0"),
            ("/proc/30/stat", "30 (python3) S 20 20"),
            ("/proc/30/statm", "100 11 0 0 0 0 0"),
            ("/proc/40/stat", "40 (other) S 1 40"),
            ("/proc/40/statm", "100 1000 0 0 0 0 0"),
        ]);
        let sys = SysRoot::new(root.path());
        assert_eq!(ProcessTree::new(20).rss(&sys), Some(18 * page));
        assert_eq!(ProcessTree::new(99).rss(&sys), None);
    }

    #[test]
    fn zombies_are_counted_from_proc() {
        let root = fake_root(&[
            ("/proc/10/stat", "10 (a) S 1 10"),
            ("/proc/20/stat", "20 (odd) Z name) Z 10 20"),
            ("/proc/30/stat", "30 (b) Z 1 30"),
            ("/proc/self/stat", "1 (x) Z 1 1"),
        ]);
        assert_eq!(SysRoot::new(root.path()).zombies(), Some(2));
        assert_eq!(SysRoot::new("/nonexistent").zombies(), None);
    }

    #[test]
    fn macos_parsers() {
        let vm = "Mach Virtual Memory Statistics: (page size of 16384 bytes)\nPages free:  100.\n\
                  Pages active: 5.\nPages inactive: 50.\nPages speculative: 10.\nPages purgeable: 40.\n";
        assert_eq!(parse_vm_stat(vm), Some(200 * 16384));
        let sw = "total = 2048.00M  used = 512.50M  free = 1535.50M  (encrypted)";
        assert_eq!(
            parse_swapusage(sw),
            Some((2048 * 1024 * 1024, (512.5 * 1024.0 * 1024.0) as u64))
        );
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(MEMINFO);
        assert_eq!(m["MemAvailable"], 20_000_000 * 1024);
        assert_eq!(m["SwapFree"], 1_500_000 * 1024);
    }

    #[test]
    fn psi_avg10() {
        let t = "some avg10=1.50 avg60=0.20 avg300=0.00 total=123\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=4\n";
        assert_eq!(parse_psi(t), (Some(1.5), Some(0.25)));
        assert_eq!(parse_psi(""), (None, None));
    }

    #[test]
    fn cgroup_max_word() {
        assert_eq!(parse_cgroup_max("max\n"), None);
        assert_eq!(parse_cgroup_max("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn unconfined_uses_meminfo() {
        let root = fake_root(&[("/proc/meminfo", MEMINFO)]);
        let m = SysRoot::new(root.path()).memory().unwrap();
        assert_eq!(m.available_bytes, 20_000_000 * 1024);
        assert_eq!(m.available_source, "meminfo");
        assert_eq!(m.swap_used_bytes, 500_000 * 1024);
        assert_eq!(m.cgroup_limit_bytes, None);
    }

    #[test]
    fn tighter_cgroup_wins_and_ancestors_count() {
        let root = fake_root(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/box/job\n"),
            (
                "/proc/pressure/memory",
                "some avg10=3.00 avg60=0 avg300=0 total=1\n",
            ),
            ("/sys/fs/cgroup/box/memory.max", "4294967296\n"),
            ("/sys/fs/cgroup/box/memory.current", "1073741824\n"),
            ("/sys/fs/cgroup/box/job/memory.max", "max\n"),
            ("/sys/fs/cgroup/box/job/memory.current", "5\n"),
        ]);
        let m = SysRoot::new(root.path()).memory().unwrap();
        assert_eq!(m.cgroup_limit_bytes, Some(4 << 30));
        assert_eq!(m.available_bytes, 3 << 30);
        assert_eq!(m.available_source, "cgroup");
        assert_eq!(m.psi_some_avg10, Some(3.0));
    }

    #[test]
    fn missing_meminfo_is_an_error_naming_the_file() {
        let root = fake_root(&[]);
        let e = SysRoot::new(root.path()).memory().unwrap_err().to_string();
        assert!(e.contains("meminfo"), "{e}");
    }
}
