//! `zeta.mlx.v1.Daemon`: version, readiness, memory and every engine's live figures.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use zeta_proto::v1;

use crate::convert;
use crate::registry::Registry;

/// `zeta.mlx.v1.Daemon` over the registry: status and figures, never blocking on a model.
pub struct DaemonService {
    registry: Arc<Registry>,
    started: Instant,
}

impl DaemonService {
    /// A service over the registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        DaemonService { registry, started: Instant::now() }
    }
}

#[tonic::async_trait]
impl v1::daemon_server::Daemon for DaemonService {
    async fn get_status(&self, _: Request<v1::GetStatusRequest>) -> Result<Response<v1::DaemonStatus>, Status> {
        let draining = self.registry.is_draining();
        let (ready, reason) =
            if draining { (false, "the daemon is shutting down".to_string()) } else { self.registry.default_ready() };
        let engines = self
            .registry
            .engines()
            .into_iter()
            .map(|v| {
                let (e, s) = (&v.engine, v.engine.stats());
                v1::EngineStatus {
                    model: v.names[0].clone(),
                    unloading: v.unloading,
                    names: v.names,
                    queued: s.queued as u32,
                    active: s.active as u32,
                    requests: s.requests,
                    // Cached tokens are prompt tokens too (as in a request's usage): the engine
                    // counts the ones it computed and the ones it reused apart.
                    prompt_tokens: s.prompt_tokens + s.cached_tokens,
                    cached_tokens: s.cached_tokens,
                    generated_tokens: s.generated_tokens,
                    steps: s.steps,
                    kv_cache_bytes: s.kv_bytes as u64,
                    weight_bytes: e.info().weight_bytes as u64,
                    time_to_first_token: Some(convert::histogram(&s.ttft)),
                    inter_token_latency: Some(convert::histogram(&s.inter_token)),
                }
            })
            .collect();
        Ok(Response::new(v1::DaemonStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            mlx_version: mlx::version(),
            device: if mlx::default_device_is_gpu() { "gpu" } else { "cpu" }.into(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            draining,
            ready,
            not_ready_reason: reason,
            memory_active_bytes: mlx::active_memory() as u64,
            memory_peak_bytes: mlx::peak_memory() as u64,
            memory_cache_bytes: mlx::cache_memory() as u64,
            memory_budget_bytes: self.registry.config().memory_budget.map(|b| b.0).unwrap_or(0),
            engines,
        }))
    }
}
