//! Device choice and memory statistics.

use crate::ffi::ffi;
use crate::{Result, err};

/// MLX's version string, e.g. `0.32.4`.
pub fn version() -> String {
    ffi::version()
}

/// Whether this MLX build has a GPU backend with a device present (Metal or CUDA).
pub fn gpu_available() -> bool {
    ffi::gpu_available()
}

/// Makes the GPU (or the CPU) the default device for new work.
pub fn use_gpu(gpu: bool) -> Result<()> {
    ffi::use_gpu(gpu).map_err(err("use_gpu"))
}

/// Whether new work runs on the GPU by default.
pub fn default_device_is_gpu() -> bool {
    ffi::default_device_is_gpu()
}

/// The calling thread's MLX streams (CPU, and GPU where there is one), borrowed from a pool
/// for as long as this lives. MLX would give every thread that evaluates streams of its own and
/// keep each stream's scheduler thread for the life of the process, so a thread per loaded model
/// would leave one behind at every unload; borrowed streams are given back when this is
/// dropped (after their work is done) and serve the next thread. Create it first on a thread,
/// before any array, so it is dropped last.
pub struct ThreadStreams(());

impl ThreadStreams {
    /// Borrows the streams and makes them the thread's defaults.
    pub fn borrow() -> Result<ThreadStreams> {
        ffi::borrow_thread_streams().map_err(err("borrow_thread_streams"))?;
        Ok(ThreadStreams(()))
    }
}

impl Drop for ThreadStreams {
    fn drop(&mut self) {
        if let Err(e) = ffi::return_thread_streams() {
            tracing::warn!(error = %e, "could not give a thread's MLX streams back");
        }
    }
}

/// Bytes currently held by live arrays.
pub fn active_memory() -> usize {
    ffi::active_memory()
}

/// Highest [`active_memory`] since the last reset.
pub fn peak_memory() -> usize {
    ffi::peak_memory()
}

/// Bytes of arrays [`crate::Array::pin_huge`] copied into 2 MB pages that are still alive (part of
/// [`active_memory`]).
pub fn pinned_bytes() -> usize {
    ffi::cpu_pinned_bytes()
}

/// Resets [`peak_memory`].
pub fn reset_peak_memory() {
    ffi::reset_peak_memory()
}

/// Bytes held in MLX's buffer cache for reuse.
pub fn cache_memory() -> usize {
    ffi::cache_memory()
}

/// Returns MLX's cached buffers, and the C allocator's free pages (glibc), to the system.
pub fn clear_cache() {
    ffi::clear_cache()
}

/// Caps the buffer cache; returns the previous cap.
pub fn set_cache_limit(bytes: usize) -> usize {
    ffi::set_cache_limit(bytes)
}

/// Caps memory MLX may allocate before it waits or fails; returns the previous cap.
pub fn set_memory_limit(bytes: usize) -> usize {
    ffi::set_memory_limit(bytes)
}

/// The shared library that provides `cblas_sgemm` to MLX in this process (OpenBLAS through the
/// project's shim, Accelerate, or the reference BLAS bundled with the mlx-cpu wheel); for the
/// shim, followed by OpenBLAS's configuration in parentheses, which names the kernels it chose.
pub fn blas_backend() -> String {
    ffi::blas_backend()
}

/// The vector instructions the bridge's CPU kernels (quantized products, fused layers, decode
/// attention) run on in this process: `avx512-vnni`, `avx512`, `avx2`, `neon-dotprod`, `neon` or
/// `portable`, chosen once from the CPU and narrowed by `ZETA_CPU_ISA` (`avx2`, `neon`,
/// `portable`).
pub fn cpu_kernels() -> String {
    ffi::cpu_kernels()
}
