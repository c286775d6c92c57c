//! What every mlxk binary shares at its edge: exit codes, output mode, and a JSON Lines writer
//! that ends quietly when the reader goes away (`| head`).

use std::io::{self, IsTerminal, Write};

/// Exit codes shared by every tool (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    Unhealthy = 4,
    Blocked = 5,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
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
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| format!("render man page for {name}: {e}"))?;
    let path = man_dir.join(format!("{name}.1"));
    if std::env::var_os("MLXK_UPDATE_MAN").is_some() {
        std::fs::create_dir_all(man_dir).map_err(|e| e.to_string())?;
        std::fs::write(&path, &buf).map_err(|e| format!("write {}: {e}", path.display()))?;
        return Ok(());
    }
    let current = std::fs::read(&path).map_err(|e| {
        format!(
            "read {}: {e} (regenerate with MLXK_UPDATE_MAN=1 cargo test)",
            path.display()
        )
    })?;
    if current != buf {
        return Err(format!(
            "{} is out of date with the --help of {name}; regenerate with MLXK_UPDATE_MAN=1 cargo test",
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
    fn exit_codes_match_design() {
        assert_eq!(Exit::NotFound.code(), 3);
        assert_eq!(Exit::Blocked.code(), 5);
        assert_eq!(Exit::Interrupted.code(), 130);
    }
}
