//! The model thread: MLX arrays stay on one thread, which owns the loaded model (one at a time,
//! loaded on first use and kept for the next request — seeds/003 §5) and takes queued requests
//! in order. The gate runs again before every load (memory changes; 507 when it blocks). Up to
//! `parallel` generations on the loaded model run interleaved: a new request is prefilled as
//! soon as it arrives (its first token does not wait for the others to finish), then each
//! active generation decodes one token in turn. Text goes back to the request's handler token
//! by token; a handler that has gone (the client disconnected) stops its generation at its
//! next token, and one whose client stopped reading is paused, not waited for. A Whisper model serves the audio
//! routes through mlxk-hear's runner in the same way, a transcription at a time.
use crate::audio::{TranscribeRequest, transcription_body};
use crate::wire::{ApiError, GenRequest, Input, Usage};
use mlxk::cli::ExitStatus;
use mlxk::runner::{Job, ReportFile};
use mlxk::sys::SysRoot;
use mlxk_infer::generate::{FinishReason, GenerateOptions, Stepper};
use mlxk_infer::loader::TextModel;
use mlxk_infer::runner::Runner;
use mlxk_infer::runner::audio::{AudioModel, AudioRunner, Destination, transcription_facts};
use mlxk_infer::runner::text::{PromptSpec, TextRunner, assemble_prompt};
use mlxk_infer::runner::vision::VisionRunner;
use mlxk_infer::vision::{Prepared, Segment, VisionMessage, VisionModel};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// What the model thread tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// The prompt was accepted and prefill begins.
    Started,
    /// A piece of text; `reasoning` marks a reasoning model's thinking (chat only).
    Delta {
        text: String,
        reasoning: bool,
    },
    Done {
        finish: &'static str,
        usage: Usage,
    },
    /// A finished transcription: the response body in the requested format.
    Transcribed {
        content_type: &'static str,
        body: String,
        audio_s: f64,
    },
    Failed(ApiError),
}

/// A transcription request with its upload decoded (by the handler, before it queues: a bad
/// file is answered at once and never holds the model thread).
pub struct Transcription {
    pub req: TranscribeRequest,
    pub samples: Vec<f32>,
    pub decode_s: f64,
    /// The `X-Mlxk-Test` header: the report record's test name (`mlxk-serve::NAME`).
    pub test: Option<String>,
}

/// What a queued request asks for.
pub enum Request {
    Generate(Box<GenRequest>),
    Transcribe(Box<Transcription>),
}

impl Request {
    /// The backend that serves it (the gate's `backend` of the model it names).
    pub fn backend(&self) -> &'static str {
        match self {
            Request::Generate(_) => TextRunner::BACKEND,
            Request::Transcribe(_) => AudioRunner::BACKEND,
        }
    }
}

/// One queued request for the model `model` (an index into the served jobs).
pub struct Work {
    pub req: Request,
    pub model: usize,
    pub events: tokio::sync::mpsc::Sender<Event>,
}

/// The model in memory: a text model, a vision model or a Whisper model.
enum Model {
    Text(Box<TextModel>),
    Vision(Box<VisionModel>),
    Audio(Box<AudioModel>),
}

/// How models load and generate, and where report records go.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dequantize: bool,
    pub prefill_step: usize,
    pub default_max_tokens: usize,
    pub report: Option<ReportFile>,
    /// Generations run interleaved on the loaded model (1: one at a time, in order).
    pub parallel: usize,
}

/// The id of the model in memory, for `/health`.
pub type Loaded = Arc<Mutex<Option<String>>>;

/// The running model thread: [`ModelThread::stop`] lets it finish its request, release the
/// model and end, so nothing of MLX is in use when the process exits.
pub struct ModelThread {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl ModelThread {
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // A panic in the thread was answered as a 500 already; nothing more to report.
        let _ = self.handle.join();
    }
}

/// Starts the model thread. Its queue is not bounded here: the server admits only so many
/// requests (running + waiting) and answers 429 beyond them.
pub fn spawn(jobs: Vec<Job>, settings: Settings, loaded: Loaded) -> (Sender<Work>, ModelThread) {
    let (tx, rx) = channel::<Work>();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("mlxk-model".into())
        .spawn(move || serve(jobs, settings, rx, loaded, &flag))
        .expect("start the model thread");
    (tx, ModelThread { stop, handle })
}

fn runner(s: &Settings) -> TextRunner {
    TextRunner {
        prompts: Vec::new(),
        truncate_left: false,
        dequantize: s.dequantize,
        prefill_step: s.prefill_step,
        hide_reasoning: false,
        prompt_cache: None,
        verbose: false,
        cancel: None,
    }
}

fn audio_runner() -> AudioRunner {
    AudioRunner {
        inputs: Vec::new(),
        options: Default::default(),
        format: mlxk_infer::transcribe::formats::Format::Txt,
        destination: Destination::Stdout,
        verbose: false,
        cancel: None,
    }
}

fn serve(
    jobs: Vec<Job>,
    settings: Settings,
    rx: Receiver<Work>,
    loaded: Loaded,
    stop: &std::sync::atomic::AtomicBool,
) {
    let text = runner(&settings);
    let vision = VisionRunner {
        items: Vec::new(),
        text: text.clone(),
    };
    let audio = audio_runner();
    let mut current: Option<(usize, Model, f64)> = None;
    // Requests taken from the queue but not started: for the loaded model (`waiting`), and
    // the first one for another (`pending`). Kept here, so a panic does not lose them.
    let mut waiting: std::collections::VecDeque<Work> = std::collections::VecDeque::new();
    let mut pending: Option<Work> = None;
    loop {
        let w = match waiting.pop_front().or_else(|| pending.take()) {
            Some(w) => w,
            None => match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(w) => w,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        if w.events.is_closed() {
            continue; // the client left while it waited
        }
        if current.as_ref().map(|c| c.0) != Some(w.model) {
            if current.take().is_some() {
                mlx_rs::memory::clear_cache().ok();
            }
            *loaded.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let job = &jobs[w.model];
            // The gate again, on this moment's memory.
            let now = Job {
                record: job.record.clone(),
                gate: mlxk::runner::gate_here(&job.record, &SysRoot::from_env()),
            };
            // What the piped gate decided holds (a block stays a block), and so does now's.
            // A chat goes to a vision model's own backend (text only or with pictures).
            let backend = match (&w.req, job.gate.backend.as_deref()) {
                (Request::Generate(_), Some(VisionRunner::BACKEND)) => VisionRunner::BACKEND,
                _ => w.req.backend(),
            };
            let load = job
                .admit(backend, "mlxk-serve")
                .and_then(|_| now.admit(backend, "mlxk-serve"))
                .and_then(|_| {
                    if backend == AudioRunner::BACKEND {
                        audio
                            .load(&now)
                            .map(|(m, t)| (Model::Audio(Box::new(m)), t))
                    } else if backend == VisionRunner::BACKEND {
                        vision
                            .load(&now)
                            .map(|(m, t)| (Model::Vision(Box::new(m)), t))
                    } else {
                        text.load(&now).map(|(m, t)| (Model::Text(Box::new(m)), t))
                    }
                });
            match load {
                Ok((m, t)) => {
                    *loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(job.record.id.clone());
                    current = Some((w.model, m, t));
                }
                Err(f) => {
                    deliver(&w.events, Event::Failed(ApiError::from_failure(&f)));
                    continue;
                }
            }
        }
        let Some((i, model, load_s)) = &current else {
            continue;
        };
        let events = w.events.clone();
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (model, &w.req) {
                (Model::Text(m), Request::Generate(_)) => {
                    let ctx = TextContext {
                        runner: &text,
                        settings: &settings,
                        job: &jobs[*i],
                        index: *i,
                        model: m,
                        vision: None,
                        load_s: *load_s,
                    };
                    waiting.push_front(w);
                    serve_text(&ctx, &mut waiting, &mut pending, &rx, stop)
                }
                (Model::Vision(m), Request::Generate(_)) => {
                    let ctx = TextContext {
                        runner: &text,
                        settings: &settings,
                        job: &jobs[*i],
                        index: *i,
                        model: &m.text,
                        vision: Some((&vision, m)),
                        load_s: *load_s,
                    };
                    waiting.push_front(w);
                    serve_text(&ctx, &mut waiting, &mut pending, &rx, stop)
                }
                (Model::Audio(m), Request::Transcribe(t)) => {
                    hear(&audio, &settings, &jobs[*i], m, *load_s, t, &w.events);
                }
                // The handler checks the model's backend before queueing; a model is loaded for
                // the backend its gate chose, so this is a request routed wrongly.
                _ => {
                    deliver(
                        &w.events,
                        Event::Failed(ApiError::new(
                            501,
                            "not_implemented_error",
                            "this model does not serve this route: text models answer \
                         /v1/chat/completions and /v1/completions, Whisper models /v1/audio/*",
                        )),
                    );
                }
            }));
        match ran {
            Ok(()) => {}
            Err(_) => {
                // A bug, not the requests' fault: the one that came first hears 500, those
                // interleaved with it see their stream end unfinished (500 too); the model is
                // loaded afresh next time (its state may be half-updated) and the thread goes on.
                deliver(
                    &events,
                    Event::Failed(ApiError::new(
                        500,
                        "server_error",
                        "the generation failed unexpectedly (a bug; please report it)",
                    )),
                );
                current = None;
                *loaded.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
    }
}

/// The loaded text model and what its generations need.
struct TextContext<'a> {
    runner: &'a TextRunner,
    settings: &'a Settings,
    job: &'a Job,
    index: usize,
    model: &'a TextModel,
    /// A vision model (its text model is `model`) and its runner: chats go through them.
    vision: Option<(&'a VisionRunner, &'a VisionModel)>,
    load_s: f64,
}

/// One generation in flight.
struct Active<'m> {
    events: tokio::sync::mpsc::Sender<Event>,
    stepper: Stepper<'m>,
    /// Chat answers keep a reasoning model's thinking apart; a completion is the raw text.
    split: Option<mlxk_infer::reasoning::ReasoningSplitter>,
    facts: mlxk::report::run::RunFacts,
    /// Since when its client has left a full stream unread.
    stalled_since: Option<std::time::Instant>,
}

/// Serves generations on the loaded text model, interleaved, starting with those `waiting`,
/// until a request for another model (or for audio) arrives — it is left in `other` once the
/// generations in flight are done — or the server stops.
fn serve_text(
    ctx: &TextContext<'_>,
    waiting: &mut std::collections::VecDeque<Work>,
    other: &mut Option<Work>,
    rx: &Receiver<Work>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let parallel = ctx.settings.parallel.max(1);
    let mut active: Vec<Active<'_>> = Vec::new();
    let mut closed = false;
    loop {
        // Start what may start: a new request is prefilled before the others' next tokens.
        while active.len() < parallel {
            if let Some(w) = waiting.pop_front() {
                if let Some(a) = start_generation(ctx, w) {
                    active.push(a);
                }
                continue;
            }
            if other.is_some() || closed {
                break;
            }
            // Nothing running: wait for work; else only look.
            let next = if active.is_empty() {
                match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                    Ok(w) => Some(w),
                    Err(RecvTimeoutError::Timeout) => {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.try_recv() {
                    Ok(w) => Some(w),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        None
                    }
                }
            };
            match next {
                None => break,
                Some(w) if w.events.is_closed() => {} // the client left while it waited
                Some(w) if w.model == ctx.index && matches!(w.req, Request::Generate(_)) => {
                    waiting.push_back(w)
                }
                // Another model's turn comes once these are done (requests keep their order).
                Some(w) => *other = Some(w),
            }
        }
        if active.is_empty() {
            if other.is_some() || closed {
                return;
            }
            continue;
        }
        // One token of each generation in turn.
        let mut stepped = 0;
        let mut i = 0;
        while i < active.len() {
            let a = &mut active[i];
            let ended = if a.events.is_closed() {
                a.stepper.interrupt();
                true
            } else if a.events.capacity() < 8 {
                // Its client is not reading: paused; after a minute it counts as gone.
                let since = *a.stalled_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > STALLED {
                    a.stepper.interrupt();
                    true
                } else {
                    false
                }
            } else {
                a.stalled_since = None;
                stepped += 1;
                let (events, split) = (&a.events, &mut a.split);
                let mut on_text = |t: &str| Ok(send_text(events, split, t));
                match a.stepper.step(&mut on_text) {
                    Ok(more) => !more,
                    Err(e) => {
                        let mut a = active.swap_remove(i);
                        fail_run(ctx.settings, &mut a.facts, &a.events, e);
                        continue;
                    }
                }
            };
            if ended {
                let a = active.swap_remove(i);
                end_generation(ctx, a);
            } else {
                i += 1;
            }
        }
        if active.is_empty() && waiting.is_empty() {
            mlx_rs::memory::clear_cache().ok();
        }
        if stepped == 0 && !active.is_empty() {
            // Every client in flight has stopped reading: wait for one, not in a busy loop.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Sends a piece of text (split into reasoning and answer for a chat); false when the client
/// is gone.
fn send_text(
    events: &tokio::sync::mpsc::Sender<Event>,
    split: &mut Option<mlxk_infer::reasoning::ReasoningSplitter>,
    t: &str,
) -> bool {
    let pieces = match split.as_mut() {
        Some(s) => s.push(t),
        None => vec![(mlxk_infer::reasoning::Part::Answer, t.to_string())],
    };
    send_pieces(events, pieces)
}

fn send_pieces(
    events: &tokio::sync::mpsc::Sender<Event>,
    pieces: Vec<(mlxk_infer::reasoning::Part, String)>,
) -> bool {
    pieces.into_iter().all(|(part, text)| {
        deliver(
            events,
            Event::Delta {
                text,
                reasoning: part == mlxk_infer::reasoning::Part::Reasoning,
            },
        )
    })
}

/// Assembles the prompt and prefills it; a prompt the model cannot take is answered here.
fn start_generation<'m>(ctx: &TextContext<'m>, w: Work) -> Option<Active<'m>> {
    let Request::Generate(req) = w.req else {
        return None;
    };
    let model = ctx.model;
    let fail = |e: ApiError| {
        deliver(&w.events, Event::Failed(e));
        None
    };
    if let (Some((vr, v)), Input::Chat(messages)) = (ctx.vision, &req.input) {
        return start_vision(ctx, vr, v, messages, &req, w.events);
    }
    let spec = match &req.input {
        Input::Chat(m) => PromptSpec {
            messages: m.clone(),
            ..Default::default()
        },
        Input::Text(t) => PromptSpec {
            text: t.clone(),
            raw: true,
            ..Default::default()
        },
    };
    let context = model.context_length();
    let max_tokens = req.max_tokens.unwrap_or(ctx.settings.default_max_tokens);
    let prompt = match assemble_prompt(&model.tokenizer, &spec, context, max_tokens, req.truncate) {
        Ok(p) => p,
        Err(mlxk_infer::error::InferError::ContextOverflow {
            prompt, context, ..
        }) => {
            return fail(
                ApiError::bad(format!(
                    "the prompt is {prompt} tokens and the model's context is {context}; \
                     shorten it, or send \"truncation\": \"auto\" to keep its last tokens"
                ))
                .code("context_length_exceeded"),
            );
        }
        // The template refused the conversation (roles out of order, a system message it
        // does not take): the request's fault.
        Err(mlxk_infer::error::InferError::Tokenizer(m)) => {
            return fail(ApiError::bad(m).param("messages"));
        }
        Err(e) => return fail(ApiError::from_failure(&e.failure())),
    };
    if !deliver(&w.events, Event::Started) {
        return None;
    }
    let mut facts = request_facts(ctx.runner, model, ctx.job, ctx.load_s, req.test.as_deref());
    let opts = GenerateOptions {
        max_tokens,
        sampling: req.sampling.clone(),
        stop_strings: req.stop.clone(),
        prefill_step: ctx.settings.prefill_step,
        context_length: context,
        cancel: None,
    };
    let split = matches!(req.input, Input::Chat(_))
        .then(|| mlxk_infer::reasoning::ReasoningSplitter::new(prompt.opens_thinking));
    match Stepper::start(
        &model.decoder,
        &model.tokenizer,
        &prompt.ids,
        opts,
        model.decoder.new_cache(),
        0,
    ) {
        Ok(stepper) => Some(Active {
            events: w.events.clone(),
            stepper,
            split,
            facts,
            stalled_since: None,
        }),
        Err(e) => {
            fail_run(ctx.settings, &mut facts, &w.events, e);
            None
        }
    }
}

/// A chat with a vision model: its pictures processed, the conversation rendered with them
/// (as mlxk-see renders a prompt), the tower's features in place, then the prefill; a picture
/// or a prompt the model cannot take is answered here (400; nothing is cut to fit).
fn start_vision<'m>(
    ctx: &TextContext<'m>,
    vr: &VisionRunner,
    v: &'m VisionModel,
    messages: &[mlxk_infer::tokenizer::Message],
    req: &GenRequest,
    events: tokio::sync::mpsc::Sender<Event>,
) -> Option<Active<'m>> {
    let fail = |e: ApiError| {
        deliver(&events, Event::Failed(e));
        None
    };
    let started = std::time::Instant::now();
    let mut prepared: Vec<Prepared> = Vec::with_capacity(req.images.len());
    for ((param, _), img) in req.image_parts.iter().zip(&req.images) {
        match v.prepare(img) {
            Ok(p) => prepared.push(p),
            Err(why) => {
                return fail(
                    ApiError::bad(format!("{param}: {why}"))
                        .code("invalid_image")
                        .param(param),
                );
            }
        }
    }
    // Each message's parts in the order the client sent them.
    let chat: Vec<VisionMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| VisionMessage {
            role: m.role.clone(),
            parts: match req.parts.get(i) {
                Some(ps) => ps
                    .iter()
                    .map(|p| match p {
                        Some(t) => Segment::Text(t.clone()),
                        None => Segment::Picture,
                    })
                    .collect(),
                None => vec![Segment::Text(m.content.clone())],
            },
            what: format!("messages[{i}]"),
        })
        .collect();
    let ids = match v.chat_ids(&chat, &prepared) {
        Ok(ids) => ids,
        Err(
            mlxk_infer::error::InferError::Options(m) | mlxk_infer::error::InferError::Tokenizer(m),
        ) => {
            return fail(ApiError::bad(m).param("messages"));
        }
        Err(e) => return fail(ApiError::from_failure(&e.failure())),
    };
    let model = ctx.model;
    let context = model.context_length();
    if let Some(c) = context
        && ids.len() >= c
    {
        let image_tokens: usize = prepared.iter().map(|p| v.image_tokens(p)).sum();
        let why = if prepared.is_empty() {
            "shorten it".to_string()
        } else {
            format!(
                "{image_tokens} of them the pictures'; shorten it or send fewer or smaller pictures"
            )
        };
        return fail(
            ApiError::bad(format!(
                "the prompt is {} tokens and the model's context is {c}: {why} (a vision \
                 model's chat is never cut, \"truncation\": \"auto\" or not)",
                ids.len()
            ))
            .code("context_length_exceeded"),
        );
    }
    if !deliver(&events, Event::Started) {
        return None;
    }
    let mut facts = request_facts(vr, v, ctx.job, ctx.load_s, req.test.as_deref());
    let (embeddings, caches) = match v.ready(&ids, &prepared) {
        Ok(r) => r,
        Err(e) => {
            fail_run(ctx.settings, &mut facts, &events, e);
            return None;
        }
    };
    facts
        .extra
        .push(("image_encode_s".into(), started.elapsed().as_secs_f64()));
    let opts = GenerateOptions {
        max_tokens: req.max_tokens.unwrap_or(ctx.settings.default_max_tokens),
        sampling: req.sampling.clone(),
        stop_strings: req.stop.clone(),
        prefill_step: ctx.settings.prefill_step,
        context_length: context,
        cancel: None,
    };
    match Stepper::start_embedded(
        &model.decoder,
        &model.tokenizer,
        &ids,
        embeddings.as_ref(),
        opts,
        caches,
        0,
    ) {
        Ok(stepper) => Some(Active {
            events: events.clone(),
            stepper,
            split: Some(mlxk_infer::reasoning::ReasoningSplitter::new(false)),
            facts,
            stalled_since: None,
        }),
        Err(e) => {
            fail_run(ctx.settings, &mut facts, &events, e);
            None
        }
    }
}

/// A generation that ended: the held-back text, the report record, then the end for its client.
fn end_generation(ctx: &TextContext<'_>, a: Active<'_>) {
    let Active {
        events,
        stepper,
        mut split,
        mut facts,
        ..
    } = a;
    let mut on_text = |t: &str| Ok(send_text(&events, &mut split, t));
    let g = stepper.finish(&mut on_text);
    if let Some(s) = split.as_mut() {
        send_pieces(&events, s.finish());
    }
    match g {
        Ok((g, _caches)) => {
            mlxk_infer::runner::text::generation_facts(&mut facts, &g);
            let gone = g.finish_reason == FinishReason::Interrupted;
            if gone {
                facts.error = Some((
                    "client_disconnected".into(),
                    "the client went away; the generation was stopped".into(),
                ));
            } else {
                facts.passed = true;
            }
            // The report is written before the client hears the end, so a shutdown right
            // after the last answer cannot lose its record.
            report(ctx.settings, &mut facts);
            if !gone {
                deliver(
                    &events,
                    Event::Done {
                        finish: g.finish_reason.as_str(),
                        usage: Usage {
                            prompt_tokens: g.prompt_tokens,
                            completion_tokens: g.tokens.len(),
                        },
                    },
                );
            }
        }
        Err(e) => fail_run(ctx.settings, &mut facts, &events, e),
    }
}

/// One transcription: the upload decoded (a bad file is a 400 naming it), transcribed, and
/// answered in the requested format; a client that leaves stops it after the current window.
fn hear(
    audio_runner: &AudioRunner,
    s: &Settings,
    job: &Job,
    model: &AudioModel,
    load_s: f64,
    work: &Transcription,
    events: &tokio::sync::mpsc::Sender<Event>,
) {
    let req = &work.req;
    let started = std::time::Instant::now();
    if !deliver(events, Event::Started) {
        return;
    }
    let mut facts = request_facts(audio_runner, model, job, load_s, work.test.as_deref());
    let mut progress =
        |_: usize, _: usize, _: &[mlxk_infer::transcribe::Segment]| !events.is_closed();
    let t = mlxk_infer::transcribe::transcribe(
        &model.whisper,
        &model.tokenizer,
        &work.samples,
        &req.options,
        &mut progress,
        None,
    );
    match t {
        Ok((transcript, cancelled)) => {
            let wall = started.elapsed().as_secs_f64() + work.decode_s;
            transcription_facts(&mut facts, &transcript, wall, work.decode_s, cancelled);
            if cancelled {
                facts.error = Some((
                    "client_disconnected".into(),
                    "the client went away; the transcription was stopped".into(),
                ));
            } else {
                facts.passed = true;
            }
            report(s, &mut facts);
            if !cancelled {
                let (content_type, body) = transcription_body(req, &transcript);
                deliver(
                    events,
                    Event::Transcribed {
                        content_type,
                        body,
                        audio_s: transcript.duration_s,
                    },
                );
            }
        }
        Err(e) => fail_run(s, &mut facts, events, e),
    }
}

/// The report facts a request starts from: the job's, the model's, and its test name
/// (`mlxk-serve::NAME` from the `X-Mlxk-Test` header).
fn request_facts<R: Runner>(
    runner: &R,
    model: &R::Model,
    job: &Job,
    load_s: f64,
    test: Option<&str>,
) -> mlxk::report::run::RunFacts {
    let mut facts = mlxk_infer::runner::job_facts("mlxk-serve", R::BACKEND, job);
    if let Some(t) = test {
        facts.tool = format!("mlxk-serve::{t}");
    }
    facts.load_time_s = Some(load_s);
    runner.describe(model, job, &mut facts);
    facts
}

/// A run that failed: its report record says why, then its client hears it.
fn fail_run(
    s: &Settings,
    facts: &mut mlxk::report::run::RunFacts,
    events: &tokio::sync::mpsc::Sender<Event>,
    e: mlxk_infer::error::InferError,
) {
    let f = e.failure();
    facts.error = Some((f.code.into(), f.message.clone()));
    report(s, facts);
    deliver(events, Event::Failed(ApiError::from_failure(&f)));
}

fn report(s: &Settings, facts: &mut mlxk::report::run::RunFacts) {
    mlxk_infer::runner::end_facts(facts);
    if let Some(r) = &s.report
        && let Err(f) = r.append(&mlxk::report::run::record(facts))
    {
        eprintln!("mlxk-serve: {}", f.message);
    }
}

/// How long a client may leave its stream unread before it counts as gone.
pub const STALLED: std::time::Duration = std::time::Duration::from_secs(60);

/// Hands an event to the request's handler; false when the client is gone — it hung up, or
/// left a full stream unread for a minute (the model thread is never held by one reader).
fn deliver(events: &tokio::sync::mpsc::Sender<Event>, ev: Event) -> bool {
    use tokio::sync::mpsc::error::TrySendError;
    let start = std::time::Instant::now();
    let mut ev = ev;
    loop {
        match events.try_send(ev) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(back)) => {
                if start.elapsed() > STALLED {
                    return false;
                }
                ev = back;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}
