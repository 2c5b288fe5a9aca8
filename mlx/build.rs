//! Finds MLX's C++ library (headers, `libmlx`, version) and compiles the cxx bridge against it.
//!
//! Search order: `MLX_DIR` (a folder holding `include/` and `lib/`), then the project's own
//! `.venv`, then whatever `python3` can import. The wheels `mlx-cpu`, `mlx-metal` and
//! `mlx-cuda-*` all lay MLX out that way under `site-packages/mlx`. Binaries get an rpath to that
//! `lib/` so nothing needs `LD_LIBRARY_PATH`; dependents receive the folder as `DEP_MLX_LIB_DIR`
//! (and every rpath entry as `DEP_MLX_RPATH`) to put into their own binaries.
//!
//! Those rpaths are absolute, for in-tree runs. `make install` (`scripts/install.sh`) copies
//! `libmlx` and the shim next to the installed binaries and rewrites the copies' rpaths to
//! relative ones, so binaries are linked with `DT_RUNPATH` on Linux (what patchelf rewrites) and
//! with header room for `install_name_tool` on macOS, and the shim carries a fixed soname.
//!
//! On Linux, when the `scipy-openblas32` wheel sits beside MLX, a small shim library routes MLX's
//! `cblas_sgemm` to OpenBLAS: the `mlx-cpu` wheel bundles the reference BLAS, which is ~40x slower
//! for the float32 products the CPU path of the engine is built on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

mod link_args;

const REQUIRED_MINOR: u32 = 32;
const FIX: &str = "run `make setup` in the zeta-mlx checkout (it installs the pinned MLX wheel into .venv), \
or point MLX_DIR at a folder holding MLX 0.32's include/ and lib/";

fn main() {
    println!("cargo:rerun-if-env-changed=MLX_DIR");
    println!("cargo:rerun-if-env-changed=ZETA_NO_OPENBLAS");
    println!("cargo:rerun-if-changed=cpp/bridge.h");
    println!("cargo:rerun-if-changed=cpp/bridge.cc");
    println!("cargo:rerun-if-changed=cpp/qmm.h");
    println!("cargo:rerun-if-changed=cpp/qmm.cc");
    println!("cargo:rerun-if-changed=cpp/qmm_tiles.h");
    println!("cargo:rerun-if-changed=cpp/qmm_tiles.cc");
    println!("cargo:rerun-if-changed=cpp/qmm_int.h");
    println!("cargo:rerun-if-changed=cpp/qmm_int.cc");
    println!("cargo:rerun-if-changed=cpp/qmm_int_neon.cc");
    println!("cargo:rerun-if-changed=cpp/fused.h");
    println!("cargo:rerun-if-changed=cpp/fused.cc");
    println!("cargo:rerun-if-changed=cpp/fused_rows.h");
    println!("cargo:rerun-if-changed=cpp/layer.cc");
    println!("cargo:rerun-if-changed=cpp/huge.h");
    println!("cargo:rerun-if-changed=cpp/huge.cc");
    println!("cargo:rerun-if-changed=cpp/attend.h");
    println!("cargo:rerun-if-changed=cpp/attend.cc");
    println!("cargo:rerun-if-changed=cpp/exp16.h");
    println!("cargo:rerun-if-changed=cpp/simd.h");
    println!("cargo:rerun-if-changed=cpp/argmax.cc");
    println!("cargo:rerun-if-changed=cpp/cpu_parallel.h");
    println!("cargo:rerun-if-changed=cpp/cblas_shim.c");
    println!("cargo:rerun-if-changed=src/ffi.rs");

    let mlx_dir = match find_mlx() {
        Ok(dir) => dir,
        Err(why) => fail(&why),
    };
    let include = mlx_dir.join("include");
    let lib = mlx_dir.join("lib");
    check_version(&include);
    println!("cargo:rerun-if-changed={}", include.join("mlx/version.h").display());

    let mut rpaths = vec![lib.clone()];
    let mut build = cxx_build::bridge("src/ffi.rs");
    build
        .file("cpp/bridge.cc")
        .file("cpp/qmm.cc")
        .file("cpp/qmm_tiles.cc")
        .file("cpp/qmm_int.cc")
        .file("cpp/qmm_int_neon.cc")
        .file("cpp/fused.cc")
        .file("cpp/layer.cc")
        .file("cpp/huge.cc")
        .file("cpp/attend.cc")
        .file("cpp/argmax.cc")
        .include(&include)
        .include("cpp")
        .std("c++20")
        // Floats are added and multiplied as written: a compiler that fused a multiply and an add
        // in one vector path and not in another gave the VNNI and AVX2 loops different bits in
        // optimized builds (the tests' debug builds fused neither), so a sequence's tokens would
        // depend on the machine.
        .flag_if_supported("-ffp-contract=off")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        // GCC on arm64 notes an ABI change of GCC 10.1 at every std::pair<float, float> in MLX's
        // headers; both sides of every call here are built by one compiler.
        .flag_if_supported("-Wno-psabi");

    if let Some(shim_dir) = build_openblas_shim(&mlx_dir) {
        build.define("ZETA_CBLAS_SHIM", "1");
        rpaths.push(shim_dir);
    }
    build.compile("zeta_mlx_bridge");

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    if cfg!(target_os = "macos") || env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-link-lib=dylib=c++");
    }
    link_args::rpath_link_args(&rpaths);
    let joined = env::join_paths(&rpaths).expect("rpath entries contain no separator");
    println!("cargo:lib_dir={}", lib.display());
    println!("cargo:rpath={}", joined.to_string_lossy());
    println!("cargo:root={}", mlx_dir.display());
}

fn fail(why: &str) -> ! {
    eprintln!("\nerror: MLX's C++ library was not found or is not usable.\n  {why}\n  Fix: {FIX}.\n");
    std::process::exit(1);
}

fn usable(dir: &Path) -> bool {
    let lib = dir.join("lib");
    dir.join("include/mlx/mlx.h").is_file() && (lib.join("libmlx.so").is_file() || lib.join("libmlx.dylib").is_file())
}

fn find_mlx() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("MLX_DIR") {
        let dir = PathBuf::from(dir);
        return if usable(&dir) {
            Ok(dir)
        } else {
            Err(format!("MLX_DIR={} does not hold include/mlx/mlx.h and lib/libmlx.{{so,dylib}}", dir.display()))
        };
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let venv = manifest.parent().unwrap().join(".venv");
    println!("cargo:rerun-if-changed={}", venv.display());
    for lib_dir in [venv.join("lib"), venv.join("Lib")] {
        let Ok(entries) = std::fs::read_dir(&lib_dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| e.path().join("site-packages/mlx")).filter(|p| usable(p)).collect();
        found.sort();
        if let Some(dir) = found.pop() {
            return Ok(dir);
        }
    }
    let probe = "import mlx; print(list(mlx.__path__)[0])";
    match Command::new("python3").args(["-c", probe]).output() {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                Ok(dir)
            } else {
                Err(format!(
                    "python3 imports mlx from {}, but that has no C++ library \
                     (include/mlx/mlx.h and lib/libmlx)",
                    dir.display()
                ))
            }
        }
        _ => Err(format!("no MLX_DIR, no MLX in {}, and python3 cannot import mlx", venv.display())),
    }
}

fn check_version(include: &Path) {
    let header = include.join("mlx/version.h");
    let text =
        std::fs::read_to_string(&header).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", header.display())));
    let grab = |name: &str| -> Option<u32> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define {name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    match (grab("MLX_VERSION_MAJOR"), grab("MLX_VERSION_MINOR"), grab("MLX_VERSION_PATCH")) {
        (Some(0), Some(REQUIRED_MINOR), Some(_)) => {}
        (Some(a), Some(b), Some(c)) => fail(&format!(
            "found MLX {a}.{b}.{c} at {}, but zeta-mlx is built for MLX 0.{REQUIRED_MINOR}.x",
            include.display()
        )),
        _ => fail(&format!("cannot read MLX's version from {}", header.display())),
    }
}

/// Builds `libzeta_cblas.so`, whose `cblas_sgemm` forwards to scipy-openblas, except products of
/// few rows, which it runs itself (see the file's header). The executable links it directly, so
/// the dynamic loader finds its `cblas_sgemm` before the reference BLAS that `libmlx.so` itself
/// depends on.
fn build_openblas_shim(mlx_dir: &Path) -> Option<PathBuf> {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") || env::var_os("ZETA_NO_OPENBLAS").is_some() {
        return None;
    }
    let blas_lib = mlx_dir.parent()?.join("scipy_openblas32/lib");
    if !blas_lib.join("libscipy_openblas.so").is_file() {
        println!(
            "cargo:warning=scipy-openblas32 not found beside MLX ({}); float32 matmuls use MLX's bundled reference BLAS",
            blas_lib.display()
        );
        return None;
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("shim");
    std::fs::create_dir_all(&out).ok()?;
    let so = out.join("libzeta_cblas.so");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        // -ffp-contract=off as for the bridge: on arm64 GCC fused a multiply and an add in the
        // one-row loop and not in the four-row one, so a row's bits depended on the batch.
        .args(["-O3", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-Wno-psabi", "cpp/cblas_shim.c", "-o"])
        .arg(&so)
        .arg(format!("-L{}", blas_lib.display()))
        .arg("-lscipy_openblas")
        .arg(format!("-Wl,-rpath,{}", blas_lib.display()))
        .args(["-Wl,--enable-new-dtags", "-Wl,-soname,libzeta_cblas.so"])
        .status()
        .ok()?;
    if !status.success() {
        println!("cargo:warning=could not build the OpenBLAS shim; using MLX's bundled BLAS");
        return None;
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=dylib=zeta_cblas");
    Some(out)
}
