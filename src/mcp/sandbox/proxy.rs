//! The HTTP proxy a sandboxed program reaches the network through, served on its Unix socket
//! (the launcher relays the program's connections here). `CONNECT host:port` opens a tunnel
//! (HTTPS, and anything else over TCP); `METHOD http://host[:port]/path` is forwarded to the
//! origin in origin form. Either only after the egress guard decided the destination and
//! dialled it (`Egress::connect`), and each decision is an audit entry: `tool` with the host
//! and port for one allowed, `local_only_block` with the reason for one refused. A refusal is
//! a short plain-text answer (403 for local-only mode) the program can show.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::watched::Activity;
use super::{ACCEPT_RETRY, IDLE_TIMEOUT, MAX_CONNECTIONS};
use crate::egress::Egress;
use crate::error::Error;
use crate::privsec::audit::{AuditLog, Category, Event, Outcome};

/// The largest request head (request line and headers) a program may send: a proxy request
/// needs a few hundred bytes, and hyper answers a larger one 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a request head may take to arrive, a kept-alive connection's wait for the next
/// one included.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a host name an audit entry keeps (a DNS name has at most 253 characters).
const MAX_AUDITED_HOST: usize = 255;
/// Headers of one hop, not of the message (RFC 9110 §7.6.1), never passed on. The framing
/// headers (`Content-Length`, `Transfer-Encoding`) stay: hyper frames the body by them.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];
/// The audit entry's action for every decision of the proxy.
const ACTION: &str = "network/connect";

/// What one program's proxy decides and audits with.
pub(super) struct Ctx {
    /// The tool server's name: the service every decision is made and audited for.
    pub server: String,
    pub egress: Egress,
    pub audit: AuditLog,
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves the proxy until the task is aborted (the program's [`super::Sandbox`] dropped).
pub(super) async fn serve(listener: UnixListener, ctx: Arc<Ctx>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Every connection is a task of this one: aborting it ends them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                connections.spawn(async move {
                    connection(stream, &ctx).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(server = %ctx.server, error = %e, "the sandbox's proxy cannot accept");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// A tunnel decided and dialled, opened once its `200` has been written.
struct Tunnel {
    upgrade: OnUpgrade,
    dest: TcpStream,
    host: String,
}

async fn connection(stream: UnixStream, ctx: &Arc<Ctx>) {
    let tunnel: Arc<Mutex<Option<Tunnel>>> = Arc::default();
    let service = {
        let (ctx, tunnel) = (ctx.clone(), tunnel.clone());
        service_fn(move |req| {
            let (ctx, tunnel) = (ctx.clone(), tunnel.clone());
            async move { Ok::<_, Infallible>(answer(req, &ctx, &tunnel).await) }
        })
    };
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        // The connection ends here when a CONNECT is answered, handing its stream over.
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(server = %ctx.server, error = %e, "sandbox proxy connection ended");
    }
    let opened = tunnel.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = opened {
        t.run(ctx).await;
    }
}

async fn answer(
    mut req: Request<Incoming>,
    ctx: &Ctx,
    tunnel: &Mutex<Option<Tunnel>>,
) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let Some((host, port)) = req
            .uri()
            .authority()
            .and_then(|a| Some((a.host().to_string(), a.port_u16()?)))
        else {
            return text(StatusCode::BAD_REQUEST, "CONNECT takes host:port");
        };
        let dest = match decide(ctx, "CONNECT", &host, port).await {
            Ok(dest) => dest,
            Err(refused) => return refused,
        };
        let upgrade = hyper::upgrade::on(&mut req);
        *tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tunnel {
            upgrade,
            dest,
            host,
        });
        return Response::new(Empty::new().map_err(|never| match never {}).boxed());
    }
    match req.uri().scheme_str() {
        Some("http") => forward(req, ctx).await,
        Some(_) => text(
            StatusCode::BAD_REQUEST,
            "only http:// URLs are forwarded; an https:// one goes through CONNECT",
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            "this is an HTTP proxy: ask for an absolute http:// URL, or CONNECT host:port",
        ),
    }
}

/// The guard's decision on `host:port`, audited: the connection to it, or the answer that
/// refuses it.
async fn decide(
    ctx: &Ctx,
    method: &str,
    host: &str,
    port: u16,
) -> Result<TcpStream, Response<Body>> {
    let outcome = ctx.egress.connect(&ctx.server, host, port).await;
    let audited_host: String = host.chars().take(MAX_AUDITED_HOST).collect();
    let event = |category, result| {
        Event::new(category, ctx.server.as_str(), ACTION, result)
            .detail("method", method)
            .detail("host", audited_host.as_str())
            .detail("port", port)
    };
    let e = match outcome {
        Ok(stream) => {
            // A connection the log cannot record is not made (when the log fails closed).
            return match ctx
                .audit
                .record(event(Category::Tool, Outcome::Success))
                .await
            {
                Ok(()) => Ok(stream),
                Err(e) => Err(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the audit log cannot record this connection: {}", e.plain()),
                )),
            };
        }
        Err(e) => e,
    };
    let (entry, refused) = match e.plain() {
        Error::LocalOnly(block) => (
            event(Category::LocalOnlyBlock, Outcome::Blocked)
                .detail("reason", block.reason.as_str()),
            text(
                StatusCode::FORBIDDEN,
                &format!(
                    "local-only mode (MAESTRA_LOCAL_ONLY) blocked {host}:{port} for the tool \
                     server {:?}: {}",
                    ctx.server, block.reason
                ),
            ),
        ),
        Error::BadRequest(m) => (
            event(Category::Tool, Outcome::Failed).detail("error", e.code()),
            text(StatusCode::BAD_REQUEST, m),
        ),
        plain => (
            event(Category::Tool, Outcome::Error).detail("error", e.code()),
            text(StatusCode::BAD_GATEWAY, &plain.to_string()),
        ),
    };
    // Refused either way; a failure to record it is the log's own (counted there).
    let _ = ctx.audit.record(entry).await;
    Err(refused)
}

/// A plain-HTTP request, sent in origin form on a connection of its own to the decided
/// destination; the answer streams back as it comes.
async fn forward(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let Some(host) = parts.uri.host().map(str::to_string) else {
        return text(StatusCode::BAD_REQUEST, "the URL has no host");
    };
    let port = parts.uri.port_u16().unwrap_or(80);
    let dest = match decide(ctx, parts.method.as_str(), &host, port).await {
        Ok(dest) => dest,
        Err(refused) => return refused,
    };
    let activity = Activity::new();
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(activity.counted(dest))).await {
            Ok(pair) => pair,
            Err(e) => return text(StatusCode::BAD_GATEWAY, &format!("{host}:{port}: {e}")),
        };
    // The connection outlives this answer while its body streams; it ends with the body, the
    // origin's close, or the idle limit.
    tokio::spawn({
        let (activity, egress, server, host) = (
            activity.clone(),
            ctx.egress.clone(),
            ctx.server.clone(),
            host.clone(),
        );
        async move {
            tokio::select! {
                _ = conn => {}
                () = activity.idle(IDLE_TIMEOUT) => {}
            }
            let (received, sent) = activity.counts();
            egress.count_relayed(&server, &host, sent, received);
        }
    });
    let origin_form = parts.uri.path_and_query().cloned();
    parts.uri = match Uri::builder()
        .path_and_query(origin_form.map_or_else(|| "/".to_string(), |p| p.to_string()))
        .build()
    {
        Ok(uri) => uri,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("the URL's path: {e}")),
    };
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        let authority = if port == 80 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, &format!("{host}:{port}: {e}")),
    }
}

impl Tunnel {
    /// Bytes both ways until either side closes or neither sends for [`IDLE_TIMEOUT`].
    async fn run(self, ctx: &Ctx) {
        let upgraded = match self.upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(server = %ctx.server, error = %e, "a CONNECT was not upgraded");
                return;
            }
        };
        let activity = Activity::new();
        let mut program = activity.watched(TokioIo::new(upgraded));
        let mut dest = activity.counted(self.dest);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut program, &mut dest) => {}
            () = activity.idle(IDLE_TIMEOUT) => {
                tracing::debug!(server = %ctx.server, host = %self.host, "idle tunnel closed");
            }
        }
        let (received, sent) = activity.counts();
        ctx.egress
            .count_relayed(&ctx.server, &self.host, sent, received);
    }
}

/// Removes the headers of one hop: the fixed ones and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != header::CONTENT_LENGTH && n != header::TRANSFER_ENCODING)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_framing_kept() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-hop, content-length"),
            ("x-hop", "1"),
            ("proxy-authorization", "Basic eA=="),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
            ("accept", "*/*"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-length"]);
    }
}
