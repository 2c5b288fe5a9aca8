//! The layers every request passes, outermost first: `observe` (request ids, access logs,
//! figures), `envelope` (any error response that is not JSON yet — routing's 404/405, an
//! extractor's 400 — goes into OpenAI's envelope), `guard` (browser safety: the `Host` and
//! `Origin` a request may carry, JSON endpoints only with a JSON content type) and `authorize`
//! (API keys). Browser safety follows Ollama and llama-server: a web page the user visits can
//! send simple requests to `127.0.0.1` (CSRF) or reach it under its own name after a DNS
//! rebinding; refusing foreign `Origin`s, non-loopback `Host`s and non-JSON bodies stops both.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::{AppState, RequestId, metrics};
use zeta_proto::edge::{host_name, loopback_name};

fn new_request_id() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..24).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])).collect()
}

/// Request ids, access logs and per-route figures.
pub async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= zeta_proto::edge::MAX_REQUEST_ID_BYTES
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(String::from)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut seen = Seen {
        state,
        id,
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        start: Instant::now(),
        answered: false,
    };
    let mut resp = next.run(req).await;
    seen.record(resp.status().as_u16(), "request");
    seen.answered = true;
    if let Ok(v) = HeaderValue::from_str(&seen.id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// One request as `observe` accounts for it. A client that closes its connection before the
/// response is ready drops the handler's future, and this with it: the request is then logged
/// and counted as 499 (nginx's "client closed request"), so cancelled non-streaming requests
/// leave the same trace as finished ones.
struct Seen {
    state: Arc<AppState>,
    id: String,
    method: Method,
    path: String,
    start: Instant,
    answered: bool,
}

impl Seen {
    fn record(&self, status: u16, what: &'static str) {
        let elapsed = self.start.elapsed();
        self.state.metrics.observe(metrics::route_label(&self.path), status, elapsed);
        tracing::info!(request_id = %self.id, method = %self.method, path = %zeta_proto::edge::quote(&self.path),
            status, ms = elapsed.as_millis() as u64, "{what}");
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        if !self.answered {
            self.record(499, "request cancelled: the client went away before the response");
        }
    }
}

fn is_json(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Puts error responses made outside the handlers (routing, extraction, the guards) into the
/// envelope of the API the path belongs to: Anthropic's under `/v1/messages`, OpenAI's elsewhere.
pub async fn envelope(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let anthropic = path == "/v1/messages" || path.starts_with("/v1/messages/");
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let json = is_json(resp.headers().get(header::CONTENT_TYPE));
    if json && !anthropic {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let limited = http_body_util::Limited::new(body, 64 << 10);
    let bytes = limited.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let err = if json {
        // An error already in OpenAI's envelope (the guards and the auth check make those).
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match v.get("error").filter(|_| v.get("type").is_none()) {
            Some(e) => ApiError::from_envelope(status, e),
            None => return Response::from_parts(parts, Body::from(bytes)),
        }
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ApiError::method_not_allowed(&method, &path)
    } else {
        ApiError::from_plain(status, &String::from_utf8_lossy(&bytes))
    };
    let mut out = if anthropic { crate::anthropic::error_response(err) } else { err.into_response() };
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Browser safety (see the module header).
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let cfg = &state.config;
    // HTTP/1.1 names its target host exactly once (RFC 9112 §3.2): in an absolute-form target,
    // which then wins, or in one Host header.
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let authority = req.uri().authority().map(|a| a.as_str());
    if hosts > 1 || (hosts == 0 && authority.is_none() && req.version() == axum::http::Version::HTTP_11) {
        let why = if hosts > 1 { "more than one Host header" } else { "no Host header" };
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, format!("the request has {why}"))
            .into_response();
    }
    if cfg.check_host {
        let host = authority.or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()));
        if let Some(h) = host {
            let name = host_name(h);
            // An allowed entry may be written as a Host header is (`name:port`, `[v6]`, trailing dot).
            if !loopback_name(&name) && !cfg.allowed_hosts.iter().any(|a| a == "*" || host_name(a) == name) {
                return ApiError::forbidden(
                    "host_not_allowed",
                    format!(
                        "Host '{}' is not served here: this gateway answers loopback names only \
                         (add the name with --allowed-host)",
                        zeta_proto::edge::quote(&name)
                    ),
                )
                .into_response();
            }
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        if !cfg.cors_origins.iter().any(|a| a == "*" || a == o) {
            return ApiError::forbidden(
                "origin_not_allowed",
                format!(
                    "requests from web pages are refused unless their origin is configured: '{}' is not \
                     (start the gateway with --cors-origin)",
                    zeta_proto::edge::quote(o)
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// What a body must be to be read: JSON where JSON is read, neither compressed nor in a transfer
/// coding other than chunked. Checked after the API key, so a client without one learns nothing.
pub async fn body_kind(req: Request, next: Next) -> Response {
    let json_route = matches!(
        req.uri().path(),
        "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/tokens/count"
            | "/v1/tokenize"
            | "/v1/messages"
            | "/v1/messages/count_tokens"
            | "/v1/responses"
            | "/v1/embeddings"
    );
    if req.method() == Method::POST && json_route && !is_json(req.headers().get(header::CONTENT_TYPE)) {
        let given = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
        return ApiError::not_json(given).into_response();
    }
    // A gzip body read as JSON would be a baffling "not UTF-8" error.
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("(not text)").trim();
        if !enc.eq_ignore_ascii_case("identity") {
            return ApiError::encoded_body(enc).into_response();
        }
    }
    // hyper undoes chunked framing only; a body in any other coding would be read as it came.
    for te in req.headers().get_all(header::TRANSFER_ENCODING) {
        let te = te.to_str().unwrap_or("(not text)");
        if te.split(',').map(str::trim).any(|c| !c.eq_ignore_ascii_case("chunked")) {
            return ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "invalid_request_error",
                Some("unsupported_transfer_encoding"),
                format!(
                    "'Transfer-Encoding: {}' is not supported: only chunked bodies are",
                    zeta_proto::edge::quote(te)
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference, so response times do not reveal how much
/// of a key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// API keys, when configured, as `Authorization: Bearer` (OpenAI's clients) or `x-api-key`
/// (Anthropic's); `/health` stays public.
pub async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.config.api_keys.is_empty() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let headers = req.headers();
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are Bearer too.
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let given = bearer.or(x_api_key).map(str::trim).unwrap_or("").to_string();
    // Every key is compared, whichever matches.
    let ok = !given.is_empty()
        && state.config.api_keys.iter().fold(false, |found, key| found | same(key.as_bytes(), given.as_bytes()));
    if ok { next.run(req).await } else { ApiError::unauthorized().into_response() }
}

/// The fallback route.
pub async fn not_found(req: Request<Body>) -> ApiError {
    ApiError::no_route(req.method().as_str(), req.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT") && !same(b"secret", b"secre") && !same(b"", b"x"));
    }
}
