#!/usr/bin/env bash
# mlxk-gen against mlx-lm (Python reference, same MLX 0.32.2 build, OpenBLAS preloaded into its
# process as ours links it) on SmolLM2-135M-Instruct, 4-bit and f32, same prompt, same token
# budget, in one run. Each tool runs RUNS times, alternating, and the table gives medians (this
# VM drifts ±20 % between minutes; alternating spreads the drift over both). Prints load time,
# prefill and decode tok/s for both and our/theirs ratios, plus decode as a fraction of the
# memory-bandwidth bound: read bandwidth (measured here, all cores) ÷ weight bytes read per
# token (every matrix once; of an untied embedding only one row).
#   benchmarks/gen.sh [MAX_TOKENS] [RUNS] [BANDWIDTH_GBPS]
# Needs the reference venv (.deps/venv-ref: pip install mlx==0.32.2 mlx-cpu==0.32.2
# mlx-lm==0.32.2); converts the GGUF into .deps/ref with tests/reference/convert_smollm2.py.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-64}; runs=${2:-3}; bw=${3:-}
py=.deps/venv-ref/bin/python
[ -x "$py" ] || { echo "gen.sh: reference venv missing: python3 -m venv .deps/venv-ref && .deps/venv-ref/bin/pip install mlx==0.32.2 mlx-cpu==0.32.2 mlx-lm==0.32.2" >&2; exit 1; }
gguf=$(ls .deps/hf/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF/snapshots/*/*.gguf)
[ -d .deps/ref/smollm2-q4 ] || "$py" tests/reference/convert_smollm2.py "$gguf" .deps/ref >/dev/null
cargo build -q --release -p mlxk-gen
[ -n "$bw" ] || bw=$(cargo bench -q -p mlxk-infer --bench matmul -- bandwidth 2>/dev/null | tail -1)
prompt=$(mktemp); out=$(mktemp -d); trap 'rm -rf "$prompt" "$out"' EXIT
# ~150 tokens of plain prose.
for i in $(seq 1 6); do printf 'The history of the city begins with a small river crossing where traders met to exchange salt, grain and wool before the first walls were built. ' ; done > "$prompt"
blas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
echo "SmolLM2-135M-Instruct, $n new tokens, median of $runs alternating runs each; read bandwidth $bw GB/s"
printf '%-12s %-8s %9s %12s %12s   %s\n' model tool load_s prefill_t/s decode_t/s "decode/bound"
for m in q4 f32; do
  dir=.deps/ref/smollm2-$m
  : > "$out/ours"; : > "$out/theirs"
  for r in $(seq 1 "$runs"); do
    target/release/mlxk-gen "$dir" --prompt-file "$prompt" --raw -n "$n" --json 2>/dev/null \
      | grep '"type":"result"\|"type":"load"' | tr '\n' ' ' >> "$out/ours"
    echo >> "$out/ours"
    LD_PRELOAD=$blas "$py" benchmarks/mlx_lm_run.py "$dir" "$prompt" "$n" 2>/dev/null | tail -1 >> "$out/theirs"
  done
  python3 - "$m" "$out/ours" "$out/theirs" "$dir/model.safetensors" "$bw" <<'PY'
import json, re, statistics, struct, sys
m, ours_f, theirs_f, st, bw = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
def ours(line):
    recs = [json.loads(x) for x in re.findall(r'\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}', line)]
    load = next(r for r in recs if r["type"] == "load"); res = next(r for r in recs if r["type"] == "result")
    return (load["load_time_s"], res["prefill_tok_s"], res["decode_tok_s"])
def theirs(line):
    t = json.loads(line)
    return (t["load_s"], t["prefill_tok_s"], t["decode_tok_s"])
med = lambda rows: tuple(statistics.median(r[i] for r in rows) for i in range(3))
o = med([ours(l) for l in open(ours_f) if l.strip()])
t = med([theirs(l) for l in open(theirs_f) if l.strip()])
# Weight bytes one decode step reads: every tensor once, except that an untied embedding
# (there is an lm_head) contributes only the one row it looks up.
with open(st, "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
header.pop("__metadata__", None)
size = lambda v: v["data_offsets"][1] - v["data_offsets"][0]
per_token = sum(size(v) for v in header.values())
if any(k.startswith("lm_head.") for k in header):
    for k, v in header.items():
        if k.startswith("model.embed_tokens."):
            per_token -= size(v) - size(v) // v["shape"][0]
bound = bw * 1e9 / per_token
print(f"smollm2-{m:<4} {'mlxk-gen':<8} {o[0]:9.2f} {o[1]:12.1f} {o[2]:12.1f}   {o[2]/bound:6.1%} of {bound:.0f} tok/s ({per_token/1e6:.0f} MB/token)")
print(f"{'':12} {'mlx-lm':<8} {t[0]:9.2f} {t[1]:12.1f} {t[2]:12.1f}   {t[2]/bound:6.1%}")
print(f"{'':12} {'ratio':<8} {t[0]/o[0]:8.2f}x {o[1]/t[1]:11.2f}x {o[2]/t[2]:11.2f}x   (load: theirs/ours; speed: ours/theirs)")
PY
done
# The GGUF itself through mlxk-gen and through llama.cpp's llama-bench (built by
# benchmarks/build_llama_cpp.sh; its row is left out until then), same file, same threads, the
# same prompt length and token budget: mean ± stddev over RUNS repetitions, as llama-bench
# prints them. llama-bench times its generation from an empty context, ours after the prompt.
lb=.deps/llama.cpp/build/bin/llama-bench
if [ -x "$lb" ]; then
  threads=$(nproc)
  : > "$out/gguf"
  for r in $(seq 1 "$runs"); do
    target/release/mlxk-gen "$gguf" --prompt-file "$prompt" --raw -n "$n" --json 2>/dev/null \
      | grep '"type":"result"' >> "$out/gguf"
  done
  np=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["prompt_tokens"])' "$out/gguf")
  "$lb" -m "$gguf" -p "$np" -n "$n" -t "$threads" -r "$runs" -o json 2>/dev/null > "$out/llama.json"
  python3 - "$out/gguf" "$out/llama.json" "$threads" <<'PY'
import json, statistics, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = json.load(open(sys.argv[2]))
ms = lambda v: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
o_pp, o_tg = ms([r["prefill_tok_s"] for r in ours]), ms([r["decode_tok_s"] for r in ours])
o_ttft = ms([r["ttft_s"] for r in ours])
pp = next(r for r in runs if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r for r in runs if r["n_gen"] > 0 and r["n_prompt"] == 0)
t_pp, t_tg = (pp["avg_ts"], pp["stddev_ts"]), (tg["avg_ts"], tg["stddev_ts"])
print(f"\nthe GGUF itself ({pp['n_prompt']}-token prompt, {tg['n_gen']} new tokens, {sys.argv[3]} threads; mean ± stddev)")
print(f"{'tool':<10} {'prefill_t/s':>16} {'decode_t/s':>16} {'ttft_s':>14}")
print(f"{'mlxk-gen':<10} {o_pp[0]:9.1f} ± {o_pp[1]:4.1f} {o_tg[0]:9.1f} ± {o_tg[1]:4.1f} {o_ttft[0]:7.3f} ± {o_ttft[1]:.3f}")
print(f"{'llama.cpp':<10} {t_pp[0]:9.1f} ± {t_pp[1]:4.1f} {t_tg[0]:9.1f} ± {t_tg[1]:4.1f} {pp['n_prompt'] / t_pp[0]:7.3f} (prompt ÷ pp)")
print(f"{'ratio':<10} {o_pp[0] / t_pp[0]:15.2f}x {o_tg[0] / t_tg[0]:15.2f}x   (ours/theirs)")
PY
else
  echo "(llama.cpp not built: benchmarks/build_llama_cpp.sh builds it; its comparison is left out)"
fi
