//! The linker arguments that give a binary its rpath to MLX's library folder (and the OpenBLAS
//! shim): shared by this crate's build script and, through `#[path]`, by the build scripts of
//! every crate with binaries or tests that load MLX, since `rustc-link-arg` does not carry
//! across crates.
//!
//! The rpath is absolute, for in-tree runs without `LD_LIBRARY_PATH`. `make install` rewrites it
//! in the installed copies to a relative one (`scripts/install.sh`), so the linker is asked to
//! leave room for that: on Linux the entry is a `DT_RUNPATH` (what patchelf rewrites, and what
//! `LD_LIBRARY_PATH` can still override when debugging), on macOS the header keeps spare space
//! for `install_name_tool` to add the `@executable_path` entry.

use std::path::Path;

/// Prints `cargo:rustc-link-arg` lines for an rpath entry per folder.
pub fn rpath_link_args<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>) {
    for dir in dirs {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.as_ref().display());
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-link-arg=-Wl,-headerpad_max_install_names");
    } else {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    }
}

/// The same for a crate depending on `mlx`: the folders its build script published
/// (`DEP_MLX_RPATH`).
#[allow(dead_code)] // mlx's own build script knows its folders directly
pub fn dependent_rpath_link_args() {
    let rpath = std::env::var_os("DEP_MLX_RPATH").unwrap_or_default();
    rpath_link_args(std::env::split_paths(&rpath));
}
