//! mlxk-gen's interactive chat, driven on a real pseudo-terminal as a person would: keys in,
//! the screen read back. A tiny real model (byte tokens, context 128) answers.
#[allow(dead_code)]
mod support;
use serde_json::Value;
use support::*;

fn chat(model: &std::path::Path, state: &std::path::Path, args: &[&str]) -> Pty {
    let mut c = std::process::Command::new(bin_path("mlxk-gen"));
    c.arg(model)
        .args(args)
        .env("MLXK_DEVICE", "cpu")
        .env("XDG_STATE_HOME", state)
        .env_remove("HF_HUB_CACHE");
    Pty::spawn(c)
}

/// A turn's timings line: (prompt tokens, of them reused, generated, finish reason).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Turn {
    prompt: usize,
    reused: usize,
    generated: usize,
    length: bool,
    interrupted: bool,
}

fn turns(screen: &str) -> Vec<Turn> {
    screen
        .lines()
        .filter_map(|l| l.strip_prefix("mlxk-gen: "))
        .filter(|l| l.contains(" prompt tokens") && l.contains(" generated ("))
        .map(|l| {
            let num = |s: &str| s.trim().parse::<usize>().unwrap();
            let (prompt, rest) = l.split_once(" prompt tokens").unwrap();
            let reused = rest
                .strip_prefix(" (")
                .and_then(|r| r.split_once(" reused)"))
                .map_or(0, |(n, _)| num(n));
            let generated = rest.split(", ").nth(1).unwrap();
            let (n, why) = generated.split_once(" generated (").unwrap();
            Turn {
                prompt: num(prompt),
                reused,
                generated: num(n),
                length: why.starts_with("length"),
                interrupted: why.starts_with("interrupted"),
            }
        })
        .collect()
}

#[test]
fn a_chat_keeps_the_conversation_and_its_cache_across_turns() {
    let model = tiny_llama(None);
    let state = tempfile::tempdir().unwrap();
    let saved = state.path().join("talk.jsonl");
    let report = state.path().join("bench.jsonl");
    let mut p = chat(
        model.path(),
        state.path(),
        &["-n", "8", "--report", report.to_str().unwrap()],
    );
    p.wait_for(">>> ", 1);
    p.send("hello\r");
    let first = turns(&p.wait_for(" generated (", 1))[0];
    p.wait_for(">>> ", 2);
    p.send("again\r");
    let second = turns(&p.wait_for(" generated (", 2))[1];
    // The second turn reuses all the first computed: its prompt and every answer token fed
    // back (the last one sampled at the length limit never was).
    assert_eq!(
        second.reused,
        first.prompt + first.generated - usize::from(first.length),
        "{first:?} {second:?}"
    );
    // It prefills only its own tokens: "\n<|bos|>user\nagain\n<|bos|>assistant\n" (24 byte
    // and special tokens) and the last answer token, re-encoded (1 to 3 bytes).
    let own = second.prompt - second.reused;
    assert!((24..=27).contains(&own), "{own} {first:?} {second:?}");

    // /save writes the conversation as a line --prompts reads back.
    p.wait_for(">>> ", 3);
    p.send(&format!("/save {}\r", saved.display()));
    p.wait_for("saved 2 turns", 1);
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&saved).unwrap().trim()).unwrap();
    let roles: Vec<&str> = line["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(line["messages"][2]["content"], "again");

    // A message the context cannot hold is refused with the way out, and nothing runs.
    p.wait_for(">>> ", 4);
    p.send(&format!("{}\r", "z".repeat(90)));
    let t = p.wait_for("context holds 128", 1);
    assert!(t.contains("/drop") && t.contains("/clear"), "{t}");
    assert_eq!(turns(&t).len(), 2);

    // /clear starts over: the same first message costs the same, nothing reused.
    p.wait_for(">>> ", 5);
    p.send("/clear\r");
    p.wait_for("the conversation is cleared", 1);
    p.send("hello\r");
    let third = turns(&p.wait_for(" generated (", 3))[2];
    assert_eq!((third.prompt, third.reused), (first.prompt, 0));

    // Ctrl-D leaves, exit 0; the lines typed are kept for the next session's arrow keys.
    p.wait_for(">>> ", 7);
    p.send("\x04");
    let (code, screen) = p.wait();
    assert_eq!(code, 0, "{screen}");
    let history = std::fs::read_to_string(state.path().join("mlxk/chat_history")).unwrap();
    assert!(
        history.contains("again") && history.contains("/clear"),
        "{history}"
    );
    // One report record per turn that ran.
    let recs: Vec<Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    assert!(recs.iter().all(|r| r["outcome"] == "passed"), "{recs:?}");

    // The saved conversation runs as a batch prompt.
    let r = Run::of(
        bin("mlxk-gen")
            .arg(model.path())
            .args(["-n", "3", "--json", "--prompts"])
            .arg(&saved),
    )
    .ok();
    let results: Vec<Value> = r
        .records()
        .into_iter()
        .filter(|v| v["type"] == "result")
        .collect();
    assert_eq!(results.len(), 1, "{}", r.stdout);
}

#[test]
fn ctrl_c_stops_an_answer_and_the_chat_goes_on() {
    // A long context so the answer runs for seconds.
    let model = tiny_llama(Some(8192));
    let state = tempfile::tempdir().unwrap();
    let mut p = chat(model.path(), state.path(), &["-n", "6000"]);
    p.wait_for(">>> ", 1);
    p.send("go\r");
    // Some answer text, then Ctrl-C.
    let start = std::time::Instant::now();
    while p.text().split_once("go\n").map_or(0, |(_, a)| a.len()) < 40 {
        assert!(start.elapsed().as_secs() < 60, "{}", p.text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    p.send("\x03");
    let t = p.wait_for("the answer so far is kept", 1);
    let first = turns(&t)[0];
    assert!(first.interrupted && first.generated < 6000, "{first:?}");
    // The session goes on, and the next turn builds on what the stopped one left.
    p.wait_for(">>> ", 2);
    p.send("more\r");
    // Stop this one too (it would run on for seconds).
    let start = std::time::Instant::now();
    while p.text().split_once("more\n").map_or(0, |(_, a)| a.len()) < 40 {
        assert!(start.elapsed().as_secs() < 60, "{}", p.text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    p.send("\x03");
    let second = turns(&p.wait_for(" generated (", 2))[1];
    assert!(
        second.reused >= first.prompt + first.generated - 1,
        "{first:?} {second:?}"
    );
    p.wait_for(">>> ", 3);
    p.send("/quit\r");
    let (code, screen) = p.wait();
    assert_eq!(
        code, 0,
        "an answer stopped is not a failed session: {screen}"
    );
}

#[test]
fn the_chat_refuses_options_it_cannot_honour() {
    let model = tiny_llama(None);
    let state = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--json"][..], "--json needs a prompt"),
        (&["--raw"][..], "--raw has no chat template"),
        (
            &["--prompt-cache", "x.safetensors"][..],
            "the chat keeps its cache",
        ),
    ] {
        let p = chat(model.path(), state.path(), args);
        let (code, screen) = p.wait();
        assert_eq!(code, 2, "{args:?}: {screen}");
        assert!(screen.contains(says), "{args:?}: {screen}");
    }
}
