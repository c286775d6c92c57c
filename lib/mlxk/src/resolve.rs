//! Resolve: a model spec → one snapshot folder (seeds/003, "Resolve").
//!
//! Specs, tried in this order:
//! 1. a path to an existing folder or `.gguf` file (inside the cache, the repo id and revision
//!    are recovered);
//! 2. `org/name` or `org/name@<rev>` — `rev` is a ref name (`main`) or a snapshot hash prefix;
//! 3. a bare `name` that exists as `mlx-community/<name>`;
//! 4. otherwise a case-insensitive substring of cached repo ids; when several match and exactly
//!    one has that name exactly, it wins; else the match is ambiguous.
//!
//! Cache root: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; layout
//! `models--org--name/{snapshots/<hash>/, refs/main}`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolveError {
    #[error("no model matches '{spec}'{}", suggest(suggestions))]
    NotFound {
        spec: String,
        suggestions: Vec<String>,
    },
    #[error("'{spec}' is ambiguous: it matches {}; name one of them", candidates.join(", "))]
    Ambiguous {
        spec: String,
        candidates: Vec<String>,
    },
    #[error(
        "{repo} has no revision '{rev}' in the cache{}",
        available_revs(available)
    )]
    RevisionNotFound {
        repo: String,
        rev: String,
        available: Vec<String>,
    },
    #[error("{repo} is in the cache but has no snapshot (download incomplete?)")]
    NoSnapshot { repo: String },
    #[error("{place} holds {} GGUF files; name the one to use: {}", files.len(), files.join(", "))]
    SeveralGguf { place: String, files: Vec<String> },
    #[error("{path} is a file but not a GGUF model; give a model folder or a .gguf file")]
    NotAModel { path: String },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        "; `mlxk-probe --all` lists the cached models (HF_HUB_CACHE says where the cache is)".into()
    } else {
        format!("; closest cached: {}", s.join(", "))
    }
}

fn available_revs(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; cached: {}", s.join(", "))
    }
}

/// The Hugging Face hub cache folder.
#[derive(Debug, Clone)]
pub struct CacheRoot(pub PathBuf);

impl CacheRoot {
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(p) = var("HF_HUB_CACHE") {
            return CacheRoot(p);
        }
        if let Some(p) = var("HF_HOME") {
            return CacheRoot(p.join("hub"));
        }
        let home = var("HOME").unwrap_or_else(|| PathBuf::from("/"));
        CacheRoot(home.join(".cache").join("huggingface").join("hub"))
    }

    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.0
            .join(format!("models--{}", repo_id.replace('/', "--")))
    }

    /// Every cached model repo id, sorted.
    pub fn repo_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("models--")
                    .map(|rest| rest.replace("--", "/"))
            })
            .collect();
        ids.sort();
        ids
    }
}

/// A resolved model folder.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotDir {
    /// `org/name`, or the folder's name for a plain folder.
    pub id: String,
    /// Snapshot hash inside the cache; None for a plain folder.
    pub revision: Option<String>,
    pub path: PathBuf,
    /// True when the folder came from the hub cache.
    pub cached: bool,
}

pub fn resolve(spec: &str, cache: &CacheRoot) -> Result<SnapshotDir, ResolveError> {
    let as_path = Path::new(spec);
    if as_path.is_file() {
        if !is_gguf(as_path) {
            return Err(ResolveError::NotAModel {
                path: spec.to_string(),
            });
        }
        let mut s = folder(as_path);
        // The id is the cache repo's, or the file's name outside the cache.
        if !s.cached {
            s.id = as_path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| spec.to_string());
        }
        return Ok(s);
    }
    if as_path.is_dir() {
        return one_gguf(folder(as_path));
    }
    let (name, rev) = match spec.rsplit_once('@') {
        Some((n, r)) if !n.is_empty() && !r.is_empty() => (n, Some(r)),
        _ => (spec, None),
    };
    let ids = cache.repo_ids();
    let repo = if name.contains('/') {
        match ids.iter().find(|id| id.eq_ignore_ascii_case(name)) {
            Some(id) => id.clone(),
            None => return Err(not_found(spec, name, &ids)),
        }
    } else {
        pick_by_name(spec, name, &ids)?
    };
    one_gguf(snapshot(cache, &repo, rev)?)
}

fn is_gguf(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A folder holding several `.gguf` files names no model: the caller must pick one (never
/// picked silently). Only the folder's own files count, as the loader sees them.
fn one_gguf(s: SnapshotDir) -> Result<SnapshotDir, ResolveError> {
    if !s.path.is_dir() {
        return Ok(s);
    }
    let mut files: Vec<String> = std::fs::read_dir(&s.path)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_gguf(p))
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    if files.len() > 1 {
        files.sort();
        return Err(ResolveError::SeveralGguf {
            place: s.id.clone(),
            files,
        });
    }
    Ok(s)
}

fn pick_by_name(spec: &str, name: &str, ids: &[String]) -> Result<String, ResolveError> {
    let community = format!("mlx-community/{name}");
    if let Some(id) = ids.iter().find(|id| id.eq_ignore_ascii_case(&community)) {
        return Ok(id.clone());
    }
    let needle = name.to_lowercase();
    let matches: Vec<&String> = ids
        .iter()
        .filter(|id| id.to_lowercase().contains(&needle))
        .collect();
    match matches.as_slice() {
        [] => Err(not_found(spec, name, ids)),
        [one] => Ok((*one).clone()),
        many => {
            let exact: Vec<&&String> = many
                .iter()
                .filter(|id| {
                    id.rsplit('/')
                        .next()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .collect();
            if let [one] = exact.as_slice() {
                return Ok((**one).clone());
            }
            Err(ResolveError::Ambiguous {
                spec: spec.to_string(),
                candidates: many.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
}

fn not_found(spec: &str, name: &str, ids: &[String]) -> ResolveError {
    let needle = name.to_lowercase();
    let short = needle.rsplit('/').next().unwrap_or(&needle).to_string();
    let mut scored: Vec<(f64, &String)> = ids
        .iter()
        .map(|id| {
            let lower = id.to_lowercase();
            let n = lower.rsplit('/').next().unwrap_or(&lower);
            (
                strsim::jaro_winkler(&short, n).max(strsim::jaro_winkler(&needle, &lower)),
                id,
            )
        })
        .filter(|(s, _)| *s >= 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    ResolveError::NotFound {
        spec: spec.to_string(),
        suggestions: scored
            .into_iter()
            .take(3)
            .map(|(_, id)| id.clone())
            .collect(),
    }
}

/// The snapshot of `repo` for `rev` (default: `refs/main`, else the only or newest snapshot).
pub fn snapshot(
    cache: &CacheRoot,
    repo: &str,
    rev: Option<&str>,
) -> Result<SnapshotDir, ResolveError> {
    let dir = cache.repo_dir(repo);
    let snaps = snapshot_names(&dir);
    let make = |hash: &str| SnapshotDir {
        id: repo.to_string(),
        revision: Some(hash.to_string()),
        path: dir.join("snapshots").join(hash),
        cached: true,
    };
    let read_ref = |name: &str| {
        std::fs::read_to_string(dir.join("refs").join(name))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|h| snaps.contains(h))
    };
    match rev {
        Some(rev) => {
            if let Some(hash) = read_ref(rev) {
                return Ok(make(&hash));
            }
            let lower = rev.to_lowercase();
            let hits: Vec<&String> = snaps.iter().filter(|s| s.starts_with(&lower)).collect();
            match hits.as_slice() {
                [one] => Ok(make(one)),
                [] => Err(ResolveError::RevisionNotFound {
                    repo: repo.to_string(),
                    rev: rev.to_string(),
                    available: snaps.iter().map(|s| s.chars().take(12).collect()).collect(),
                }),
                many => Err(ResolveError::Ambiguous {
                    spec: format!("{repo}@{rev}"),
                    candidates: many.iter().map(|s| format!("{repo}@{s}")).collect(),
                }),
            }
        }
        None => {
            if let Some(hash) = read_ref("main") {
                return Ok(make(&hash));
            }
            // No usable refs/main: the newest snapshot is what a download left last.
            let newest = snaps.iter().max_by_key(|s| {
                std::fs::metadata(dir.join("snapshots").join(s))
                    .and_then(|m| m.modified())
                    .ok()
            });
            match newest {
                Some(h) => Ok(make(h)),
                None => Err(ResolveError::NoSnapshot {
                    repo: repo.to_string(),
                }),
            }
        }
    }
}

fn snapshot_names(repo_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repo_dir.join("snapshots")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// A folder (or a file) given by path; inside a hub cache snapshot, repo id and revision are
/// recovered.
fn folder(path: &Path) -> SnapshotDir {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    // A file keeps its own name: cache snapshots link files to blobs/, which name no model.
    let (abs, dir) = match (path.is_file(), path.parent(), path.file_name()) {
        (true, Some(parent), Some(name)) => {
            let parent = canon(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            });
            (parent.join(name), parent)
        }
        _ => (canon(path), canon(path)),
    };
    let parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if let [.., repo, snaps, hash] = parts.as_slice()
        && snaps == "snapshots"
        && let Some(rest) = repo.strip_prefix("models--")
    {
        return SnapshotDir {
            id: rest.replace("--", "/"),
            revision: Some(hash.clone()),
            path: abs.clone(),
            cached: true,
        };
    }
    let id = abs
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| abs.display().to_string());
    SnapshotDir {
        id,
        revision: None,
        path: abs,
        cached: false,
    }
}

/// Every cached model at its default revision, sorted by id, each with its repo id so that
/// repos without a snapshot can be listed as errors.
pub fn list(cache: &CacheRoot) -> Vec<(String, Result<SnapshotDir, ResolveError>)> {
    cache
        .repo_ids()
        .into_iter()
        .map(|id| {
            let snap = snapshot(cache, &id, None).and_then(one_gguf);
            (id, snap)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(repos: &[(&str, &[&str], Option<&str>)]) -> (tempfile::TempDir, CacheRoot) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheRoot(dir.path().to_path_buf());
        for (id, snaps, main) in repos {
            let rd = cache.repo_dir(id);
            std::fs::create_dir_all(&rd).unwrap();
            for s in *snaps {
                std::fs::create_dir_all(rd.join("snapshots").join(s)).unwrap();
            }
            if let Some(m) = main {
                std::fs::create_dir_all(rd.join("refs")).unwrap();
                std::fs::write(rd.join("refs/main"), m).unwrap();
            }
        }
        (dir, cache)
    }

    #[test]
    fn org_name_and_main_ref() {
        let (_d, c) = cache_with(&[(
            "Qwen/Qwen3-0.6B",
            &["aaaa1111", "bbbb2222"],
            Some("bbbb2222"),
        )]);
        let s = resolve("Qwen/Qwen3-0.6B", &c).unwrap();
        assert_eq!(s.revision.as_deref(), Some("bbbb2222"));
        assert_eq!(s.id, "Qwen/Qwen3-0.6B");
    }

    #[test]
    fn revision_prefix_and_errors() {
        let (_d, c) = cache_with(&[("a/m", &["abc123", "abd456", "ffff00"], Some("ffff00"))]);
        assert_eq!(
            resolve("a/m@abc", &c).unwrap().revision.as_deref(),
            Some("abc123")
        );
        assert!(matches!(
            resolve("a/m@ab", &c),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve("a/m@0000", &c),
            Err(ResolveError::RevisionNotFound { .. })
        ));
        assert_eq!(
            resolve("a/m@main", &c).unwrap().revision.as_deref(),
            Some("ffff00")
        );
    }

    #[test]
    fn bare_name_prefers_mlx_community_then_substring() {
        let (_d, c) = cache_with(&[
            ("mlx-community/Llama-3.2-1B-4bit", &["1"], Some("1")),
            ("other/Llama-3.2-1B-4bit-dwq", &["2"], Some("2")),
            ("Qwen/Qwen3-0.6B", &["3"], Some("3")),
            ("Qwen/Qwen3-1.7B", &["4"], Some("4")),
        ]);
        assert_eq!(
            resolve("Llama-3.2-1B-4bit", &c).unwrap().id,
            "mlx-community/Llama-3.2-1B-4bit"
        );
        assert_eq!(resolve("0.6b", &c).unwrap().id, "Qwen/Qwen3-0.6B");
        match resolve("qwen3", &c) {
            Err(ResolveError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, vec!["Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exact_name_breaks_a_substring_tie() {
        let (_d, c) = cache_with(&[
            ("a/SmolLM2-135M", &["1"], Some("1")),
            ("b/SmolLM2-135M-4bit", &["2"], Some("2")),
        ]);
        assert_eq!(resolve("smollm2-135m", &c).unwrap().id, "a/SmolLM2-135M");
    }

    #[test]
    fn not_found_suggests_close_names() {
        let (_d, c) = cache_with(&[("Qwen/Qwen3-0.6B", &["3"], Some("3"))]);
        match resolve("Qwen/Qwen3-0.5B", &c) {
            Err(ResolveError::NotFound { suggestions, .. }) => {
                assert_eq!(suggestions, vec!["Qwen/Qwen3-0.6B"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn folder_inside_cache_recovers_id() {
        let (_d, c) = cache_with(&[("a/m", &["abc123"], Some("abc123"))]);
        let p = c.repo_dir("a/m").join("snapshots/abc123");
        let s = resolve(p.to_str().unwrap(), &c).unwrap();
        assert_eq!(
            (s.id.as_str(), s.revision.as_deref(), s.cached),
            ("a/m", Some("abc123"), true)
        );
    }

    #[test]
    fn a_gguf_file_is_a_model_spec() {
        let (_d, c) = cache_with(&[("a/m", &["abc123"], Some("abc123"))]);
        let snap = c.repo_dir("a/m").join("snapshots/abc123");
        // Cache files are links into blobs/: the snapshot path, not the blob, names the model.
        std::fs::create_dir_all(c.repo_dir("a/m").join("blobs")).unwrap();
        let blob = c.repo_dir("a/m").join("blobs/f00d");
        std::fs::write(&blob, b"GGUF").unwrap();
        std::os::unix::fs::symlink(&blob, snap.join("m.Q4_0.gguf")).unwrap();
        let s = resolve(snap.join("m.Q4_0.gguf").to_str().unwrap(), &c).unwrap();
        assert_eq!((s.id.as_str(), s.cached), ("a/m", true));
        assert!(s.path.ends_with("snapshots/abc123/m.Q4_0.gguf"), "{s:?}");
        let plain = tempfile::tempdir().unwrap();
        let f = plain.path().join("tiny.gguf");
        std::fs::write(&f, b"GGUF").unwrap();
        let s = resolve(f.to_str().unwrap(), &c).unwrap();
        assert_eq!(
            (s.id.as_str(), s.cached, s.path.is_file()),
            ("tiny.gguf", false, true)
        );
        let other = plain.path().join("notes.txt");
        std::fs::write(&other, b"x").unwrap();
        assert!(matches!(
            resolve(other.to_str().unwrap(), &c),
            Err(ResolveError::NotAModel { .. })
        ));
    }

    #[test]
    fn several_gguf_files_are_listed_never_picked() {
        let (_d, c) = cache_with(&[("a/m-GGUF", &["abc123"], Some("abc123"))]);
        let snap = c.repo_dir("a/m-GGUF").join("snapshots/abc123");
        for f in ["m.Q8_0.gguf", "m.Q4_0.gguf"] {
            std::fs::write(snap.join(f), b"GGUF").unwrap();
        }
        for spec in ["a/m-GGUF".to_string(), snap.display().to_string()] {
            match resolve(&spec, &c) {
                Err(e @ ResolveError::SeveralGguf { .. }) => {
                    let m = e.to_string();
                    assert!(
                        m.contains("2 GGUF files") && m.contains("m.Q4_0.gguf"),
                        "{m}"
                    );
                    assert!(m.find("Q4_0") < m.find("Q8_0"), "sorted: {m}");
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
        assert!(matches!(
            list(&c)[0].1,
            Err(ResolveError::SeveralGguf { .. })
        ));
    }

    #[test]
    fn missing_main_ref_takes_the_only_snapshot() {
        let (_d, c) = cache_with(&[("a/m", &["abc123"], None)]);
        assert_eq!(
            resolve("a/m", &c).unwrap().revision.as_deref(),
            Some("abc123")
        );
        let (_d2, c2) = cache_with(&[("a/empty", &[], None)]);
        assert!(matches!(
            resolve("a/empty", &c2),
            Err(ResolveError::NoSnapshot { .. })
        ));
    }
}
