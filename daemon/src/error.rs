//! Errors of the daemon and their one mapping to gRPC status codes.
//!
//! This is the only place a daemon error becomes a `tonic::Status`. The gateway has the matching
//! single table from status code to HTTP status. Alongside the message, two metadata entries help
//! clients: `zeta-param` names the request field at fault and `retry-after` (seconds) says when
//! a busy or loading daemon is worth asking again.

use tonic::{Code, Status};
use zeta_engine::EngineError;

/// Anything a request to the daemon can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DaemonError {
    /// From the engine (validation, context, busy, model files...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model string names nothing the daemon can serve.
    #[error("{0}")]
    ModelNotFound(String),
    /// A request field is invalid (checked before the engine sees it).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The model exists but could not be loaded.
    #[error("model '{model}' could not be loaded: {reason}")]
    LoadFailed {
        /// The model.
        model: String,
        /// Why.
        reason: String,
        /// Whether trying again later may work (network, memory).
        transient: bool,
    },
    /// No room for another model: every loaded one is pinned or busy.
    #[error("{0}")]
    NoRoom(String),
    /// The hub refused access (token missing or rejected, gated repo).
    #[error("{0}")]
    PermissionDenied(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    Draining,
    /// A generation went wrong in a way the request could not prevent.
    #[error("{0}")]
    Internal(String),
}

impl DaemonError {
    /// Shorthand for [`DaemonError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> DaemonError {
        DaemonError::Invalid { field: field.into(), message: message.into() }
    }
}

fn with_meta(code: Code, message: String, param: Option<&str>, retry_after: Option<u32>) -> Status {
    let mut s = Status::new(code, message);
    if let Some(p) = param.and_then(|p| p.parse().ok()) {
        s.metadata_mut().insert("zeta-param", p);
    }
    if let Some(r) = retry_after {
        s.metadata_mut().insert("retry-after", r.into());
    }
    s
}

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Status {
        let msg = e.to_string();
        match &e {
            DaemonError::Engine(inner) => match inner {
                EngineError::InvalidArgument { field, .. } => with_meta(Code::InvalidArgument, msg, Some(field), None),
                EngineError::ContextOverflow { .. } => with_meta(Code::OutOfRange, msg, Some("messages"), None),
                EngineError::Busy { .. } => with_meta(Code::ResourceExhausted, msg, None, Some(1)),
                EngineError::KvCacheFull { .. } => with_meta(Code::ResourceExhausted, msg, None, Some(5)),
                EngineError::ShuttingDown { .. } => with_meta(Code::Unavailable, msg, None, Some(5)),
                EngineError::Template(_) => with_meta(Code::InvalidArgument, msg, Some("messages"), None),
                EngineError::NotFound { .. }
                | EngineError::BadModel { .. }
                | EngineError::UnsupportedArchitecture { .. }
                | EngineError::Tokenizer(_)
                | EngineError::Mlx(_)
                | EngineError::Io { .. } => Status::internal(msg),
            },
            DaemonError::ModelNotFound(_) => with_meta(Code::NotFound, msg, Some("model"), None),
            DaemonError::Invalid { field, .. } => with_meta(Code::InvalidArgument, msg, Some(field), None),
            DaemonError::LoadFailed { transient: true, .. } => with_meta(Code::Unavailable, msg, None, Some(10)),
            DaemonError::LoadFailed { transient: false, .. } => Status::internal(msg),
            DaemonError::NoRoom(_) => with_meta(Code::ResourceExhausted, msg, None, Some(5)),
            DaemonError::PermissionDenied(_) => with_meta(Code::PermissionDenied, msg, Some("model"), None),
            DaemonError::Draining => with_meta(Code::Unavailable, msg, None, Some(5)),
            DaemonError::Internal(_) => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let cases: Vec<(DaemonError, Code)> = vec![
            (EngineError::invalid("temperature", "-1 is below the minimum 0").into(), Code::InvalidArgument),
            (
                EngineError::ContextOverflow {
                    prompt_tokens: 9,
                    max_tokens: 0,
                    context_length: 8,
                    message: "x".into(),
                }
                .into(),
                Code::OutOfRange,
            ),
            (EngineError::Busy { queued: 1, limit: 1 }.into(), Code::ResourceExhausted),
            (DaemonError::ModelNotFound("no model 'x'".into()), Code::NotFound),
            (DaemonError::Draining, Code::Unavailable),
            (DaemonError::LoadFailed { model: "m".into(), reason: "r".into(), transient: false }, Code::Internal),
        ];
        for (e, code) in cases {
            let s: Status = e.into();
            assert_eq!(s.code(), code, "{}", s.message());
        }
        let s: Status = EngineError::invalid("temperature", "bad").into_status();
        assert_eq!(s.metadata().get("zeta-param").unwrap(), "temperature");
    }

    trait IntoStatus {
        fn into_status(self) -> Status;
    }
    impl IntoStatus for EngineError {
        fn into_status(self) -> Status {
            DaemonError::from(self).into()
        }
    }
}
