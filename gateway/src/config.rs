//! The gateway's settings, from flags and environment variables: listen address, the daemon's
//! socket (through the shared resolver), CORS origins (off unless set), API keys (off unless
//! set), body size limit, request timeout, log format.

use std::time::Duration;

/// Settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Allowed CORS origins; empty disables CORS.
    pub cors_origins: Vec<String>,
    /// Accepted Bearer keys; empty disables authentication.
    pub api_keys: Vec<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Longest a non-streaming request may take.
    pub request_timeout: Duration,
    /// Interval of SSE comment keep-alives while nothing else is sent (e.g. during prefill).
    pub keep_alive: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            cors_origins: vec![],
            api_keys: vec![],
            body_limit: 16 << 20,
            request_timeout: Duration::from_secs(600),
            keep_alive: Duration::from_secs(5),
        }
    }
}
