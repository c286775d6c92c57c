//! The interactive chat: mlxk-gen on a terminal with no prompt. Each turn goes through the chat
//! template with the whole conversation, and the KV cache is kept across turns: a new turn
//! prefills only the tokens the cache does not hold yet (llama.cpp's way: the template's text
//! for the conversation so far is a prefix of the next one's, so only the rest is encoded).
//! Ctrl-C stops an answer and keeps the session; Ctrl-D leaves. A conversation that outgrows
//! the context is never cut silently: the user is told and offered `/drop` and `/clear` (or,
//! with `--truncate left`, the oldest turns are dropped with a note each).
use super::text::{Prompt, PromptItem, TextRunner};
use super::{Runner, Runs};
use crate::error::Result;
use crate::generate::Generation;
use crate::loader::TextModel;
use crate::prompt_cache::common_prefix;
use crate::reasoning::ReasoningSplitter;
use crate::tokenizer::{Message, TextTokenizer};
use mlxk::cli::Failure;
use mlxk::report::run::RunFacts;
use mlxk::runner::{Job, Output};
use serde_json::json;
use std::cell::RefCell;
use std::path::PathBuf;

/// What the person typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D.
    Eof,
}

/// Where the chat reads its lines from: the line editor, or a script in tests.
pub trait LineSource {
    fn read(&mut self, prompt: &str) -> std::result::Result<Line, Failure>;
}

/// The terminal, through a line editor (rustyline): editing, and a history kept across
/// sessions in `$XDG_STATE_HOME/mlxk/chat_history` (or `~/.local/state/mlxk/chat_history`).
pub struct Terminal {
    editor: rustyline::DefaultEditor,
    history: Option<PathBuf>,
}

fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("mlxk").join("chat_history"))
}

impl Terminal {
    pub fn open() -> std::result::Result<Terminal, Failure> {
        let mut editor = rustyline::DefaultEditor::new()
            .map_err(|e| Failure::io(format!("cannot open the terminal for the chat: {e}")))?;
        let history = history_path();
        if let Some(h) = history.as_ref().filter(|h| h.exists()) {
            // A history that cannot be read costs only the arrow keys' memory: say so.
            if let Err(e) = editor.load_history(h) {
                eprintln!(
                    "mlxk-gen: cannot read the chat history {}: {e}",
                    h.display()
                );
            }
        }
        Ok(Terminal { editor, history })
    }

    /// Writes the history back; a failure is said, not hidden.
    pub fn save_history(&mut self) {
        let Some(h) = &self.history else { return };
        let saved = h
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|_| self.editor.save_history(h).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            eprintln!(
                "mlxk-gen: cannot save the chat history {}: {e}",
                h.display()
            );
        }
    }
}

impl LineSource for Terminal {
    fn read(&mut self, prompt: &str) -> std::result::Result<Line, Failure> {
        use rustyline::error::ReadlineError;
        match self.editor.readline(prompt) {
            Ok(l) => {
                if !l.trim().is_empty() {
                    let _ = self.editor.add_history_entry(l.as_str());
                }
                Ok(Line::Text(l))
            }
            Err(ReadlineError::Interrupted) => Ok(Line::Interrupted),
            Err(ReadlineError::Eof) => Ok(Line::Eof),
            Err(e) => Err(Failure::io(format!("cannot read from the terminal: {e}"))),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.save_history();
    }
}

/// A line of the chat, read as a command or a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Say(String),
    Clear,
    /// `/system TEXT` sets it, `/system -` removes it, `/system` shows it.
    System(Option<String>),
    Save(PathBuf),
    Undo,
    Drop,
    Help,
    Quit,
    Unknown(String),
    Nothing,
}

pub const HELP: &str = "\
/clear         forget the conversation (the system message stays)
/system TEXT   set the system message (/system shows it, /system - removes it)
/undo          forget the last turn
/drop          forget the oldest turn
/save FILE     write the conversation as one JSON line, {\"messages\": [...]} (--prompts reads it)
/help          this list
/quit          leave (so does Ctrl-D)
End a line with \\ to go on on the next, or put a longer text between lines of \"\"\".
Ctrl-C stops an answer and keeps the conversation; at the prompt it clears the line.
A message that starts with / is written //.";

pub fn parse_command(line: &str) -> Command {
    let t = line.trim();
    if t.is_empty() {
        return Command::Nothing;
    }
    if let Some(rest) = t.strip_prefix("//") {
        return Command::Say(format!("/{rest}"));
    }
    let Some(body) = t.strip_prefix('/') else {
        return Command::Say(line.to_string());
    };
    let (name, arg) = match body.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (body, ""),
    };
    match (name, arg) {
        ("clear", "") => Command::Clear,
        ("system", "") => Command::System(None),
        ("system", a) => Command::System(Some(a.to_string())),
        ("save", "") => Command::Unknown("/save needs a file: /save FILE".into()),
        ("save", a) => Command::Save(PathBuf::from(a)),
        ("undo", "") => Command::Undo,
        ("drop", "") => Command::Drop,
        ("help" | "?", "") => Command::Help,
        ("quit" | "exit" | "bye", "") => Command::Quit,
        _ => Command::Unknown(format!("unknown command /{name}; /help lists them")),
    }
}

/// Reads one message: lines ending in `\` go on on the next line; a line of `"""` opens a
/// block that the next line ending in `"""` closes. Ctrl-C inside either drops the message.
pub fn read_message(src: &mut dyn LineSource) -> std::result::Result<Line, Failure> {
    let first = match src.read(">>> ")? {
        Line::Text(t) => t,
        other => return Ok(other),
    };
    if let Some(open) = first.trim_start().strip_prefix("\"\"\"") {
        let mut text = String::new();
        if let Some(done) = open.strip_suffix("\"\"\"") {
            return Ok(Line::Text(done.to_string()));
        }
        text.push_str(open);
        loop {
            match src.read("... ")? {
                Line::Text(l) => {
                    if let Some(last) = l.trim_end().strip_suffix("\"\"\"") {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(last);
                        return Ok(Line::Text(text.trim_matches('\n').to_string()));
                    }
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&l);
                }
                Line::Interrupted => return Ok(Line::Interrupted),
                Line::Eof => return Ok(Line::Text(text.trim_matches('\n').to_string())),
            }
        }
    }
    let mut text = first;
    while let Some(head) = text.strip_suffix('\\') {
        text = format!("{head}\n");
        match src.read("... ")? {
            Line::Text(l) => text.push_str(&l),
            Line::Interrupted => return Ok(Line::Interrupted),
            Line::Eof => break,
        }
    }
    Ok(Line::Text(text))
}

/// The next turn's prompt: its ids, the rendered text they encode, and how many of them the
/// kept caches already hold.
#[derive(Debug, Clone)]
pub struct NextTurn {
    pub prompt: Prompt,
    pub text: String,
    pub reused: usize,
}

/// Whether the next turn fits the context.
#[derive(Debug, Clone)]
pub enum Fit {
    Fits(NextTurn),
    Over { tokens: usize, context: usize },
}

/// The conversation, and what the KV cache kept across turns holds.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub system: Option<String>,
    /// (user, assistant) turns, oldest first; the answer as the model wrote it.
    pub turns: Vec<(String, String)>,
    pub no_think: bool,
    /// The tokens whose keys and values the caches hold, and the text they stand for.
    held_tokens: Vec<u32>,
    held_text: String,
}

impl Conversation {
    pub fn messages(&self, next: Option<&str>) -> Vec<Message> {
        let m = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let mut v: Vec<Message> = self.system.iter().map(|s| m("system", s)).collect();
        for (u, a) in &self.turns {
            v.push(m("user", u));
            v.push(m("assistant", a));
        }
        v.extend(next.map(|u| m("user", u)));
        v
    }

    /// The caches were emptied (`/clear`, a new model): nothing is held.
    pub fn forget_cache(&mut self) {
        self.held_tokens.clear();
        self.held_text.clear();
    }

    /// How many tokens the caches hold.
    pub fn held(&self) -> usize {
        self.held_tokens.len()
    }

    /// The prompt for `user`'s message after the conversation so far, checked against
    /// `context`. When what the caches hold renders as the start of the new text, only the
    /// rest is encoded and prefilled; otherwise (an earlier turn changed) the whole text is
    /// encoded and the caches are reused as far as the tokens agree.
    pub fn next_turn(
        &self,
        tokenizer: &TextTokenizer,
        user: &str,
        context: Option<usize>,
    ) -> Result<Fit> {
        let text =
            tokenizer.render_chat(&self.messages(Some(user)), self.no_think.then_some(false))?;
        // The rest after what the caches hold, encoded on its own — kept only if the whole
        // decodes back to the text (a tokenizer that prepends a space to every text it encodes
        // would otherwise slip one in at the seam).
        let seamed = match text.strip_prefix(self.held_text.as_str()) {
            Some(rest) if !self.held_text.is_empty() && !rest.is_empty() => {
                let mut ids = self.held_tokens.clone();
                ids.extend(tokenizer.encode(rest, false)?);
                (tokenizer.decode(&ids)? == text).then_some(ids)
            }
            _ => None,
        };
        let (ids, reused) = match seamed {
            Some(ids) => (ids, self.held_tokens.len()),
            None => {
                let ids = tokenizer.encode(&text, false)?;
                let reused = common_prefix(&self.held_tokens, &ids[..ids.len().saturating_sub(1)]);
                (ids, reused)
            }
        };
        if let Some(c) = context
            && ids.len() >= c
        {
            return Ok(Fit::Over {
                tokens: ids.len(),
                context: c,
            });
        }
        Ok(Fit::Fits(NextTurn {
            prompt: Prompt {
                opens_thinking: ReasoningSplitter::prompt_opens_thinking(&text),
                ids,
                truncated: 0,
            },
            text,
            reused,
        }))
    }

    /// Keeps the turn: the answer joins the conversation, and the caches — which now hold
    /// `held` positions of the prompt and the generated tokens — are remembered with the text
    /// they stand for.
    pub fn remember(
        &mut self,
        tokenizer: &TextTokenizer,
        user: &str,
        turn: &NextTurn,
        g: &Generation,
        held: usize,
    ) -> Result<()> {
        let n = turn.prompt.ids.len();
        let all: Vec<u32> = turn.prompt.ids.iter().chain(&g.tokens).copied().collect();
        let held = held.min(all.len());
        self.held_tokens = all[..held].to_vec();
        self.held_text = if held >= n {
            format!("{}{}", turn.text, tokenizer.decode(&g.tokens[..held - n])?)
        } else {
            // Fewer than the prompt: only the tokens can be compared next time.
            String::new()
        };
        self.turns.push((user.to_string(), g.text.clone()));
        Ok(())
    }

    /// The conversation as `{"messages": [...]}`, a line `--prompts` reads back.
    pub fn to_json(&self) -> serde_json::Value {
        let msgs: Vec<_> = self
            .messages(None)
            .into_iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        json!({ "messages": msgs })
    }
}

/// The options the chat cannot honour, refused with why (never ignored): `--json` (it writes
/// text), `--raw` (no template to converse through), `--prompt-cache` (it keeps its own cache).
pub fn check_options(
    json: bool,
    raw: bool,
    prompt_cache: bool,
) -> std::result::Result<(), Failure> {
    let refuse = |flag: &str, why: &str| Err(Failure::usage(format!("{flag} {why}")));
    if json {
        return refuse(
            "--json",
            "needs a prompt (-p, --prompt-file, --prompts); the chat writes text",
        );
    }
    if raw {
        return refuse(
            "--raw",
            "has no chat template to converse through; give -p TEXT",
        );
    }
    if prompt_cache {
        return refuse(
            "--prompt-cache",
            "works with -p, --prompt-file and --prompts; the chat keeps its cache across turns itself",
        );
    }
    Ok(())
}

/// mlxk-gen's chat: the text runner's settings, the command line's options for every turn,
/// and where the lines come from.
pub struct ChatRunner {
    pub text: TextRunner,
    pub defaults: PromptItem,
    pub input: RefCell<Box<dyn LineSource>>,
}

impl Runner for ChatRunner {
    type Model = TextModel;
    const TOOL: &'static str = "mlxk-gen";
    const BACKEND: &'static str = "text";

    fn load(&self, job: &Job) -> std::result::Result<(TextModel, f64), Failure> {
        self.text.load(job)
    }

    fn describe(&self, m: &TextModel, job: &Job, facts: &mut RunFacts) {
        self.text.describe(m, job, facts)
    }

    fn run(
        &self,
        model: &TextModel,
        job: &Job,
        out: &mut Output,
        runs: &mut Runs,
    ) -> std::result::Result<(), Failure> {
        let id = job.record.id.as_str();
        let context = model.context_length();
        let tok = &model.tokenizer;
        let mut conv = Conversation {
            system: self.defaults.spec.system.clone(),
            no_think: self.defaults.spec.no_think,
            ..Default::default()
        };
        let mut caches = model.decoder.new_cache();
        let mut input = self.input.borrow_mut();
        out.warn(&format!(
            "chatting with {id}{}; /help lists the commands, Ctrl-D leaves",
            context.map_or(String::new(), |c| format!(" (context {c} tokens)"))
        ));
        let mut turn_no = 0;
        loop {
            let line = match read_message(input.as_mut())? {
                Line::Text(t) => t,
                Line::Interrupted => continue,
                Line::Eof => return Ok(()),
            };
            let user = match parse_command(&line) {
                Command::Say(t) => t,
                Command::Nothing => continue,
                Command::Quit => return Ok(()),
                Command::Help => {
                    eprintln!("{HELP}");
                    continue;
                }
                Command::Unknown(why) => {
                    out.warn(&why);
                    continue;
                }
                Command::Clear => {
                    conv.turns.clear();
                    conv.forget_cache();
                    caches = model.decoder.new_cache();
                    out.warn("the conversation is cleared");
                    continue;
                }
                Command::System(None) => {
                    out.warn(&match &conv.system {
                        Some(s) => format!("system: {s}"),
                        None => "no system message".into(),
                    });
                    continue;
                }
                Command::System(Some(s)) => {
                    conv.system = (s != "-").then_some(s);
                    out.warn(match conv.system {
                        Some(_) => "the system message is set",
                        None => "the system message is removed",
                    });
                    continue;
                }
                Command::Undo | Command::Drop if conv.turns.is_empty() => {
                    out.warn("there is no turn to forget");
                    continue;
                }
                Command::Undo => {
                    conv.turns.pop();
                    out.warn("forgot the last turn");
                    continue;
                }
                Command::Drop => {
                    conv.turns.remove(0);
                    out.warn("forgot the oldest turn");
                    continue;
                }
                Command::Save(path) => {
                    let line = format!("{}\n", conv.to_json());
                    match mlxk::cli::write_atomically(&path, line.as_bytes()) {
                        Ok(()) => out.warn(&format!(
                            "saved {} turns to {}",
                            conv.turns.len(),
                            path.display()
                        )),
                        Err(e) => out.warn(&format!("cannot save {}: {e}", path.display())),
                    }
                    continue;
                }
            };
            // The turn's prompt; a conversation that outgrew the context is never cut silently.
            let next = loop {
                let fit = match conv.next_turn(tok, &user, context) {
                    Ok(f) => f,
                    // The template refused the conversation (a system message it does not take,
                    // roles out of order): say why; the session and its turns stay.
                    Err(e) => {
                        out.warn(&format!("{e} (/system - removes the system message)"));
                        break None;
                    }
                };
                match fit {
                    Fit::Fits(t) => break Some(t),
                    Fit::Over { .. } if self.text.truncate_left && !conv.turns.is_empty() => {
                        conv.turns.remove(0);
                        out.warn("--truncate left: forgot the oldest turn to fit the context");
                    }
                    Fit::Over { tokens, context } => {
                        out.warn(&format!(
                            "with this message the conversation is {tokens} tokens; the \
                             context holds {context}: /drop forgets the oldest turn, /clear \
                             starts over (arrow up brings the message back)"
                        ));
                        break None;
                    }
                }
            };
            let Some(next) = next else { continue };
            for c in &mut caches {
                c.trim(next.reused);
            }
            turn_no += 1;
            let mut facts = runs.start();
            facts.tool = format!("{}::chat[{turn_no}]", Self::TOOL);
            mlxk::runner::rearm_interrupt();
            let item = PromptItem {
                line: None,
                ..self.defaults.clone()
            };
            let taken = std::mem::take(&mut caches);
            let outcome = self.text.stream(
                model,
                job,
                &item,
                &next.prompt,
                taken,
                next.reused,
                out,
                &mut facts,
                &super::text::Extras::default(),
            );
            match outcome {
                Ok(s) => {
                    let held = s.caches.first().map_or(0, |c| c.offset);
                    caches = s.caches;
                    conv.remember(tok, &user, &next, &s.generation, held)?;
                    if s.generation.finish_reason == crate::generate::FinishReason::Interrupted {
                        out.warn("stopped; the answer so far is kept (/undo forgets it)");
                    }
                    if s.generation.context_full {
                        out.warn("the context is full: /drop forgets the oldest turn, /clear starts over");
                    }
                    runs.finish_turn(out, facts, Ok(()));
                }
                Err(f) => {
                    // The caches went with the failed turn: start them afresh.
                    caches = model.decoder.new_cache();
                    conv.forget_cache();
                    runs.finish_turn(out, facts, Err(f));
                }
            }
            if out.closed() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Script(std::collections::VecDeque<Line>);

    impl LineSource for Script {
        fn read(&mut self, _: &str) -> std::result::Result<Line, Failure> {
            Ok(self.0.pop_front().unwrap_or(Line::Eof))
        }
    }

    fn script(lines: &[&str]) -> Script {
        Script(
            lines
                .iter()
                .map(|l| match *l {
                    "^C" => Line::Interrupted,
                    "^D" => Line::Eof,
                    t => Line::Text(t.to_string()),
                })
                .collect(),
        )
    }

    fn tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        crate::tiny::write(&crate::tiny::specs().remove(0), dir.path()).unwrap();
        let t = TextTokenizer::from_dir(dir.path(), &[]).unwrap();
        (dir, t)
    }

    #[test]
    fn commands_and_messages_are_told_apart() {
        assert_eq!(parse_command("hello"), Command::Say("hello".into()));
        assert_eq!(parse_command("  "), Command::Nothing);
        assert_eq!(parse_command("/clear"), Command::Clear);
        assert_eq!(
            parse_command("/system be brief"),
            Command::System(Some("be brief".into()))
        );
        assert_eq!(parse_command("/system"), Command::System(None));
        assert_eq!(
            parse_command("/save chat.jsonl"),
            Command::Save("chat.jsonl".into())
        );
        assert!(matches!(parse_command("/save"), Command::Unknown(m) if m.contains("/save FILE")));
        assert!(matches!(parse_command("/clear all"), Command::Unknown(_)));
        assert!(matches!(parse_command("/frob"), Command::Unknown(m) if m.contains("/help")));
        assert_eq!(
            parse_command("//etc/hosts?"),
            Command::Say("/etc/hosts?".into())
        );
        assert_eq!(parse_command("/quit"), Command::Quit);
    }

    #[test]
    fn long_messages_span_lines() {
        let mut s = script(&["one \\", "two \\", "three", "next"]);
        assert_eq!(
            read_message(&mut s).unwrap(),
            Line::Text("one \ntwo \nthree".into())
        );
        let mut s = script(&["\"\"\"", "a", "", "b\"\"\""]);
        assert_eq!(read_message(&mut s).unwrap(), Line::Text("a\n\nb".into()));
        let mut s = script(&["\"\"\"quoted\"\"\""]);
        assert_eq!(read_message(&mut s).unwrap(), Line::Text("quoted".into()));
        // Ctrl-C inside a message drops it; Ctrl-D at the prompt leaves.
        let mut s = script(&["half \\", "^C"]);
        assert_eq!(read_message(&mut s).unwrap(), Line::Interrupted);
        let mut s = script(&["^D"]);
        assert_eq!(read_message(&mut s).unwrap(), Line::Eof);
    }

    fn generation(tokens: Vec<u32>, text: &str) -> Generation {
        Generation {
            text: text.into(),
            tokens,
            prompt_tokens: 0,
            finish_reason: crate::generate::FinishReason::Length,
            eos_token: None,
            stop_string: None,
            context_full: false,
            ttft_s: 0.0,
            prefill_tok_s: 0.0,
            decode_tok_s: 0.0,
            decode_s: 0.0,
            peak_mem_bytes: 0,
        }
    }

    #[test]
    fn a_second_turn_reuses_everything_the_first_left_in_the_cache() {
        let (_d, t) = tokenizer();
        let mut c = Conversation::default();
        let Fit::Fits(first) = c.next_turn(&t, "hi", Some(128)).unwrap() else {
            panic!("fits")
        };
        assert_eq!(first.reused, 0);
        assert_eq!(first.prompt.ids, t.encode(&first.text, false).unwrap());
        // The model answered "yes" (byte tokens); the last one was sampled but not fed.
        let answer = t.encode("yes", false).unwrap();
        let held = first.prompt.ids.len() + answer.len() - 1;
        c.remember(&t, "hi", &first, &generation(answer.clone(), "yes"), held)
            .unwrap();
        let Fit::Fits(second) = c.next_turn(&t, "and?", Some(128)).unwrap() else {
            panic!("fits")
        };
        assert_eq!(second.reused, held, "the whole cache is reused");
        // The ids are those of the whole conversation through the template.
        let whole = t.encode(&second.text, false).unwrap();
        assert_eq!(second.prompt.ids, whole);
        assert!(second.text.contains("yes") && second.text.ends_with("assistant\n"));
        // Prefilled now: the last answer token and the new turn's own text.
        let own = t
            .encode("s\n<|bos|>user\nand?\n<|bos|>assistant\n", false)
            .unwrap();
        assert_eq!(second.prompt.ids.len() - second.reused, own.len());
    }

    #[test]
    fn a_changed_conversation_reuses_only_the_shared_tokens_and_an_overflow_is_said() {
        let (_d, t) = tokenizer();
        let mut c = Conversation::default();
        let Fit::Fits(first) = c.next_turn(&t, "hi", None).unwrap() else {
            panic!()
        };
        let answer = t.encode("ok", false).unwrap();
        let held = first.prompt.ids.len() + 1;
        c.remember(&t, "hi", &first, &generation(answer, "ok"), held)
            .unwrap();
        // A system message now comes first: nothing of the old text is a prefix.
        c.system = Some("brief".into());
        let Fit::Fits(t2) = c.next_turn(&t, "x", None).unwrap() else {
            panic!()
        };
        assert_eq!(t2.reused, 1, "only <|bos|> is shared");
        assert_eq!(t2.prompt.ids, t.encode(&t2.text, false).unwrap());
        // /undo: the turn is gone; the cache is reused up to it.
        c.system = None;
        c.turns.pop();
        let Fit::Fits(t3) = c.next_turn(&t, "hi", None).unwrap() else {
            panic!()
        };
        assert_eq!(t3.reused, first.prompt.ids.len() - 1);
        // The context: a conversation that does not fit is reported, not cut.
        let long = "z".repeat(200);
        match c.next_turn(&t, &long, Some(128)).unwrap() {
            Fit::Over { tokens, context } => assert!(tokens > 200 && context == 128),
            Fit::Fits(_) => panic!("200 byte tokens cannot fit 128"),
        }
        let saved = c.to_json();
        assert_eq!(saved["messages"].as_array().unwrap().len(), 0);
    }
}
