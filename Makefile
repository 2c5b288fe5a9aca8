# zeta-mlx: `make run` sets everything up and starts the server; `make test` sets everything up
# and runs every test. Both are idempotent and quick when nothing changed.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test setup setup-run setup-test build build-release bench clean install uninstall

# `make install PREFIX=/opt/zeta` installs elsewhere; see scripts/install.sh for the layout.
PREFIX ?= $(HOME)/.local

setup-run:
	@scripts/setup.sh run

setup-test:
	@scripts/setup.sh test

setup: setup-test

build: setup-run
	$(CARGO) build --workspace

build-release: setup-run
	$(CARGO) build --release --workspace

run: build-release
	@scripts/run.sh

test: setup-test
	$(CARGO) build --workspace --tests --bins
	$(CARGO) test --workspace --no-fail-fast

bench: setup-test
	$(CARGO) build --release -p zeta-bench -p zeta-mlxd -p zeta-gateway
	target/release/bench-engine
	target/release/bench-serve

# Release binaries, MLX's library folder (and the OpenBLAS shim on Linux) and the default model,
# found through relative rpaths: the installation runs with the checkout and .venv gone.
# `BIN_DIR=target/debug` installs binaries already built there instead (what the tests do).
install: setup-run
	@CARGO="$(CARGO)" scripts/install.sh --prefix "$(PREFIX)" $(if $(BIN_DIR),--bin-dir "$(BIN_DIR)")

uninstall:
	@scripts/install.sh --uninstall --prefix "$(PREFIX)"

clean:
	$(CARGO) clean
