//! Model downloads from the Hugging Face Hub (or any server that behaves like it, named by
//! `HF_ENDPOINT`) into the cache layout shared with Python's `huggingface_hub`, for the daemon's
//! model registry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zeta_hub::HubError> {
//! use zeta_hub::{HubClient, ModelRef};
//! let hub = HubClient::from_env()?;
//! let model = ModelRef::parse("mlx-community/SmolLM2-135M-Instruct-8bit")?;
//! let folder = hub.ensure_local(&model, |p| tracing::info!(file = %p.file, done = p.bytes_done, "download")).await?;
//! # let _ = folder; Ok(()) }
//! ```
//!
//! What it guarantees:
//!
//! - **Shared cache.** `$HF_HUB_CACHE` (else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`)
//!   holds `models--{org}--{name}/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>,
//!   refs/<revision>}`, exactly as `huggingface_hub` writes it: a model mlx-lm downloaded is used
//!   with no network request at all, and what we download is usable from Python.
//! - **Only needed files.** For a safetensors (MLX) repository: [`MODEL_METADATA_FILES`], the
//!   index and the shards it names (or the top-level `*.safetensors`). For a GGUF repository:
//!   exactly one `.gguf`, the one named (`org/name:file.gguf`) or the default of [`choose_gguf`].
//! - **Resume and integrity.** Partial data stays in `blobs/<etag>.incomplete` and is continued
//!   with an HTTP `Range` request, within a call (a few attempts) and across calls and processes.
//!   A blob is moved into place only once its size matches and, for LFS files whose ETag is a sha256, its hash.
//! - **Environment.** `HF_ENDPOINT`, `HF_TOKEN` / `HF_TOKEN_PATH` / `$HF_HOME/token`,
//!   `HF_HUB_CACHE` / `HF_HOME`, `HF_HUB_OFFLINE` (see [`HubConfig::from_env`]). The token goes
//!   only to the endpoint's own origin, never to the CDN a download redirects to.
//! - **Errors** are one enum, [`HubError`], whose [`HubError::kind`] gives the gRPC class.
//!
//! Division of labour with the `hf-hub` crate (1.0): it answers the repository-info API (commit
//! and file list) and classifies that API's errors. Transfers are our own code because `hf-hub`
//! 1.0 restarts an interrupted download from byte zero, verifies neither size nor sha256, has no
//! offline mode, and sends Xet-backed files through its own Xet client rather than the plain
//! `resolve` URL (which the hub and a local test server both serve over HTTP with `Range`).
//!
//! `testing` (feature `testing`) holds a local fake hub for tests (this crate's and the daemon's).

mod cache;
mod client;
mod config;
mod download;
mod error;
mod model_ref;
mod select;
#[doc(hidden)]
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use client::{HubClient, Progress};
pub use config::{DEFAULT_ENDPOINT, HubConfig};
pub use error::{ErrorKind, HubError, Result};
pub use model_ref::{DEFAULT_REVISION, ModelRef, looks_like_repo_id};
pub use select::{GGUF_PREFERENCE, MODEL_METADATA_FILES, SAFETENSORS_INDEX, choose_gguf};
