//! The accept loop: HTTP/1.1 with explicit header limits and a header read timeout (slow
//! clients cannot hold connections open), and a graceful shutdown that lets in-flight requests
//! finish, within a grace period.
//!
//! Two layers of head limits. hyper parses the head into a buffer of [`HYPER_MAX_BUF`] bytes
//! and [`HYPER_MAX_HEADERS`] fields; what it cannot parse (a malformed request line, a head
//! beyond that buffer, a bad `Content-Length`) it answers itself with a bare `400` or `431`
//! status line and no body, and closes the connection: hyper 1 has no hook to write that
//! answer, and the router never sees the request. So hyper's limits are set at four times the
//! edge's own ([`checks::MAX_HEADER_BYTES`], [`checks::MAX_HEADERS`]): every head from the
//! edge's limit up to hyper's gets the SPEC §4 JSON `431`, and only heads no client sends by
//! mistake, or bytes that are not HTTP, get hyper's bare answer.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::checks;

/// hyper's read buffer, its hard limit on a request head.
pub const HYPER_MAX_BUF: usize = 4 * checks::MAX_HEADER_BYTES;
/// hyper's hard limit on header fields.
pub const HYPER_MAX_HEADERS: usize = 4 * checks::MAX_HEADERS;
/// Time a client gets to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 with the limits above.
fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then waits up to `grace` for
/// in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let svc = TowerToHyperService::new(svc);
        match &tls {
            None => {
                let conn = graceful.watch(builder().serve_connection(TokioIo::new(stream), svc));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, bounded like a head read,
                // so a slow or silent client holds nothing but its own task.
                let handshake = acceptor.accept(stream);
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            let conn = builder().serve_connection(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "in-flight requests did not finish within the grace period"
        );
    }
}
