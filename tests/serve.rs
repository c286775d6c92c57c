//! mlxk-serve end to end: the real binary on a free loopback port, a tiny real model, raw
//! HTTP/1.1 from the test (a client that can also hang up mid-stream).
#[allow(dead_code)]
mod support;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use support::*;

struct Server {
    child: Child,
    addr: String,
    /// Everything on stderr: the address line, then one JSON log line per request.
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stopped: bool,
}

impl Drop for Server {
    /// A test that failed does not leave its server running.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn start(model: &std::path::Path, args: &[&str], env: &[(&str, &std::path::Path)]) -> Server {
        let mut c = std::process::Command::new(bin_path("mlxk-serve"));
        c.arg(model).stdin(Stdio::null()).env_remove("HF_HUB_CACHE");
        Server::spawn(c, args, env, None)
    }

    /// The server fed `records` (mlxk-probe | mlxk-gate output) on stdin.
    fn from_records(records: &str, args: &[&str]) -> Server {
        let mut c = std::process::Command::new(bin_path("mlxk-serve"));
        c.env_remove("HF_HUB_CACHE");
        Server::spawn(c, args, &[], Some(records))
    }

    fn spawn(
        mut c: std::process::Command,
        args: &[&str],
        env: &[(&str, &std::path::Path)],
        stdin: Option<&str>,
    ) -> Server {
        c.args(["--port", "0"])
            .args(args)
            .env("MLXK_DEVICE", "cpu")
            .env_remove("MLXK_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().unwrap();
        if let Some(text) = stdin {
            let mut i = child.stdin.take().unwrap();
            i.write_all(text.as_bytes()).unwrap();
        }
        let mut err = BufReader::new(child.stderr.take().unwrap());
        // Lines before the address (a warning about a record) are kept with the log.
        let mut line = String::new();
        let addr = loop {
            let at = line.len();
            assert!(err.read_line(&mut line).unwrap() > 0, "no address: {line}");
            if let Some(a) = line[at..]
                .trim()
                .strip_prefix("mlxk-serve: listening on http://")
            {
                break a.to_string();
            }
        };
        let stderr = Arc::new(Mutex::new(line));
        let s = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut l = String::new();
            while err.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                s.lock().unwrap().push_str(&l);
                l.clear();
            }
        });
        Server {
            child,
            addr,
            stderr,
            reader: Some(reader),
            stopped: false,
        }
    }

    /// Waits (a minute at most) for a log line that `pred` accepts.
    fn wait_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            if let Some(l) = self.log().into_iter().find(&pred) {
                return l;
            }
            assert!(
                start.elapsed().as_secs() < 60,
                "{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn log(&self) -> Vec<Value> {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn connect(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        // A server that refuses a body (413) may answer and close before it has all of it.
        let _ = s.write_all(req.as_bytes()).and_then(|_| s.write_all(body));
        s
    }

    /// One request, read to its end: (status, head, body with chunked encoding undone).
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> (u16, String, String) {
        self.call_bytes(method, path, headers, body.as_bytes())
    }

    fn call_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> (u16, String, String) {
        let mut s = self.connect(method, path, headers, body);
        let mut raw = Vec::new();
        // What came before a reset (a refused upload) is the answer.
        let mut buf = [0u8; 8192];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let raw = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        (status, head.to_string(), body)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, b) = self.call("POST", path, &[], &body.to_string());
        (
            status,
            serde_json::from_str(&b).unwrap_or_else(|_| panic!("{b}")),
        )
    }

    fn stop(self) -> (i32, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    /// Waits for the server to end by itself: its exit code and all it wrote to stderr.
    fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        self.stopped = true;
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let err = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), err)
    }
}

/// The id a model folder is served as: its folder name.
fn model_id(dir: &tempfile::TempDir) -> String {
    dir.path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `data:` payloads of a Server-Sent Events body.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

fn greedy_gen(model: &std::path::Path, prompt: &str, raw: bool, n: usize) -> Value {
    let mut c = bin("mlxk-gen");
    c.arg(model)
        .args(["-p", prompt, "-n", &n.to_string(), "--json"]);
    if raw {
        c.arg("--raw");
    }
    Run::of(&mut c)
        .ok()
        .records()
        .into_iter()
        .find(|r| r["type"] == "result")
        .unwrap()
}

#[test]
fn completions_whole_and_streamed_equal_mlxk_gen_greedy() {
    let model = tiny_llama(None);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let s = Server::start(model.path(), &["--report", report.to_str().unwrap()], &[]);
    let id = model_id(&model);
    let (status, models) = {
        let (st, _, b) = s.call("GET", "/v1/models", &[], "");
        (st, serde_json::from_str::<Value>(&b).unwrap())
    };
    assert_eq!((status, &models["data"][0]["id"]), (200, &json!(id)));
    let want = greedy_gen(model.path(), "hi", false, 8);
    let chat = json!({"model": id, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8, "temperature": 0});
    let (status, r) = s.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["content"], want["text"]);
    assert_eq!(r["choices"][0]["finish_reason"], want["finish_reason"]);
    assert_eq!(r["usage"]["prompt_tokens"], want["prompt_tokens"]);
    assert_eq!(r["usage"]["completion_tokens"], want["generated_tokens"]);
    // Streamed: the pieces add up to the same text, then the finish, the usage and [DONE].
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, head, body) = s.call("POST", "/v1/chat/completions", &[], &streamed.to_string());
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let ev = events(&body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want["text"].as_str().unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        want["generated_tokens"]
    );
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        want["finish_reason"]
    );
    // /v1/completions: the prompt as is, as mlxk-gen --raw; a stop string never leaks.
    let raw = greedy_gen(model.path(), "hello", true, 8);
    let (status, r) = s.post(
        "/v1/completions",
        &json!({"model": id, "prompt": "hello", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(
        (status, &r["choices"][0]["text"]),
        (200, &raw["text"]),
        "{r}"
    );
    let t = raw["text"].as_str().unwrap();
    let stop: String = t.chars().skip(2).take(1).collect();
    let (_, r) = s.post(
        "/v1/completions",
        &json!({"model": id, "prompt": "hello", "max_tokens": 8, "temperature": 0, "stop": [stop]}),
    );
    let cut = r["choices"][0]["text"].as_str().unwrap();
    assert!(!cut.contains(&stop) && t.starts_with(cut), "{cut:?} {t:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    // The log has a line per request; the report a record per generation.
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    let recs = std::fs::read_to_string(&report).unwrap();
    assert_eq!(recs.lines().count(), 4, "{recs}");
}

#[test]
fn every_error_has_its_status_and_an_openai_error_body() {
    let model = tiny_llama(None);
    let s = Server::start(
        model.path(),
        &["--api-key", "sesame", "--max-body-bytes", "2000"],
        &[],
    );
    let id = &model_id(&model);
    let key = "Authorization: Bearer sesame";
    let call = |headers: &[&str], path: &str, body: &str| -> (u16, Value) {
        let (st, head, b) = s.call("POST", path, headers, body);
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("{head}\n{b}"));
        assert!(v["error"]["message"].is_string(), "{v}");
        (st, v)
    };
    let msg = |text: &str| {
        json!({"model": id, "messages": [{"role": "user", "content": text}]}).to_string()
    };
    assert_eq!(call(&[], "/v1/chat/completions", &msg("hi")).0, 401);
    assert_eq!(
        call(
            &["Authorization: Bearer nope"],
            "/v1/chat/completions",
            &msg("hi")
        )
        .0,
        401
    );
    assert_eq!(call(&[key], "/v1/chat/completions", "{not json").0, 400);
    let (st, v) = call(
        &[key],
        "/v1/chat/completions",
        &json!({"model": id, "messages": "hi"}).to_string(),
    );
    assert_eq!((st, &v["error"]["param"]), (400, &json!("messages")));
    let (st, v) = call(
        &[key],
        "/v1/chat/completions",
        &json!({"model": id, "n": 2, "messages": [{"role": "user", "content": "x"}]}).to_string(),
    );
    assert_eq!((st, &v["error"]["param"]), (400, &json!("n")));
    let (st, v) = call(
        &[key],
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string(),
    );
    assert_eq!((st, &v["error"]["code"]), (404, &json!("model_not_found")));
    // Over the context: 400, unless the request asks for truncation.
    let long = "z".repeat(300);
    let (st, v) = call(&[key], "/v1/chat/completions", &msg(&long));
    assert_eq!(
        (st, &v["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    let mut t: Value = serde_json::from_str(&msg(&long)).unwrap();
    t["truncation"] = json!("auto");
    t["max_tokens"] = json!(4);
    let (st, _, b) = s.call("POST", "/v1/chat/completions", &[key], &t.to_string());
    assert_eq!(st, 200, "{b}");
    let big = msg(&"y".repeat(3000));
    assert_eq!(call(&[key], "/v1/chat/completions", &big).0, 413);
    let image = json!({"model": id, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]});
    let (st, v) = call(&[key], "/v1/chat/completions", &image.to_string());
    assert_eq!(
        (st, &v["error"]["code"]),
        (501, &json!("vision_not_supported"))
    );
    // A wrong method and an unknown route: OpenAI-style bodies, and a log line each, as every
    // request gets (one for the body over the limit above, not two).
    let (st, head, b) = s.call("GET", "/v1/chat/completions", &[key], "");
    assert_eq!(st, 405, "{b}");
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
    assert!(b.contains("\"error\""), "{b}");
    let (st, _, b) = s.call("GET", "/v2/nothing", &[key], "");
    assert_eq!(st, 404, "{b}");
    // The server writes a request's line before it answers, but the test reads stderr on a
    // thread of its own: wait for the last request's line, and the earlier ones are in too.
    s.wait_log(|l| l["path"] == "/v2/nothing");
    let log = s.log();
    for (path, status) in [
        ("/v1/chat/completions", 405),
        ("/v2/nothing", 404),
        ("/v1/chat/completions", 413),
    ] {
        assert_eq!(
            log.iter()
                .filter(|l| l["path"] == path && l["status"] == status)
                .count(),
            1,
            "{path} {status}: {log:?}"
        );
    }
    // The audio routes take a multipart form, and a Whisper model.
    let (st, v) = call(&[key], "/v1/audio/transcriptions", "{}");
    assert_eq!(st, 400, "{v}");
    let (ct, form) = multipart(&[("model", id)], Some(("a.wav", b"RIFF")));
    let (st, _, b) = s.call_bytes("POST", "/v1/audio/transcriptions", &[key, &ct], &form);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (st, &v["error"]["code"]),
        (501, &json!("wrong_backend")),
        "{v}"
    );
    let (code, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_model_the_gate_blocked_is_refused_with_507_and_one_it_cannot_run_with_501() {
    let model = tiny_llama(None);
    let probe = Run::of(bin("mlxk-probe").arg(model.path()).arg("--json")).ok();
    let mut rec: Value = serde_json::from_str(probe.stdout.lines().next().unwrap()).unwrap();
    let id = rec["id"].as_str().unwrap().to_string();
    rec["gate"] = json!({"decision": "block", "backend": "text", "blocked_by": "memory",
        "reasons": ["memory: needs 9 GB of 1 GB available"], "threshold": 0.7});
    let mut vision = rec.clone();
    vision["id"] = json!("other/vision-model");
    vision["gate"] =
        json!({"decision": "allow", "backend": "vision", "reasons": [], "threshold": 0.7});
    let s = Server::from_records(&format!("{rec}\n{vision}\n"), &[]);
    let ask = |m: &str| {
        s.post(
            "/v1/chat/completions",
            &json!({"model": m, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let (st, v) = ask(&id);
    assert_eq!(st, 507, "{v}");
    assert_eq!(v["error"]["type"], "insufficient_storage_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("memory"),
        "{v}"
    );
    let (st, v) = ask("other/vision-model");
    assert_eq!(st, 501, "{v}");
    s.stop();
}

#[test]
fn a_client_that_hangs_up_stops_its_generation_and_the_server_goes_on() {
    let model = tiny_llama(Some(8192));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.jsonl");
    let s = Server::start(model.path(), &["--report", report.to_str().unwrap()], &[]);
    let id = &model_id(&model);
    let long = json!({"model": id, "prompt": "go", "max_tokens": 8000, "temperature": 0,
        "stream": true});
    let mut c = s.connect("POST", "/v1/completions", &[], long.to_string().as_bytes());
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(c);
    // The next request is answered at once: the hung-up generation stopped instead of
    // running its 8000 tokens first.
    let (st, r) = s.post(
        "/v1/completions",
        &json!({"model": id, "prompt": "hi", "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{r}");
    let gone = s.wait_log(|l| l["status"] == 499);
    assert_eq!(gone["path"], "/v1/completions");
    // The report says the first generation stopped early because the client left.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&report)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["metadata"]["error"]["code"], "client_disconnected");
    assert!(first["performance"]["completion_tokens"].as_u64().unwrap() < 8000);
    s.stop();
}

#[test]
fn sixteen_clients_at_once_are_all_answered_or_told_to_retry() {
    let model = tiny_llama(None);
    let s = Arc::new(Server::start(model.path(), &["--queue", "4"], &[]));
    let id = model_id(&model);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (s, id) = (s.clone(), id.clone());
            std::thread::spawn(move || {
                let (st, head, _) = s.call(
                    "POST",
                    "/v1/completions",
                    &[],
                    &json!({"model": id, "prompt": format!("n{i}"), "max_tokens": 40}).to_string(),
                );
                if st == 429 {
                    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
                }
                st
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|&c| c == 200 || c == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    let (st, _, health) = s.call("GET", "/health", &[], "");
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&health).unwrap()["status"],
        "ok"
    );
    let s = Arc::try_unwrap(s).ok().unwrap();
    let (_, err) = s.stop();
    let lines: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let completions = lines
        .iter()
        .filter(|l| l["path"] == "/v1/completions")
        .count();
    assert_eq!(
        completions, 16,
        "one log line per completion request: {err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == "/health" && l["status"] == 200),
        "{err}"
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let model = tiny_llama(Some(8192));
    let s = Server::start(model.path(), &["--queue", "0", "--parallel", "1"], &[]);
    let id = &model_id(&model);
    // One long stream holds the one place; with no room to wait, the next is refused.
    let body = json!({"model": id, "prompt": "go", "max_tokens": 6000, "stream": true});
    let mut c = s.connect("POST", "/v1/completions", &[], body.to_string().as_bytes());
    let mut first = [0u8; 64];
    assert!(c.read(&mut first).unwrap() > 0);
    let (st, head, b) = s.call(
        "POST",
        "/v1/completions",
        &[],
        &json!({"model": id, "prompt": "x", "max_tokens": 2}).to_string(),
    );
    assert_eq!(st, 429, "{b}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "queue_full"
    );
    drop(c);
    s.stop();
}

#[test]
fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let model = tiny_llama(Some(8192));
    let s = Server::start(model.path(), &[], &[]);
    let id = &model_id(&model);
    let body = json!({"model": id, "prompt": "go", "max_tokens": 6000, "stream": true});
    let mut c = s.connect("POST", "/v1/completions", &[], body.to_string().as_bytes());
    let mut first = [0u8; 64];
    assert!(c.read(&mut first).unwrap() > 0);
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    // Draining: /health says so, and a new request is refused with 503 while the stream runs on.
    loop {
        let (_, _, h) = s.call("GET", "/health", &[], "");
        if serde_json::from_str::<Value>(&h).unwrap()["status"] == "draining" {
            break;
        }
    }
    let (refused, _, _) = s.call(
        "POST",
        "/v1/completions",
        &[],
        &json!({"model": id, "prompt": "x"}).to_string(),
    );
    assert_eq!(refused, 503);
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]"),
        "the in-flight stream finished"
    );
    let (code, err) = s.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("draining"), "{err}");
}

/// Runs a script of tests/fixtures with the official `openai` client (bootstrap's test venv)
/// against `s`: what it printed, as JSON.
fn openai_script(s: &Server, script: &str, args: &[&str]) -> Value {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/bootstrap installs the openai client (make test runs it)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(script),
        )
        .arg(format!("http://{}/v1", s.addr))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_official_openai_client_gets_what_mlxk_gen_gives() {
    let model = tiny_llama(None);
    let s = Server::start(model.path(), &["--api-key", "k"], &[]);
    let id = &model_id(&model);
    let got = openai_script(&s, "openai_client.py", &[id, "k"]);
    let chat = greedy_gen(model.path(), "hi", false, 8);
    assert_eq!(got["models"], json!([id]));
    assert_eq!(got["chat"]["text"], chat["text"]);
    assert_eq!(got["chat"]["finish"], chat["finish_reason"]);
    assert_eq!(got["chat"]["prompt_tokens"], chat["prompt_tokens"]);
    assert_eq!(got["stream"]["text"], chat["text"]);
    assert_eq!(got["stream"]["completion_tokens"], chat["generated_tokens"]);
    assert_eq!(
        got["completion"],
        greedy_gen(model.path(), "hello", true, 8)["text"]
    );
    let e = &got["errors"];
    assert_eq!(
        (&e["unknown_model"]["status"], &e["unknown_model"]["class"]),
        (&json!(404), &json!("NotFoundError"))
    );
    assert_eq!(e["n"]["status"], 400);
    assert_eq!(e["context"]["status"], 400);
    assert_eq!(e["bad_key"]["class"], "AuthenticationError");
    s.stop();
}

#[test]
fn the_real_smollm2_answers_over_http_as_mlxk_gen_does() {
    let hub = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/hf/hub");
    let mut c = std::process::Command::new(bin_path("mlxk-serve"));
    c.arg("SmolLM2")
        .env("HF_HUB_CACHE", &hub)
        .stdin(Stdio::null());
    let s = Server::spawn(c, &[], &[], None);
    let (st, _, models) = s.call("GET", "/v1/models", &[], "");
    assert_eq!(st, 200);
    let id = serde_json::from_str::<Value>(&models).unwrap()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The name it was served as works too.
    let (st, r) = s.post(
        "/v1/chat/completions",
        &json!({"model": "SmolLM2", "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["model"], json!(id));
    let want = Run::of(bin("mlxk-gen").env("HF_HUB_CACHE", &hub).args([
        "SmolLM2",
        "-p",
        "What is the capital of France?",
        "-n",
        "12",
        "--json",
    ]))
    .ok()
    .records()
    .into_iter()
    .find(|r| r["type"] == "result")
    .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], want["text"]);
    assert_eq!(r["usage"]["prompt_tokens"], want["prompt_tokens"]);
    s.stop();
}

#[test]
fn a_reasoning_models_thinking_comes_apart_as_reasoning_content() {
    let candidates = [
        "hi", "hello", "go", "why", "ok", "tell me", "more", "a", "yes", "now",
    ];
    let (model, _raw, reasoning, answer, _, prompt) =
        tiny_thinking_model_for(40, false, &candidates);
    let s = Server::start(model.path(), &[], &[]);
    let id = &model_id(&model);
    let req = json!({"model": id, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 40, "temperature": 0});
    let (st, r) = s.post("/v1/chat/completions", &req);
    assert_eq!(st, 200, "{r}");
    let msg = &r["choices"][0]["message"];
    assert_eq!(
        (&msg["reasoning_content"], &msg["content"]),
        (&json!(reasoning), &json!(answer))
    );
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let (_, _, body) = s.call("POST", "/v1/chat/completions", &[], &streamed.to_string());
    let (mut thought, mut said) = (String::new(), String::new());
    for e in events(&body).iter().filter(|e| e.as_str() != "[DONE]") {
        let c: Value = serde_json::from_str(e).unwrap();
        let d = &c["choices"][0]["delta"];
        thought.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        said.push_str(d["content"].as_str().unwrap_or(""));
    }
    assert_eq!((thought, said), (reasoning, answer));
    s.stop();
}

/// A multipart/form-data body: the Content-Type header and the bytes.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let b = "mlxk-test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, data)) = file {
        body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (
        format!("Content-Type: multipart/form-data; boundary={b}"),
        body,
    )
}

/// mlxk-serve with the real Whisper tiny.en beside a tiny text model.
fn whisper_server(args: &[&str]) -> (Server, tempfile::TempDir) {
    let text = tiny_llama(None);
    let mut c = std::process::Command::new(bin_path("mlxk-serve"));
    c.arg("whisper-tiny.en")
        .arg(text.path())
        .stdin(Stdio::null())
        .env("HF_HUB_CACHE", hub());
    (Server::spawn(c, args, &[], None), text)
}

fn hear_records(file: &str, args: &[&str]) -> Vec<Value> {
    Run::of(
        bin("mlxk-hear")
            .env("HF_HUB_CACHE", hub())
            .args(["whisper-tiny.en", file, "--json"])
            .args(args),
    )
    .ok()
    .records()
}

#[test]
fn transcriptions_over_http_equal_mlxk_hear_in_every_format() {
    let (s, _text) = whisper_server(&["--report", "/dev/null"]);
    let wav = std::fs::read(speech_fixtures().join("short.wav")).unwrap();
    let ask = |fields: &[(&str, &str)]| {
        let mut f = vec![("model", "whisper-tiny.en")];
        f.extend_from_slice(fields);
        let (ct, body) = multipart(&f, Some(("short.wav", &wav)));
        let (st, head, b) = s.call_bytes("POST", "/v1/audio/transcriptions", &[&ct], &body);
        assert_eq!(st, 200, "{head}\n{b}");
        (head.to_ascii_lowercase(), b)
    };
    let recs = hear_records(&fx("short.wav"), &["--word-timestamps"]);
    let transcript = recs.iter().find(|r| r["type"] == "transcript").unwrap();
    let segments: Vec<&Value> = recs.iter().filter(|r| r["type"] == "segment").collect();
    let (head, b) = ask(&[]);
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["text"], transcript["text"]);
    assert_eq!(v["usage"]["type"], "duration");
    // `text` is the transcript's text; the subtitles are byte for byte what mlxk-hear writes.
    let (head, b) = ask(&[("response_format", "text")]);
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert_eq!(
        b,
        format!("{}\n", transcript["text"].as_str().unwrap()),
        "text"
    );
    for f in ["srt", "vtt"] {
        let hear_f = f;
        let want = Run::of(bin("mlxk-hear").env("HF_HUB_CACHE", hub()).args([
            "whisper-tiny.en",
            &fx("short.wav"),
            "-f",
            hear_f,
        ]))
        .ok()
        .stdout;
        let (head, b) = ask(&[("response_format", f)]);
        assert!(head.contains("content-type: text/plain"), "{head}");
        assert_eq!(b, want, "{f}");
    }
    let (_, b) = ask(&[
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ]);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (&v["task"], &v["language"]),
        (&json!("transcribe"), &json!("english"))
    );
    let got = v["segments"].as_array().unwrap();
    assert_eq!(got.len(), segments.len(), "{v}");
    for (g, w) in got.iter().zip(&segments) {
        assert_eq!(g["text"], w["text"]);
        let close =
            |a: &Value, b: &Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 0.006;
        assert!(
            close(&g["start"], &w["start"]) && close(&g["end"], &w["end"]),
            "{g} {w}"
        );
    }
    let words: Vec<Value> = segments
        .iter()
        .flat_map(|s| s["words"].as_array().unwrap().clone())
        .collect();
    let got_words = v["words"].as_array().unwrap();
    assert_eq!(got_words.len(), words.len());
    assert_eq!(
        got_words[0]["word"],
        json!(words[0]["word"].as_str().unwrap().trim())
    );
    let log = s.wait_log(|l| l["path"] == "/v1/audio/transcriptions" && l["status"] == 200);
    assert_eq!(log["model"], "whisper-tiny.en");
    assert!(log["audio_s"].as_f64().unwrap() > 1.0, "{log}");
    let (code, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_audio_routes_refuse_what_they_cannot_do_with_the_right_status() {
    let (s, text) = whisper_server(&["--max-upload-bytes", "400000"]);
    let text_id = model_id(&text);
    let call = |path: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>| {
        let (ct, body) = multipart(fields, file);
        let (st, head, b) = s.call_bytes("POST", path, &[&ct], &body);
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("{head}\n{b}"));
        (st, v)
    };
    let t = "/v1/audio/transcriptions";
    let w = [("model", "whisper-tiny.en")];
    let (st, v) = call(t, &w, Some(("notes.wav", b"this is not audio at all")));
    assert_eq!(
        (st, &v["error"]["code"], &v["error"]["param"]),
        (400, &json!("not_audio"), &json!("file")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("notes.wav"),
        "{v}"
    );
    let (st, v) = call(t, &w, None);
    assert_eq!((st, &v["error"]["param"]), (400, &json!("file")), "{v}");
    let (st, v) = call(t, &[("model", "nope")], Some(("a.wav", b"RIFF")));
    assert_eq!(
        (st, &v["error"]["code"]),
        (404, &json!("model_not_found")),
        "{v}"
    );
    // An English-only model cannot translate, nor take another language.
    let wav = std::fs::read(speech_fixtures().join("short.wav")).unwrap();
    let (st, v) = call("/v1/audio/translations", &w, Some(("short.wav", &wav)));
    assert_eq!(st, 400, "{v}");
    let (st, v) = call(t, &[w[0], ("language", "de")], Some(("short.wav", &wav)));
    assert_eq!(st, 400, "{v}");
    // Over the upload limit: 413; chat to a Whisper model: 501; a text model here: 501.
    let big = vec![0u8; 500_000];
    let (st, v) = call(t, &w, Some(("big.wav", &big)));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-upload-bytes"),
        "{v}"
    );
    assert_eq!(
        (st, &v["error"]["code"]),
        (413, &json!("body_too_large")),
        "{v}"
    );
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"model": "whisper-tiny.en", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        (st, &v["error"]["code"]),
        (501, &json!("wrong_backend")),
        "{v}"
    );
    let (st, v) = call(t, &[("model", &text_id)], Some(("short.wav", &wav)));
    assert_eq!(
        (st, &v["error"]["code"]),
        (501, &json!("wrong_backend")),
        "{v}"
    );
    // The server still answers both kinds after all that.
    let (st, v) = call(t, &w, Some(("short.wav", &wav)));
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"model": text_id, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(st, 200, "{v}");
    let (code, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_official_openai_client_transcribes_through_the_server() {
    let (s, _text) = whisper_server(&[]);
    let got = openai_script(
        &s,
        "openai_audio.py",
        &["whisper-tiny.en", &fx("short.wav")],
    );
    let recs = hear_records(&fx("short.wav"), &[]);
    let transcript = recs.iter().find(|r| r["type"] == "transcript").unwrap();
    assert_eq!(got["text"], transcript["text"]);
    assert_eq!(got["verbose"]["text"], transcript["text"]);
    assert_eq!(got["verbose"]["language"], "english");
    assert!(got["verbose"]["words"].as_u64().unwrap() > 3, "{got}");
    assert_eq!(got["srt"].as_str().unwrap().lines().next(), Some("1"));
    assert_eq!(got["errors"]["translate_en"]["status"], 400);
    s.stop();
}

#[test]
fn interleaved_requests_each_get_mlxk_gens_text_and_a_short_one_does_not_wait() {
    let model = tiny_llama(Some(8192));
    let s = Arc::new(Server::start(model.path(), &[], &[]));
    let id = model_id(&model);
    // A long stream runs (read as it comes); a short request that comes while it does is
    // answered before it ends.
    let long = json!({"model": id, "prompt": "go", "max_tokens": 3000, "stream": true});
    let mut c = s.connect("POST", "/v1/completions", &[], long.to_string().as_bytes());
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("data: ") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (st, _, b) = s.call(
        "POST",
        "/v1/completions",
        &[],
        &json!({"model": id, "prompt": "hello", "max_tokens": 8, "temperature": 0}).to_string(),
    );
    assert_eq!(st, 200, "{b}");
    let long_so_far = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    assert!(
        !long_so_far.contains("[DONE]"),
        "the short request waited for the long stream to end"
    );
    let short: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        short["choices"][0]["text"],
        greedy_gen(model.path(), "hello", true, 8)["text"]
    );
    reader.join().unwrap();
    assert!(String::from_utf8_lossy(&seen.lock().unwrap()).contains("[DONE]"));
    // Four at once, each its own greedy text (the caches and samplers do not mix).
    let prompts = ["one", "two two", "three three three", "four"];
    let threads: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (s, id, p) = (s.clone(), id.clone(), p.to_string());
            std::thread::spawn(move || {
                s.post(
                    "/v1/completions",
                    &json!({"model": id, "prompt": p, "max_tokens": 24, "temperature": 0}),
                )
            })
        })
        .collect();
    for (t, p) in threads.into_iter().zip(prompts) {
        let (st, r) = t.join().unwrap();
        assert_eq!(st, 200, "{r}");
        assert_eq!(
            r["choices"][0]["text"],
            greedy_gen(model.path(), p, true, 24)["text"],
            "{p}"
        );
    }
    Arc::try_unwrap(s).ok().unwrap().stop();
}

#[test]
fn a_backend_failure_is_a_500_and_the_server_goes_on() {
    let model = tiny_llama(None);
    let s = Server::start(model.path(), &[], &[]);
    let id = &model_id(&model);
    // The tokenizer is damaged after the server started: the load on first use fails.
    let tok = model.path().join("tokenizer.json");
    let good = std::fs::read(&tok).unwrap();
    std::fs::write(&tok, "{ not json").unwrap();
    let ask = || {
        s.post(
            "/v1/completions",
            &json!({"model": id, "prompt": "hi", "max_tokens": 2}),
        )
    };
    let (st, v) = ask();
    assert_eq!(
        (st, &v["error"]["type"]),
        (500, &json!("server_error")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokenizer"),
        "{v}"
    );
    // Mended, the next request loads the model and is answered.
    std::fs::write(&tok, good).unwrap();
    let (st, v) = ask();
    assert_eq!(st, 200, "{v}");
    let (code, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_client_that_stops_reading_holds_up_no_one() {
    let model = tiny_llama(Some(8192));
    let s = Server::start(model.path(), &["--queue", "0", "--parallel", "2"], &[]);
    let id = &model_id(&model);
    // A long stream whose client reads nothing: once its buffers are full it is paused.
    let long = json!({"model": id, "prompt": "go", "max_tokens": 6000, "stream": true});
    let stalled = s.connect("POST", "/v1/completions", &[], long.to_string().as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The other place still serves, request after request.
    for n in 0..3 {
        let (st, r) = s.post(
            "/v1/completions",
            &json!({"model": id, "prompt": format!("n{n}"), "max_tokens": 4}),
        );
        assert_eq!(st, 200, "{r}");
    }
    let (st, _, health) = s.call("GET", "/health", &[], "");
    assert_eq!(st, 200, "{health}");
    drop(stalled);
    let (code, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

/// A vision model over HTTP: pictures as data: URLs give mlxk-see's text for the same prompt and
/// pictures, so does a text-only chat; a picture that does not decode is a 400 naming its part.
#[test]
fn a_vision_model_answers_pictures_over_http_as_mlxk_see_does() {
    use base64::Engine;
    use mlxk_infer::tiny_vision;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("qwen2-vl");
    tiny_vision::write(&tiny_vision::spec("qwen2-vl").unwrap(), &model).unwrap();
    let mut urls = Vec::new();
    let mut files = Vec::new();
    for name in ["square", "wide"] {
        let &(_, seed, w, h) = tiny_vision::PICTURES.iter().find(|p| p.0 == name).unwrap();
        let f = dir.path().join(format!("{name}.png"));
        tiny_vision::write_png(&tiny_vision::picture(seed, w, h), &f).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&f).unwrap());
        urls.push(format!("data:image/png;base64,{b64}"));
        files.push(f.display().to_string());
    }
    let see = |pictures: &[String]| -> String {
        let r = Run::of(bin("mlxk-see").arg(&model).args(pictures).args([
            "-p",
            tiny_vision::PROMPT,
            "-n",
            "12",
        ]))
        .ok();
        r.stdout.trim_end_matches('\n').to_string()
    };
    let s = Server::start(&model, &[], &[]);
    let ask = |content: Value| {
        s.post(
            "/v1/chat/completions",
            &json!({"model": "qwen2-vl", "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": content}]}),
        )
    };
    let (st, body) = ask(json!([
        {"type": "text", "text": tiny_vision::PROMPT},
        {"type": "image_url", "image_url": {"url": urls[0]}},
        {"type": "image_url", "image_url": {"url": urls[1]}},
    ]));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], see(&files));
    // 16 + 12 image tokens in the 110-token prompt mlx-vlm builds.
    assert_eq!(body["usage"]["prompt_tokens"], 110);
    let (st, body) = ask(json!(tiny_vision::PROMPT));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], see(&[]));
    let (st, body) = ask(json!([
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]));
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages[0].content[1]");
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}
