//! A reasoning model's thinking apart from its answer, as the text streams: `<think>…</think>`
//! as Qwen3 and the DeepSeek-R1 distills write it, and gpt-oss's channels
//! (`<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…`).
//! A prompt whose template already opened `<think>` (the R1 distills') starts inside the
//! reasoning. A marker split across tokens (or stream pieces) is held back until it is decided,
//! so no piece of one is ever shown.

pub const OPEN: &str = "<think>";
pub const CLOSE: &str = "</think>";

/// Markers and what they do: `Some(true)` enters the reasoning, `Some(false)` the answer,
/// `None` is layout between channels, dropped.
const MARKERS: &[(&str, Option<bool>)] = &[
    (OPEN, Some(true)),
    (CLOSE, Some(false)),
    ("<|channel|>analysis<|message|>", Some(true)),
    ("<|channel|>final<|message|>", Some(false)),
    ("<|end|>", None),
    ("<|start|>assistant", None),
];

/// Which part of the output a piece of text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Reasoning,
    Answer,
}

/// Splits streamed text into reasoning and answer.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    inside: bool,
    /// Text not yet shown: it may be the start of a tag.
    pending: String,
    /// Newlines right after a tag are the template's layout, not content.
    skip_newlines: bool,
    pub reasoning: String,
    pub answer: String,
    /// Bytes of the raw stream already taken out of `pending`.
    drained: usize,
    /// Where in the raw stream the reasoning last ended (after its closing marker).
    reasoning_end: Option<usize>,
}

impl ReasoningSplitter {
    pub fn new(starts_inside: bool) -> ReasoningSplitter {
        ReasoningSplitter {
            inside: starts_inside,
            pending: String::new(),
            skip_newlines: starts_inside,
            reasoning: String::new(),
            answer: String::new(),
            drained: 0,
            reasoning_end: None,
        }
    }

    /// Whether a rendered prompt leaves the model inside an open `<think>`.
    pub fn prompt_opens_thinking(prompt: &str) -> bool {
        let p = prompt.trim_end();
        p.ends_with(OPEN) && p.rfind(OPEN) > p.rfind(CLOSE)
    }

    fn part(&self) -> Part {
        if self.inside {
            Part::Reasoning
        } else {
            Part::Answer
        }
    }

    fn emit(&mut self, text: &str, out: &mut Vec<(Part, String)>) {
        let text = if self.skip_newlines {
            let t = text.trim_start_matches('\n');
            if !t.is_empty() {
                self.skip_newlines = false;
            }
            t
        } else {
            text
        };
        if text.is_empty() {
            return;
        }
        match self.part() {
            Part::Reasoning => self.reasoning.push_str(text),
            Part::Answer => self.answer.push_str(text),
        }
        match out.last_mut() {
            Some((p, s)) if *p == self.part() => s.push_str(text),
            _ => out.push((self.part(), text.to_string())),
        }
    }

    /// Takes the next piece of generated text; returns what may be shown now, in order.
    pub fn push(&mut self, text: &str) -> Vec<(Part, String)> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            // The earliest marker in the text (the longest where two start together).
            let found = MARKERS
                .iter()
                .filter_map(|(m, to)| self.pending.find(m).map(|i| (i, *m, *to)))
                .min_by_key(|(i, m, _)| (*i, std::cmp::Reverse(m.len())));
            if let Some((i, marker, to)) = found {
                let before = self.pending[..i].to_string();
                self.emit(&before, &mut out);
                self.pending.drain(..i + marker.len());
                self.drained += i + marker.len();
                if to == Some(false) && (self.inside || self.has_reasoning()) {
                    self.reasoning_end = Some(self.drained);
                }
                if let Some(inside) = to {
                    self.inside = inside;
                    self.skip_newlines = true;
                }
                continue;
            }
            // Hold back the longest end of the text that could start a marker.
            let keep = MARKERS
                .iter()
                .flat_map(|(m, _)| {
                    (1..m.len())
                        .filter(|&k| m.is_char_boundary(k))
                        .map(move |k| &m[..k])
                })
                .filter(|prefix| self.pending.ends_with(prefix))
                .map(str::len)
                .max()
                .unwrap_or(0);
            let show = self.pending.len() - keep;
            let now = self.pending[..show].to_string();
            self.emit(&now, &mut out);
            self.pending.drain(..show);
            self.drained += show;
            return out;
        }
    }

    /// No more text comes: what was held back is real text of the current part.
    pub fn finish(&mut self) -> Vec<(Part, String)> {
        let rest = std::mem::take(&mut self.pending);
        self.drained += rest.len();
        let mut out = Vec::new();
        self.emit(&rest, &mut out);
        out
    }

    /// Whether any reasoning was seen.
    pub fn has_reasoning(&self) -> bool {
        !self.reasoning.is_empty()
    }

    /// How many bytes of the raw stream (markers included) belong to the reasoning: up to the
    /// end of the marker that last closed it, or everything if it is still open.
    pub fn reasoning_bytes(&self) -> usize {
        if self.inside && self.has_reasoning() {
            self.drained + self.pending.len()
        } else {
            self.reasoning_end.unwrap_or(0)
        }
    }
}

/// How many of `n` generated tokens hold the first `bytes` bytes of their text, given the
/// length of the text the first `k` tokens decode to (which grows with `k`): the reasoning's
/// share of a generation, closing marker included.
pub fn tokens_for_bytes(n: usize, bytes: usize, decoded_len: impl Fn(usize) -> usize) -> usize {
    if bytes == 0 {
        return 0;
    }
    let (mut lo, mut hi) = (1, n);
    if n == 0 || decoded_len(n) < bytes {
        return n;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if decoded_len(mid) >= bytes {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(pieces: &[&str], inside: bool) -> ReasoningSplitter {
        let mut s = ReasoningSplitter::new(inside);
        let mut shown = String::new();
        for p in pieces {
            for (_, t) in s.push(p) {
                shown.push_str(&t);
            }
        }
        for (_, t) in s.finish() {
            shown.push_str(&t);
        }
        assert_eq!(shown, format!("{}{}", s.reasoning, s.answer));
        assert!(
            !shown.contains("think>") && !shown.contains("<|"),
            "{shown}"
        );
        s
    }

    #[test]
    fn the_reasoning_share_of_the_stream_is_counted_in_bytes_and_tokens() {
        let mut s = ReasoningSplitter::new(false);
        for p in ["<think>\nhm", "m</thi", "nk>\n\nyes"] {
            s.push(p);
        }
        s.finish();
        assert_eq!(s.reasoning_bytes(), "<think>\nhmm</think>".len());
        // Still thinking when the stream ended: all of it.
        let mut open = ReasoningSplitter::new(true);
        open.push("so far");
        assert_eq!(open.reasoning_bytes(), 6);
        let plain = split_all(&["no tags"], false);
        assert_eq!(plain.reasoning_bytes(), 0);
        // Tokens of 3 bytes each: 20 bytes end inside the 7th token.
        assert_eq!(tokens_for_bytes(10, 20, |k| 3 * k), 7);
        assert_eq!(tokens_for_bytes(10, 21, |k| 3 * k), 7);
        assert_eq!(tokens_for_bytes(10, 0, |k| 3 * k), 0);
        assert_eq!(tokens_for_bytes(10, 99, |k| 3 * k), 10);
    }

    #[test]
    fn think_tags_split_reasoning_from_the_answer() {
        let s = split_all(&["<think>\nLet me see.\n</think>\n\nParis."], false);
        assert_eq!(
            (s.reasoning.as_str(), s.answer.as_str()),
            ("Let me see.\n", "Paris.")
        );
    }

    #[test]
    fn a_tag_split_at_every_position_is_still_found() {
        let text = "<think>\nhmm</think>\n\nyes";
        for a in 0..text.len() {
            for b in a..text.len() {
                let s = split_all(&[&text[..a], &text[a..b], &text[b..]], false);
                assert_eq!(
                    (s.reasoning.as_str(), s.answer.as_str()),
                    ("hmm", "yes"),
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn a_prompt_that_opened_thinking_starts_inside() {
        assert!(ReasoningSplitter::prompt_opens_thinking(
            "<|Assistant|><think>\n"
        ));
        assert!(!ReasoningSplitter::prompt_opens_thinking(
            "<think>\n\n</think>\n\n"
        ));
        let s = split_all(&["First, ", "the sky.</think>Blue."], true);
        assert_eq!(
            (s.reasoning.as_str(), s.answer.as_str()),
            ("First, the sky.", "Blue.")
        );
    }

    #[test]
    fn text_without_tags_is_all_answer_and_a_lone_angle_bracket_is_not_held_forever() {
        let s = split_all(&["a < b", " and <thin", "g>"], false);
        assert_eq!(
            (s.reasoning.as_str(), s.answer.as_str()),
            ("", "a < b and <thing>")
        );
        let mut u = ReasoningSplitter::new(false);
        assert_eq!(u.push("x <thi"), vec![(Part::Answer, "x ".to_string())]);
        assert_eq!(u.finish(), vec![(Part::Answer, "<thi".to_string())]);
    }

    #[test]
    fn gpt_oss_channels_split_analysis_from_final() {
        let text = "<|channel|>analysis<|message|>User asks capital.<|end|><|start|>assistant<|channel|>final<|message|>Paris.";
        for cut in 0..text.len() {
            let s = split_all(&[&text[..cut], &text[cut..]], false);
            assert_eq!(
                (s.reasoning.as_str(), s.answer.as_str()),
                ("User asks capital.", "Paris."),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn tags_spread_over_byte_tokens_are_split_as_the_decoder_streams() {
        // The tiny models' byte-level tokenizer: every byte is a token, so each tag spans
        // seven or eight tokens and reaches the splitter piece by piece.
        let dir = tempfile::tempdir().unwrap();
        crate::tiny::write(&crate::tiny::specs().remove(0), dir.path()).unwrap();
        let t = crate::tokenizer::TextTokenizer::from_dir(dir.path(), &[]).unwrap();
        let ids = t
            .encode("<think>\nweigh it — é</think>\n\nDone.", false)
            .unwrap();
        let mut d = crate::generate::StreamingDecoder::new(&t);
        let mut s = ReasoningSplitter::new(false);
        let mut seen = 0;
        let mut shown = Vec::new();
        for id in ids {
            d.push(id).unwrap();
            let piece = d.text()[seen..].to_string();
            seen = d.text().len();
            shown.extend(s.push(&piece));
        }
        shown.extend(s.finish());
        assert_eq!(
            (s.reasoning.as_str(), s.answer.as_str()),
            ("weigh it — é", "Done.")
        );
        assert!(shown.iter().all(|(_, p)| !p.contains('<')), "{shown:?}");
    }
}
