//! `GET /health`: whether the daemon can actually generate — reachable, not draining, and the
//! default model loaded — and if not, why. Public even when API keys are set.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use zeta_proto::v1;

use crate::AppState;

/// `GET /health`: 200 with the daemon's facts when it can generate, else 503 with the reason.
pub async fn handle(State(state): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    let mut client = state.daemon();
    let status = tokio::time::timeout(Duration::from_secs(3), client.get_status(v1::GetStatusRequest {})).await;
    let gateway = json!({"version": env!("CARGO_PKG_VERSION"), "uptime_seconds": state.started.elapsed().as_secs()});
    match status {
        Ok(Ok(s)) => {
            let s = s.into_inner();
            let body = json!({
                "status": if s.ready { "healthy" } else { "unhealthy" },
                "reason": (!s.ready).then_some(&s.not_ready_reason),
                "version": env!("CARGO_PKG_VERSION"),
                "gateway": gateway,
                "daemon": {"version": s.version, "mlx_version": s.mlx_version, "device": s.device,
                    "uptime_seconds": s.uptime_seconds, "draining": s.draining,
                    "models_loaded": s.engines.iter().filter(|e| !e.unloading).flat_map(|e| &e.names).collect::<Vec<_>>()},
            });
            (if s.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
        }
        Ok(Err(e)) if zeta_proto::edge::transport_failed(&e) => {
            unhealthy(gateway, format!("the daemon is not reachable at {}: {}", state.socket.display(), e.message()))
        }
        Ok(Err(e)) => unhealthy(gateway, format!("the daemon answered its status call with an error: {}", e.message())),
        Err(_) => unhealthy(
            gateway,
            format!("the daemon is not reachable at {}: no answer within 3 s", state.socket.display()),
        ),
    }
}

fn unhealthy(gateway: serde_json::Value, reason: String) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({"status": "unhealthy", "reason": reason, "version": env!("CARGO_PKG_VERSION"), "gateway": gateway}),
        ),
    )
}
