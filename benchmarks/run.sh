#!/usr/bin/env bash
# The benchmark suite, one command, safe under cron (seeds/002, /004):
#   1. probe the cached models (or those matching PATTERN) and gate them, logging what is blocked;
#   2. run the fixed prompt set (benchmarks/fixtures/prompts.jsonl) through mlxk-gen on every
#      text model, then over HTTP through mlxk-serve (benchmarks/suite_serve.py), and the
#      fixture recording (benchmarks/fixtures/speech.flac) through mlxk-hear on every Whisper
#      model and the fixture picture (benchmarks/fixtures/picture.png) through mlxk-see on
#      every vision model, REPEAT times, all under memmon;
#   3. report-validate the report; 4. report-gen, compared with the previous run of NAME;
#   5. memplot the memory timeline with the run's load/unload moments.
# Whisper and vision models are listed as skipped, with why, when no mlxk-hear or mlxk-see is
# found.
#
#   benchmarks/run.sh [--models PATTERN] [--name NAME] [--repeat N] [--out DIR] [--bin DIR]
#
# Outputs in DIR (default benchmarks/runs), STAMP = UTC date and time of the start:
#   STAMP_NAME-benchmark.jsonl  report records (schema 0.2.2), one per prompt, model and repeat
#   STAMP_NAME-memory.jsonl     memmon samples and its summary (with the suite's exit code)
#   STAMP_NAME-report.md        the Markdown report, with the comparison
#   STAMP_NAME-timeline.html    the memory timeline
#   STAMP_NAME.log              what happened, step by step
# Files appear under these names only when complete (written aside, then renamed). A second
# run of the same NAME while one runs exits 75 at once. The exit status is 0, or that of the
# first step that failed (the log names it); the steps after a failure still run where they can.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pattern=""; name="benchmark"; repeat=1; out="$here/runs"; bin=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --models) pattern=${2:?}; shift 2 ;;
    --name) name=${2:?}; shift 2 ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --bin) bin=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
done
case "$repeat" in ''|*[!0-9]*|0) echo "run.sh: --repeat wants a whole number ≥ 1" >&2; exit 2 ;; esac
case "$name" in *[!A-Za-z0-9._-]*|'') echo "run.sh: --name may hold letters, digits, . _ -" >&2; exit 2 ;; esac
tool() { if [ -n "$bin" ]; then echo "$bin/$1"; else command -v "$1" || echo "$here/../target/release/$1"; fi; }
for t in mlxk-probe mlxk-gate mlxk-gen memmon report-validate report-gen memplot; do
  [ -x "$(tool $t)" ] || { echo "run.sh: $t not found (build with make release, or give --bin DIR)" >&2; exit 2; }
done
# The part memmon watches: probe, gate, run. It writes into the outer run's work folder.
if [ "${MLXK_SUITE_INNER:-}" = 1 ]; then
  work=$MLXK_SUITE_WORK
  say() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$work/inner.log" >&2; }
  rc=0
  # shellcheck disable=SC2086 # the pattern is one model spec or nothing
  if ! "$(tool mlxk-probe)" --json ${pattern:-"--all"} > "$work/probed.jsonl" 2> "$work/probe.err"; then
    say "mlxk-probe: $(tail -n 1 "$work/probe.err")"; rc=3
  fi
  "$(tool mlxk-gate)" --json < "$work/probed.jsonl" > "$work/gated.jsonl" 2> "$work/gate.err"
  hear=""; [ -x "$(tool mlxk-hear)" ] && hear=1
  see=""; [ -x "$(tool mlxk-see)" ] && see=1
  python3 - "$work/gated.jsonl" "$work" "$hear" "$see" <<'PY' | while IFS= read -r l; do say "$l"; done
import json, sys
text, audio, vision, other = [], [], [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("type") != "model":
        continue
    g = r.get("gate", {})
    why = "; ".join(g.get("reasons", []))
    if g.get("decision") == "block":
        print(f"blocked: {r['id']}: {why}")
    elif g.get("backend") == "text":
        text.append(line)
    elif g.get("backend") == "audio" and sys.argv[3]:
        audio.append(line)
    elif g.get("backend") == "vision" and sys.argv[4]:
        vision.append(line)
    else:
        other.append((r["id"], g.get("backend")))
open(sys.argv[2] + "/text.jsonl", "w").writelines(text)
open(sys.argv[2] + "/audio.jsonl", "w").writelines(audio)
open(sys.argv[2] + "/vision.jsonl", "w").writelines(vision)
for i, b in other:
    why = {"vision": "no mlxk-see was found (build it, or give --bin DIR)",
           "audio": "no mlxk-hear was found (build it, or give --bin DIR)"}.get(b, "no tool runs it")
    print(f"skipped: {i}: a {b} model; {why}")
print(f"{len(text)} text model(s), {len(audio)} Whisper model(s) and {len(vision)} vision model(s) to run")
PY
  # repeats LABEL TOOL RECORDS ARGS…: TOOL on the models in RECORDS, --repeat times, with its
  # records in LABEL-N.jsonl, its stderr in LABEL-N.err, and its load/unload moments kept for
  # the timeline.
  repeats() {
    local label=$1 t=$2 records=$3 r x
    shift 3
    for r in $(seq 1 "$repeat"); do
      say "$t: repeat $r of $repeat"
      "$(tool "$t")" "$@" --json --report "$work/benchmark.jsonl" \
        < "$records" > "$work/$label-$r.jsonl" 2> "$work/$label-$r.err"
      x=$?
      if [ "$x" != 0 ]; then
        say "$t exited $x: $(grep -v '^{' "$work/$label-$r.err" | tail -n 1)"; [ "$rc" = 0 ] && rc=$x
      fi
      grep -h '"type":"load"\|"type":"unload"' "$work/$label-$r.jsonl" >> "$work/events.jsonl"
    done
  }
  [ -s "$work/text.jsonl" ] && repeats gen mlxk-gen "$work/text.jsonl" --prompts "$here/fixtures/prompts.jsonl"
  [ -s "$work/audio.jsonl" ] && repeats hear mlxk-hear "$work/audio.jsonl" "$here/fixtures/speech.flac"
  [ -s "$work/vision.jsonl" ] && repeats see mlxk-see "$work/vision.jsonl" "$here/fixtures/picture.png" \
    -p "Describe this picture." -n 64 --temp 0
  # The same prompt set over HTTP: mlxk-serve on the text models, one server per repeat.
  if [ -s "$work/text.jsonl" ] && [ -x "$(tool mlxk-serve)" ]; then
    spid=""
    # A signal ends bash without its EXIT trap: the server is stopped on both ways out.
    trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null' EXIT
    trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; exit 143' TERM INT HUP
    for r in $(seq 1 "$repeat"); do
      say "mlxk-serve: repeat $r of $repeat"
      # (not holding the suite's lock: fd 9 stays with run.sh)
      "$(tool mlxk-serve)" --port 0 --report "$work/benchmark.jsonl" --log "$work/serve-$r.log" \
        < "$work/text.jsonl" 2> "$work/serve-$r.err" 9>&- &
      spid=$!
      addr=""
      for _ in $(seq 600); do
        addr=$(sed -n 's|^mlxk-serve: listening on ||p' "$work/serve-$r.err" | head -n 1)
        [ -n "$addr" ] && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
      done
      if [ -z "$addr" ]; then
        say "mlxk-serve did not start: $(tail -n 1 "$work/serve-$r.err")"; [ "$rc" = 0 ] && rc=1
        kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=""
        continue
      fi
      python3 "$here/suite_serve.py" "$addr" "$here/fixtures/prompts.jsonl" > "$work/serve-$r.out" 2>&1
      c=$?
      # SIGTERM drains (the requests are done by now); a server that does not end in a minute
      # is killed.
      kill -TERM "$spid"
      for _ in $(seq 600); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$spid" 2>/dev/null
      wait "$spid"; s=$?; spid=""
      if [ "$c" != 0 ]; then
        say "suite_serve.py exited $c: $(grep -v ' tokens$' "$work/serve-$r.out" | tail -n 1)"; [ "$rc" = 0 ] && rc=$c
      fi
      if [ "$s" != 0 ]; then
        say "mlxk-serve exited $s: $(grep -v '^{' "$work/serve-$r.err" | tail -n 1)"; [ "$rc" = 0 ] && rc=$s
      fi
    done
  else
    [ -s "$work/text.jsonl" ] && say "skipped: mlxk-serve: not found (build it, or give --bin DIR)"
  fi
  exit "$rc"
fi

mkdir -p "$out" || exit 1
exec 9>"$out/.$name.lock"
if ! flock -n 9; then
  echo "run.sh: a run named $name is already going ($out/.$name.lock); not starting a second" >&2
  exit 75
fi
stamp=$(date -u +%Y%m%d-%H%M%S)
base="$out/${stamp}_$name"
n=1; while compgen -G "$base*" >/dev/null; do n=$((n + 1)); base="$out/${stamp}-${n}_$name"; done
work=$(mktemp -d "$out/.work-$name-XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'log "interrupted: nothing is left under a final name"; exit 130' INT TERM
log() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$work/log" >&2; }
status=0; failed=""
fail() { log "FAILED: $1 (exit $2)"; if [ "$status" = 0 ]; then status=$2; failed=$1; fi; }
publish() { mv -f "$work/$1" "$base$2"; }   # a finished file under its final name
previous=$(ls -1t "$out"/*_"$name"-benchmark.jsonl 2>/dev/null | head -n 1)

# 1-2. Probe, gate and run, under memmon (samples every 200 ms, the suite's exit code in its summary).
if [ "${MLXK_SUITE_INNER:-}" != 1 ]; then
  log "suite $name: models ${pattern:-all cached}, $repeat repeat(s), out $out"
  MLXK_SUITE_INNER=1 MLXK_SUITE_WORK="$work" "$(tool memmon)" -o "$work/memory.jsonl" -- \
    "$0" --name "$name" --repeat "$repeat" --out "$out" ${bin:+--bin "$bin"} ${pattern:+--models "$pattern"}
  rc=$?
  [ -s "$work/inner.log" ] && cat "$work/inner.log" >> "$work/log"
  [ "$rc" = 0 ] || fail "probe, gate and the runs" "$rc"
fi
[ -s "$work/memory.jsonl" ] && publish memory.jsonl -memory.jsonl

# 3. Validate.
if [ -s "$work/benchmark.jsonl" ]; then
  if "$(tool report-validate)" "$work/benchmark.jsonl" > "$work/validate.out" 2>&1; then
    log "report-validate: $(tail -n 1 "$work/validate.out")"
  else
    rc=$?; cat "$work/validate.out" >> "$work/log"; fail report-validate "$rc"
  fi
  publish benchmark.jsonl -benchmark.jsonl
else
  fail "the runs wrote no report records" 1
fi

# 4. The Markdown report, compared with the previous run of this name.
if [ -s "$base-benchmark.jsonl" ]; then
  if [ -n "$previous" ]; then
    log "report-gen: comparing with $(basename "$previous")"
    "$(tool report-gen)" "$base-benchmark.jsonl" --compare "$previous" -o "$work/report.md" >> "$work/log" 2>&1
  else
    log "report-gen: no earlier run named $name to compare with"
    "$(tool report-gen)" "$base-benchmark.jsonl" -o "$work/report.md" >> "$work/log" 2>&1
  fi
  rc=$?
  if [ "$rc" = 0 ]; then publish report.md -report.md; else fail report-gen "$rc"; fi
fi

# 5. The memory timeline, with the models' load/unload moments and the report's runs.
if [ -s "$base-memory.jsonl" ]; then
  inputs=("$base-memory.jsonl")
  [ -s "$work/events.jsonl" ] && inputs+=("$work/events.jsonl")
  [ -s "$base-benchmark.jsonl" ] && inputs+=("$base-benchmark.jsonl")
  if "$(tool memplot)" "${inputs[@]}" --format html -o "$work/timeline.html" >> "$work/log" 2>&1; then
    publish timeline.html -timeline.html
  else
    fail memplot $?
  fi
fi

if [ "$status" = 0 ]; then
  log "done: $(basename "$base")-*"
else
  log "done with a failure: $failed (exit $status)"
fi
publish log .log
exit "$status"
