//! The accept loop: HTTP/1.1 with explicit header limits, a header read timeout and a minimum
//! body rate (slow clients cannot hold connections open), at most `server.max_connections`
//! connections at once, and a graceful shutdown that lets in-flight requests finish, within a
//! grace period.
//!
//! At the connection limit the loop stops accepting: further connections wait in the kernel's
//! listen backlog (they are not refused) and are served as connections close. A connection
//! frees its slot within [`HEADER_READ_TIMEOUT`] of going quiet between requests, and a body
//! slower than [`MIN_BODY_RATE`] is cut off with a JSON 408, so a slot cannot be held for long
//! by a client that sends nothing.
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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::checks;

/// hyper's read buffer, its hard limit on a request head.
pub const HYPER_MAX_BUF: usize = 4 * checks::MAX_HEADER_BYTES;
/// hyper's hard limit on header fields.
pub const HYPER_MAX_HEADERS: usize = 4 * checks::MAX_HEADERS;
/// Time a client gets to send a request's head (and the next one's, on a kept-alive
/// connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a second a request body must arrive at, on average from the end of its head, after
/// [`BODY_GRACE`]: a body trickled slower gets a JSON 408 instead of holding its connection
/// for the whole request timeout.
pub const MIN_BODY_RATE: u64 = 1024;
/// Time a body may take before the minimum rate applies.
pub const BODY_GRACE: Duration = Duration::from_secs(5);

/// Whether a body read failed because the body was too slow (see [`MinRate`]).
pub fn too_slow(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::slow_body(err).is_some()
}

/// A request body held to [`MIN_BODY_RATE`]: the bytes received so far buy time, at that rate,
/// after [`BODY_GRACE`]; when it runs out before the body ends, the body fails with
/// [`SlowBody`](crate::error::SlowBody). The timer is made only when the body is first waited
/// on.
struct MinRate {
    inner: Incoming,
    start: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl MinRate {
    fn new(inner: Incoming) -> MinRate {
        MinRate {
            inner,
            start: Instant::now(),
            received: 0,
            timer: None,
            failed: false,
        }
    }

    fn deadline(&self) -> Instant {
        self.start + BODY_GRACE + Duration::from_millis(self.received * 1000 / MIN_BODY_RATE)
    }
}

impl hyper::body::Body for MinRate {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    if let Some(t) = this.timer.as_mut() {
                        t.as_mut().reset(deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(Box::new(crate::error::SlowBody {
                            min_rate: MIN_BODY_RATE,
                        }))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

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

/// Serves `app` on `listener` (over TLS when `tls` is given), at most `max_connections` at
/// once, until `shutdown` completes, then waits up to `grace` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    max_connections: usize,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        // At the limit, wait for a connection to close before accepting another.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
            .map_request(move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(|body| Body::new(MinRate::new(body)));
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let svc = TowerToHyperService::new(svc);
        match &tls {
            None => {
                let conn = graceful.watch(builder().serve_connection(TokioIo::new(stream), svc));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(slot);
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
                    drop(slot);
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
