//! `zeta-gateway`: the OpenAI-compatible HTTP API (JSON and Server-Sent Events) over the daemon's
//! gRPC API. It keeps no state of its own — any number can run, and one can restart at any time —
//! and turns each HTTP request into gRPC calls on one lazily connected channel to the daemon's
//! socket, which reconnects by itself after the daemon restarts.
//!
//! Layout: `dto` (wire types) and `convert` (the one validating conversion to the daemon's
//! domain), one module per route under `routes`, `error` (the one status table), `metrics`,
//! `middleware` (request ids, logs, the error envelope, browser safety, API keys), `server` (the
//! connection loop and its limits), and here the shared state and the body extractor.

pub mod anthropic;
pub mod config;
pub mod convert;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod responses;
pub mod routes;
pub mod server;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderValue;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use zeta_proto::v1;

use crate::config::GatewayConfig;
use crate::error::ApiError;

/// The daemon channel with every call marked as made for an HTTP client, so the daemon applies
/// its HTTP rules (no hub ids or paths unless configured).
pub type DaemonChannel =
    InterceptedService<Channel, fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>>;

fn mark_http(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    req.metadata_mut().insert(
        zeta_proto::edge::CLIENT_METADATA,
        tonic::metadata::MetadataValue::from_static(zeta_proto::edge::HTTP_CLIENT),
    );
    Ok(req)
}

/// What every request shares: the daemon channel, the settings, the gateway's figures.
pub struct AppState {
    /// The daemon channel (connects lazily, reconnects by itself).
    pub channel: Channel,
    /// Where the daemon listens, for messages.
    pub socket: PathBuf,
    /// Settings, fixed at start.
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

    fn marked(&self) -> DaemonChannel {
        InterceptedService::new(self.channel.clone(), mark_http)
    }

    /// A `Generation` client.
    pub fn generation(&self) -> v1::generation_client::GenerationClient<DaemonChannel> {
        let max = zeta_proto::MAX_MESSAGE_BYTES;
        v1::generation_client::GenerationClient::new(self.marked())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// A `Models` client (its messages may be as large as a body: tokenizing a long text).
    pub fn models(&self) -> v1::models_client::ModelsClient<DaemonChannel> {
        let max = zeta_proto::MAX_MESSAGE_BYTES;
        v1::models_client::ModelsClient::new(self.marked())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// A `Daemon` client.
    pub fn daemon(&self) -> v1::daemon_client::DaemonClient<DaemonChannel> {
        v1::daemon_client::DaemonClient::new(self.marked())
    }
}

/// The request id of the current request (from `x-request-id`, or made here).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A request body read up to the configured size, with the configured idle limit between its
/// pieces: over the size is a 413, a client that stops sending is a 408, both in OpenAI's
/// envelope.
pub struct LimitedBody(pub Bytes);

impl FromRequest<Arc<AppState>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.config.body_limit;
        if let Some(len) =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
            && len > limit
        {
            return Err(ApiError::too_large(limit));
        }
        let idle = state.config.body_timeout;
        let mut body = http_body_util::Limited::new(req.into_body(), limit);
        let mut out = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(ApiError::body_timeout(idle)),
                Ok(None) => return Ok(LimitedBody(out.freeze())),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                Ok(Some(Err(e))) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    return Err(ApiError::too_large(limit));
                }
                Ok(Some(Err(e))) => {
                    return Err(ApiError::invalid("body", format!("could not read the request body: {e}")));
                }
            }
        }
    }
}

impl LimitedBody {
    /// Parses the body into a DTO; a large body is parsed on the blocking pool, so the async
    /// threads stay free for other requests and health checks meanwhile.
    pub async fn parse<T: serde::de::DeserializeOwned + Send + 'static>(self) -> Result<T, ApiError> {
        const INLINE_BYTES: usize = 256 << 10;
        if self.0.len() <= INLINE_BYTES {
            return convert::parse_body(&self.0);
        }
        tokio::task::spawn_blocking(move || convert::parse_body(&self.0))
            .await
            .unwrap_or_else(|e| Err(ApiError::invalid("body", format!("could not parse the request body: {e}"))))
    }
}

/// The HTTP application.
pub fn app(state: Arc<AppState>) -> Router {
    use middleware::{authorize, body_kind, envelope, guard, observe};
    let mut router = Router::new()
        .route("/v1/chat/completions", post(routes::generation::handle::<routes::chat::Chat>))
        .route("/v1/completions", post(routes::generation::handle::<routes::completions::Completions>))
        .route("/v1/messages", post(routes::generation::handle::<routes::messages::Messages>))
        .route("/v1/messages/count_tokens", post(routes::messages::count_tokens))
        .route("/v1/embeddings", post(routes::embeddings::handle))
        .route("/v1/responses", post(routes::generation::handle::<routes::responses::Responses>))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/loaded", get(routes::models::loaded))
        .route("/v1/models/{*rest}", get(routes::models::get_one).post(routes::models::action))
        .route("/v1/tokens/count", post(routes::tokens::count))
        .route("/v1/tokenize", post(routes::tokens::tokenize))
        .route("/health", get(routes::health::handle))
        .route("/metrics", get(routes::metrics::handle))
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn(body_kind))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::from_fn(envelope));
    if !state.config.cors_origins.is_empty() {
        use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
        // `*` is its own kind of answer: tower-http refuses it inside a list (a panic at start-up).
        let origins = if state.config.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(state.config.cors_origins.iter().filter_map(|o| o.parse::<HeaderValue>().ok()))
        };
        // Headers are mirrored, not `*`: browsers never let the wildcard cover `Authorization`,
        // and every OpenAI client sends its key there.
        router = router.layer(
            CorsLayer::new().allow_origin(origins).allow_methods(Any).allow_headers(AllowHeaders::mirror_request()),
        );
    }
    router.layer(axum::middleware::from_fn_with_state(state.clone(), observe)).with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, under the configured connection
/// limits; requests in flight then get `drain` to finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits =
        server::Limits { max_connections: state.config.max_connections, header_timeout: state.config.header_timeout };
    let drain = state.config.drain_timeout;
    server::serve(listener, app(state), limits, shutdown, drain).await
}
