//! One module per route. `stream` holds what the two generation routes share: reading the
//! daemon's event stream, and turning it into SSE with a pump that notices a client going away.

pub mod chat;
pub mod completions;
pub mod health;
pub mod metrics;
pub mod models;
pub mod stream;
pub mod tokens;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
