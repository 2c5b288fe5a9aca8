//! `GET /metrics`: Prometheus text — the gateway's request counts and latencies, then the
//! daemon's figures fetched over gRPC (queue depth, active sequences, tokens, time-to-first-token
//! and inter-token histograms, loaded models, memory).

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use zeta_proto::v1;

use crate::AppState;

/// A label value as the exposition format writes it: a model named by an odd path (a quote, a
/// backslash, a newline) must not break the scrape or forge a sample.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, model: &str, h: &Option<v1::Histogram>) {
    let Some(h) = h else { return };
    let model = label(model);
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
}

/// `GET /metrics`: Prometheus text; the daemon's series are left out while it is unreachable.
pub async fn handle(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::new();
    state.metrics.render(&mut out);
    let status = tokio::time::timeout(Duration::from_secs(3), state.daemon().get_status(v1::GetStatusRequest {})).await;
    match status {
        Ok(Ok(s)) => {
            let s = s.into_inner();
            let _ = writeln!(out, "# TYPE zeta_daemon_up gauge\nzeta_daemon_up 1");
            let _ = writeln!(out, "# TYPE zeta_daemon_ready gauge\nzeta_daemon_ready {}", s.ready as u8);
            let loaded = s.engines.iter().filter(|e| !e.unloading).count();
            let _ = writeln!(out, "# TYPE zeta_daemon_models_loaded gauge\nzeta_daemon_models_loaded {loaded}");
            let _ = writeln!(
                out,
                "# TYPE zeta_daemon_models_unloading gauge\nzeta_daemon_models_unloading {}",
                s.engines.len() - loaded
            );
            let _ = writeln!(
                out,
                "# TYPE zeta_daemon_memory_active_bytes gauge\nzeta_daemon_memory_active_bytes {}",
                s.memory_active_bytes
            );
            let _ = writeln!(
                out,
                "# TYPE zeta_daemon_memory_peak_bytes gauge\nzeta_daemon_memory_peak_bytes {}",
                s.memory_peak_bytes
            );
            let _ = writeln!(
                out,
                "# TYPE zeta_daemon_memory_cache_bytes gauge\nzeta_daemon_memory_cache_bytes {}",
                s.memory_cache_bytes
            );
            type Series = (&'static str, &'static str, fn(&v1::EngineStatus) -> u64);
            let series: [Series; 9] = [
                ("zeta_engine_queue_depth", "gauge", |e| e.queued as u64),
                ("zeta_engine_active_sequences", "gauge", |e| e.active as u64),
                ("zeta_engine_requests_total", "counter", |e| e.requests),
                ("zeta_engine_prompt_tokens_total", "counter", |e| e.prompt_tokens),
                ("zeta_engine_cached_prompt_tokens_total", "counter", |e| e.cached_tokens),
                ("zeta_engine_generated_tokens_total", "counter", |e| e.generated_tokens),
                ("zeta_engine_steps_total", "counter", |e| e.steps),
                ("zeta_engine_kv_cache_bytes", "gauge", |e| e.kv_cache_bytes),
                ("zeta_engine_weight_bytes", "gauge", |e| e.weight_bytes),
            ];
            for (name, kind, get) in series {
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for e in &s.engines {
                    let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", label(&e.model), get(e));
                }
            }
            let _ = writeln!(out, "# TYPE zeta_engine_time_to_first_token_seconds histogram");
            for e in &s.engines {
                histogram(&mut out, "zeta_engine_time_to_first_token_seconds", &e.model, &e.time_to_first_token);
            }
            let _ = writeln!(out, "# TYPE zeta_engine_inter_token_latency_seconds histogram");
            for e in &s.engines {
                histogram(&mut out, "zeta_engine_inter_token_latency_seconds", &e.model, &e.inter_token_latency);
            }
        }
        _ => {
            let _ = writeln!(out, "# TYPE zeta_daemon_up gauge\nzeta_daemon_up 0");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped_as_the_exposition_format_requires() {
        assert_eq!(super::label("/m/we\"ird\\dir\nx"), "/m/we\\\"ird\\\\dir\\nx");
        assert_eq!(super::label("smollm2-135m"), "smollm2-135m");
    }
}
