#!/usr/bin/env bash
# mlxk-gen against mlx-lm (Python reference, same MLX 0.32.2 build, OpenBLAS preloaded into its
# process as ours links it) on SmolLM2-135M-Instruct, 4-bit and f32, same prompt, same token
# budget, in one run. Prints load time, prefill and decode tok/s for both and our/theirs ratios,
# plus decode as a fraction of the memory-bandwidth bound (BW ÷ weight bytes read per token).
#   benchmarks/gen.sh [MAX_TOKENS] [BANDWIDTH_GBPS]
# Needs the reference venv (.deps/venv-ref: pip install mlx==0.32.2 mlx-cpu==0.32.2
# mlx-lm==0.32.2); converts the GGUF into .deps/ref with tests/reference/convert_smollm2.py.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-64}; bw=${2:-21.5}
py=.deps/venv-ref/bin/python
[ -x "$py" ] || { echo "gen.sh: reference venv missing: python3 -m venv .deps/venv-ref && .deps/venv-ref/bin/pip install mlx==0.32.2 mlx-cpu==0.32.2 mlx-lm==0.32.2" >&2; exit 1; }
gguf=$(ls .deps/hf/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF/snapshots/*/*.gguf)
[ -d .deps/ref/smollm2-q4 ] || "$py" tests/reference/convert_smollm2.py "$gguf" .deps/ref >/dev/null
cargo build -q --release -p mlxk-gen
prompt=$(mktemp); trap 'rm -f "$prompt"' EXIT
# ~150 tokens of plain prose.
for i in $(seq 1 6); do printf 'The history of the city begins with a small river crossing where traders met to exchange salt, grain and wool before the first walls were built. ' ; done > "$prompt"
blas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
printf '%-12s %-8s %9s %12s %12s   %s\n' model tool load_s prefill_t/s decode_t/s "decode/bound"
for m in q4 f32; do
  dir=.deps/ref/smollm2-$m
  ours=$(target/release/mlxk-gen "$dir" --prompt-file "$prompt" --raw -n "$n" --json --verbose 2>/tmp/gen_err.txt | grep '"type":"result"\|"type":"load"' | tr '\n' ' ')
  wbytes=$(du -b "$dir/model.safetensors" | cut -f1)
  theirs=$(LD_PRELOAD=$blas "$py" benchmarks/mlx_lm_run.py "$dir" "$prompt" "$n" 2>/dev/null | tail -1)
  python3 - "$m" "$ours" "$theirs" "$wbytes" "$bw" <<'PY'
import json, re, sys
m, ours, theirs, wbytes, bw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
recs = [json.loads(x) for x in re.findall(r'\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}', ours)]
load = next(r for r in recs if r["type"] == "load"); res = next(r for r in recs if r["type"] == "result")
bound = bw * 1e9 / wbytes
o = (load["load_time_s"], res["prefill_tok_s"], res["decode_tok_s"])
t = (theirs["load_s"], theirs["prefill_tok_s"], theirs["decode_tok_s"])
print(f"smollm2-{m:<4} {'mlxk-gen':<8} {o[0]:9.2f} {o[1]:12.1f} {o[2]:12.1f}   {o[2]/bound:6.1%} of {bound:.0f} tok/s")
print(f"{'':12} {'mlx-lm':<8} {t[0]:9.2f} {t[1]:12.1f} {t[2]:12.1f}   {t[2]/bound:6.1%}")
print(f"{'':12} {'ratio':<8} {t[0]/o[0]:8.2f}x {o[1]/t[1]:11.2f}x {o[2]/t[2]:11.2f}x   (load: theirs/ours; speed: ours/theirs)")
PY
done
