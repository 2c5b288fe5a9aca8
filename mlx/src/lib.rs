//! Safe bindings to MLX's C++ API, through `cxx`.
//!
//! This crate owns the boundary with MLX: an owned [`Array`] type, dtypes and shapes, the
//! operations the engine's models need, file loading (safetensors and GGUF), evaluation and memory
//! statistics. Every fallible MLX call returns [`Result`]; a C++ exception never unwinds into Rust
//! and never aborts the process.
//!
//! MLX streams are bound to the thread that created them (MLX 0.31.2 and later), so [`Array`] is
//! neither `Send` nor `Sync`: all work on one model's arrays happens on the one engine thread that
//! owns them, and only plain Rust data crosses threads.

mod array;
mod device;
mod ffi;
pub mod fused;
mod gguf;
mod io;
pub mod ops;

pub use array::{Array, ArrayList, Dtype};
pub use device::{
    ThreadStreams, active_memory, blas_backend, cache_memory, clear_cache, cpu_kernels, default_device_is_gpu,
    gpu_available, peak_memory, pinned_bytes, reset_peak_memory, set_cache_limit, set_memory_limit, use_gpu, version,
};
pub use gguf::{Gguf, GgufMeta};
pub use io::{Safetensors, save_safetensors};

/// An error raised by MLX (a C++ exception) or by this crate's argument checks.
#[derive(Clone, Debug, thiserror::Error)]
#[error("MLX {op}: {message}")]
pub struct Error {
    /// The operation that failed, e.g. `matmul` or `load_gguf`.
    pub op: &'static str,
    /// What MLX said.
    pub message: String,
}

/// Result of an MLX operation.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn err(op: &'static str) -> impl FnOnce(cxx::Exception) -> Error {
    move |e| Error { op, message: e.what().to_string() }
}
