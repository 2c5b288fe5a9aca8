//! The HTTP server loop: accepts connections up to a limit, gives each a header-read timeout (from
//! the connection's start, not only its first byte)
//! (slow or stalled clients cannot hold connections open), and on shutdown lets requests in
//! flight finish. Over the limit, a connection gets one 503 in OpenAI's envelope and is closed.
//!
//! HTTP/1.1 only, deliberately: every OpenAI and Anthropic client speaks it, while hyper's
//! HTTP/2 server (and its protocol detection, which waits for the preface's bytes) has no header
//! or idle timeout, so a connection that sends `P` and stalls, or an idle HTTP/2 connection, would
//! hold its slot for ever. An HTTP/2 preface is answered as a malformed HTTP/1 request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::error::ApiError;

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers (and, between requests, to start
    /// the next one on a kept-alive connection).
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then waits up to `drain` for open
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection limit reached; refusing a connection");
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(app.clone().map_request(|r: Request<Incoming>| r.map(axum::body::Body::new)));
        let (builder, watcher, wait) = (builder.clone(), graceful.watcher(), limits.header_timeout);
        tokio::spawn(async move {
            // hyper's header timeout starts at the first byte: a connection that never sends
            // one would hold its slot for ever, and enough of them lock every client out.
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(wait, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                tracing::debug!("connection sent nothing within the header timeout; closed");
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(seconds = drain.as_secs(), "open requests did not finish in time; closing them");
    }
    Ok(())
}

/// One 503 for a connection over the limit.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = ApiError::too_many_connections(limit).body().to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}
