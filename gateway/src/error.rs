//! Errors in OpenAI's envelope, `{"error": {"message", "type", "param", "code"}}`, and the one
//! table from a daemon status (gRPC code) to an HTTP status. Every error the gateway returns,
//! in a JSON body or inside an SSE stream, goes through [`ApiError`], and every error the gateway
//! makes itself has its constructor here.

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
        let (param, message) = (param.into(), message.into());
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: with_subject(&param, message),
            kind: "invalid_request_error",
            param: Some(param),
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

    /// The connection to the daemon broke while this request used it; new requests reconnect.
    pub fn connection_lost(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("daemon_unavailable"),
                format!("the connection to the daemon broke during the request ({detail}); retry it"),
            )
        }
    }

    /// The daemon's stream ended before its final event.
    pub fn stream_cut() -> ApiError {
        ApiError::connection_lost("the daemon ended the stream before it finished")
    }

    /// A load that ended without its result.
    pub fn load_unfinished(model: &str) -> ApiError {
        ApiError::connection_lost(format!("the load of '{}' ended without a result", zeta_proto::edge::quote(model)))
    }

    /// A request body over the configured limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                None,
                format!("the request body is over the limit of {limit} bytes"),
            )
        }
    }

    /// A client that stopped sending its body.
    pub fn body_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!("the request body did not arrive: nothing was received for {} s", limit.as_secs_f64()),
        )
    }

    /// A request over the gateway's time limit.
    pub fn timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            Some("timeout"),
            format!("the request took longer than the gateway's limit of {} s", limit.as_secs()),
        )
    }

    /// No or a wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "a valid API key is required: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
        )
    }

    /// No route for this path (or this action on a model).
    pub fn no_route(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            format!("no route for {method} {}", zeta_proto::edge::quote(path)),
        )
    }

    /// A model id the listing does not hold.
    pub fn model_not_found(id: &str) -> ApiError {
        ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!("The model `{}` does not exist.", zeta_proto::edge::quote(id)),
            )
        }
    }

    /// A route that exists, but not for this method.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("{method} is not allowed on {}", zeta_proto::edge::quote(path)),
        )
    }

    /// A request refused before routing: a `Host` or `Origin` this gateway does not serve.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "invalid_request_error", Some(code), message)
    }

    /// A JSON endpoint called with another content type.
    pub fn not_json(given: Option<&str>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!(
                "this endpoint takes a JSON body: send 'Content-Type: application/json' (got {})",
                given.map_or("none".to_string(), |g| format!("'{}'", zeta_proto::edge::quote(g)))
            ),
        )
    }

    /// A body compressed in a way this server does not undo.
    pub fn encoded_body(encoding: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!(
                "request bodies are read as they come: 'Content-Encoding: {}' is not supported; send the body uncompressed",
                zeta_proto::edge::quote(encoding)
            ),
        )
    }

    /// The gateway is at its connection limit.
    pub fn too_many_connections(limit: usize) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("too_many_connections"),
                format!("the gateway is serving its limit of {limit} connections; retry shortly"),
            )
        }
    }

    /// Any other error response (routing, extraction) put into the envelope.
    pub fn from_plain(status: StatusCode, text: &str) -> ApiError {
        let text = text.trim();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            zeta_proto::edge::clip(text, 512).into_owned()
        };
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        ApiError::new(status, kind, None, message)
    }

    /// An error back from OpenAI's envelope (`{"error": {...}}`), to render in another API's;
    /// the status, message and parameter survive.
    pub fn from_envelope(status: StatusCode, inner: &serde_json::Value) -> ApiError {
        let message = inner.get("message").and_then(|m| m.as_str()).unwrap_or("error");
        let mut e = ApiError::from_plain(status, message);
        e.param = inner.get("param").and_then(|p| p.as_str()).map(String::from);
        e
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body {
            error: Inner { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        })
        .expect("error bodies serialize")
    }
}

/// A message that is only a predicate ("is required", "must be an object") with the field it is
/// about in front, as OpenAI writes them: many clients show the message and not `param`.
fn with_subject(param: &str, message: String) -> String {
    const PREDICATES: [&str; 8] = ["is ", "must ", "are ", "has ", "needs ", "may ", "cannot ", "should "];
    if PREDICATES.iter().any(|p| message.starts_with(p)) { format!("'{param}' {message}") } else { message }
}

/// The table: daemon status → HTTP status, OpenAI type and code.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        if zeta_proto::edge::transport_failed(&s) {
            let detail = zeta_proto::edge::clip(s.message(), 256);
            return if zeta_proto::edge::daemon_absent(&s) {
                ApiError::daemon_down(detail)
            } else {
                ApiError::connection_lost(detail)
            };
        }
        let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok()).map(String::from);
        let param = meta("zeta-param");
        let retry_after = meta("retry-after").and_then(|v| v.parse().ok());
        let zeta_code = match meta(zeta_proto::edge::CODE_METADATA).as_deref() {
            Some("invalid_model") => Some("invalid_model"),
            Some("model_pinned") => Some("model_pinned"),
            Some("no_room") => Some("no_room"),
            _ => None,
        };
        let message = zeta_proto::edge::clip(s.message(), zeta_proto::edge::MAX_STATUS_MESSAGE_BYTES).into_owned();
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
            Code::FailedPrecondition => (StatusCode::CONFLICT, "invalid_request_error", None),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "server_error", Some("timeout")),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("service_unavailable")),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        let code = zeta_code.or(code);
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
            (Code::FailedPrecondition, 409, "invalid_request_error"),
            (Code::Internal, 500, "server_error"),
        ] {
            let e = ApiError::from(tonic::Status::new(code, "m"));
            assert_eq!((e.status.as_u16(), e.kind), (http, ty), "{code:?}");
        }
        let e = ApiError::from(tonic::Status::new(Code::NotFound, "m"));
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(ApiError::from(tonic::Status::new(Code::ResourceExhausted, "m")).retry_after, Some(1));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ApiError::from(tonic::Status::from_error(Box::new(refused)));
        assert_eq!((e.status.as_u16(), e.code), (503, Some("daemon_unavailable")));
        assert!(e.message.contains("not reachable"), "{}", e.message);
        let broken = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "h2 protocol error");
        let e = ApiError::from(tonic::Status::from_error(Box::new(broken)));
        assert!(e.status == 503 && e.message.contains("broke"), "{}", e.message);
    }
}
