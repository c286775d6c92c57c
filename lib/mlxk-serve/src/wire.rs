//! The OpenAI wire format: requests read strictly (a field of the wrong type, an option we do not
//! implement, `n` other than 1: 400, never ignored), responses and errors in the shapes the
//! official clients parse, and the seed's status contract (seeds/003 §6: 400 bad input, 404
//! unknown model, 501 a feature the backend lacks, 507 blocked by the memory gate, 500 else;
//! 429 for a full queue, 503 while draining, 401 for a wrong API key).
use mlxk_infer::sampling::Sampling;
use mlxk_infer::tokenizer::Message;
use mlxk_infer::vision::image::Rgb8;
use serde_json::{Map, Value, json};

/// An error as the server answers it: status and an OpenAI-style error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `server_error`, …
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, p: &str) -> ApiError {
        self.param = Some(p.to_string());
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind,
            "param": self.param, "code": self.code}})
    }

    /// A runner failure as the seed maps it: unusable here → 501, blocked → 507, a bad request
    /// (the prompt over the context, bad options) → 400, anything else → 500.
    pub fn from_failure(f: &mlxk::cli::Failure) -> ApiError {
        use mlxk::cli::Exit;
        match f.exit {
            Exit::Unusable => ApiError::new(501, "not_implemented_error", &f.message).code(f.code),
            Exit::Blocked => {
                ApiError::new(507, "insufficient_storage_error", &f.message).code(f.code)
            }
            Exit::Usage => ApiError::bad(&f.message).code(f.code),
            Exit::NotFound => ApiError::new(404, "not_found_error", &f.message).code(f.code),
            _ => ApiError::new(500, "server_error", &f.message).code(f.code),
        }
    }
}

/// What a request asks to be generated from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `/v1/chat/completions`: through the chat template.
    Chat(Vec<Message>),
    /// `/v1/completions`: the prompt as is.
    Text(String),
}

/// A parsed completion request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub model: String,
    pub input: Input,
    pub max_tokens: Option<usize>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// `"truncation": "auto"`: a prompt over the context loses its first tokens instead of 400.
    pub truncate: bool,
    /// The `X-Mlxk-Test` header: the name of the test in `--report` records
    /// (`mlxk-serve::NAME`), for benchmark harnesses that send a prompt set.
    pub test: Option<String>,
    /// The image parts of a chat's messages (where each is, and the part), in order (none for
    /// a completion). [`decode_pictures`] reads them into `images` once the model is known to
    /// take pictures.
    pub image_parts: Vec<(String, Value)>,
    pub images: Vec<Rgb8>,
    /// Each chat message's parts in the order sent: text, or `None` for a picture.
    pub parts: Vec<Vec<Option<String>>>,
}

/// Decodes a request's image parts into its `images` (a 400 naming the first bad one); the
/// parts' data is dropped, their places kept.
pub fn decode_pictures(req: &mut GenRequest) -> Result<(), ApiError> {
    req.images = req
        .image_parts
        .iter()
        .map(|(param, p)| picture(p, param))
        .collect::<Result<_, _>>()?;
    for (_, p) in &mut req.image_parts {
        *p = Value::Null;
    }
    Ok(())
}

/// Fields every completion request may carry; others are refused.
const COMMON: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "truncation",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
];

fn number(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("`{k}` must be a number")).param(k)),
    }
}

fn count(o: &Map<String, Value>, k: &str) -> Result<Option<u64>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("`{k}` must be a whole number ≥ 0")).param(k)),
    }
}

fn flag(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad(format!("`{k}` must be true or false")).param(k)),
    }
}

/// OpenAI's `detail` (how finely to look) is not ours to choose: only `auto` is taken.
fn only_auto_detail(part: &Value, param: &str) -> Result<(), ApiError> {
    match part.get("detail") {
        None | Some(Value::Null) => Ok(()),
        Some(d) if d == "auto" => Ok(()),
        Some(_) => Err(ApiError::bad(
            "`detail` other than \"auto\" is not supported: pictures are sized as the \
             model's processor says; leave it out",
        )
        .param(param)),
    }
}

/// A picture of a message: an inline `data:` URL, decoded (an image URL is not fetched; a
/// picture that does not decode is a 400 naming the part).
fn picture(p: &Value, param: &str) -> Result<Rgb8, ApiError> {
    only_auto_detail(p, &format!("{param}.detail"))?;
    let url = match p.get("image_url") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => {
            only_auto_detail(&p["image_url"], &format!("{param}.image_url.detail"))?;
            if let Some(k) = o.keys().find(|k| !["url", "detail"].contains(&k.as_str())) {
                return Err(ApiError::bad(format!(
                    "`image_url.{k}` is not supported by this server; leave it out"
                ))
                .param(param));
            }
            o.get("url").and_then(Value::as_str)
        }
        _ => p.get("image").and_then(Value::as_str),
    }
    .ok_or_else(|| {
        ApiError::bad("an image part needs `image_url.url`, a data: URL of the picture")
            .param(param)
    })?;
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(ApiError::bad(
            "image URLs are not fetched: send the picture inline as a data: URL \
             (data:image/png;base64,…)",
        )
        .code("image_url_not_supported")
        .param(param));
    };
    let data = rest
        .split_once(',')
        .filter(|(meta, _)| meta.ends_with(";base64"))
        .map(|(_, d)| d)
        .ok_or_else(|| {
            ApiError::bad("a data: URL picture must be base64: data:image/png;base64,…")
                .code("invalid_image")
                .param(param)
        })?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            ApiError::bad(format!("the picture's data: URL is not valid base64 ({e})"))
                .code("invalid_image")
                .param(param)
        })?;
    mlxk_infer::vision::image::decode(&bytes, param)
        .map_err(|e| ApiError::bad(e.message).code(e.code).param(param))
}

/// A message's `content` read: its text (a string, or its `text` parts joined), its image
/// parts (for vision models) with where each is, and its parts in order (text, or `None`
/// for a picture).
type Content = (String, Vec<(String, Value)>, Vec<Option<String>>);

fn content(v: &Value, i: usize) -> Result<Content, ApiError> {
    let param = format!("messages[{i}].content");
    match v {
        Value::String(s) => Ok((s.clone(), Vec::new(), vec![Some(s.clone())])),
        Value::Array(parts) => {
            let mut text = String::new();
            let mut images = Vec::new();
            let mut order = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::bad("a text part needs a string `text`").param(&param)
                        })?;
                        text.push_str(t);
                        order.push(Some(t.to_string()));
                    }
                    Some("image_url" | "input_image" | "image") => {
                        images.push((format!("{param}[{j}]"), p.clone()));
                        order.push(None);
                    }
                    Some("input_audio") => {
                        return Err(ApiError::new(
                            501,
                            "not_implemented_error",
                            "audio content is not supported in chat messages; POST the audio \
                             to /v1/audio/transcriptions with a Whisper model",
                        )
                        .code("audio_not_supported")
                        .param(&param));
                    }
                    _ => {
                        return Err(ApiError::bad(
                            "a content part needs `type` \"text\" (or an image, for vision models)",
                        )
                        .param(&param));
                    }
                }
            }
            Ok((text, images, order))
        }
        _ => Err(ApiError::bad("`content` must be a string or a list of parts").param(&param)),
    }
}

/// Reads a `/v1/chat/completions` (`chat`) or `/v1/completions` body.
pub fn parse_request(body: &[u8], chat: bool) -> Result<GenRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad("the body must be a JSON object"))?;
    let own: &[&str] = if chat {
        &["messages", "max_completion_tokens"]
    } else {
        &["prompt"]
    };
    if let Some(k) = o
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(ApiError::bad(format!(
            "`{k}` is not supported by this server; leave it out"
        ))
        .param(k));
    }
    let model = match o.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                ApiError::bad("`model` is required: a model id from GET /v1/models").param("model"),
            );
        }
    };
    let (mut image_parts, mut parts) = (Vec::new(), Vec::new());
    let input = if chat {
        let msgs = o
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::bad("`messages` must be a list").param("messages"))?;
        if msgs.is_empty() {
            return Err(ApiError::bad("`messages` is empty").param("messages"));
        }
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            // What clients send back of an answer they got (an assistant message as the
            // server returned it) is taken: `reasoning_content` (past thinking, which the chat
            // templates leave out), a participant `name`, and empty tool/refusal fields.
            // Anything else that would change the answer is refused, not dropped.
            if let Some((k, _)) = m.as_object().and_then(|o| {
                o.iter().find(|(k, v)| match k.as_str() {
                    "role" | "content" | "reasoning_content" | "name" => false,
                    "refusal" | "tool_calls" | "function_call" | "audio" | "annotations" => {
                        !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty()))
                    }
                    _ => true,
                })
            }) {
                return Err(ApiError::bad(format!(
                    "`messages[{i}].{k}` is not supported by this server; leave it out"
                ))
                .param(&format!("messages[{i}].{k}")));
            }
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad("every message needs a string `role`")
                    .param(&format!("messages[{i}].role"))
            })?;
            let role = if role == "developer" { "system" } else { role };
            if !["system", "user", "assistant"].contains(&role) {
                return Err(ApiError::bad(format!(
                    "role `{role}` is not supported (system, developer, user, assistant)"
                ))
                .param(&format!("messages[{i}].role")));
            }
            let (text, pics, order) = content(m.get("content").unwrap_or(&Value::Null), i)?;
            parts.push(order);

            if !pics.is_empty() && role != "user" {
                return Err(ApiError::bad("pictures go in user messages")
                    .param(&format!("messages[{i}].content")));
            }
            image_parts.extend(pics);
            out.push(Message {
                role: role.into(),
                content: text,
            });
        }
        Input::Chat(out)
    } else {
        match o.get("prompt") {
            Some(Value::String(p)) if !p.is_empty() => Input::Text(p.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Input::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            Some(Value::Array(_)) => {
                return Err(
                    ApiError::bad("one prompt per request (a list of one string at most)")
                        .param("prompt"),
                );
            }
            _ => return Err(ApiError::bad("`prompt` must be a non-empty string").param("prompt")),
        }
    };
    let max_tokens = match (count(o, "max_tokens")?, count(o, "max_completion_tokens")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "give `max_tokens` or `max_completion_tokens`, not both",
            ));
        }
        (a, b) => a.or(b).map(|n| n as usize),
    };
    if let Some(n) = count(o, "n")?
        && n != 1
    {
        return Err(ApiError::bad("only `n` = 1 is supported").param("n"));
    }
    for k in ["frequency_penalty", "presence_penalty"] {
        if number(o, k)?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::bad(format!(
                "`{k}` is not supported (use `repetition_penalty`)"
            ))
            .param(k));
        }
    }
    if flag(o, "logprobs")? {
        return Err(ApiError::bad("`logprobs` is not supported").param("logprobs"));
    }
    let mut sampling = Sampling::default();
    if let Some(t) = number(o, "temperature")? {
        sampling.temp = t as f32;
    }
    if let Some(t) = number(o, "top_p")? {
        sampling.top_p = t as f32;
    }
    if let Some(k) = count(o, "top_k")? {
        sampling.top_k = k as usize;
    }
    if let Some(m) = number(o, "min_p")? {
        sampling.min_p = m as f32;
    }
    if let Some(r) = number(o, "repetition_penalty")? {
        sampling.repetition_penalty = Some(r as f32);
    }
    sampling.seed = match count(o, "seed")? {
        Some(s) => s,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    sampling
        .validate()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            return Err(
                ApiError::bad("`stop` must be a string or a list of strings").param("stop"),
            );
        }
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("a stop string is empty").param("stop"));
    }
    let stream = flag(o, "stream")?;
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => {
            if let Some(k) = so.keys().find(|k| *k != "include_usage") {
                return Err(ApiError::bad(format!(
                    "`stream_options.{k}` is not supported"
                )));
            }
            flag(so, "include_usage")?
        }
        Some(_) => {
            return Err(ApiError::bad("`stream_options` must be an object").param("stream_options"));
        }
    };
    let truncate = match o.get("truncation") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "auto" => true,
        Some(Value::String(s)) if s == "disabled" => false,
        Some(_) => {
            return Err(
                ApiError::bad("`truncation` is \"auto\" or \"disabled\"").param("truncation")
            );
        }
    };
    Ok(GenRequest {
        model,
        input,
        max_tokens,
        sampling,
        stop,
        stream,
        include_usage,
        truncate,
        test: None,
        image_parts,
        images: Vec::new(),
        parts,
    })
}

/// How a finished generation is described to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens})
    }
}

/// The non-streamed response.
pub fn completion(
    chat: bool,
    id: &str,
    model: &str,
    created: u64,
    text: &str,
    finish: &str,
    usage: &Usage,
) -> Value {
    let choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": finish, "logprobs": null})
    } else {
        json!({"index": 0, "text": text, "finish_reason": finish, "logprobs": null})
    };
    json!({"id": id, "object": if chat { "chat.completion" } else { "text_completion" },
        "created": created, "model": model, "choices": [choice], "usage": usage.json()})
}

/// One streamed chunk: a piece of text (the first chat chunk carries the role), or the end
/// (`finish` set, no text), or — with `include_usage` — the last chunk with no choices.
pub fn chunk(
    chat: bool,
    id: &str,
    model: &str,
    created: u64,
    piece: Option<&str>,
    first: bool,
    finish: Option<&str>,
) -> Value {
    let choice = if chat {
        let mut delta = json!({});
        if first {
            delta["role"] = json!("assistant");
        }
        if let Some(p) = piece {
            delta["content"] = json!(p);
        }
        json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
    } else {
        json!({"index": 0, "text": piece.unwrap_or(""), "finish_reason": finish, "logprobs": null})
    };
    json!({"id": id, "object": if chat { "chat.completion.chunk" } else { "text_completion" },
        "created": created, "model": model, "choices": [choice]})
}

pub fn usage_chunk(chat: bool, id: &str, model: &str, created: u64, usage: &Usage) -> Value {
    json!({"id": id, "object": if chat { "chat.completion.chunk" } else { "text_completion" },
        "created": created, "model": model, "choices": [], "usage": usage.json()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<GenRequest, ApiError> {
        parse_request(body.as_bytes(), true)
    }

    #[test]
    fn a_chat_request_is_read_with_its_options() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"Hi"}]}],"max_completion_tokens":5,
            "temperature":0,"seed":3,"stop":"x","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(
            r.input,
            Input::Chat(vec![
                Message {
                    role: "system".into(),
                    content: "be brief".into()
                },
                Message {
                    role: "user".into(),
                    content: "Hi".into()
                }
            ])
        );
        assert_eq!(
            (
                r.max_tokens,
                r.sampling.seed,
                r.stop.clone(),
                r.stream,
                r.include_usage
            ),
            (Some(5), 3, vec!["x".to_string()], true, true)
        );
    }

    #[test]
    fn unknown_keys_in_a_message_are_refused_not_dropped() {
        let e = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi","lang":"de"}]}"#)
            .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].lang"))
        );
        let e = chat(
            r#"{"model":"m","messages":[{"role":"assistant","content":"x",
            "tool_calls":[{"id":"1"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls"));
        // An answer sent back as the server gave it is taken.
        chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"},
            {"role":"assistant","content":"hello","reasoning_content":"greet","refusal":null,
            "tool_calls":[]},{"role":"user","content":"again"}]}"#,
        )
        .unwrap();
    }

    #[test]
    fn bad_requests_are_400_naming_the_field_and_pictures_are_read() {
        let status = |b: &str| chat(b).unwrap_err();
        let e = status("{not json");
        assert_eq!(e.status, 400);
        let e =
            status(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"9"}"#);
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        let e = status(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#);
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        let e = status(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#);
        assert!(e.message.contains("`tools` is not supported"), "{e:?}");
        let e = status(r#"{"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("model"));
        // Pictures: read with the request, decoded once a vision model takes them.
        let mut r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},
            {"type":"image_url","image_url":{"url":"data:"}}]},{"role":"assistant","content":"b"},
            {"role":"user","content":[{"type":"image_url","image_url":"data:image/png;base64,AA=="}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.image_parts.len(), 2);
        assert_eq!(
            r.parts,
            [
                vec![Some("a".to_string()), None],
                vec![Some("b".to_string())],
                vec![None]
            ]
        );
        let e = decode_pictures(&mut r).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.param.as_deref()),
            (400, Some("invalid_image"), Some("messages[0].content[1]"))
        );
        let picture_of = |url: &str| {
            let mut r = chat(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{url}}}]}}]}}"#
            ))?;
            decode_pictures(&mut r).map(|_| r.images.len())
        };
        let e = picture_of(r#"{"url":"https://example.com/a.png"}"#).unwrap_err();
        assert_eq!((e.status, e.code), (400, Some("image_url_not_supported")));
        let e = picture_of(r#"{"url":"data:image/png;base64,@@","detail":"auto"}"#).unwrap_err();
        assert!(e.message.contains("base64"), "{e:?}");
        let e = picture_of(r#"{"url":"data:image/png;base64,AA==","detail":"high"}"#).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.detail")
        );
        let e = picture_of(r#""data:image/png;base64,AAAA""#).unwrap_err();
        assert_eq!((e.status, e.code.is_some()), (400, true));
        let e = status(
            r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"image_url","image_url":"data:x"}]}]}"#,
        );
        assert!(e.message.contains("user messages"), "{e:?}");
        let e = status(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#);
        assert_eq!(e.status, 400);
        assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        let e = parse_request(br#"{"model":"m","prompt":["a","b"]}"#, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(parse_request(br#"{"model":"m","prompt":"a","messages":[]}"#, false).is_err());
    }

    #[test]
    fn responses_have_the_shapes_clients_parse() {
        let u = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let c = completion(true, "chatcmpl-1", "m", 7, "hi", "stop", &u);
        assert_eq!(c["choices"][0]["message"]["content"], "hi");
        assert_eq!(c["usage"]["total_tokens"], 5);
        let first = chunk(true, "i", "m", 7, Some("h"), true, None);
        assert_eq!(
            first["choices"][0]["delta"],
            json!({"role": "assistant", "content": "h"})
        );
        let end = chunk(true, "i", "m", 7, None, false, Some("length"));
        assert_eq!(end["choices"][0]["delta"], json!({}));
        assert_eq!(end["choices"][0]["finish_reason"], "length");
        assert_eq!(usage_chunk(false, "i", "m", 7, &u)["choices"], json!([]));
    }
}
