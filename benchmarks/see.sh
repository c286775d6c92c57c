#!/usr/bin/env bash
# mlxk-see against mlx-vlm 0.7.6 (Python reference, same MLX 0.32.2 build, OpenBLAS preloaded
# into its process as ours links it) on the same model, picture, prompt and token budget, in one
# run; each tool RUNS times, alternating, medians. Stages: load, image encode (processor, tower,
# projector), prefill (the prompt with the picture's features, encode excluded), decode; our/theirs ratios (time ratios > 1 and rate ratios > 1 both mean we are faster).
#   benchmarks/see.sh [MAX_TOKENS] [RUNS]
# Models (MODELS=… picks some): the tiny random LLaVA (`tiny_vlms` example; measures overhead
# only); LLaVA-1.5-shaped ones from benchmarks/make_llava.py (a random CLIP ViT-L/14-336 tower
# and projector over the real SmolLM2-135M-Instruct, its text model 4-bit and f32); and
# SmolVLM-256M-shaped ones from benchmarks/make_smolvlm.py (a random SigLIP on 512 px tiles
# over the same SmolLM2, 4-bit and f32; the picture becomes 12 tiles and the global view); and a
# Qwen2-VL-2B-shaped one from benchmarks/make_qwen2vl.py (random weights at its dimensions, the
# text model 4-bit; the picture becomes 12 × 18 patches, 54 tokens).
# Needs .deps/venv-vlm (pip install mlx==0.32.2 mlx-cpu==0.32.2 mlx-vlm==0.7.6
# 'transformers<=5.17.0') and .deps/ref/smollm2-{q4,f32} (benchmarks/gen.sh converts them).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-32}; runs=${2:-3}
py=.deps/venv-vlm/bin/python
[ -x "$py" ] || { echo "see.sh: reference venv missing: python3 -m venv .deps/venv-vlm && .deps/venv-vlm/bin/pip install mlx==0.32.2 mlx-cpu==0.32.2 mlx-vlm==0.7.6 'transformers<=5.17.0'" >&2; exit 1; }
ref=.deps/venv-ref/bin/python
gguf=$(ls .deps/hf/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF/snapshots/*/*.gguf)
[ -d .deps/ref/smollm2-q4 ] || "$ref" tests/reference/convert_smollm2.py "$gguf" .deps/ref >/dev/null
models=.deps/bench-vlm
[ -d "$models/llava-tiny" ] || cargo run -q -p mlxk-infer --features test-support --example tiny_vlms -- "$models/tiny" >/dev/null
[ -d "$models/llava-tiny" ] || ln -s tiny/llava-clip "$models/llava-tiny"
for m in q4 f32; do
  [ -d "$models/llava-smollm2-$m" ] || "$py" benchmarks/make_llava.py .deps/ref/smollm2-$m "$models/llava-smollm2-$m" >/dev/null
done
[ -d "$models/smolvlm-256m-q4" ] || "$py" benchmarks/make_smolvlm.py .deps/ref/smollm2-f32 "$models/smolvlm-256m-q4" --q4 >/dev/null
[ -d "$models/smolvlm-256m-f32" ] || "$py" benchmarks/make_smolvlm.py .deps/ref/smollm2-f32 "$models/smolvlm-256m-f32" >/dev/null
[ -d "$models/qwen2vl-2b-q4" ] || "$py" benchmarks/make_qwen2vl.py .deps/ref/smollm2-f32 "$models/qwen2vl-2b-q4" >/dev/null
cargo build -q --release -p mlxk-see
picture=benchmarks/fixtures/picture.png
prompt="Describe this picture."
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
echo "mlxk-see vs mlx-vlm: $picture, \"$prompt\", $n new tokens, median of $runs alternating runs"
printf '%-20s %-8s %8s %9s %12s %12s\n' model tool load_s encode_s prefill_t/s decode_t/s
for m in ${MODELS:-llava-tiny llava-smollm2-q4 llava-smollm2-f32 smolvlm-256m-q4 smolvlm-256m-f32 qwen2vl-2b-q4}; do
  dir=$models/$m
  : > "$out/ours"; : > "$out/theirs"
  for r in $(seq 1 "$runs"); do
    target/release/mlxk-see "$dir" "$picture" -p "$prompt" -n "$n" --json 2>/dev/null \
      | grep '"type":"result"\|"type":"load"' | tr '\n' ' ' >> "$out/ours"
    echo >> "$out/ours"
    LD_PRELOAD=$blas "$py" benchmarks/mlx_vlm_run.py "$dir" "$picture" "$prompt" "$n" 2>/dev/null | tail -1 >> "$out/theirs"
  done
  python3 - "$m" "$out/ours" "$out/theirs" <<'PY'
import json, re, statistics, sys
m, ours_f, theirs_f = sys.argv[1:4]
def ours(line):
    recs = [json.loads(x) for x in re.findall(r'\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}', line)]
    load = next(r for r in recs if r["type"] == "load"); res = next(r for r in recs if r["type"] == "result")
    pre = res["ttft_s"] - res["image_encode_s"]
    return (load["load_time_s"], res["image_encode_s"], res["prompt_tokens"] / pre, res["decode_tok_s"])
def theirs(line):
    t = json.loads(line)
    pre = t["prefill_s"]
    return (t["load_s"], t["encode_s"], t["prompt_tokens"] / pre, t["decode_tok_s"])
med = lambda rows: tuple(statistics.median(r[i] for r in rows) for i in range(4))
o = med([ours(l) for l in open(ours_f) if l.strip()])
t = med([theirs(l) for l in open(theirs_f) if l.strip()])
print(f"{m:<20} {'mlxk-see':<8} {o[0]:8.2f} {o[1]:9.3f} {o[2]:12.1f} {o[3]:12.1f}")
print(f"{'':<20} {'mlx-vlm':<8} {t[0]:8.2f} {t[1]:9.3f} {t[2]:12.1f} {t[3]:12.1f}")
print(f"{'':<20} {'ratio':<8} {t[0]/o[0]:7.2f}x {t[1]/o[1]:8.2f}x {o[2]/t[2]:11.2f}x {o[3]/t[3]:11.2f}x")
PY
done
