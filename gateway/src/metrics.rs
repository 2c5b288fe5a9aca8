//! The gateway's own figures (requests by route and status, latency histograms per route) and
//! their Prometheus text rendering, to which `/metrics` appends the daemon's engine figures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

#[derive(Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Hist>>,
}

/// A bounded label for a path, so hub ids and typos do not make new series.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/v1/models/loaded" => "/v1/models/loaded",
        "/v1/tokens/count" => "/v1/tokens/count",
        "/v1/tokenize" => "/v1/tokenize",
        "/v1/messages" => "/v1/messages",
        "/v1/messages/count_tokens" => "/v1/messages/count_tokens",
        "/v1/responses" => "/v1/responses",
        "/v1/embeddings" => "/v1/embeddings",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p.starts_with("/v1/models/") && (p.ends_with("/load") || p.ends_with("/unload")) => {
            "/v1/models/{alias}/action"
        }
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

impl Metrics {
    /// Records one finished request (latency to the response head for streams).
    pub fn observe(&self, route: &'static str, status: u16, took: Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat.entry(route).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// Prometheus text of the gateway's own figures.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP zeta_gateway_requests_total HTTP requests by route and status.\n# TYPE zeta_gateway_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "zeta_gateway_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP zeta_gateway_request_duration_seconds Time to the response head.\n# TYPE zeta_gateway_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ =
                    writeln!(out, "zeta_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(
                out,
                "zeta_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "zeta_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "zeta_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_api_route_has_its_own_label() {
        for path in
            ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/embeddings"]
        {
            assert_eq!(super::route_label(path), path);
        }
        assert_eq!(super::route_label("/v1/models/a/b/load"), "/v1/models/{alias}/action");
        assert_eq!(super::route_label("/nothing"), "other");
    }
}
