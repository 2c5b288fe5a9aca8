//! Gives this crate's binaries and tests an rpath to MLX's library folder (and the OpenBLAS
//! shim), as found by the `mlx` crate's build script.
//!
//! The rpath is absolute, for in-tree runs without `LD_LIBRARY_PATH`. `make install` rewrites it
//! in the installed copies to a relative one (`scripts/install.sh`), so the linker is asked to
//! leave room for that: on Linux the entry is a `DT_RUNPATH` (what patchelf rewrites, and what
//! `LD_LIBRARY_PATH` can still override when debugging), on macOS the header keeps spare space
//! for `install_name_tool` to add the `@executable_path` entry.
fn main() {
    if let Ok(rpath) = std::env::var("DEP_MLX_RPATH") {
        for dir in std::env::split_paths(&rpath) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-link-arg=-Wl,-headerpad_max_install_names");
    } else {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    }
}
