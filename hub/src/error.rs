//! The crate's one error type, [`HubError`], and [`ErrorKind`], the coarse class the daemon maps
//! to a gRPC status. Every message names the repository, the revision and, where one is involved,
//! the file, so a user reading a log line or an API error knows what to fix.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// The coarse class of a [`HubError`], one per gRPC status the daemon answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input is wrong (bad model reference, ambiguous GGUF choice, bad config).
    InvalidArgument,
    /// The repository, revision or file does not exist, or is not available offline.
    NotFound,
    /// The hub refused access: missing or rejected token, or a gated repository.
    PermissionDenied,
    /// The hub or the network failed; trying again later may succeed.
    Unavailable,
    /// A local failure (disk, permissions on the cache folder).
    Internal,
}

/// Everything that can go wrong while resolving or downloading a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The model reference string is not `org/name[@revision][:file.gguf]`.
    #[error("invalid model reference {input:?}: {reason}")]
    InvalidRef {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The configuration (usually from the environment) is unusable.
    #[error("invalid hub configuration: {message}")]
    Config {
        /// What is wrong, naming the variable and its value.
        message: String,
    },

    /// The hub says the repository does not exist (or is private and no valid token was sent).
    #[error(
        "model repository {repo} not found on {endpoint} (check the id; if it is private or gated, \
         set HF_TOKEN)"
    )]
    RepoNotFound {
        /// Repository id, `org/name`.
        repo: String,
        /// The hub endpoint that was asked.
        endpoint: String,
    },

    /// The repository exists but the revision (branch, tag or commit) does not.
    #[error("revision {revision:?} not found in model repository {repo}")]
    RevisionNotFound {
        /// Repository id.
        repo: String,
        /// The revision that was asked for.
        revision: String,
    },

    /// A file named by the request (or by the repo's own index) is not in the repository.
    #[error("file {file:?} not found in {repo}@{revision}")]
    FileNotFound {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// Repository-relative file path.
        file: String,
    },

    /// The repository holds neither MLX/safetensors weights nor a GGUF file.
    #[error("{repo}@{revision} has no model files this server can load: {detail}")]
    NoModelFiles {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// What was found instead.
        detail: String,
    },

    /// A GGUF-only repository holds several GGUF files and none is the documented default.
    #[error(
        "{repo}@{revision} has {} GGUF files and none is a default choice; name one as \
         {repo}:<file>, one of: {}", .choices.len(), .choices.join(", ")
    )]
    AmbiguousGguf {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The GGUF files to choose from.
        choices: Vec<String>,
    },

    /// The hub refused access (HTTP 401/403), for a private or gated repository.
    #[error(
        "access to {repo}@{revision}{} was refused (HTTP {status}{}): {}",
        fmt_file(.file), gated_note(*.gated), auth_hint(*.token_sent)
    )]
    Unauthorized {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The file being fetched, when the refusal came on a download.
        file: Option<String>,
        /// HTTP status, 401 or 403.
        status: u16,
        /// The hub marked the repository as gated (`X-Error-Code: GatedRepo`).
        gated: bool,
        /// Whether a token was sent with the request.
        token_sent: bool,
    },

    /// `HF_HUB_OFFLINE` is set and the model is not complete in the local cache.
    #[error(
        "{repo}@{revision}{} is not in the cache and HF_HUB_OFFLINE is set, so it cannot be \
         downloaded (cache folder: {})", fmt_file(.file), .cache_dir.display()
    )]
    OfflineNotCached {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The GGUF file asked for, if any.
        file: Option<String>,
        /// The cache folder that was searched.
        cache_dir: PathBuf,
    },

    /// The request never got an HTTP answer, or the connection broke mid-transfer.
    #[error("network error for {repo}@{revision}{} at {url}: {detail}", fmt_file(.file))]
    Network {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The file being fetched, if any.
        file: Option<String>,
        /// The URL that failed.
        url: String,
        /// The underlying error, with its chain of causes.
        detail: String,
    },

    /// The hub answered with an HTTP status that has no more specific meaning here.
    #[error("hub answered HTTP {status} for {repo}@{revision}{} at {url}: {message}", fmt_file(.file))]
    Http {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The file being fetched, if any.
        file: Option<String>,
        /// The URL asked.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The hub's `X-Error-Message` or body, if any.
        message: String,
    },

    /// A downloaded file did not match the size or sha256 the hub announced.
    #[error("download of {file:?} from {repo}@{revision} is corrupt: {detail}")]
    Integrity {
        /// Repository id.
        repo: String,
        /// Revision (commit) downloaded.
        revision: String,
        /// Repository-relative file path.
        file: String,
        /// Expected versus actual.
        detail: String,
    },

    /// The hub's answer lacks something the protocol requires (a commit, an ETag) or is unsafe.
    #[error("unexpected answer from the hub for {repo}@{revision}{}: {detail}", fmt_file(.file))]
    Protocol {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// The file being fetched, if any.
        file: Option<String>,
        /// What was wrong.
        detail: String,
    },

    /// A local filesystem operation failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_file(file: &Option<String>) -> String {
    match file {
        Some(f) => format!(" (file {f:?})"),
        None => String::new(),
    }
}

fn gated_note(gated: bool) -> &'static str {
    if gated { ", gated repository" } else { "" }
}

fn auth_hint(token_sent: bool) -> &'static str {
    if token_sent {
        "the token was rejected or lacks access; accept the model's terms on the hub or use another \
         token"
    } else {
        "no token was sent; set HF_TOKEN or log in with `hf auth login`"
    }
}

impl HubError {
    /// The gRPC-level class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HubError::InvalidRef { .. } | HubError::Config { .. } | HubError::AmbiguousGguf { .. } => {
                ErrorKind::InvalidArgument
            }
            HubError::RepoNotFound { .. }
            | HubError::RevisionNotFound { .. }
            | HubError::FileNotFound { .. }
            | HubError::NoModelFiles { .. }
            | HubError::OfflineNotCached { .. } => ErrorKind::NotFound,
            HubError::Unauthorized { .. } => ErrorKind::PermissionDenied,
            HubError::Network { .. }
            | HubError::Http { .. }
            | HubError::Integrity { .. }
            | HubError::Protocol { .. } => ErrorKind::Unavailable,
            HubError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// Whether trying the same call again may succeed without anything changing on our side.
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::Network { .. } => true,
            HubError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io { path: path.into(), source }
    }
}

/// Renders an error and all its causes on one line, because `reqwest`'s top-level message
/// ("error sending request") hides the useful part (connection refused, reset, timed out).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
