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
