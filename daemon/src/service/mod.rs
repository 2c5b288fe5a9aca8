//! The gRPC services of `zeta.mlx.v1`, one module each, over the shared [`Registry`].

pub mod daemon;
pub mod generation;
pub mod models;
pub mod shaping;

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Request;
use tonic::transport::server::UdsConnectInfo;

/// The uid of the process at the other end of the socket, when known.
pub fn peer_uid<T>(req: &Request<T>) -> Option<u32> {
    req.extensions().get::<UdsConnectInfo>().and_then(|i| i.peer_cred).map(|c| c.uid())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A request id unique within this daemon's lifetime.
pub fn new_request_id() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("req-{t:x}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}
