# The two commands the README starts with: `make demo` and `make test`.
# Both bootstrap first (system packages, the MLX wheel, mlx-c sources, the demo model).
SHELL := /bin/bash
CARGO ?= cargo
export HF_HUB_CACHE ?= $(CURDIR)/.deps/hf/hub

.PHONY: all bootstrap reference build release demo test lint fmt man bench clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(CARGO) build --workspace --bins

release: bootstrap
	$(CARGO) build --release --workspace --bins

# The main job on a real small model: SmolLM2-135M-Instruct (GGUF Q4_1) through MLX.
demo: release
	@scripts/demo target/release

# Format and lints.
lint: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Format, lints, then every test (unit, end-to-end with the real binaries, MLX link tests).
test: lint
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

# Regenerate the checked-in man pages from the clap definitions.
man:
	MLXK_UPDATE_MAN=1 $(CARGO) test --workspace --bins man_page

# The Python reference stack (mlx-lm on the same MLX) for parity goldens and benchmarks.
reference:
	@test -x .deps/venv-ref/bin/python || python3 -m venv .deps/venv-ref
	.deps/venv-ref/bin/pip install -q mlx==0.32.2 mlx-cpu==0.32.2 mlx-lm==0.32.2

# Benchmarks (never timed tests): the MLX matmul/bandwidth, our quantized kernel against MLX's,
# and mlxk-gen against mlx-lm in one run (benchmarks/gen.sh prints the ratios).
bench: release reference
	benchmarks/matmul.sh
	$(CARGO) bench -p mlxk-infer --bench qmatmul
	benchmarks/gen.sh

clean:
	$(CARGO) clean
