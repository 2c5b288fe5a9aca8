//! The gRPC services of `zeta.mlx.v1`, one module each, over the shared [`Registry`].

pub mod daemon;
pub mod embedding;
pub mod generation;
pub mod models;
pub mod truncate;

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Request;

use crate::error::DaemonError;
use crate::registry::Caller;
use tonic::transport::server::UdsConnectInfo;

/// Who made a call: the gateway marks the calls it makes for HTTP clients.
pub fn caller<T>(req: &Request<T>) -> Caller {
    let mark = req.metadata().get(zeta_proto::edge::CLIENT_METADATA).and_then(|v| v.to_str().ok());
    if mark == Some(zeta_proto::edge::HTTP_CLIENT) { Caller::Http } else { Caller::Socket }
}

/// Runs CPU-heavy request work (tokenizing, rendering templates) on the blocking pool, so a
/// 16 MB prompt never holds up the async threads that answer health checks and other calls;
/// when the request was large, hands the freed memory back to the system afterwards.
///
/// Large requests are prepared [`LARGE_AT_ONCE`] at a time: each holds several times its size
/// while it is tokenized, and the work cannot stop halfway, so a burst of them (or clients that
/// send one and leave) would otherwise hold that much memory each. One that waits for its turn
/// costs nothing, and nothing at all once its caller has gone.
pub async fn off_runtime<T: Send + 'static>(
    input_bytes: usize,
    work: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    let turn = if input_bytes >= TRIM_AFTER_BYTES {
        Some(LARGE.clone().acquire_owned().await.expect("the semaphore is never closed"))
    } else {
        None
    };
    // The turn ends when the work does, not when a caller that left stops waiting for it.
    let out = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| DaemonError::Internal(format!("request preparation stopped: {e}")))?;
    if input_bytes >= TRIM_AFTER_BYTES {
        crate::memory::release_free_memory();
    }
    out
}

/// Requests at least this large return their scratch memory to the system when done, and take
/// turns to be prepared.
const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Large requests prepared at once.
pub const LARGE_AT_ONCE: usize = 2;

static LARGE: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(LARGE_AT_ONCE)));

/// The uid of the process at the other end of the socket, when known.
pub fn peer_uid<T>(req: &Request<T>) -> Option<u32> {
    req.extensions().get::<UdsConnectInfo>().and_then(|i| i.peer_cred).map(|c| c.uid())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The caller's request id, or a new one when it gave none; one past
/// [`zeta_proto::edge::MAX_REQUEST_ID_BYTES`] is refused (it goes into every log line).
pub fn request_id(given: &str) -> Result<String, DaemonError> {
    let max = zeta_proto::edge::MAX_REQUEST_ID_BYTES;
    match given.len() {
        0 => Ok(new_request_id()),
        n if n > max => Err(DaemonError::invalid("request_id", format!("is {n} bytes, above the maximum {max}"))),
        _ => Ok(given.to_string()),
    }
}

/// A request id unique within this daemon's lifetime.
pub fn new_request_id() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("req-{t:x}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}
