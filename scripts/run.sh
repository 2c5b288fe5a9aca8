#!/usr/bin/env bash
# `make run`: chat with the default model in the terminal (the engine alone) until the daemon and
# gateway land.
set -euo pipefail
cd "$(dirname "$0")/.."
exec target/release/zeta-chat "$@"
