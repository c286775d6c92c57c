#!/usr/bin/env bash
# Builds llama.cpp's llama-bench into .deps/llama.cpp/build/bin, for benchmarks only (never for
# tests or CI): llama.cpp as vendored by the llama-cpp-python 0.3.36 sdist from PyPI, cmake and
# ninja from PyPI (into the reference venv). CPU-only, AVX2/FMA/F16C — the instruction sets our
# kernels use — with GGML_NATIVE off (on VMs that report AMX but trap it, a native build dies
# in `tileloadd`); llama.cpp's other defaults (OpenMP threads) stay. About 15–25 minutes on
# 2 cores; a second run does nothing.
#   benchmarks/build_llama_cpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.deps/llama.cpp
bin=$dir/build/bin/llama-bench
[ -x "$bin" ] && { echo "$bin"; exit 0; }
py=.deps/venv-ref/bin/python
[ -x "$py" ] || { echo "build_llama_cpp.sh: reference venv missing (see benchmarks/gen.sh)" >&2; exit 1; }
"$py" -m pip install -q cmake ninja
mkdir -p "$dir"
tgz=$dir/llama_cpp_python-0.3.36.tar.gz
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if ! echo "$sha  $tgz" | sha256sum -c --status 2>/dev/null; then
  curl -sSfL -o "$tgz" "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz"
  echo "$sha  $tgz" | sha256sum -c --status || { echo "build_llama_cpp.sh: $tgz: checksum mismatch" >&2; exit 1; }
fi
[ -d "$dir/llama_cpp_python-0.3.36" ] || tar xzf "$tgz" -C "$dir"
PATH=$PWD/.deps/venv-ref/bin:$PATH cmake -S "$dir/llama_cpp_python-0.3.36/vendor/llama.cpp" -B "$dir/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON >/dev/null
PATH=$PWD/.deps/venv-ref/bin:$PATH cmake --build "$dir/build" --target llama-bench -j 2 >/dev/null
echo "$bin"
