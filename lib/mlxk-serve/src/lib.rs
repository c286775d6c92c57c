//! mlxk-serve: the runner path behind OpenAI-style HTTP (axum on tokio). The routes read and
//! check requests ([`wire`]), queue them for the model thread ([`worker`]) — a bounded queue that
//! answers 429 when full — and answer whole or as Server-Sent Events. One JSON line per request
//! goes to the log; SIGTERM (or Ctrl-C) drains: requests in flight finish, new ones get 503.
//! Whisper models answer the audio routes ([`audio`]) on the same queue and model thread.
pub mod audio;
pub mod wire;
pub mod worker;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlxk::cli::Failure;
use mlxk::runner::Job;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use wire::{ApiError, Usage};
use worker::{Event, Request, Settings, Transcription, Work};

/// How the server listens and limits itself.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Requests waiting beyond the ones running (`settings.parallel`); beyond that, 429.
    pub queue: usize,
    pub max_body_bytes: usize,
    /// Largest upload the audio routes take (OpenAI's limit is 25 MB).
    pub max_upload_bytes: usize,
    pub log: Option<PathBuf>,
    pub settings: Settings,
}

struct Served {
    id: String,
    /// Names a request may use for it: the id, its last part, the spec it was served as.
    names: Vec<String>,
    /// The backend its gate chose (`text`, `audio`, …), if any.
    backend: Option<String>,
}

struct App {
    models: Vec<Served>,
    queue: Sender<Work>,
    /// Requests queued or running, and how many may be (running + waiting).
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    api_key: Option<String>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    loaded: worker::Loaded,
    log: Mutex<Box<dyn Write + Send>>,
}

type Shared = Arc<App>;

/// A request's place among those queued or running, given back when dropped (for a stream:
/// when its last chunk went out).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request the model thread has started: its events, and its place.
struct Queued {
    rx: tokio::sync::mpsc::Receiver<Event>,
    slot: Slot,
}

/// Counts a request in flight until dropped (for a stream: until its last chunk went out).
struct InFlight(Shared);

impl InFlight {
    fn new(app: &Shared) -> InFlight {
        app.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(app.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl App {
    fn log(&self, v: Value) {
        let mut out = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{v}").and_then(|_| out.flush());
    }

    /// The served model a request names, and that it serves the request (one of `backends`'s
    /// models: a chat with pictures needs a vision model, text a text or vision one): 404 for an
    /// unknown name, 501 for a model of another kind (a Whisper model asked to chat, a text
    /// model given pictures).
    fn model_for(&self, name: &str, backends: &[&str]) -> Result<usize, ApiError> {
        let backend = backends[0];
        let Some(i) = self
            .models
            .iter()
            .position(|m| m.names.iter().any(|n| n == name))
        else {
            return Err(ApiError::new(
                404,
                "not_found_error",
                format!(
                    "model `{name}` is not served here; GET /v1/models lists the ones that are"
                ),
            )
            .code("model_not_found")
            .param("model"));
        };
        let m = &self.models[i];
        match m.backend.as_deref() {
            Some(b) if !backends.contains(&b) => {
                let why = match (b, backend) {
                    ("text", "vision") => format!(
                        "model `{}` is a text model; image content needs a vision model",
                        m.id
                    ),
                    ("audio", _) => format!(
                        "model `{}` is a speech-to-text model: POST its audio to /v1/audio/transcriptions",
                        m.id
                    ),
                    (_, "audio") => format!(
                        "model `{}` is a {b} model; the audio routes need a Whisper model",
                        m.id
                    ),
                    _ => format!(
                        "model `{}` is a {b} model; this route serves {backend} models",
                        m.id
                    ),
                };
                let code = if (b, backend) == ("text", "vision") {
                    "vision_not_supported"
                } else {
                    "wrong_backend"
                };
                Err(ApiError::new(501, "not_implemented_error", why)
                    .code(code)
                    .param("model"))
            }
            _ => Ok(i),
        }
    }

    /// Queues `req` for model `model` (holding `slot`) and waits until the model thread starts
    /// it: a failure before the start (load, gate, prompt) keeps its own status.
    /// A place among the requests queued or running: 429 when all are taken.
    fn take_slot(&self) -> Result<Slot, ApiError> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                429,
                "rate_limit_error",
                "the request queue is full; retry in a moment",
            )
            .code("queue_full"));
        }
        Ok(Slot(self.admitted.clone()))
    }

    async fn enqueue(&self, slot: Slot, model: usize, req: Request) -> Result<Queued, ApiError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(256);
        if self
            .queue
            .send(Work {
                req,
                model,
                events: tx,
            })
            .is_err()
        {
            return Err(ApiError::new(
                500,
                "server_error",
                "the model thread has stopped (a bug; restart the server and please report it)",
            ));
        }
        match rx.recv().await {
            Some(Event::Started) => Ok(Queued { rx, slot }),
            Some(Event::Failed(e)) => Err(e),
            _ => Err(ApiError::new(
                500,
                "server_error",
                "the model thread ended the request",
            )),
        }
    }
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(e.body())).into_response();
    if e.status == 429 || e.status == 503 {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

/// A request's log line, written once: by the handler as it answers, or — when the client
/// left before the answer — on drop, as a 499.
struct Logged {
    app: Shared,
    method: &'static str,
    path: &'static str,
    model: Option<String>,
    start: Instant,
    written: std::cell::Cell<bool>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if !self.written.get() {
            let v = self.line(499, None, Some("the client disconnected before the answer"));
            self.app.log(v);
        }
    }
}

impl Logged {
    fn new(app: &Shared, path: &'static str) -> Logged {
        Logged {
            app: app.clone(),
            method: "POST",
            path,
            model: None,
            start: Instant::now(),
            written: std::cell::Cell::new(false),
        }
    }

    fn log(&self, v: Value) {
        self.written.set(true);
        self.app.log(v);
    }

    /// Logs the request as refused with `e`, and answers it so.
    fn refuse(&self, e: ApiError) -> Response {
        self.log(self.line(e.status, None, Some(&e.message)));
        error_response(&e)
    }

    fn line(&self, status: u16, usage: Option<&Usage>, extra: Option<&str>) -> Value {
        let mut v = json!({"ts": mlxk::monitor::unix_now(), "method": self.method,
            "path": self.path, "status": status,
            "latency_s": (self.start.elapsed().as_secs_f64() * 1e4).round() / 1e4});
        if let Some(m) = &self.model {
            v["model"] = json!(m);
        }
        if let Some(u) = usage {
            v["prompt_tokens"] = json!(u.prompt_tokens);
            v["completion_tokens"] = json!(u.completion_tokens);
        }
        if let Some(e) = extra {
            v["error"] = json!(e);
        }
        v
    }
}

/// The `X-Mlxk-Test` header: the name of the request's report record, if given.
fn test_name(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("x-mlxk-test").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(t)) if !t.trim().is_empty() && t.len() <= 200 => Ok(Some(t.trim().into())),
        Some(_) => Err(ApiError::bad(
            "the X-Mlxk-Test header names a test: 1 to 200 visible characters",
        )),
    }
}

/// The checks every `/v1` request passes first: draining, the API key.
fn admit(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if app.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            503,
            "server_error",
            "the server is shutting down; retry on another instance",
        ));
    }
    if let Some(key) = &app.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return Err(ApiError::new(
                401,
                "authentication_error",
                "a wrong or missing API key: send Authorization: Bearer KEY",
            )
            .code("invalid_api_key"));
        }
    }
    Ok(())
}

async fn list_models(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = admit(&app, &headers) {
        return error_response(&e);
    }
    let data: Vec<Value> = app
        .models
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": "mlxk"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn health(State(app): State<Shared>) -> Response {
    let mem = mlxk::sys::SysRoot::from_env().memory().ok();
    let loaded = app.loaded.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let status = if app.draining.load(Ordering::SeqCst) {
        "draining"
    } else {
        "ok"
    };
    axum::Json(json!({"status": status,
        "models": app.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "loaded": loaded, "in_flight": app.in_flight.load(Ordering::SeqCst),
        "memory": mem.map(|m| json!({"available_bytes": m.mem_available_bytes,
            "total_bytes": m.total_bytes, "swap_used_bytes": m.swap_used_bytes}))}))
    .into_response()
}

async fn transcriptions(
    State(app): State<Shared>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    logged(hear(app, headers, form, false).await)
}

async fn translations(
    State(app): State<Shared>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    logged(hear(app, headers, form, true).await)
}

/// The parts of a multipart form; a body over the upload limit is 413, a broken form 400.
async fn read_form(
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Vec<audio::Field>, ApiError> {
    let broken = |status: u16, m: String| {
        if status == 413 {
            ApiError::new(
                413,
                "invalid_request_error",
                "the upload is over the server's limit (--max-upload-bytes)",
            )
            .code("body_too_large")
        } else {
            ApiError::bad(format!(
                "the body must be a multipart/form-data form with the audio as `file` ({m})"
            ))
        }
    };
    let mut form = form.map_err(|e| broken(e.status().as_u16(), e.body_text()))?;
    let mut fields = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(broken(e.status().as_u16(), e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| broken(e.status().as_u16(), e.body_text()))?;
        fields.push(audio::Field {
            name,
            file_name,
            data: data.to_vec(),
        });
    }
    Ok(fields)
}

async fn hear(
    app: Shared,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    translate: bool,
) -> Response {
    let mut l = Logged::new(
        &app,
        if translate {
            "/v1/audio/translations"
        } else {
            "/v1/audio/transcriptions"
        },
    );
    let _guard = InFlight::new(&app);
    if let Err(e) = admit(&app, &headers) {
        return l.refuse(e);
    }
    // The place first: an upload is read and decoded only when it may be served.
    let slot = match app.take_slot() {
        Ok(s) => s,
        Err(e) => return l.refuse(e),
    };
    let test = match test_name(&headers) {
        Ok(t) => t,
        Err(e) => return l.refuse(e),
    };
    let req = match read_form(form)
        .await
        .and_then(|f| audio::parse_transcription(f, translate))
    {
        Ok(r) => r,
        Err(e) => return l.refuse(e),
    };
    l.model = Some(req.model.clone());
    let model = match app.model_for(&req.model, &["audio"]) {
        Ok(m) => m,
        Err(e) => return l.refuse(e),
    };
    // Decoded here, off the model thread: a bad upload is answered at once.
    let decoded = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let name = std::path::PathBuf::from(&req.file_name);
        let mut req = req;
        let bytes = std::mem::take(&mut req.audio);
        mlxk_infer::audio::decode(&name, bytes).map(|a| Transcription {
            req,
            samples: a.samples,
            decode_s: t.elapsed().as_secs_f64(),
            test,
        })
    })
    .await;
    let work = match decoded {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            let code = mlxk::cli::ExitStatus::code(&e);
            return l.refuse(ApiError::bad(e.to_string()).code(code).param("file"));
        }
        Err(_) => {
            let e = ApiError::new(
                500,
                "server_error",
                "decoding the upload failed unexpectedly",
            );
            return l.refuse(e);
        }
    };
    let Queued {
        mut rx,
        slot: _slot,
    } = match app
        .enqueue(slot, model, Request::Transcribe(Box::new(work)))
        .await
    {
        Ok(q) => q,
        Err(e) => return l.refuse(e),
    };
    match rx.recv().await {
        Some(Event::Transcribed {
            content_type,
            body,
            audio_s,
        }) => {
            let mut line = l.line(200, None, None);
            line["audio_s"] = json!((audio_s * 1000.0).round() / 1000.0);
            l.log(line);
            ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Some(Event::Failed(e)) => l.refuse(e),
        _ => l.refuse(ApiError::new(
            500,
            "server_error",
            "the transcription ended unfinished",
        )),
    }
}

async fn chat(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    logged(complete(app, headers, body, true).await)
}

async fn completions(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    logged(complete(app, headers, body, false).await)
}

async fn complete(app: Shared, headers: HeaderMap, body: Bytes, chat: bool) -> Response {
    let mut l = Logged::new(
        &app,
        if chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        },
    );
    let guard = InFlight::new(&app);
    if let Err(e) = admit(&app, &headers) {
        return l.refuse(e);
    }
    let mut req = match wire::parse_request(&body, chat) {
        Ok(r) => r,
        Err(e) => return l.refuse(e),
    };
    req.test = match test_name(&headers) {
        Ok(t) => t,
        Err(e) => return l.refuse(e),
    };
    l.model = Some(req.model.clone());
    let backends: &[&str] = if req.image_parts.is_empty() {
        &["text", "vision"]
    } else {
        &["vision"]
    };
    let model = match app.model_for(&req.model, backends) {
        Ok(m) => m,
        Err(e) => return l.refuse(e),
    };

    let model_id = app.models[model].id.clone();
    let stream = req.stream;
    let include_usage = req.include_usage;
    let slot = match app.take_slot() {
        Ok(s) => s,
        Err(e) => return l.refuse(e),
    };
    // Pictures are decoded once the request holds a place, off the async threads and before
    // the model thread: a bad one is answered at once.
    if !req.image_parts.is_empty() {
        let decoded = tokio::task::spawn_blocking(move || {
            let r = wire::decode_pictures(&mut req);
            r.map(|_| req)
        })
        .await;
        req = match decoded {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return l.refuse(e),
            Err(_) => {
                return l.refuse(ApiError::new(
                    500,
                    "server_error",
                    "decoding the pictures failed unexpectedly (a bug; please report it)",
                ));
            }
        };
    }
    let Queued { mut rx, slot } = match app
        .enqueue(slot, model, Request::Generate(Box::new(req)))
        .await
    {
        Ok(q) => q,
        Err(e) => return l.refuse(e),
    };
    let n = app.next_id.fetch_add(1, Ordering::SeqCst);
    let id = format!("{}-{n}", if chat { "chatcmpl" } else { "cmpl" });
    let created = unix_now();
    if !stream {
        let (mut text, mut reasoning) = (String::new(), String::new());
        loop {
            match rx.recv().await {
                Some(Event::Delta {
                    text: t,
                    reasoning: r,
                }) => {
                    if r {
                        reasoning.push_str(&t)
                    } else {
                        text.push_str(&t)
                    }
                }
                Some(Event::Done { finish, usage }) => {
                    l.log(l.line(200, Some(&usage), None));
                    let mut body =
                        wire::completion(chat, &id, &model_id, created, &text, finish, &usage);
                    if !reasoning.is_empty() {
                        body["choices"][0]["message"]["reasoning_content"] = json!(reasoning);
                    }
                    return axum::Json(body).into_response();
                }
                Some(Event::Failed(e)) => return l.refuse(e),
                _ => {
                    let e = ApiError::new(500, "server_error", "the generation ended unfinished");
                    return l.refuse(e);
                }
            }
        }
    }
    // Streaming: chunks as they come; the log line and the in-flight count end with the stream.
    let (sse_tx, sse_rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let (_guard, _slot) = (guard, slot);
        let data = |v: Value| SseEvent::default().data(v.to_string());
        let mut first = true;
        let mut completion_tokens_seen = None;
        let mut status_note = None;
        loop {
            let ev = rx.recv().await;
            let out = match ev {
                Some(Event::Delta { text: t, reasoning }) => {
                    let mut c = wire::chunk(chat, &id, &model_id, created, Some(&t), first, None);
                    if reasoning {
                        // The thinking goes apart, as DeepSeek's and vLLM's servers send it.
                        let d = &mut c["choices"][0]["delta"];
                        if let Some(o) = d.as_object_mut() {
                            o.remove("content");
                        }
                        d["reasoning_content"] = json!(t);
                    }
                    first = false;
                    vec![data(c)]
                }
                Some(Event::Done { finish, usage }) => {
                    let mut v = vec![data(wire::chunk(
                        chat,
                        &id,
                        &model_id,
                        created,
                        None,
                        first,
                        Some(finish),
                    ))];
                    if include_usage {
                        v.push(data(wire::usage_chunk(
                            chat, &id, &model_id, created, &usage,
                        )));
                    }
                    v.push(SseEvent::default().data("[DONE]"));
                    completion_tokens_seen = Some(usage);
                    v
                }
                Some(Event::Failed(e)) => {
                    // No [DONE]: the text so far is not passed off as complete.
                    status_note = Some(e.message.clone());
                    vec![data(e.body())]
                }
                _ => {
                    status_note = Some("the generation ended unfinished".into());
                    vec![data(
                        ApiError::new(500, "server_error", "the generation ended unfinished")
                            .body(),
                    )]
                }
            };
            let end = completion_tokens_seen.is_some() || status_note.is_some();
            for e in out {
                // A client that has left, or left its stream unread for a minute, is gone:
                // dropping `rx` stops the generation at its next token and frees its place.
                match tokio::time::timeout(worker::STALLED, sse_tx.send(e)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        l.log(l.line(499, None, Some("the client disconnected")));
                        return;
                    }
                    Err(_) => {
                        l.log(l.line(499, None, Some("the client stopped reading for a minute")));
                        return;
                    }
                }
            }
            if end {
                break;
            }
        }
        l.log(l.line(200, completion_tokens_seen.as_ref(), status_note.as_deref()));
    });
    Sse::new(ReceiverStream::new(sse_rx).map(Ok::<_, std::convert::Infallible>)).into_response()
}

async fn unknown_route() -> Response {
    let e = ApiError::new(
        404,
        "not_found_error",
        "no such route: /v1/models, /v1/chat/completions, /v1/completions, \
         /v1/audio/transcriptions, /v1/audio/translations, /health",
    );
    error_response(&e)
}

/// Marks a response whose handler wrote its log line itself (with model and tokens).
#[derive(Clone, Copy)]
struct HandlerLogged;

fn logged(mut r: Response) -> Response {
    r.extensions_mut().insert(HandlerLogged);
    r
}

/// Around every request: a body over the limit gets an OpenAI-style 413, and every request
/// a handler did not log itself (models, health, an unknown route or method, a body too
/// large) gets its log line here.
async fn edges(
    State(app): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let upload = path.starts_with("/v1/audio/");
    let mut r = next.run(req).await;
    let by_handler = r.extensions().get::<HandlerLogged>().is_some();
    let mut error = None;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let e = ApiError::new(
            413,
            "invalid_request_error",
            if upload {
                "the upload is over the server's limit (--max-upload-bytes)"
            } else {
                "the request body is over the server's limit (--max-body-bytes)"
            },
        )
        .code("body_too_large");
        error = Some(e.message.clone());
        r = error_response(&e);
    } else if r.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = r.headers().get("allow").cloned();
        let e = ApiError::new(
            405,
            "invalid_request_error",
            format!(
                "{method} is not allowed on {path}{}",
                allow
                    .as_ref()
                    .and_then(|a| a.to_str().ok())
                    .map(|a| format!("; use {a}"))
                    .unwrap_or_default()
            ),
        );
        error = Some(e.message.clone());
        r = error_response(&e);
        if let Some(a) = allow {
            r.headers_mut().insert("allow", a);
        }
    } else if r.status() == StatusCode::NOT_FOUND {
        error = Some(format!("no such route: {path}"));
    }
    if !by_handler {
        let mut v = json!({"ts": mlxk::monitor::unix_now(), "method": method, "path": path,
            "status": r.status().as_u16(),
            "latency_s": (start.elapsed().as_secs_f64() * 1e4).round() / 1e4});
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        app.log(v);
    }
    r
}

/// Binds and serves `jobs` until SIGTERM or Ctrl-C, then drains and returns.
pub fn serve(jobs: Vec<(String, Job)>, opts: Options) -> Result<(), Failure> {
    let loaded: worker::Loaded = Arc::new(Mutex::new(None));
    let models = jobs
        .iter()
        .map(|(spec, j)| {
            let id = j.record.id.clone();
            let short = id.rsplit('/').next().unwrap_or(&id).to_string();
            Served {
                names: vec![id.clone(), short, spec.clone()],
                id,
                backend: j.gate.backend.clone(),
            }
        })
        .collect();
    let capacity = opts.settings.parallel.max(1) + opts.queue;
    let (queue, model_thread) = worker::spawn(
        jobs.into_iter().map(|(_, j)| j).collect(),
        opts.settings.clone(),
        loaded.clone(),
    );
    let log: Box<dyn Write + Send> = match &opts.log {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Failure::io(format!("cannot open --log {}: {e}", p.display())))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let app: Shared = Arc::new(App {
        models,
        queue,
        admitted: Arc::new(AtomicUsize::new(0)),
        capacity,
        api_key: opts.api_key.clone(),
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        loaded,
        log: Mutex::new(log),
    });
    let router = Router::new()
        .route("/v1/models", get(list_models))
        .route("/health", get(health))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route(
            "/v1/audio/transcriptions",
            post(transcriptions).layer(DefaultBodyLimit::max(opts.max_upload_bytes)),
        )
        .route(
            "/v1/audio/translations",
            post(translations).layer(DefaultBodyLimit::max(opts.max_upload_bytes)),
        )
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(app.clone(), edges))
        .with_state(app.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::io(format!("cannot start the server's runtime: {e}")))?;
    let served = rt.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            Failure::new(
                mlxk::cli::Exit::Usage,
                "bind",
                format!("cannot listen on {addr}: {e}; pick another --port"),
            )
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure::io(e.to_string()))?;
        // The handlers first, so a SIGTERM right after the address is printed still drains.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Failure::io(format!("cannot handle SIGTERM: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Failure::io(format!("cannot handle SIGINT: {e}")))?;
        eprintln!("mlxk-serve: listening on http://{local}");
        let drain = app.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                drain.draining.store(true, Ordering::SeqCst);
                eprintln!(
                    "mlxk-serve: draining: {} requests in flight (a second signal stops at once)",
                    drain.in_flight.load(Ordering::SeqCst)
                );
                while drain.in_flight.load(Ordering::SeqCst) > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                        _ = term.recv() => std::process::exit(130),
                        _ = int.recv() => std::process::exit(130),
                    }
                }
            })
            .await
            .map_err(|e| Failure::io(format!("the server failed: {e}")))?;
        Ok(())
    });
    // The model is released before the process exits: MLX must not be in use then.
    model_thread.stop();
    if served.is_ok() {
        eprintln!("mlxk-serve: stopped");
    }
    served
}
