//! What an engine is configured with ([`EngineOptions`]) and what it reports about its model
//! ([`ModelInfo`]): plain data that the engine handle, the scheduler and callers share, kept
//! apart so the scheduler need not reach back into the handle's module.

use std::time::Duration;

use crate::model::loader::LoadOptions;

/// Default bound of the prefix cache.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 512 << 20;

/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;

/// Longest stop string, in bytes: matching holds back and rescans up to this much text per token
/// for each stop string, so an unbounded one makes every token's check cost grow without limit.
pub const MAX_STOP_BYTES: usize = 1024;

/// How an engine loads and schedules.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// A display name (the alias) for logs and errors.
    pub name: String,
    /// Weight loading.
    pub load: LoadOptions,
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Requests waiting for a slot at most; more are refused as busy.
    pub max_queue: usize,
    /// Largest prefill chunk, in tokens.
    pub prefill_chunk: usize,
    /// Target duration of a step while sequences are decoding (bounds prefill chunks).
    pub step_target: Duration,
    /// Bytes of KV cache the prefix cache may keep of finished sequences (0 disables it).
    pub prefix_cache_bytes: usize,
    /// Most bytes the KV cache of running and cached sequences may take (none: no limit).
    pub kv_cache_limit: Option<usize>,
    /// Build each step before the last one is read (`None`: on a GPU, not on the CPU; see the
    /// scheduler).
    pub overlap: Option<bool>,
    /// Context length to serve; the model's own (`max_position_embeddings` / GGUF
    /// `context_length`) when unset. Above the model's own, quality is the user's risk.
    pub context_length: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            name: "model".into(),
            load: LoadOptions::default(),
            max_batch: 16,
            max_queue: 64,
            prefill_chunk: 512,
            step_target: DEFAULT_STEP_TARGET,
            prefix_cache_bytes: DEFAULT_PREFIX_CACHE_BYTES,
            kv_cache_limit: None,
            overlap: std::env::var("ZETA_MLX_OVERLAP").ok().and_then(|v| match v.as_str() {
                "1" | "on" | "true" => Some(true),
                "0" | "off" | "false" => Some(false),
                _ => None,
            }),
            context_length: None,
        }
    }
}

/// Facts about a loaded model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The display name.
    pub name: String,
    /// The file or folder it came from.
    pub path: String,
    /// Architecture name.
    pub arch: String,
    /// Usable context length in tokens.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Bytes of weights as loaded.
    pub weight_bytes: usize,
    /// Bytes of KV cache per token of context.
    pub kv_bytes_per_token: usize,
    /// Whether quantized weights were expanded to float32 (CPU fast path).
    pub dense: bool,
    /// End-of-sequence token ids.
    pub eos_token_ids: Vec<u32>,
    /// Whether the model has a chat template.
    pub has_chat_template: bool,
    /// For an embedding model, how it pools its vector; `None` for a generative model.
    pub embedding: Option<crate::embedding::EmbeddingSpec>,
    /// Seconds the load took.
    pub load_seconds: f64,
}

/// How long a step may take while sequences are decoding, by default.
pub(crate) const DEFAULT_STEP_TARGET: Duration = Duration::from_millis(500);
