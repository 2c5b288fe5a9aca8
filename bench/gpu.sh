#!/usr/bin/env bash
# The GPU benchmark the README's GPU table comes from, as one script for the lent GPU machine.
#
# Here:  cargo build --release && ../shared/gpu/bundle.sh   (parts in .gpu/p1 .. pN)
# There: carry each part into /tmp/zb, then in the same call as the last part:
#          bash /tmp/zb/unpack.sh && . /tmp/zb/env.sh && bash bench/gpu.sh
#
# Needs about 10 minutes of device time: a random-weight Llama-3-8B-shape 4-bit model (made once
# with mlx-lm) through zeta-gateway + zeta-mlxd and mlx_lm.server at c = 1 and 32, then SmolLM2
# through bench-engine at batch 1 and 32 against mlx_lm.benchmark. `QUICK=1` runs a
# two-minute subset. Output: Markdown tables on stdout, progress on stderr.
set -euo pipefail
command -v bench-engine >/dev/null || { echo "gpu.sh: run '. /tmp/zb/env.sh' first" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ "${QUICK:-0}" = 1 ]; then
  bench-engine --batch 1,32 -t 1 -p 64 -g 32
  exit 0
fi
# The servers first, while MLX's compiled-kernel cache (<tmp>/mlx/<version>/ptx) is cold: ours
# runs before mlx_lm.server, so its first request pays the compilation and the peer's does not.
bench-serve --shape llama3-8b -c 1,32 -r 32 --no-overhead
bench-engine --batch 1,32 -t 3
