//! Errors in OpenAI's envelope, `{"error": {"message", "type", "param", "code"}}`, and the one
//! table from a daemon status (gRPC code) to an HTTP status. Every error the gateway returns,
//! in a JSON body or inside an SSE stream, goes through [`ApiError`].

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;

/// An error as OpenAI clients expect it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// The request parameter at fault.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds after which a retry makes sense (429, 503).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// A 400 naming the parameter.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after: None,
        }
    }

    /// A 400 for a parameter or value the server does not support.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { code: Some("unsupported_parameter"), ..ApiError::invalid(param, message) }
    }

    /// An error with no parameter.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code, retry_after: None }
    }

    /// The daemon could not be reached.
    pub fn daemon_down(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("daemon_unavailable"),
                format!("the zeta-mlxd daemon is not reachable ({detail}); start it with `zeta-mlxd` or `make run`"),
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body {
            error: Inner { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        })
        .expect("error bodies serialize")
    }
}

/// The table: daemon status → HTTP status, OpenAI type and code.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok()).map(String::from);
        let param = meta("zeta-param");
        let retry_after = meta("retry-after").and_then(|v| v.parse().ok());
        let message = s.message().to_string();
        let (status, kind, code) = match s.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid_request_error", Some("context_length_exceeded")),
            Code::NotFound => (StatusCode::NOT_FOUND, "invalid_request_error", Some("model_not_found")),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_error", None),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "authentication_error", None),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("server_busy")),
            Code::Cancelled => {
                (StatusCode::from_u16(499).expect("499 is a valid status"), "invalid_request_error", Some("cancelled"))
            }
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "server_error", Some("timeout")),
            // The daemon marks its own UNAVAILABLE answers with a retry hint; without one, the
            // status came from the transport: nothing answered on the socket.
            Code::Unavailable if retry_after.is_none() => return ApiError::daemon_down(message),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("service_unavailable")),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after.or(Some(1)),
            _ => retry_after,
        };
        ApiError { status, message, kind, param, code, retry_after }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(r) = self.retry_after {
            resp.headers_mut().insert("retry-after", HeaderValue::from(r));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        for (code, http, ty) in [
            (Code::InvalidArgument, 400, "invalid_request_error"),
            (Code::OutOfRange, 400, "invalid_request_error"),
            (Code::NotFound, 404, "invalid_request_error"),
            (Code::ResourceExhausted, 429, "rate_limit_error"),
            (Code::Unavailable, 503, "server_error"),
            (Code::Cancelled, 499, "invalid_request_error"),
            (Code::Internal, 500, "server_error"),
        ] {
            let e = ApiError::from(tonic::Status::new(code, "m"));
            assert_eq!((e.status.as_u16(), e.kind), (http, ty), "{code:?}");
        }
        let e = ApiError::from(tonic::Status::new(Code::NotFound, "m"));
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(ApiError::from(tonic::Status::new(Code::ResourceExhausted, "m")).retry_after, Some(1));
    }
}
