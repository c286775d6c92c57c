#!/usr/bin/env bash
# How fast `mlxk-probe --all` lists a cache of N models (default 100): a temporary cache of
# MLX-layout models (config, tokenizer, a 4-bit safetensors with 225 tensors) plus N/10 copies
# of the real SmolLM2 GGUF (linked, not copied), timed over several runs.
#   benchmarks/probe.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
cargo build -q --release -p mlxk-probe
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gguf=$(ls .deps/hf/hub/models--mlxk-demo--*/snapshots/*/*.gguf 2>/dev/null | head -n1 || true)
python3 - "$tmp" "$n" "$gguf" <<'PY'
import json, os, struct, sys
root, n, gguf = sys.argv[1], int(sys.argv[2]), sys.argv[3]
header = {"__metadata__": {"format": "mlx"}}
off = 0
for l in range(25):
    for p in ["q_proj", "k_proj", "v_proj"]:
        for suffix, dt, shape, size in [("weight", "U32", [64, 8], 2048), ("scales", "BF16", [64, 1], 128), ("biases", "BF16", [64, 1], 128)]:
            header[f"model.layers.{l}.self_attn.{p}.{suffix}"] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + size]}
            off += size
h = json.dumps(header).encode()
blob = struct.pack("<Q", len(h)) + h + bytes(off)
for i in range(n):
    snap = os.path.join(root, f"models--org--model-{i:03d}", "snapshots", "abc")
    os.makedirs(snap)
    os.makedirs(os.path.join(root, f"models--org--model-{i:03d}", "refs"))
    open(os.path.join(root, f"models--org--model-{i:03d}", "refs", "main"), "w").write("abc")
    if gguf and i % 10 == 0:
        os.symlink(os.path.abspath(gguf), os.path.join(snap, "model.gguf"))
        continue
    json.dump({"model_type": "llama", "max_position_embeddings": 8192, "quantization": {"bits": 4, "group_size": 64}}, open(os.path.join(snap, "config.json"), "w"))
    json.dump({"chat_template": "{{ x }}"}, open(os.path.join(snap, "tokenizer_config.json"), "w"))
    open(os.path.join(snap, "tokenizer.json"), "w").write("{}")
    open(os.path.join(snap, "model.safetensors"), "wb").write(blob)
PY
echo "mlxk-probe --all over $n models ($(( n / 10 )) of them the real 98 MB SmolLM2 GGUF):"
export HF_HUB_CACHE=$tmp
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 2 "target/release/mlxk-probe --all --json"
else
  for i in 1 2 3 4 5; do
    s=$(date +%s.%N); target/release/mlxk-probe --all --json > /dev/null; e=$(date +%s.%N)
    echo "  run $i: $(echo "$e - $s" | bc -l | cut -c1-6) s"
  done
fi
