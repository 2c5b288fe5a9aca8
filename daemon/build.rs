//! Gives this crate's binaries and tests an rpath to MLX's library folder (and the OpenBLAS
//! shim), as found by the `mlx` crate's build script.
fn main() {
    if let Ok(rpath) = std::env::var("DEP_MLX_RPATH") {
        for dir in std::env::split_paths(&rpath) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}
