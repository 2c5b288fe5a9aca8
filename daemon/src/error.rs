//! Errors of the daemon and their one mapping to gRPC status codes.
//!
//! This is the only place a daemon error becomes a `tonic::Status`. The gateway has the matching
//! single table from status code to HTTP status. Alongside the message, two metadata entries help
//! clients: `zeta-param` names the request field at fault and `retry-after` (seconds) says when
//! a busy or loading daemon is worth asking again; `zeta-code` carries a machine-readable code
//! where the gRPC code alone is too coarse (`invalid_model`, `model_pinned`, `no_room`). Every message is
//! clipped here to [`zeta_proto::edge::MAX_STATUS_MESSAGE_BYTES`]: a status travels in HTTP/2
//! headers, and one oversized header would break the connection every other client shares.

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
    /// The model string is a path this caller may not use, or one that is not a loadable model.
    #[error("{0}")]
    InvalidModel(String),
    /// The model is pinned (the default) and the unload was not forced.
    #[error("{0}")]
    Pinned(String),
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
    /// The load a request waited for was stopped by an unload of the model.
    #[error("model '{model}' was unloaded while it was loading")]
    LoadStopped {
        /// The model.
        model: String,
    },
    /// No room for another model: every loaded one is pinned, busy, loading or unloading.
    #[error("{message}")]
    NoRoom {
        /// What stands in the way.
        message: String,
        /// Only pinned models stand in the way: waiting will not help, a change of
        /// configuration (or a forced unload) will.
        lasting: bool,
    },
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

/// One row of the table: the gRPC code and the metadata that go with an error.
struct Row<'a> {
    code: Code,
    param: Option<&'a str>,
    retry_after: Option<u32>,
    zeta_code: Option<&'static str>,
}

fn row(code: Code) -> Row<'static> {
    Row { code, param: None, retry_after: None, zeta_code: None }
}

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Status {
        let r = match &e {
            DaemonError::Engine(inner) => match inner {
                EngineError::InvalidArgument { field, .. } => Row { param: Some(field), ..row(Code::InvalidArgument) },
                EngineError::ContextOverflow { field, .. } => Row { param: Some(field), ..row(Code::OutOfRange) },
                EngineError::Busy { .. } => Row { retry_after: Some(1), ..row(Code::ResourceExhausted) },
                EngineError::KvCacheFull { .. } => Row { retry_after: Some(5), ..row(Code::ResourceExhausted) },
                EngineError::ShuttingDown { .. } => Row { retry_after: Some(5), ..row(Code::Unavailable) },
                EngineError::Template(_) => Row { param: Some("messages"), ..row(Code::InvalidArgument) },
                EngineError::NotFound { .. }
                | EngineError::BadModel { .. }
                | EngineError::UnsupportedArchitecture { .. }
                | EngineError::Tokenizer(_)
                | EngineError::Mlx(_)
                | EngineError::Io { .. }
                | EngineError::ToolCallFailed(_)
                | EngineError::Constraint(_) => row(Code::Internal),
            },
            DaemonError::ModelNotFound(_) => Row { param: Some("model"), ..row(Code::NotFound) },
            DaemonError::InvalidModel(_) => {
                Row { param: Some("model"), zeta_code: Some("invalid_model"), ..row(Code::InvalidArgument) }
            }
            DaemonError::Pinned(_) => {
                Row { param: Some("model"), zeta_code: Some("model_pinned"), ..row(Code::FailedPrecondition) }
            }
            DaemonError::Invalid { field, .. } => Row { param: Some(field), ..row(Code::InvalidArgument) },
            DaemonError::LoadFailed { transient: true, .. } => Row { retry_after: Some(10), ..row(Code::Unavailable) },
            DaemonError::LoadFailed { transient: false, .. } => row(Code::Internal),
            // Deliberate, so no retry-after: asking again loads the model again.
            DaemonError::LoadStopped { .. } => Row { param: Some("model"), ..row(Code::Unavailable) },
            DaemonError::NoRoom { lasting: false, .. } => Row { retry_after: Some(5), ..row(Code::ResourceExhausted) },
            DaemonError::NoRoom { lasting: true, .. } => {
                Row { param: Some("model"), zeta_code: Some("no_room"), ..row(Code::FailedPrecondition) }
            }
            DaemonError::PermissionDenied(_) => Row { param: Some("model"), ..row(Code::PermissionDenied) },
            DaemonError::Draining => Row { retry_after: Some(5), ..row(Code::Unavailable) },
            DaemonError::Internal(_) => row(Code::Internal),
        };
        let msg = e.to_string();
        let mut s = Status::new(r.code, zeta_proto::edge::clip(&msg, zeta_proto::edge::MAX_STATUS_MESSAGE_BYTES));
        if let Some(p) = r.param.and_then(|p| zeta_proto::edge::clip(p, 128).parse().ok()) {
            s.metadata_mut().insert("zeta-param", p);
        }
        if let Some(ra) = r.retry_after {
            s.metadata_mut().insert("retry-after", ra.into());
        }
        if let Some(c) = r.zeta_code {
            s.metadata_mut().insert(zeta_proto::edge::CODE_METADATA, tonic::metadata::MetadataValue::from_static(c));
        }
        s
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
                    field: "messages".into(),
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
        let s: Status = DaemonError::ModelNotFound("é".repeat(50_000)).into();
        assert!(s.message().len() <= zeta_proto::edge::MAX_STATUS_MESSAGE_BYTES, "{}", s.message().len());
        let s: Status = DaemonError::InvalidModel("no".into()).into();
        assert_eq!(s.metadata().get(zeta_proto::edge::CODE_METADATA).unwrap(), "invalid_model");
        let s: Status = DaemonError::Pinned("pinned".into()).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
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
