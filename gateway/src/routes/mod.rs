//! One module per route. The generating endpoints (`chat`, `completions`, `messages`, `responses`) run the one route in
//! `generation` (parse, convert, then stream or gather); `stream` turns the daemon's event stream
//! into SSE with a pump that notices a client going away; `output` holds what their answers share.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod generation;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod output;
pub mod responses;
pub mod stream;
pub mod tokens;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
