//! Gives this crate's binaries and tests an rpath to MLX's library folder (and the OpenBLAS
//! shim), as found by the `mlx` crate's build script; see `mlx/link_args.rs`.
#[path = "../mlx/link_args.rs"]
mod link_args;

fn main() {
    link_args::dependent_rpath_link_args();
}
