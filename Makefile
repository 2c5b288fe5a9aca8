# zeta-mlx: `make run` sets everything up and starts the server; `make test` sets everything up
# and runs every test. Both are idempotent and quick when nothing changed.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test setup setup-run setup-test build build-release bench clean

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
	$(CARGO) test --workspace

bench: setup-test
	$(CARGO) build --release -p zeta-bench
	target/release/bench-engine

clean:
	$(CARGO) clean
