//! Fixture builders for the end-to-end tests: temporary Hugging Face caches holding model
//! folders of every shape the tools must judge, fake /proc trees, and the binaries under test.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A binary of this workspace, built by `cargo build --workspace --bins` (make test does).
pub fn bin(name: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin_path(name));
    // Tests never see the developer's own cache or memory.
    cmd.env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE")
        .env_remove("MLXK_SYS_ROOT");
    cmd.env("MLXK_DEVICE", "cpu");
    cmd
}

/// What one run of a binary gave: its exit code (-1 when a signal ended it), stdout, stderr.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to its end.
    pub fn of(cmd: &mut assert_cmd::Command) -> Run {
        Run::from(cmd.output().expect("run the binary"))
    }

    /// stdout as JSON Lines records.
    pub fn records(&self) -> Vec<Value> {
        lines(self.stdout.as_bytes())
    }

    /// Asserts exit 0, showing stderr otherwise; returns the run for further checks.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "exit {}; stderr:\n{}", self.code, self.stderr);
        self
    }
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

/// Runs `tool` with `args` from the tests folder.
pub fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> Run {
    Run::of(bin(tool).current_dir(env!("CARGO_MANIFEST_DIR")).args(args))
}

/// The path of a workspace binary, built up to date first: the first call in each test process
/// runs `cargo build --workspace --bins` for this profile (a no-op when nothing changed), so a
/// plain `cargo test` never runs a binary older than its sources.
pub fn bin_path(name: &str) -> PathBuf {
    // tests run from target/<profile>/deps/<test>; binaries sit in target/<profile>/.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build --workspace --bins failed ({s})")),
            Err(e) => Err(format!("cannot run {cargo}: {e}")),
        }
    });
    if let Err(e) = built {
        panic!("{e}: the binaries under test cannot be brought up to date");
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// `| head -c 1`: shrinks the pipe to one page, reads one byte of the tool's stdout and closes
/// the pipe; the tool must then end with exit 0 and nothing on stderr. A tool that writes more
/// than a page after that byte really meets the closed pipe (callers make sure it does, e.g.
/// with [`assert_output_exceeds`] or output that streams over seconds).
pub fn assert_ends_quietly_when_reader_leaves(mut cmd: std::process::Command) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // The pipe is made and shrunk before the tool starts, so it cannot fill the default
    // 64 KiB before the shrink.
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "cannot shrink the pipe");
    let child = cmd
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the tool");
    drop(cmd);
    let mut first = [0u8; 1];
    reader
        .read_exact(&mut first)
        .expect("the tool wrote something");
    drop(reader);
    let out = child.wait_with_output().expect("wait for the tool");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command's whole stdout is larger than `bytes`: so that a reader leaving after the first
/// byte makes the tool write into a closed pipe (more than a shrunk pipe holds).
pub fn assert_output_exceeds(cmd: &mut assert_cmd::Command, bytes: usize) {
    let r = Run::of(cmd);
    assert!(
        r.stdout.len() > bytes,
        "only {} bytes of output: too little to overflow the pipe",
        r.stdout.len()
    );
}

/// Runs `cmd` with a pseudo-terminal as stdin, as a person at a shell would.
pub fn run_on_terminal(mut cmd: std::process::Command) -> Run {
    let _tty = terminal_stdin(&mut cmd);
    Run::from(cmd.output().expect("run the binary"))
}

/// Gives `cmd` a pseudo-terminal as stdin; keep the returned end open while it runs.
pub fn terminal_stdin(cmd: &mut std::process::Command) -> std::os::fd::OwnedFd {
    let (master, slave) = open_pty(None);
    cmd.stdin(std::process::Stdio::from(slave));
    master
}

/// A new pseudo-terminal, (master, slave), of `size` (columns, rows) if given.
fn open_pty(size: Option<(u16, u16)>) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let ws = size.map(|(cols, rows)| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    // SAFETY: openpty fills two fds; no name or settings are asked for, the size if given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            ws.as_ref()
                .map_or(std::ptr::null(), |w| w as *const libc::winsize),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both fds were just opened and are owned here.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// A tiny real model (llama, byte tokens, context 128 unless `context` raises it) written
/// into a temporary folder.
pub fn tiny_llama(context: Option<usize>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = mlxk_infer::tiny::spec("llama-gqa1").unwrap();
    mlxk_infer::tiny::write(&spec, dir.path()).unwrap();
    if let Some(c) = context {
        let path = dir.path().join("config.json");
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        cfg["max_position_embeddings"] = c.into();
        std::fs::write(&path, cfg.to_string()).unwrap();
    }
    dir
}

/// A program on a pseudo-terminal of its own (80 columns, its controlling terminal, so Ctrl-C
/// is a SIGINT from the line discipline, as at a shell): keys go in, the screen's text comes
/// out with the escape sequences taken away.
pub struct Pty {
    master: std::fs::File,
    child: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Pty {
    pub fn spawn(cmd: std::process::Command) -> Pty {
        Pty::spawn_with(cmd, true)
    }

    /// As [`Pty::spawn`], with stdin and stdout on the terminal and stderr where `cmd` sends it.
    pub fn spawn_keeping_stderr(cmd: std::process::Command) -> Pty {
        Pty::spawn_with(cmd, false)
    }

    fn spawn_with(mut cmd: std::process::Command, stderr_too: bool) -> Pty {
        use std::os::unix::process::CommandExt;
        let (master, slave) = open_pty(Some((80, 40)));
        let master = std::fs::File::from(master);
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .env("TERM", "xterm");
        if stderr_too {
            cmd.stderr(slave);
        } else {
            drop(slave);
        }
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the pty on stdin.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(cmd); // closes the parent's copies of the slave: EOF reaches the reader at exit
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut from, to) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // Ends with EIO once the program and its children have closed the terminal.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                to.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            screen,
        }
    }

    /// Types `keys` (`\r` is Enter, `\x03` Ctrl-C, `\x04` Ctrl-D).
    pub fn send(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Everything shown so far, as text.
    pub fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.screen.lock().unwrap()))
    }

    /// Waits until `needle` has been shown `count` times; returns the text. Fails, showing the
    /// screen, after a minute.
    #[track_caller]
    pub fn wait_for(&self, needle: &str, count: usize) -> String {
        let start = std::time::Instant::now();
        loop {
            let t = self.text();
            if t.matches(needle).count() >= count {
                return t;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "waited a minute for {needle:?} ×{count}; the screen:\n{t}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the program to end; its exit code (-1 for a signal) and the whole screen.
    pub fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        let start = std::time::Instant::now();
        // The reader thread may still hold the last output.
        while std::sync::Arc::strong_count(&self.screen) > 1
            && start.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (status.code().unwrap_or(-1), self.text())
    }
}

/// Text without terminal escape sequences (CSI `ESC [ … letter`, OSC, two-byte ESC codes)
/// and carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() || d == '~' {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for d in chars.by_ref() {
                        if d == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A temporary hub cache.
pub struct Cache {
    pub dir: tempfile::TempDir,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    pub fn new() -> Self {
        Cache {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Creates `models--org--name/snapshots/<rev>/` (with refs/main → rev) and returns it.
    pub fn snapshot(&self, repo: &str, rev: &str) -> PathBuf {
        let rd = self
            .root()
            .join(format!("models--{}", repo.replace('/', "--")));
        let snap = rd.join("snapshots").join(rev);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(rd.join("refs")).unwrap();
        std::fs::write(rd.join("refs/main"), rev).unwrap();
        snap
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root()
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, bytes).unwrap();
}

pub fn write_json(dir: &Path, name: &str, v: &Value) {
    write(dir, name, serde_json::to_vec_pretty(v).unwrap());
}

/// A safetensors file with zero-filled tensors: (name, dtype, shape).
pub fn safetensors(tensors: &[(&str, &str, &[u64])], format: Option<&str>) -> Vec<u8> {
    let zeros: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, dtype, shape)| {
            let n = mlxk::safetensors::dtype_bytes(dtype).unwrap() * shape.iter().product::<u64>();
            vec![0u8; n as usize]
        })
        .collect();
    let list: Vec<mlxk::safetensors::TensorData> = tensors
        .iter()
        .zip(&zeros)
        .map(
            |((name, dtype, shape), data)| mlxk::safetensors::TensorData {
                name,
                dtype,
                shape,
                data,
            },
        )
        .collect();
    mlxk::safetensors::write(&list, format)
}

pub const CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

/// A healthy MLX 4-bit llama: config with quantization, mlx-format safetensors, tokenizer.
pub fn mlx_llama_4bit(dir: &Path) {
    write_json(
        dir,
        "config.json",
        &json!({"model_type": "llama", "max_position_embeddings": 2048, "hidden_size": 64,
                "quantization": {"group_size": 64, "bits": 4}}),
    );
    write(
        dir,
        "model.safetensors",
        safetensors(
            &[
                ("model.layers.0.mlp.up_proj.weight", "U32", &[128, 8]),
                ("model.layers.0.mlp.up_proj.scales", "BF16", &[128, 1]),
                ("model.layers.0.mlp.up_proj.biases", "BF16", &[128, 1]),
                ("model.norm.weight", "BF16", &[64]),
            ],
            Some("mlx"),
        ),
    );
    tokenizer(dir, true);
}

pub fn tokenizer(dir: &Path, chat: bool) {
    write(
        dir,
        "tokenizer.json",
        r#"{"version":"1.0","model":{"type":"BPE","vocab":{},"merges":[]}}"#,
    );
    let mut cfg = json!({"tokenizer_class": "PreTrainedTokenizerFast"});
    if chat {
        cfg["chat_template"] = json!(CHAT_TEMPLATE);
    }
    write_json(dir, "tokenizer_config.json", &cfg);
}

/// A bf16 model split in `total` shards with an index; `skip` shards are not written.
pub fn sharded_bf16(dir: &Path, total: u32, skip: &[u32]) {
    write_json(
        dir,
        "config.json",
        &json!({"model_type": "qwen2", "max_position_embeddings": 32768}),
    );
    let mut map = serde_json::Map::new();
    for i in 1..=total {
        let file = format!("model-{i:05}-of-{total:05}.safetensors");
        let tensor = format!("model.layers.{i}.weight");
        map.insert(tensor.clone(), json!(file));
        if !skip.contains(&i) {
            write(
                dir,
                &file,
                safetensors(&[(&tensor, "BF16", &[16, 16])], Some("pt")),
            );
        }
    }
    write_json(
        dir,
        "model.safetensors.index.json",
        &json!({"metadata": {}, "weight_map": map}),
    );
    tokenizer(dir, false);
}

/// A GGUF llama with a chat template, 8 k context, Q4_1 blocks and an F32 norm.
pub fn gguf_llama(dir: &Path, file: &str) {
    use mlxk::gguf::writer::{Meta, build};
    let bytes = build(
        &[
            ("general.architecture", Meta::Str("llama")),
            ("llama.context_length", Meta::U32(8192)),
            ("tokenizer.chat_template", Meta::Str(CHAT_TEMPLATE)),
            (
                "tokenizer.ggml.tokens",
                Meta::StrArray(&["<unk>", "a", "<|im_end|>"]),
            ),
        ],
        &[
            ("blk.0.attn_q.weight", &[64, 64], 3),
            ("output_norm.weight", &[64], 0),
        ],
    );
    write(dir, file, bytes);
}

/// A fake system root with /proc/meminfo (kB values) and optional PSI.
pub fn sys_root(mem_available_kb: u64, psi_some: Option<f64>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "proc/meminfo",
        format!(
            "MemTotal:       {} kB\nMemFree:        {} kB\nMemAvailable:   {} kB\nSwapTotal:      0 kB\nSwapFree:       0 kB\n",
            mem_available_kb * 2,
            mem_available_kb / 2,
            mem_available_kb
        ),
    );
    if let Some(p) = psi_some {
        write(
            d.path(),
            "proc/pressure/memory",
            format!(
                "some avg10={p:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            ),
        );
    }
    d
}

/// Parses JSON Lines output.
pub fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A tiny model whose greedy output carries think tags: two of the tokens it generates once
/// each are renamed `<think>` and `</think>` in its tokenizer (the weights, and so the token
/// ids it picks, stay the same). Returns the folder, the raw output, and the expected
/// (reasoning, answer) and how many tokens the reasoning took (up to `</think>`), for the
/// prompt "hi" raw or through the chat template.
pub fn tiny_thinking_model(
    n: usize,
    raw: bool,
) -> (tempfile::TempDir, String, String, String, usize) {
    let (dir, raw, reasoning, answer, k, prompt) = tiny_thinking_model_for(n, raw, &["hi"]);
    assert_eq!(prompt, "hi");
    (dir, raw, reasoning, answer, k)
}

/// As [`tiny_thinking_model`], for the first of `prompts` whose greedy output has two tokens to
/// rename; returns that prompt too.
pub fn tiny_thinking_model_for(
    n: usize,
    raw: bool,
    prompts: &[&str],
) -> (tempfile::TempDir, String, String, String, usize, String) {
    use mlxk_infer::runner::text::{PromptSpec, assemble_prompt};
    let dir = tiny_llama(None);
    let m = mlxk_infer::loader::load(
        dir.path(),
        mlxk_infer::weights::DtypePolicy::UpcastHalfToF32,
    )
    .unwrap();
    let opts = mlxk_infer::generate::GenerateOptions::greedy(n, 2048, m.context_length());
    let (g, i, j, text) = prompts
        .iter()
        .find_map(|text| {
            let spec = PromptSpec {
                text: text.to_string(),
                raw,
                ..Default::default()
            };
            let prompt =
                assemble_prompt(&m.tokenizer, &spec, m.context_length(), n, false).unwrap();
            let g = mlxk_infer::generate::generate(
                &m.decoder,
                &m.tokenizer,
                &prompt.ids,
                &opts,
                &mut |_| Ok(true),
            )
            .unwrap();
            let once = |t: u32| {
                t < 256
                    && g.tokens.iter().filter(|&&x| x == t).count() == 1
                    && !prompt.ids.contains(&t)
            };
            let (i, j) = (0..g.tokens.len())
                .flat_map(|i| (i + 2..g.tokens.len()).map(move |j| (i, j)))
                .find(|&(i, j)| once(g.tokens[i]) && once(g.tokens[j]))?;
            Some((g, i, j, text.to_string()))
        })
        .expect("two tokens generated once each, apart");
    let (open, close) = (g.tokens[i], g.tokens[j]);
    drop(m);
    let path = dir.path().join("tokenizer.json");
    let mut tj: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (id, tag) in [(open, "<think>"), (close, "</think>")] {
        if let Some(t) = tj["added_tokens"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["id"] == id)
        {
            t["content"] = json!(tag);
            continue;
        }
        let vocab = tj["model"]["vocab"].as_object_mut().unwrap();
        let key = vocab
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .unwrap();
        vocab.remove(&key);
        vocab.insert(tag.into(), json!(id));
    }
    std::fs::write(&path, tj.to_string()).unwrap();
    let t = mlxk_infer::tokenizer::TextTokenizer::from_dir(dir.path(), &[]).unwrap();
    let raw = t.decode(&g.tokens).unwrap();
    let mut s = mlxk_infer::reasoning::ReasoningSplitter::new(false);
    s.push(&raw);
    s.finish();
    assert!(
        raw.contains("<think>") && raw.contains("</think>"),
        "{raw:?}"
    );
    (dir, raw, s.reasoning, s.answer, j + 1, text)
}

/// The Hugging Face cache scripts/bootstrap fills (the real Whisper models live there).
pub fn hub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/hf/hub")
}

/// The spoken fixtures of tests/fixtures/speech.sh (espeak-ng + sox), made once per test binary.
pub fn speech_fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech.sh"))
            .arg(d.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "speech.sh failed: espeak-ng and sox come with scripts/bootstrap"
        );
        d
    })
    .path()
}

/// The path of one spoken fixture.
pub fn fx(name: &str) -> String {
    speech_fixtures().join(name).display().to_string()
}
