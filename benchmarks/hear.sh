#!/usr/bin/env bash
# mlxk-hear against mlx-whisper (Python reference, same MLX 0.32.2 build, OpenBLAS preloaded into
# its process as ours links it, the same tiny.en weights converted to its layout in f32) and
# against faster-whisper (CTranslate2 on the very same model.bin, f32, same thread count), on a
# ~10 s clip and a 74 s recording made by tests/fixtures/speech.sh, in one run. Each tool runs
# RUNS times, alternating; the table gives medians of wall time per file including model load,
# the real-time factor (time ÷ audio length), our stages (audio read, mel, encode, decode) and
# the ratios.
#   benchmarks/hear.sh [RUNS]
# Needs .deps/venv-whisper (mlx==0.32.2 mlx-cpu==0.32.2, mlx-whisper==0.4.3 --no-deps, numba
# tiktoken scipy more-itertools tqdm huggingface_hub) and .deps/venv-fw (faster-whisper==1.2.1),
# and ffmpeg (mlx-whisper decodes with it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
threads=$(nproc)
mw=.deps/venv-whisper/bin/python; fw=.deps/venv-fw/bin/python
for p in "$mw" "$fw"; do [ -x "$p" ] || { echo "hear.sh: $p missing (see the header of this script)" >&2; exit 1; }; done
command -v ffmpeg >/dev/null || { echo "hear.sh: mlx-whisper needs ffmpeg (apt-get install ffmpeg)" >&2; exit 1; }
ct2=$(ls -d .deps/hf/hub/models--mlxk-demo--whisper-tiny.en-ct2/snapshots/*/ | head -1)
ref=.deps/ref/whisper-tiny.en-mlx
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
bash tests/fixtures/speech.sh "$work" >/dev/null
sox "$work/short.wav" "$work/short.wav" "$work/clip10.wav"
if [ ! -f "$ref/weights.safetensors" ]; then
  "$mw" - "$ct2" "$ref" <<'PY'
import sys; sys.path.insert(0, "tests/reference")
import whisper_goldens as g
g.convert(sys.argv[1], sys.argv[2])
PY
fi
cargo build -q --release -p mlxk-hear
blas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
export MLXK_DEVICE=cpu OMP_NUM_THREADS=$threads
echo "Whisper tiny.en (f32 compute), greedy + fallback, $threads threads, median of $runs alternating runs; wall time incl. model load"
printf '%-10s %7s | %-14s %7s %6s | %s\n' audio secs tool wall_s RTF "stages (ours) / ratio"
for f in clip10 long; do
  wav="$work/$f.wav"
  : > "$work/ours"; : > "$work/mw"; : > "$work/fw"
  for r in $(seq 1 "$runs"); do
    s=$(date +%s.%N)
    target/release/mlxk-hear "$ct2" "$wav" --json > "$work/o.jsonl" 2>/dev/null
    e=$(date +%s.%N)
    python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; t=[x for x in r if x['type']=='transcript'][0]; print(json.dumps({'wall': $e-$s, 'text': t['text'], 'dur': t['duration_s']}))" "$work/o.jsonl" >> "$work/ours"
    s=$(date +%s.%N); LD_PRELOAD=$blas "$mw" benchmarks/whisper_run.py mlx-whisper "$ref" "$wav" 2>/dev/null | tail -1 > "$work/m.json"; e=$(date +%s.%N)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['wall']=$e-$s; print(json.dumps(d))" "$work/m.json" >> "$work/mw"
    s=$(date +%s.%N); "$fw" benchmarks/whisper_run.py faster-whisper "$ct2" "$wav" "$threads" 2>/dev/null | tail -1 > "$work/f.json"; e=$(date +%s.%N)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['wall']=$e-$s; print(json.dumps(d))" "$work/f.json" >> "$work/fw"
  done
  target/release/mlxk-hear "$ct2" "$wav" -v 2>&1 >/dev/null | grep -o 'read .*tokens)' > "$work/stages" || true
  python3 - "$f" "$work" <<'PY'
import json, statistics, sys
f, w = sys.argv[1], sys.argv[2]
rows = lambda n: [json.loads(l) for l in open(f"{w}/{n}") if l.strip()]
o, m, fw = rows("ours"), rows("mw"), rows("fw")
dur = o[0]["dur"]
med = lambda rs: statistics.median(r["wall"] for r in rs)
mo, mm, mf = med(o), med(m), med(fw)
stages = open(f"{w}/stages").read().strip()
print(f"{f:<10} {dur:7.1f} | {'mlxk-hear':<14} {mo:7.2f} {mo/dur:6.3f} | {stages}")
ratio = lambda theirs: f"ours {theirs/mo:.2f}x faster" if theirs >= mo else f"ours {mo/theirs:.2f}x slower"
print(f"{'':<10} {'':7} | {'mlx-whisper':<14} {mm:7.2f} {mm/dur:6.3f} | {ratio(mm)}")
print(f"{'':<10} {'':7} | {'faster-whisper':<14} {mf:7.2f} {mf/dur:6.3f} | {ratio(mf)}")
same = lambda a, b: a["text"].strip() == b["text"].strip()
print(f"{'':<10} {'':7} | same text as mlx-whisper: {same(o[0], m[0])}, as faster-whisper: {same(o[0], fw[0])}")
PY
done
