//! The engine's error type: one enum for everything the daemon may have to report, each variant
//! carrying what a user needs to fix the request or the model files (field, value, limit, path).

use std::path::PathBuf;

/// What went wrong in loading a model or serving a request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    /// A model file or folder is missing.
    #[error("{what} not found at {path}")]
    NotFound {
        /// What was looked for ("model folder", "config.json", ...).
        what: String,
        /// Where.
        path: PathBuf,
    },
    /// A model's files exist but cannot be used (corrupt, truncated, inconsistent).
    #[error("cannot load model from {path}: {reason}")]
    BadModel {
        /// The file or folder at fault.
        path: PathBuf,
        /// Why, naming the tensor or key.
        reason: String,
    },
    /// The model's architecture is not one this engine implements.
    #[error("unsupported model architecture '{found}'; supported: {supported}")]
    UnsupportedArchitecture {
        /// The `model_type` / `general.architecture` found.
        found: String,
        /// The supported ones, comma-separated.
        supported: String,
    },
    /// The model did not produce the tool call the request forced.
    #[error("{0}")]
    ToolCallFailed(String),
    /// A request field is invalid.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// The request field, e.g. `temperature` or `messages[2].role`.
        field: String,
        /// What is wrong, with the value and the limit.
        message: String,
    },
    /// The prompt (plus the requested completion) does not fit the model's context.
    #[error("{message}")]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens requested for the completion.
        max_tokens: usize,
        /// The model's context length.
        context_length: usize,
        /// The request field whose size is at fault: `messages` (a chat), `prompt`,
        /// `prompt_tokens`, or an embedding's input.
        field: String,
        /// The full explanation.
        message: String,
    },
    /// The engine is at capacity (its admission queue is full).
    #[error("the engine is busy: {queued} requests are already queued (limit {limit})")]
    Busy {
        /// Requests waiting.
        queued: usize,
        /// The queue limit.
        limit: usize,
    },
    /// The KV cache has no room for a request's tokens and may not grow (its byte limit).
    #[error(
        "the KV cache is full: {needed} more token slots are needed, {free} are free of {capacity} ({bytes} bytes, the configured limit)"
    )]
    KvCacheFull {
        /// Slots asked for.
        needed: usize,
        /// Slots free.
        free: usize,
        /// Slots in the pool.
        capacity: usize,
        /// Bytes the pool takes.
        bytes: usize,
    },
    /// The engine is stopping or has stopped.
    #[error("the engine for {model} is shutting down")]
    ShuttingDown {
        /// The model it served.
        model: String,
    },
    /// The chat template failed to render (including `raise_exception` from the template).
    #[error("chat template error: {0}")]
    Template(String),
    /// Constrained decoding failed mid-generation (the grammar engine's own error).
    #[error("constrained decoding failed: {0}")]
    Constraint(String),
    /// Tokenizer failure.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// An MLX operation failed.
    #[error(transparent)]
    Mlx(#[from] mlx::Error),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::sync::Arc<std::io::Error>,
    },
}

impl EngineError {
    /// Shorthand for [`EngineError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> EngineError {
        EngineError::InvalidArgument { field: field.into(), message: message.into() }
    }

    /// A request for the other kind of model: text from an embedding model (`embedding`), or
    /// embeddings from a generative one.
    pub fn wrong_kind(model: &str, embedding: bool) -> EngineError {
        let why = if embedding {
            format!("'{model}' is an embedding model: it computes embeddings and generates no text")
        } else {
            format!("'{model}' generates text; embeddings need an embedding model")
        };
        EngineError::invalid("model", why)
    }

    /// Shorthand for [`EngineError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> EngineError {
        EngineError::Io { path: path.into(), source: std::sync::Arc::new(source) }
    }

    /// Shorthand for [`EngineError::BadModel`].
    pub fn bad_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> EngineError {
        EngineError::BadModel { path: path.into(), reason: reason.into() }
    }
}

/// Result with [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;
