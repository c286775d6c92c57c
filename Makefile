# The two commands the README starts with: `make demo` and `make test`.
# Both bootstrap first (system packages, the MLX wheel, mlx-c sources, the demo model).
SHELL := /bin/bash
CARGO ?= cargo
export HF_HUB_CACHE ?= $(CURDIR)/.deps/hf/hub

.PHONY: all bootstrap reference build release demo test lint fmt man bench clean install uninstall

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

# The Python reference stack (mlx-lm on the same MLX; mlx-vlm in a venv of its own, since
# mlx-lm pulls a newer transformers) for parity goldens and benchmarks.
reference:
	@test -x .deps/venv-ref/bin/python || python3 -m venv .deps/venv-ref
	.deps/venv-ref/bin/pip install -q mlx==0.32.2 mlx-cpu==0.32.2 mlx-lm==0.32.2
	@test -x .deps/venv-vlm/bin/python || python3 -m venv .deps/venv-vlm
	.deps/venv-vlm/bin/pip install -q mlx==0.32.2 mlx-cpu==0.32.2 mlx-vlm==0.7.6 'transformers<=5.17.0'

# Benchmarks (never timed tests): the MLX matmul/bandwidth, our quantized kernel against MLX's,
# and mlxk-gen against mlx-lm in one run (benchmarks/gen.sh prints the ratios).
bench: release reference
	benchmarks/matmul.sh
	$(CARGO) bench -p mlxk-infer --bench qmatmul
	benchmarks/gen.sh

# Install the binaries, man pages, shell completions (bash, zsh, fish) and the MLX library
# they link (beside them, in the wheel's layout: the binaries' rpath $ORIGIN/../lib/mlxk/mlx/lib
# finds it once .deps is gone). PROFILE=debug installs the debug build.
PREFIX ?= /usr/local
PROFILE ?= release
MLX_DIR ?= $(CURDIR)/.deps/mlx-cpu
BINS := mlxk-probe mlxk-gate mlxk-gen mlxk-see mlxk-hear mlxk-serve memmon memplot report-validate report-gen
DEST := $(DESTDIR)$(PREFIX)
install: bootstrap
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) --workspace --bins --locked
	install -d $(DEST)/bin $(DEST)/share/man/man1 $(DEST)/share/bash-completion/completions \
		$(DEST)/share/zsh/site-functions $(DEST)/share/fish/vendor_completions.d $(DEST)/lib/mlxk/mlx/lib
	for b in $(BINS); do \
		install -m 755 target/$(PROFILE)/$$b $(DEST)/bin/ && \
		install -m 644 man/$$b.1 $(DEST)/share/man/man1/ && \
		install -m 644 man/completions/$$b.bash $(DEST)/share/bash-completion/completions/$$b && \
		install -m 644 man/completions/_$$b $(DEST)/share/zsh/site-functions/ && \
		install -m 644 man/completions/$$b.fish $(DEST)/share/fish/vendor_completions.d/ || exit 1; \
	done
	install -m 644 $(MLX_DIR)/mlx/lib/libmlx.so $(DEST)/lib/mlxk/mlx/lib/
	cp -R $(MLX_DIR)/*.libs $(DEST)/lib/mlxk/

uninstall:
	for b in $(BINS); do \
		rm -f $(DEST)/bin/$$b $(DEST)/share/man/man1/$$b.1 $(DEST)/share/bash-completion/completions/$$b \
			$(DEST)/share/zsh/site-functions/_$$b $(DEST)/share/fish/vendor_completions.d/$$b.fish; \
	done
	rm -rf $(DEST)/lib/mlxk

clean:
	$(CARGO) clean
