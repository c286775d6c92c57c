#!/usr/bin/env bash
# The interactive chat's KV reuse across turns, measured: mlxk-gen (release) chats three turns
# with SmolLM2-135M-Instruct (4-bit GGUF) under a long system message, driven in tmux as a
# person would type; each turn's timings line says how many prompt tokens were reused and the
# time to first token. Then the third turn's whole conversation (saved with /save, plus the
# third question) runs one-shot through --prompts: the same prompt, prefilled from nothing.
#   benchmarks/chat.sh [MAX_TOKENS]
# Needs tmux (apt-get install tmux) and the demo model (scripts/bootstrap fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-48}
command -v tmux >/dev/null || { echo "chat.sh: needs tmux (apt-get install tmux)" >&2; exit 1; }
export HF_HUB_CACHE=${HF_HUB_CACHE:-$PWD/.deps/hf/hub} MLXK_DEVICE=cpu
cargo build -q --release -p mlxk-gen
work=$(mktemp -d); sock="$work/tmux"; trap 'tmux -S "$sock" kill-server 2>/dev/null; rm -rf "$work"' EXIT
sys="You are a careful assistant for a team of engineers who run language models on their own Linux machines. Answer in plain English, in at most three sentences, and say when you are unsure. The team cares about memory use, tokens per second, time to first token, and whether the output of a quantized model matches the reference implementation token for token. They use command-line tools and shell pipelines, read JSON Lines, and prefer short, exact answers with numbers where numbers are known. When a question is ambiguous, answer the most likely reading and name the other."
printf '%s' "$sys" > "$work/sys"
questions=("What is a KV cache?" "Why does it make the second turn faster?" "And what limits decode speed on a CPU?")
tmux -S "$sock" new-session -d -x 200 -y 50 \
  "XDG_STATE_HOME=$work target/release/mlxk-gen SmolLM2 -n $n --system \"\$(cat $work/sys)\"; sleep 600"
screen() { tmux -S "$sock" capture-pane -p -S -2000; }
wait_turns() { # until N timings lines are on the screen
  for _ in $(seq 1200); do
    [ "$(screen | grep -c ' generated (')" -ge "$1" ] && return 0; sleep 0.1
  done; echo "chat.sh: turn $1 did not finish" >&2; screen >&2; exit 1
}
until screen | grep -q '^>>>'; do sleep 0.1; done
for i in 0 1 2; do
  [ "$i" = 2 ] && { tmux -S "$sock" send-keys "/save $work/conv.jsonl" Enter; until [ -s "$work/conv.jsonl" ]; do sleep 0.1; done; }
  tmux -S "$sock" send-keys "${questions[$i]}" Enter
  wait_turns $((i + 1))
done
echo "SmolLM2-135M-Instruct 4-bit GGUF, $n new tokens a turn, release build"
printf '%-6s %14s %8s %16s\n' turn prompt_tokens reused first_token_s
screen | grep ' generated (' | python3 -c '
import re, sys
for i, l in enumerate(sys.stdin, 1):
    m = re.search(r"(\d+) prompt tokens(?: \((\d+) reused\))?.*first token ([\d.]+) s", l)
    print(f"{i:<6} {m[1]:>14} {m[2] or 0:>8} {m[3]:>16}")
' | tee "$work/turns"
python3 - "$work/conv.jsonl" "${questions[2]}" > "$work/third.jsonl" <<'PY'
import json, sys
c = json.loads(open(sys.argv[1]).read())
c["messages"].append({"role": "user", "content": sys.argv[2]})
print(json.dumps(c))
PY
one=$(target/release/mlxk-gen SmolLM2 -n "$n" --prompts "$work/third.jsonl" --json 2>/dev/null \
  | python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin if "\"result\"" in l][0]; print(r["prompt_tokens"], r["ttft_s"])')
read -r ptok ttft <<< "$one"
chat=$(tail -1 "$work/turns" | awk '{print $4}')
printf 'turn 3 one-shot (--prompts, nothing reused): %s prompt tokens, first token %.2f s; the chat %.1fx faster to its first token\n' \
  "$ptok" "$ttft" "$(python3 -c "print($ttft / $chat)")"
