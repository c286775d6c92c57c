#!/usr/bin/env bash
# MLX matmul and bandwidth on this machine, with the BLAS we link (OpenBLAS) and, for
# comparison in the same run, with the MLX wheel's bundled reference BLAS preloaded.
#   benchmarks/matmul.sh            (after scripts/bootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p mlxk-infer --bench matmul --no-run 2>/dev/null
bench=$(ls -t target/release/deps/matmul-* | grep -v '\.d$' | head -n1)
echo "== linked BLAS =="
"$bench"
bundled=$(ls "${MLX_DIR:-.deps/mlx-cpu}"/mlx_cpu.libs/libblas-*.so* 2>/dev/null | head -n1 || true)
if [ -n "$bundled" ]; then
  echo
  echo "== bundled reference BLAS (LD_PRELOAD=$bundled) =="
  LD_PRELOAD="$bundled" "$bench"
fi
