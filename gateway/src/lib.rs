//! `zeta-gateway`: the OpenAI-compatible HTTP API (JSON and Server-Sent Events) over the daemon's
//! gRPC API. It keeps no state of its own — any number can run, and one can restart at any time —
//! and turns each HTTP request into gRPC calls on one lazily connected channel to the daemon's
//! socket, which reconnects by itself after the daemon restarts.
//!
//! Layout: `dto` (wire types) and `convert` (the one validating conversion to the daemon's
//! domain), one module per route under `routes`, `error` (the one status table), `metrics`, and
//! the middleware here: request ids, access logs, API keys, CORS, the body limit.

pub mod config;
pub mod convert;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod routes;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tonic::transport::Channel;
use zeta_proto::v1;

use crate::config::GatewayConfig;
use crate::error::ApiError;

/// Shared by every request.
pub struct AppState {
    /// The daemon channel (connects lazily, reconnects by itself).
    pub channel: Channel,
    /// Where the daemon listens, for messages.
    pub socket: PathBuf,
    /// Settings.
    pub config: GatewayConfig,
    /// The gateway's own figures.
    pub metrics: metrics::Metrics,
    /// Start time.
    pub started: Instant,
}

impl AppState {
    /// A state over a daemon socket.
    pub fn new(config: GatewayConfig, socket: PathBuf) -> Arc<AppState> {
        let channel = zeta_proto::socket::connect_lazy(&socket);
        Arc::new(AppState { channel, socket, config, metrics: metrics::Metrics::default(), started: Instant::now() })
    }

    /// A `Generation` client.
    pub fn generation(&self) -> v1::generation_client::GenerationClient<Channel> {
        let max = zeta_proto::MAX_MESSAGE_BYTES;
        v1::generation_client::GenerationClient::new(self.channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// A `Models` client.
    pub fn models(&self) -> v1::models_client::ModelsClient<Channel> {
        v1::models_client::ModelsClient::new(self.channel.clone())
    }

    /// A `Daemon` client.
    pub fn daemon(&self) -> v1::daemon_client::DaemonClient<Channel> {
        v1::daemon_client::DaemonClient::new(self.channel.clone())
    }
}

/// The request id of the current request (from `x-request-id`, or made here).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A request body read up to the configured limit; over it is a 413 in OpenAI's envelope.
pub struct LimitedBody(pub Bytes);

impl FromRequest<Arc<AppState>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.config.body_limit;
        let too_large = || ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                None,
                format!("the request body is over the limit of {limit} bytes"),
            )
        };
        if let Some(len) =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
            && len > limit
        {
            return Err(too_large());
        }
        let body = http_body_util::Limited::new(req.into_body(), limit);
        match body.collect().await {
            Ok(c) => Ok(LimitedBody(c.to_bytes())),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(ApiError::invalid("body", format!("could not read the request body: {e}"))),
        }
    }
}

fn new_request_id() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..24).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])).collect()
}

/// Request ids, access logs and per-route figures.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(String::from)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let route = metrics::route_label(&path);
    let start = Instant::now();
    let mut resp = next.run(req).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    state.metrics.observe(route, status, elapsed);
    tracing::info!(request_id = %id, %method, %path, status, ms = elapsed.as_millis() as u64, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Bearer API keys, when configured; `/health` stays public.
async fn authorize(State(state): State<Arc<AppState>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if state.config.api_keys.is_empty() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(k) if state.config.api_keys.iter().any(|key| key == k.trim()) => next.run(req).await,
        _ => ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "a valid API key is required: send 'Authorization: Bearer <key>'",
            )
        }
        .into_response(),
    }
}

async fn not_found(req: Request<Body>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("not_found"),
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// The HTTP application.
pub fn app(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/v1/chat/completions", post(routes::chat::handle))
        .route("/v1/completions", post(routes::completions::handle))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/loaded", get(routes::models::loaded))
        .route("/v1/models/{*rest}", get(routes::models::get_one).post(routes::models::action))
        .route("/v1/tokens/count", post(routes::tokens::count))
        .route("/v1/tokenize", post(routes::tokens::tokenize))
        .route("/health", get(routes::health::handle))
        .route("/metrics", get(routes::metrics::handle))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state.config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any),
        );
    }
    router.with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
