//! A transcript written as plain text, SubRip, WebVTT, TSV (milliseconds) or one JSON document
//! (the layouts of whisper's writers; a segment without text is left out of subtitles).
use super::Transcript;
use serde_json::json;

/// An output format (`-f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Txt,
    Srt,
    Vtt,
    Tsv,
    Json,
    /// `segment` records, then a `transcript` record (the tool writes these itself).
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "txt" => Format::Txt,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "tsv" => Format::Tsv,
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        }
    }
}

/// `HH:MM:SS,mmm` (SubRip) or `[HH:]MM:SS.mmm` (WebVTT, hours only when needed).
pub fn timestamp(seconds: f64, always_hours: bool, marker: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    if always_hours || h > 0 {
        format!("{h:02}:{m:02}:{s:02}{marker}{ms:03}")
    } else {
        format!("{m:02}:{s:02}{marker}{ms:03}")
    }
}

fn cue_text(t: &str) -> String {
    t.trim().replace("-->", "->")
}

/// The whole transcript in `format` (not `Jsonl`, which is records).
pub fn render(t: &Transcript, format: Format) -> String {
    let spoken = t.segments.iter().filter(|s| !s.text.trim().is_empty());
    match format {
        Format::Txt => spoken.map(|s| format!("{}\n", s.text.trim())).collect(),
        Format::Srt => spoken
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{}\n{} --> {}\n{}\n\n",
                    i + 1,
                    timestamp(s.start, true, ','),
                    timestamp(s.end, true, ','),
                    cue_text(&s.text)
                )
            })
            .collect(),
        Format::Vtt => {
            let mut out = String::from("WEBVTT\n\n");
            for s in spoken {
                out.push_str(&format!(
                    "{} --> {}\n{}\n\n",
                    timestamp(s.start, false, '.'),
                    timestamp(s.end, false, '.'),
                    cue_text(&s.text)
                ));
            }
            out
        }
        Format::Tsv => {
            let mut out = String::from("start\tend\ttext\n");
            for s in spoken {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    (s.start * 1000.0).round() as u64,
                    (s.end * 1000.0).round() as u64,
                    s.text.trim().replace('\t', " ")
                ));
            }
            out
        }
        Format::Json | Format::Jsonl => {
            let v = json!({"text": t.text, "segments": t.segments, "language": t.language});
            format!("{v}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcribe::{Segment, StageTimes};

    fn transcript() -> Transcript {
        let seg = |id, start, end, text: &str| Segment {
            id,
            seek: 0,
            start,
            end,
            text: text.into(),
            tokens: vec![],
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            words: None,
        };
        Transcript {
            text: " Hello there. General --> Kenobi.".into(),
            segments: vec![
                seg(0, 0.0, 1.5, " Hello there."),
                seg(1, 1.5, 3723.25, " General --> Kenobi."),
                seg(2, 3723.25, 3724.0, ""),
            ],
            language: "en".into(),
            duration_s: 3724.0,
            times: StageTimes::default(),
            language_probs: vec![],
            loops_cut: 0,
        }
    }

    #[test]
    fn subtitles_golden() {
        let t = transcript();
        assert_eq!(
            render(&t, Format::Srt),
            "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,500 --> 01:02:03,250\nGeneral -> Kenobi.\n\n"
        );
        assert_eq!(
            render(&t, Format::Vtt),
            "WEBVTT\n\n00:00.000 --> 00:01.500\nHello there.\n\n00:01.500 --> 01:02:03.250\nGeneral -> Kenobi.\n\n"
        );
        assert_eq!(
            render(&t, Format::Tsv),
            "start\tend\ttext\n0\t1500\tHello there.\n1500\t3723250\tGeneral --> Kenobi.\n"
        );
        assert_eq!(
            render(&t, Format::Txt),
            "Hello there.\nGeneral --> Kenobi.\n"
        );
    }

    #[test]
    fn json_is_one_document_with_every_segment() {
        let v: serde_json::Value =
            serde_json::from_str(&render(&transcript(), Format::Json)).unwrap();
        assert_eq!(v["language"], "en");
        assert_eq!(v["segments"].as_array().unwrap().len(), 3);
        assert_eq!(v["segments"][1]["end"], 3723.25);
    }
}
