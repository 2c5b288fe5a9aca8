#!/usr/bin/env bash
# Builds the `mlx` crate for arm64 Linux and runs its tests under qemu-user: the NEON paths of
# the CPU kernels (float tiles, the dot-product integer loop) run here on an x86-64 machine,
# for correctness only (emulated speed says nothing). A developer's check, not part of
# `make test`: it installs Debian's qemu-user and arm64 cross compiler and fetches the arm64
# MLX and OpenBLAS wheels (the versions of scripts/requirements/run-linux.txt) into
# target/arm64-env.
#
#   scripts/test-arm64.sh                  # every test of the mlx crate, widest path (dot products)
#   ZETA_CPU_ISA=neon scripts/test-arm64.sh    # float NEON tiles only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
env_dir=$root/target/arm64-env
reqs=scripts/requirements/run-linux.txt

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  apt-get install -y -q qemu-user g++-aarch64-linux-gnu
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

if [ ! -f "$env_dir/site/mlx/include/mlx/mlx.h" ]; then
  mkdir -p "$env_dir/wheels" "$env_dir/site"
  for pkg in mlx-cpu scipy-openblas32; do
    pin=$(grep -E "^$pkg==" "$reqs")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_35_aarch64 --platform manylinux_2_28_aarch64 \
      --dest "$env_dir/wheels" "$pin"
  done
  for w in "$env_dir"/wheels/*.whl; do python3 -m zipfile -e "$w" "$env_dir/site"; done
fi

export MLX_DIR=$env_dir/site/mlx
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/arm64}
export CC_aarch64_unknown_linux_gnu=${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}
export CXX_aarch64_unknown_linux_gnu=${CXX_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-g++}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
# A Neoverse N1 (Graviton 2, Ampere Altra): NEON with the int8 dot product. qemu's default "max"
# core has SME too, and OpenBLAS's SME kernels gave wrong float32 products under qemu 7.2 (zeros
# past column 8 of a 1x96x37 sgemm), which no real arm64 server we target has.
export QEMU_CPU=${QEMU_CPU:-neoverse-n1}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $QEMU_LD_PREFIX"
# Tests that run their own binary again, narrowed to another path, start it through qemu too.
export ZETA_TEST_RUNNER=$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER
exec cargo test --release -p mlx --target aarch64-unknown-linux-gnu --no-fail-fast "$@"
