//! The README drift test: every command the README shows is run.
//!
//! - A ```` ```console ```` block holds `$ command` lines, each followed by the output the README
//!   promises. The commands run in order, in one scratch folder (`benchmarks/` there is the
//!   repository's), with the debug binaries first on `PATH`, the bootstrap's model cache and the
//!   CPU device — stdin and stdout on a terminal, as a person at a shell sees them (stderr is
//!   kept apart unless the command redirects it). The output must match: `[..]` in a line stands
//!   for any text, a line `...` for any lines, and a last line `[exit N]` for the exit status (0
//!   otherwise). A command ending in `&` is started in the background and stopped when its block
//!   ends.
//! - A ```` ```sh ```` block holds `make` commands only, whose targets the Makefile must have
//!   (`make test` is what CI runs; `tests/repo.rs` runs `make install`).
//! - Every other fenced block is `text` (tables of output, crontab lines), not commands.
//!
//! `MLXK_UPDATE_README=1` writes the outputs seen into the README in place of those that differ
//! (then put `[..]` back where a number varies from run to run).
#[allow(dead_code)]
mod support;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Debug)]
struct Example {
    /// 0-based index of the `$` line in the README.
    line: usize,
    command: String,
    expected: Vec<String>,
    /// Where the expected lines start and end (exclusive), for rewriting.
    start: usize,
    end: usize,
}

#[derive(Debug)]
struct Block {
    info: String,
    first: usize,
    lines: Vec<String>,
    examples: Vec<Example>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let info = info.trim().to_string();
        let first = i + 1;
        let mut j = first;
        while j < lines.len() && lines[j].trim_end() != "```" {
            j += 1;
        }
        assert!(
            j < lines.len(),
            "README.md:{}: a fenced block never ends",
            first
        );
        let body: Vec<String> = lines[first..j].iter().map(|l| l.to_string()).collect();
        let mut examples = Vec::new();
        if info == "console" {
            let mut k = 0;
            while k < body.len() {
                let l = &body[k];
                let cmd = l.strip_prefix("$ ").unwrap_or_else(|| {
                    panic!(
                        "README.md:{}: a console block starts each command with `$ `",
                        first + k + 1
                    )
                });
                let line = first + k;
                let mut command = cmd.to_string();
                // A line ending in `\` goes on on the next, as at a shell (which reads it so).
                while command.ends_with('\\') && k + 1 < body.len() {
                    k += 1;
                    command.push('\n');
                    command.push_str(&body[k]);
                }
                k += 1;
                let start = first + k;
                let mut expected = Vec::new();
                while k < body.len() && !body[k].starts_with("$ ") {
                    expected.push(body[k].clone());
                    k += 1;
                }
                examples.push(Example {
                    line,
                    command,
                    expected,
                    start,
                    end: first + k,
                });
            }
        }
        out.push(Block {
            info,
            first,
            lines: body,
            examples,
        });
        i = j + 1;
    }
    out
}

/// `[..]` in `pattern` matches any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let Some(mut rest) = line.strip_prefix(parts[0]) else {
        return false;
    };
    let last = parts[parts.len() - 1];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The lines match, with `...` lines standing for any number of lines.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((e, rest)) => {
            !actual.is_empty() && line_matches(e, &actual[0]) && lines_match(rest, &actual[1..])
        }
    }
}

struct Scratch {
    dir: tempfile::TempDir,
    path_var: String,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root().join("benchmarks"), dir.path().join("benchmarks"))
            .unwrap();
        let bins = bin_path("mlxk-gen").parent().unwrap().to_path_buf();
        let path_var = format!(
            "{}:{}",
            bins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Scratch { dir, path_var }
    }

    fn command(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", &self.path_var)
            .env("HF_HUB_CACHE", hub())
            .env("MLXK_DEVICE", "cpu")
            .env("TZ", "UTC")
            .env_remove("HF_HOME")
            .env_remove("MLXK_SYS_ROOT")
            .env_remove("MLXK_API_KEY")
            .env_remove("NO_COLOR");
        c
    }

    /// Runs `script` with stdin and stdout on a terminal: (exit code, stdout lines, stderr).
    fn run(&self, script: &str) -> (i32, Vec<String>, String) {
        let err_path = self.dir.path().join(".stderr");
        let mut c = self.command(script);
        c.stderr(std::fs::File::create(&err_path).unwrap());
        let (code, screen) = Pty::spawn_keeping_stderr(c).wait();
        let mut lines: Vec<String> = screen.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        (code, lines, err)
    }
}

#[test]
fn every_command_the_readme_shows_runs_and_prints_what_it_shows() {
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let all = blocks(&readme);
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let scratch = Scratch::new();
    let update = std::env::var_os("MLXK_UPDATE_README").is_some();
    let mut rewrites: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for b in &all {
        match b.info.as_str() {
            "text" => {}
            "sh" => {
                for l in b.lines.iter().filter(|l| !l.trim().is_empty()) {
                    let target = l
                        .strip_prefix("make ")
                        .and_then(|t| t.split_whitespace().next())
                        .unwrap_or_else(|| {
                            panic!(
                                "README.md:{}: an `sh` block holds make commands only: {l}",
                                b.first
                            )
                        });
                    assert!(
                        makefile.contains(&format!("\n{target}:")),
                        "README.md:{}: the Makefile has no target {target}",
                        b.first
                    );
                }
            }
            "console" => {
                // Stopped when the block ends, or when a failed assertion unwinds past it.
                struct Background(Vec<std::process::Child>);
                impl Drop for Background {
                    fn drop(&mut self) {
                        for c in &mut self.0 {
                            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                            let _ = c.wait();
                        }
                    }
                }
                let mut background = Background(Vec::new());
                for e in &b.examples {
                    ran += 1;
                    if let Some(cmd) = e.command.trim_end().strip_suffix('&') {
                        let mut c = scratch.command(&format!("exec {cmd}"));
                        c.stdin(Stdio::null()).stdout(Stdio::null());
                        background.0.push(c.spawn().unwrap());
                        continue;
                    }
                    let (code, got, err) = scratch.run(&e.command);
                    let mut want = e.expected.clone();
                    let want_code = match want.last().and_then(|l| {
                        l.strip_prefix("[exit ")
                            .and_then(|c| c.strip_suffix(']'))
                            .and_then(|c| c.parse::<i32>().ok())
                    }) {
                        Some(c) => {
                            want.pop();
                            c
                        }
                        None => 0,
                    };
                    if code == want_code && lines_match(&want, &got) {
                        continue;
                    }
                    failures.push(format!(
                        "README.md:{}: `{}`\n  exit {code} (README: {want_code})\n  README shows:\n    {}\n  it printed:\n    {}\n  stderr:\n    {}",
                        e.line + 1,
                        e.command,
                        want.join("\n    "),
                        got.join("\n    "),
                        err.trim_end().replace('\n', "\n    ")
                    ));
                    let mut new = got;
                    if code != 0 {
                        new.push(format!("[exit {code}]"));
                    }
                    rewrites.push((e.start, e.end, new));
                }
                drop(background);
            }
            other => panic!(
                "README.md:{}: a fenced block is `console` (commands that the README test runs), `sh` (make targets) or `text`, not {other:?}",
                b.first
            ),
        }
    }
    assert!(
        ran >= 10,
        "only {ran} commands in the README's console blocks"
    );
    if update && !rewrites.is_empty() {
        let mut lines: Vec<String> = readme.lines().map(str::to_string).collect();
        for (start, end, new) in rewrites.into_iter().rev() {
            lines.splice(start..end, new);
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    assert!(
        failures.is_empty(),
        "the README's examples drifted (MLXK_UPDATE_README=1 rewrites them):\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn wildcards_match_what_they_should() {
    assert!(line_matches("took [..] s", "took 1.25 s"));
    assert!(line_matches("[..]", "anything"));
    assert!(line_matches("a [..] b [..] c", "a 1 b 2 c"));
    assert!(!line_matches("a [..] c", "a 1 b"));
    assert!(!line_matches("exact", "exactly"));
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(lines_match(
        &v(&["a", "...", "z"]),
        &v(&["a", "b", "c", "z"])
    ));
    assert!(lines_match(&v(&["a", "...", "z"]), &v(&["a", "z"])));
    assert!(!lines_match(&v(&["a", "z"]), &v(&["a", "b", "z"])));
    assert!(!lines_match(&v(&["a"]), &v(&["a", "b"])));
}
