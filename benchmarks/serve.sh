#!/usr/bin/env bash
# mlxk-serve against mlx_lm.server (Python reference, same MLX 0.32.2 build, OpenBLAS preloaded
# into its process as ours links it) on SmolLM2-135M-Instruct 4-bit (the same converted MLX
# folder for both), in one run: streamed chat completions, greedy, at 1, 4 and 16 concurrent
# clients (benchmarks/serve_load.py). Prints requests/s, median time to first token and
# generated tokens/s for both, and our/theirs ratios (TTFT: theirs/ours, so > 1 is better).
#   benchmarks/serve.sh [MAX_TOKENS] [REQUESTS_PER_CLIENT]
# Needs the reference venv (make reference) for mlx_lm.server and the GGUF conversion.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-32}; per=${2:-4}
py=.deps/venv-ref/bin/python
[ -x "$py" ] || { echo "serve.sh: reference venv missing: make reference" >&2; exit 1; }
gguf=$(ls .deps/hf/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-GGUF/snapshots/*/*.gguf)
[ -d .deps/ref/smollm2-q4 ] || "$py" tests/reference/convert_smollm2.py "$gguf" .deps/ref >/dev/null
cargo build -q --release -p mlxk-serve
dir=$PWD/.deps/ref/smollm2-q4
blas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
wait_up() { for _ in $(seq 300); do curl -sf "$1/v1/models" >/dev/null && return 0; sleep 0.2; done; echo "serve.sh: $1 did not come up" >&2; exit 1; }
MLXK_DEVICE=cpu target/release/mlxk-serve "$dir" --port 18431 --queue 64 --log "$work/ours.log" 2>"$work/ours.err" &
pids+=($!)
LD_PRELOAD=$blas "$py" -m mlx_lm.server --model "$dir" --port 18432 2>"$work/theirs.err" &
pids+=($!)
wait_up http://127.0.0.1:18431; wait_up http://127.0.0.1:18432
ours_model=$(curl -s http://127.0.0.1:18431/v1/models | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
# One request each first: both have loaded the model and warmed up before anything is timed.
python3 benchmarks/serve_load.py http://127.0.0.1:18431 "$ours_model" 1 1 4 >/dev/null
python3 benchmarks/serve_load.py http://127.0.0.1:18432 "$dir" 1 1 4 >/dev/null
echo "SmolLM2-135M-Instruct 4-bit, streamed chat, $n tokens a request, $per requests per client"
printf '%-5s %-12s %8s %10s %10s %8s\n' conc server req/s ttft_med_s ttft_p90_s tok/s
for c in 1 4 16; do
  total=$((c * per))
  o=$(python3 benchmarks/serve_load.py http://127.0.0.1:18431 "$ours_model" "$c" "$total" "$n")
  t=$(python3 benchmarks/serve_load.py http://127.0.0.1:18432 "$dir" "$c" "$total" "$n")
  python3 - "$o" "$t" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name, r in (("mlxk-serve", o), ("mlx_lm", t)):
    print(f"{r['concurrency']:<5} {name:<12} {r['req_per_s']:8.2f} {r['ttft_median_s']:10.3f} {r['ttft_p90_s']:10.3f} {r['tokens_per_s']:8.1f}" + (f"  ({r['failed']} failed)" if r['failed'] else ""))
print(f"      ratio        {o['req_per_s']/t['req_per_s']:7.2f}x {t['ttft_median_s']/o['ttft_median_s']:9.2f}x {t['ttft_p90_s']/o['ttft_p90_s']:9.2f}x {o['tokens_per_s']/t['tokens_per_s']:7.2f}x")
PY
done
