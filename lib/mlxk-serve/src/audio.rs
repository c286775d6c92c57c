//! The OpenAI audio routes' wire format: `POST /v1/audio/transcriptions` and
//! `/v1/audio/translations` take a multipart form (the audio `file`, `model`, and optional
//! `language`, `prompt`, `response_format`, `temperature`, `timestamp_granularities[]`), read as
//! strictly as the JSON routes (an unknown or repeated field, a wrong value: 400 naming it), and
//! answer `json`, `text`, `srt`, `vtt` or `verbose_json` in the shapes the official clients parse.
use crate::wire::ApiError;
use mlxk_infer::transcribe::decoding::Task;
use mlxk_infer::transcribe::formats::{self, Format};
use mlxk_infer::transcribe::tokenizer::{language_code, language_name};
use mlxk_infer::transcribe::{TranscribeOptions, Transcript, temperature_schedule};
use serde_json::{Value, json};

/// One part of the multipart form.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// The part's `filename`, for the file.
    pub file_name: Option<String>,
    pub data: Vec<u8>,
}

/// `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

/// A parsed transcription or translation request.
#[derive(Debug, Clone)]
pub struct TranscribeRequest {
    pub model: String,
    /// The upload's file name (for error messages and the log).
    pub file_name: String,
    pub audio: Vec<u8>,
    pub options: TranscribeOptions,
    pub format: ResponseFormat,
    /// `timestamp_granularities[]`: which of segments and words verbose_json carries.
    pub segments: bool,
    pub words: bool,
}

fn text(f: &Field) -> Result<String, ApiError> {
    String::from_utf8(f.data.clone())
        .map(|s| s.trim().to_string())
        .map_err(|_| ApiError::bad(format!("`{}` must be UTF-8 text", f.name)).param(&f.name))
}

/// Reads the form of `/v1/audio/transcriptions` (`translate` false) or `/v1/audio/translations`.
pub fn parse_transcription(
    fields: Vec<Field>,
    translate: bool,
) -> Result<TranscribeRequest, ApiError> {
    let route = if translate {
        "translations"
    } else {
        "transcriptions"
    };
    let mut own: Vec<&str> = vec![
        "file",
        "model",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "timestamp_granularities",
        "stream",
    ];
    if !translate {
        own.push("language");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut file = None;
    let (mut model, mut language, mut prompt, mut format, mut temperature) =
        (None, None, None, None, None);
    let mut granularities = Vec::new();
    for f in fields {
        if !own.contains(&f.name.as_str()) {
            return Err(ApiError::bad(format!(
                "`{}` is not supported by /v1/audio/{route}; leave it out",
                f.name
            ))
            .param(&f.name));
        }
        let list = f.name.starts_with("timestamp_granularities");
        if !list && seen.contains(&f.name) {
            return Err(ApiError::bad(format!("`{}` is given twice", f.name)).param(&f.name));
        }
        seen.push(f.name.clone());
        match f.name.as_str() {
            "file" => file = Some(f),
            "model" => model = Some(text(&f)?),
            "language" => language = Some(text(&f)?),
            "prompt" => prompt = Some(text(&f)?),
            "response_format" => format = Some(text(&f)?),
            "temperature" => temperature = Some(text(&f)?),
            "stream" => {
                let v = text(&f)?;
                if v != "false" {
                    return Err(ApiError::bad(
                        "streamed transcriptions are not supported: leave `stream` out or false",
                    )
                    .param("stream"));
                }
            }
            _ => {
                let v = text(&f)?;
                // A client may send one field with a JSON-ish list or several fields.
                for g in v
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|g| g.trim().trim_matches('"'))
                    .filter(|g| !g.is_empty())
                {
                    granularities.push(g.to_string());
                }
            }
        }
    }
    let model = match model {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(
                ApiError::bad("`model` is required: a model id from GET /v1/models").param("model"),
            );
        }
    };
    let Some(file) = file else {
        return Err(ApiError::bad(
            "`file` is required: the audio as a multipart file part (curl -F file=@talk.wav)",
        )
        .param("file"));
    };
    let file_name = file.file_name.clone().unwrap_or_else(|| "file".into());
    if file.data.is_empty() {
        return Err(ApiError::bad(format!("`file` ({file_name}) is empty")).param("file"));
    }
    // Whisper keeps only the last 223 tokens of a prompt; a longer text is a mistake (and
    // costly to tokenize), not a prompt.
    if let Some(p) = &prompt
        && p.len() > 4096
    {
        return Err(ApiError::bad(format!(
            "`prompt` is {} bytes; Whisper uses only its last ~220 tokens: send at most 4 KB",
            p.len()
        ))
        .param("prompt"));
    }
    let format = match format.as_deref() {
        None | Some("json") => ResponseFormat::Json,
        Some("text") => ResponseFormat::Text,
        Some("srt") => ResponseFormat::Srt,
        Some("vtt") => ResponseFormat::Vtt,
        Some("verbose_json") => ResponseFormat::VerboseJson,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "`response_format` {other:?} is not one of json, text, srt, vtt, verbose_json"
            ))
            .param("response_format"));
        }
    };
    let language = match language.filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(
            language_code(&l)
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "`language` {l:?} is not a language Whisper knows (an ISO-639-1 code such as en or de)"
                    ))
                    .param("language")
                })?
                .to_string(),
        ),
    };
    let start = match temperature.filter(|t| !t.is_empty()) {
        None => 0.0,
        Some(t) => t.parse::<f32>().map_err(|_| {
            ApiError::bad(format!(
                "`temperature` {t:?} must be a number between 0 and 1"
            ))
            .param("temperature")
        })?,
    };
    // As OpenAI's API: 0 lets the log-probability checks raise it as needed; a higher value
    // starts the fallback there.
    let temperatures = temperature_schedule(start, 0.2)
        .map_err(|e| ApiError::bad(format!("`temperature`: {e}")).param("temperature"))?;
    let (mut segments, mut words) = (granularities.is_empty(), false);
    for g in &granularities {
        match g.as_str() {
            "segment" => segments = true,
            "word" => words = true,
            other => {
                return Err(ApiError::bad(format!(
                    "`timestamp_granularities[]` {other:?} is not segment or word"
                ))
                .param("timestamp_granularities[]"));
            }
        }
    }
    if !granularities.is_empty() && format != ResponseFormat::VerboseJson {
        return Err(ApiError::bad(
            "`timestamp_granularities[]` needs `response_format` verbose_json",
        )
        .param("timestamp_granularities[]"));
    }
    Ok(TranscribeRequest {
        model,
        file_name,
        audio: file.data,
        options: TranscribeOptions {
            task: if translate {
                Task::Translate
            } else {
                Task::Transcribe
            },
            language,
            temperatures,
            initial_prompt: prompt.filter(|p| !p.is_empty()),
            word_timestamps: words,
            ..TranscribeOptions::default()
        },
        format,
        segments,
        words,
    })
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The response body and its content type.
pub fn transcription_body(req: &TranscribeRequest, t: &Transcript) -> (&'static str, String) {
    let plain = "text/plain; charset=utf-8";
    match req.format {
        // OpenAI's `text` is the transcript's text (what `json` carries), not one line a segment.
        ResponseFormat::Text => (plain, format!("{}\n", t.text.trim())),
        ResponseFormat::Srt => (plain, formats::render(t, Format::Srt)),
        ResponseFormat::Vtt => (plain, formats::render(t, Format::Vtt)),
        ResponseFormat::Json => (
            "application/json",
            json!({"text": t.text.trim(), "usage": usage(t)}).to_string(),
        ),
        ResponseFormat::VerboseJson => {
            // A translation is English, whatever was spoken (as OpenAI answers it).
            let language = match req.options.task {
                Task::Translate => "english",
                Task::Transcribe => language_name(&t.language).unwrap_or(&t.language),
            };
            let mut v = json!({"task": req.options.task.as_str(), "language": language,
                "duration": r2(t.duration_s), "text": t.text.trim(), "usage": usage(t)});
            if req.segments {
                v["segments"] = t
                    .segments
                    .iter()
                    .map(|s| {
                        json!({"id": s.id, "seek": s.seek, "start": r2(s.start), "end": r2(s.end),
                            "text": s.text, "tokens": s.tokens, "temperature": s.temperature,
                            "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                            "no_speech_prob": s.no_speech_prob})
                    })
                    .collect::<Vec<Value>>()
                    .into();
            }
            if req.words {
                v["words"] = t
                    .segments
                    .iter()
                    .flat_map(|s| s.words.iter().flatten())
                    .map(|w| json!({"word": w.word.trim(), "start": w.start, "end": w.end}))
                    .collect::<Vec<Value>>()
                    .into();
            }
            ("application/json", v.to_string())
        }
    }
}

/// OpenAI's duration-based usage of an audio request (whole seconds, rounded up).
fn usage(t: &Transcript) -> Value {
    json!({"type": "duration", "seconds": t.duration_s.ceil() as u64})
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlxk_infer::transcribe::timing::Word;
    use mlxk_infer::transcribe::{Segment, StageTimes};

    fn field(name: &str, data: &str) -> Field {
        Field {
            name: name.into(),
            file_name: None,
            data: data.as_bytes().to_vec(),
        }
    }

    fn form(extra: &[(&str, &str)]) -> Vec<Field> {
        let mut v = vec![
            Field {
                name: "file".into(),
                file_name: Some("talk.wav".into()),
                data: b"RIFF....".to_vec(),
            },
            field("model", "whisper-tiny.en"),
        ];
        v.extend(extra.iter().map(|(k, d)| field(k, d)));
        v
    }

    #[test]
    fn a_form_is_read_with_its_options() {
        let r = parse_transcription(
            form(&[
                ("language", "German"),
                ("prompt", "Glossary: MLX"),
                ("response_format", "verbose_json"),
                ("temperature", "0.5"),
                ("timestamp_granularities[]", "word"),
                ("timestamp_granularities[]", "segment"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            (r.model.as_str(), r.file_name.as_str()),
            ("whisper-tiny.en", "talk.wav")
        );
        assert_eq!(r.options.language.as_deref(), Some("de"));
        assert_eq!(r.options.initial_prompt.as_deref(), Some("Glossary: MLX"));
        assert_eq!(r.options.temperatures, vec![0.5, 0.7, 0.9]);
        assert_eq!(r.options.task, Task::Transcribe);
        assert!(r.options.word_timestamps && r.words && r.segments);
        assert_eq!(r.format, ResponseFormat::VerboseJson);
        let d = parse_transcription(form(&[]), true).unwrap();
        assert_eq!(d.options.task, Task::Translate);
        assert_eq!(d.format, ResponseFormat::Json);
        assert_eq!(d.options.temperatures, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert!(d.segments && !d.words && !d.options.word_timestamps);
        // One field holding a list, as some clients send it; words only drops the segments.
        let w = parse_transcription(
            form(&[
                ("response_format", "verbose_json"),
                ("timestamp_granularities", "[\"word\"]"),
            ]),
            false,
        )
        .unwrap();
        assert!(w.words && !w.segments);
    }

    #[test]
    fn bad_forms_are_400_naming_the_field() {
        let cases: Vec<(Vec<Field>, bool, &str)> = vec![
            (vec![field("model", "m")], false, "file"),
            (
                vec![Field {
                    name: "file".into(),
                    file_name: Some("a.wav".into()),
                    data: vec![],
                }],
                false,
                "model",
            ),
            (
                form(&[("response_format", "xml")]),
                false,
                "response_format",
            ),
            (form(&[("language", "klingon")]), false, "language"),
            (form(&[("language", "de")]), true, "language"),
            (form(&[("temperature", "hot")]), false, "temperature"),
            (form(&[("temperature", "1.5")]), false, "temperature"),
            (
                form(&[("timestamp_granularities[]", "word")]),
                false,
                "timestamp_granularities[]",
            ),
            (
                form(&[
                    ("response_format", "verbose_json"),
                    ("timestamp_granularities[]", "char"),
                ]),
                false,
                "timestamp_granularities[]",
            ),
            (form(&[("stream", "true")]), false, "stream"),
            (
                form(&[("chunking_strategy", "auto")]),
                false,
                "chunking_strategy",
            ),
            (form(&[("model", "again")]), false, "model"),
            (form(&[("prompt", &"word ".repeat(1000))]), false, "prompt"),
        ];
        for (fields, translate, param) in cases {
            let e = parse_transcription(fields, translate).unwrap_err();
            assert_eq!(e.status, 400, "{param}: {e:?}");
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
        let mut empty = form(&[]);
        empty[0].data.clear();
        let e = parse_transcription(empty, false).unwrap_err();
        assert!(
            e.message.contains("talk.wav") && e.message.contains("empty"),
            "{e:?}"
        );
    }

    fn transcript() -> Transcript {
        let seg = |id, start, end, text: &str, words: Option<Vec<Word>>| Segment {
            id,
            seek: 0,
            start,
            end,
            text: text.into(),
            tokens: vec![50364, 440],
            temperature: 0.0,
            avg_logprob: -0.25,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            words,
        };
        let w = |word: &str, start, end| Word {
            word: word.into(),
            start,
            end,
            probability: 0.9,
        };
        Transcript {
            text: " Hello there. General.".into(),
            segments: vec![
                seg(
                    0,
                    0.0,
                    1.504,
                    " Hello there.",
                    Some(vec![w(" Hello", 0.0, 0.5), w(" there.", 0.5, 1.5)]),
                ),
                seg(
                    1,
                    1.504,
                    2.0,
                    " General.",
                    Some(vec![w(" General.", 1.5, 2.0)]),
                ),
            ],
            language: "en".into(),
            duration_s: 2.3,
            times: StageTimes::default(),
            language_probs: vec![],
            loops_cut: 0,
        }
    }

    #[test]
    fn every_response_format_has_its_shape() {
        let t = transcript();
        let req = |f: &str, extra: &[(&str, &str)]| {
            let mut e = vec![("response_format", f)];
            e.extend_from_slice(extra);
            parse_transcription(form(&e), false).unwrap()
        };
        let (ct, body) = transcription_body(&req("json", &[]), &t);
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"text": "Hello there. General.",
            "usage": {"type": "duration", "seconds": 3}})
        );
        let (ct, body) = transcription_body(&req("text", &[]), &t);
        assert_eq!(
            (ct, body.as_str()),
            ("text/plain; charset=utf-8", "Hello there. General.\n")
        );
        let (_, srt) = transcription_body(&req("srt", &[]), &t);
        assert!(
            srt.starts_with("1\n00:00:00,000 --> 00:00:01,504\nHello there.\n\n2\n"),
            "{srt}"
        );
        let (_, vtt) = transcription_body(&req("vtt", &[]), &t);
        assert!(
            vtt.starts_with("WEBVTT\n\n00:00.000 --> 00:01.504\n"),
            "{vtt}"
        );
        let (_, body) = transcription_body(&req("verbose_json", &[]), &t);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["task"], &v["language"], &v["duration"]),
            (&json!("transcribe"), &json!("english"), &json!(2.3))
        );
        assert_eq!(v["segments"][0]["end"], json!(1.5));
        assert_eq!(v["segments"][1]["text"], json!(" General."));
        assert_eq!(v["segments"][0]["tokens"], json!([50364, 440]));
        assert!(v.get("words").is_none());
        let (_, body) = transcription_body(
            &req("verbose_json", &[("timestamp_granularities[]", "word")]),
            &t,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("segments").is_none());
        assert_eq!(
            v["words"],
            json!([{"word": "Hello", "start": 0.0, "end": 0.5},
                {"word": "there.", "start": 0.5, "end": 1.5},
                {"word": "General.", "start": 1.5, "end": 2.0}])
        );
    }
}
