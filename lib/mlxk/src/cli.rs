//! What every mlxk binary shares at its edge: exit codes and the one error → exit-status
//! mapping ([`Failure`], [`ExitStatus`], [`main_with`]), output mode, and a JSON Lines writer
//! that ends quietly when the reader goes away (`| head`).

use std::io::{self, IsTerminal, Write};

/// Exit codes shared by every tool (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    /// Model not found, or the spec matches several.
    NotFound = 3,
    /// Model unusable here: broken files, or an architecture/format no backend supports (the
    /// server's 501).
    Unusable = 4,
    /// Blocked by the memory gate only (the server's 507).
    Blocked = 5,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How specific a failure is, for a run that goes on past several: interrupted >
    /// blocked > unusable > not found > usage > failure.
    fn rank(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Unusable => 4,
            Exit::Blocked => 5,
            Exit::Interrupted => 6,
        }
    }
}

/// Errors of the libraries say which exit status and `error`-record code they stand for (as
/// uucore's `UError::code` does), so every binary maps them alike.
pub trait ExitStatus: std::fmt::Display {
    fn exit(&self) -> Exit;
    /// The `code` of the `error` record, e.g. `not_found`, `broken_model`.
    fn code(&self) -> &'static str;
    fn failure(&self) -> Failure {
        Failure::new(self.exit(), self.code(), self.to_string())
    }
}

/// A failure as a tool reports it: its exit status, the code of its `error` record, and a
/// message that names the input and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub exit: Exit,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            code,
            message: message.into(),
        }
    }

    /// Bad arguments or options (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, "usage", message)
    }

    /// A file or stream that cannot be read or written (exit 1).
    pub fn io(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Failure, "io", message)
    }

    /// The `error` record for this failure.
    pub fn record(&self, model: Option<&str>) -> serde_json::Value {
        crate::records::error_record(self.code, &self.message, model)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl ExitStatus for crate::resolve::ResolveError {
    fn exit(&self) -> Exit {
        Exit::NotFound
    }
    fn code(&self) -> &'static str {
        match self {
            crate::resolve::ResolveError::Ambiguous { .. }
            | crate::resolve::ResolveError::SeveralGguf { .. } => "ambiguous",
            _ => "not_found",
        }
    }
}

/// The exit status of a run that goes on past failures (a batch of models or files): the
/// most specific failure wins, whatever the order they came in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitTally(Option<Exit>);

impl ExitTally {
    pub fn note(&mut self, e: Exit) {
        if self.0.is_none_or(|old| e.rank() > old.rank()) {
            self.0 = Some(e);
        }
    }

    pub fn failed(&self) -> bool {
        self.0.is_some_and(|e| e != Exit::Ok)
    }

    pub fn exit(&self) -> Exit {
        self.0.unwrap_or(Exit::Ok)
    }
}

/// A binary's whole run: `body` returns the exit status, or the failure that ended it, which
/// is printed as one line `TOOL: message` and mapped to its status.
pub fn main_with(
    tool: &str,
    body: impl FnOnce() -> Result<Exit, Failure>,
) -> std::process::ExitCode {
    match body() {
        Ok(e) => e.into(),
        Err(f) => {
            eprintln!("{tool}: {f}");
            f.exit.into()
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Whether records go out as JSON Lines or as text for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Json,
    Human,
}

impl OutputMode {
    /// `--json` / `--human` win; otherwise JSON on a pipe or file, human text on a terminal.
    pub fn choose(json: bool, human: bool) -> Self {
        if json {
            OutputMode::Json
        } else if human || io::stdout().is_terminal() {
            OutputMode::Human
        } else {
            OutputMode::Json
        }
    }
}

/// True when stderr is a terminal: the only place progress may go.
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// Outcome of writing to stdout: either fine, or the reader closed the pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Ok,
    Closed,
}

/// Writes one line to stdout and flushes it; a closed pipe is reported, not raised.
pub fn write_line(out: &mut impl Write, line: &str) -> io::Result<Written> {
    let result = out
        .write_all(line.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    match result {
        Ok(()) => Ok(Written::Ok),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Written::Closed),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, then renamed
/// over it, so no reader (nor a run killed midway) ever sees a half-written file under the
/// final name. Creates the folder if needed.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes one JSON value as one line (JSON Lines), flushed.
pub fn write_json(out: &mut impl Write, value: &serde_json::Value) -> io::Result<Written> {
    write_line(out, &value.to_string())
}

/// Generates a man page for `cmd` and compares it with the checked-in one under `man/`.
/// With `MLXK_UPDATE_MAN=1` it rewrites the file instead; tests call this so the pages
/// never drift from the clap definitions.
pub fn check_man_page(cmd: clap::Command, man_dir: &std::path::Path) -> Result<(), String> {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| format!("render man page for {name}: {e}"))?;
    check_generated(&man_dir.join(format!("{name}.1")), &buf, &name)?;
    // Shell completions, checked in beside the man pages (man/completions/).
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
        check_generated(&man_dir.join("completions").join(file), &buf, &name)?;
    }
    Ok(())
}

/// A file generated from the clap definition: rewritten with `MLXK_UPDATE_MAN=1`, else it must
/// equal what the definition gives now.
fn check_generated(path: &std::path::Path, buf: &[u8], name: &str) -> Result<(), String> {
    if std::env::var_os("MLXK_UPDATE_MAN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, buf).map_err(|e| format!("write {}: {e}", path.display()))?;
        return Ok(());
    }
    let current = std::fs::read(path)
        .map_err(|e| format!("read {}: {e} (regenerate with make man)", path.display()))?;
    if current != buf {
        return Err(format!(
            "{} is out of date with the --help of {name}; regenerate with make man",
            path.display()
        ));
    }
    Ok(())
}

/// The test every binary carries: its checked-in man page matches its clap definition.
/// Use `mlxk::man_page_test!(Cli);` at the end of a binary's main.rs.
#[macro_export]
macro_rules! man_page_test {
    ($cli:ident) => {
        #[cfg(test)]
        mod man_page {
            #[test]
            fn man_page_is_current() {
                use clap::CommandFactory;
                super::$cli::command().debug_assert();
                let man = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man");
                $crate::cli::check_man_page(super::$cli::command(), &man).unwrap();
            }
        }
    };
}

/// For a tool whose interface exists but whose work is not built yet: says so, exits 1.
/// Nothing is pretended: no output, no partial run.
pub fn not_built_yet(tool: &str, what: &str) -> std::process::ExitCode {
    eprintln!(
        "{tool}: {what} is not built in this version yet; `{tool} --help` shows the planned interface"
    );
    Exit::Failure.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/report.md");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn closed_pipe_is_reported_not_raised() {
        assert_eq!(write_line(&mut ClosedPipe, "x").unwrap(), Written::Closed);
    }

    #[test]
    fn json_line_is_one_line() {
        let mut buf = Vec::new();
        write_json(
            &mut buf,
            &serde_json::json!({"type": "model", "id": "a\nb"}),
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn explicit_flags_win() {
        assert_eq!(OutputMode::choose(true, false), OutputMode::Json);
        assert_eq!(OutputMode::choose(false, true), OutputMode::Human);
    }

    #[test]
    fn the_most_specific_failure_wins_the_exit_status() {
        let mut t = ExitTally::default();
        assert_eq!(t.exit(), Exit::Ok);
        for e in [Exit::Failure, Exit::Blocked, Exit::NotFound, Exit::Unusable] {
            t.note(e);
        }
        assert_eq!(t.exit(), Exit::Blocked);
        t.note(Exit::Interrupted);
        t.note(Exit::Usage);
        assert_eq!(t.exit(), Exit::Interrupted);
    }

    #[test]
    fn resolve_errors_map_to_not_found() {
        let e = crate::resolve::ResolveError::NotFound {
            spec: "x".into(),
            suggestions: vec![],
        };
        let f = e.failure();
        assert_eq!((f.exit, f.code), (Exit::NotFound, "not_found"));
    }

    #[test]
    fn exit_codes_match_design() {
        assert_eq!(Exit::Unusable.code(), 4);
        assert_eq!(Exit::NotFound.code(), 3);
        assert_eq!(Exit::Blocked.code(), 5);
        assert_eq!(Exit::Interrupted.code(), 130);
    }
}
