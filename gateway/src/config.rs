//! The gateway's settings, from flags and environment variables: listen address, the daemon's
//! socket (through the shared resolver), CORS origins (off unless set), API keys (off unless
//! set), the `Host` names it answers besides loopback ones, body size and time limits,
//! connection limit, log format.

use std::time::Duration;

/// The gateway's settings; [`Default`] is what the flags default to.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Allowed CORS origins; empty disables CORS, and requests carrying another `Origin` are
    /// refused.
    pub cors_origins: Vec<String>,
    /// Accepted Bearer keys; empty disables authentication.
    pub api_keys: Vec<String>,
    /// Whether to check `Host` (on when listening on a loopback address: DNS-rebinding defence).
    pub check_host: bool,
    /// `Host` names answered besides loopback ones (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Longest wait for a request's headers (also the idle limit of a kept-alive connection).
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest a request may take: until its response starts for streams (model load
    /// included), to the end otherwise.
    pub request_timeout: Duration,
    /// Interval of SSE comment keep-alives while nothing else is sent (model load, prefill).
    pub keep_alive: Duration,
    /// How long requests in flight get to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            cors_origins: vec![],
            api_keys: vec![],
            check_host: true,
            allowed_hosts: vec![],
            body_limit: 16 << 20,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            request_timeout: Duration::from_secs(600),
            keep_alive: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
        }
    }
}
