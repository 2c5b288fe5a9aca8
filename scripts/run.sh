#!/usr/bin/env bash
# `make run`: the daemon and the gateway in the foreground with the default settings (the
# embedded SmolLM2 as `smollm2-135m`, the per-user socket, http://127.0.0.1:8000/v1).
# Ctrl-C stops both; the daemon drains first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
"$bin/zeta-mlxd" &
daemon=$!
"$bin/zeta-gateway" &
gateway=$!
stop() {
  trap - INT TERM
  kill -TERM "$gateway" "$daemon" 2>/dev/null || true
  wait "$gateway" "$daemon" 2>/dev/null || true
}
trap stop INT TERM
echo "zeta-mlx: OpenAI API at http://127.0.0.1:8000/v1 (Ctrl-C stops)" >&2
# If either one exits, stop the other.
wait -n "$daemon" "$gateway" || true
stop
