# The two commands the README starts with: `make demo` and `make test`.
# Both bootstrap first (system packages, the MLX wheel, mlx-c sources, the demo model).
SHELL := /bin/bash
CARGO ?= cargo
export HF_HUB_CACHE ?= $(CURDIR)/.deps/hf/hub

.PHONY: all bootstrap build release demo test lint fmt man bench install clean

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

# Format, lints, then every test (unit, end-to-end with the real binaries, MLX link tests).
test: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

# Regenerate the checked-in man pages from the clap definitions.
man:
	MLXK_UPDATE_MAN=1 $(CARGO) test --workspace --bins man_page

bench: release
	$(CARGO) run --release -p mlxk-infer --example matmul_bench

clean:
	$(CARGO) clean
