//! `zeta-mlxd`, the daemon: it owns the loaded MLX models and serves the versioned gRPC API
//! `zeta.mlx.v1` on a Unix-domain socket, with gRPC health and server reflection so `grpcurl`
//! works against the socket.
//!
//! The binary is thin: it reads the config, sets up logging and the socket, and calls [`run`]
//! with a shutdown signal. On that signal the daemon drains: health turns NOT_SERVING, new work is
//! refused, in-flight requests get until the drain deadline (or a second signal) to finish, then
//! every engine stops, the server closes and the socket is removed.

pub mod authority;
pub mod config;
pub mod convert;
pub mod error;
pub mod logging;
pub mod memory;
pub mod registry;
pub mod service;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use zeta_proto::v1;

use crate::registry::Registry;

/// The gRPC service names, as health checks name them.
pub const SERVICES: [&str; 3] = ["zeta.mlx.v1.Generation", "zeta.mlx.v1.Models", "zeta.mlx.v1.Daemon"];

/// Serves the API on `listener` until `shutdown` resolves, then drains and stops. The drain
/// ends early when `cut_short` resolves (a second signal): the requests left are cancelled.
pub async fn run(
    listener: UnixListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
    cut_short: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Both reflection versions: grpcurl speaks v1, while grpcio-reflection and other older
    // clients only know v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(zeta_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;
    let max = zeta_proto::MAX_MESSAGE_BYTES;
    let generation =
        v1::generation_server::GenerationServer::new(service::generation::GenerationService::new(registry.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let models = v1::models_server::ModelsServer::new(service::models::ModelsService::new(registry.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let daemon = v1::daemon_server::DaemonServer::new(service::daemon::DaemonService::new(registry.clone()));

    for name in ["", SERVICES[1], SERVICES[2]] {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    health.set_service_status(SERVICES[0], ServingStatus::NotServing).await;

    if registry.config().preload_default {
        let (reg, h) = (registry.clone(), health.clone());
        tokio::spawn(async move {
            let default = reg.config().default_model.clone();
            match reg.acquire(&default, registry::Caller::Socket).await {
                Ok(_) => {
                    tracing::info!(model = %default, "default model ready");
                    h.set_service_status(SERVICES[0], ServingStatus::Serving).await;
                }
                Err(e) => tracing::error!(model = %default, error = %e, "could not load the default model"),
            }
        });
    } else {
        health.set_service_status(SERVICES[0], ServingStatus::Serving).await;
    }
    tokio::spawn(registry.clone().idle_sweeper());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(tower::util::MapResponseLayer::new(undecodable_is_invalid))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(generation)
        .add_service(models)
        .add_service(daemon)
        .serve_with_incoming_shutdown(socket::incoming(listener), async {
            let _ = stop_rx.await;
        });
    let mut server = std::pin::pin!(server);
    tokio::select! {
        r = &mut server => { r?; return Ok(()); }
        _ = shutdown => {}
    }

    let deadline = Duration::from_secs(registry.config().drain_timeout_seconds);
    tracing::info!(in_flight = registry.in_flight(), deadline_seconds = deadline.as_secs(), "shutting down: draining");
    registry.start_draining();
    for name in ["", SERVICES[0], SERVICES[1], SERVICES[2]] {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    let started = Instant::now();
    let drained = async {
        while registry.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        r = &mut server => { r?; }
        done = tokio::time::timeout(deadline, drained) => {
            if done.is_err() {
                tracing::warn!(in_flight = registry.in_flight(), "drain deadline passed; cancelling the rest");
            }
        }
        _ = cut_short => {
            tracing::warn!(in_flight = registry.in_flight(), "drain cut short; cancelling the rest");
        }
    }
    registry.shutdown().await;
    let _ = stop_tx.send(());
    // Streams end once their engines stop; idle connections get a GOAWAY.
    if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
        tracing::warn!("connections did not close in 5 s; exiting anyway");
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "stopped");
    Ok(())
}

/// tonic answers a request it cannot decode (a string that is not UTF-8, a wrong wire type, a
/// truncated message) with INTERNAL, which says the daemon failed; the caller's bytes did. And
/// it answers one over the size limit with OUT_OF_RANGE, which this API keeps for a prompt over
/// the context; gRPC's own code for a message too large is RESOURCE_EXHAUSTED. Such an answer
/// is trailers-only, so its status is in the response headers.
fn undecodable_is_invalid(
    mut res: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    let h = res.headers_mut();
    let message = |prefix: &str| {
        let encoded = prefix.replace(' ', "%20");
        h.get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.starts_with(&encoded) || m.starts_with(prefix))
    };
    let status = h.get("grpc-status").and_then(|v| v.to_str().ok());
    let fixed = match status {
        Some("13") if message("failed to decode Protobuf message") => Some("3"),
        Some("11") if message("Error, decoded message length too large") => Some("8"),
        _ => None,
    };
    if let Some(code) = fixed {
        h.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static(code));
    }
    res
}
