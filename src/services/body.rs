//! Bodies on their way through the proxy: the client's, limited (and kept whole when it may
//! have to be sent twice), and the service's, streamed back scrubbed of the credential.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures_util::{Stream, StreamExt};

use super::redact::Redactor;
use crate::error::{Error, Result};

/// The client's body on its way up: none, streamed with the limit enforced as it passes, or
/// (for OAuth2 services, which may need to send it twice) read whole first.
pub struct Outgoing {
    kind: OutgoingKind,
    over_limit: Arc<AtomicBool>,
    /// Set when the client's body was cut off for arriving too slowly (the edge's minimum
    /// rate): the send then failed for that reason, not the service's.
    too_slow: Arc<AtomicBool>,
    limit: usize,
}

enum OutgoingKind {
    Empty,
    Buffered(Bytes),
    /// The body and its declared length (none when the client sent it chunked).
    Streamed(std::sync::Mutex<Option<reqwest::Body>>, Option<usize>),
}

impl Outgoing {
    /// Checks the declared length against `limit` (413), and reads the body whole first
    /// when it must be `replayable`.
    pub async fn new(
        limit: usize,
        replayable: bool,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Outgoing> {
        let over_limit = Arc::new(AtomicBool::new(false));
        let too_slow = Arc::new(AtomicBool::new(false));
        let declared = match headers.get(header::CONTENT_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| Error::BadRequest("invalid content-length".into()))?,
            ),
            None => None,
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        let kind = if declared.unwrap_or(0) == 0 && !chunked {
            OutgoingKind::Empty
        } else if replayable {
            let bytes =
                axum::body::to_bytes(body, limit).await.map_err(
                    |e| match crate::error::slow_body(&e) {
                        Some(slow) => Error::BodyTooSlow(slow.to_string()),
                        None => too_large(limit),
                    },
                )?;
            OutgoingKind::Buffered(bytes)
        } else {
            let flag = over_limit.clone();
            let slow = too_slow.clone();
            let mut seen = 0usize;
            let stream = body.into_data_stream().map(move |chunk| {
                let chunk = chunk.map_err(|e| {
                    if crate::error::slow_body(&e).is_some() {
                        slow.store(true, Ordering::Relaxed);
                    }
                    io::Error::other(e)
                })?;
                seen += chunk.len();
                if seen > limit {
                    flag.store(true, Ordering::Relaxed);
                    return Err(io::Error::other("the request body is over the limit"));
                }
                Ok::<_, io::Error>(chunk)
            });
            let body = reqwest::Body::wrap_stream(stream);
            OutgoingKind::Streamed(std::sync::Mutex::new(Some(body)), declared)
        };
        Ok(Outgoing {
            kind,
            over_limit,
            too_slow,
            limit,
        })
    }

    /// The body to send; a streamed body can be taken once (it is never retried).
    pub fn body(&self) -> Option<reqwest::Body> {
        match &self.kind {
            OutgoingKind::Empty => None,
            OutgoingKind::Buffered(b) => Some(reqwest::Body::from(b.clone())),
            OutgoingKind::Streamed(s, _) => s.lock().ok().and_then(|mut s| s.take()),
        }
    }

    /// The length to declare upstream for a streamed body (a buffered one declares its own).
    pub fn length(&self) -> Option<usize> {
        match &self.kind {
            OutgoingKind::Streamed(_, len) => *len,
            _ => None,
        }
    }

    /// Whether the limit cut a streamed body off (the send then failed for that reason).
    pub fn over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Relaxed)
    }

    /// Whether the client's body was cut off for arriving too slowly (the send then failed
    /// for that reason): a 408 for the client, not an upstream failure.
    pub fn too_slow(&self) -> bool {
        self.too_slow.load(Ordering::Relaxed)
    }

    pub fn too_large(&self) -> Error {
        too_large(self.limit)
    }
}

fn too_large(limit: usize) -> Error {
    Error::TooLarge(format!(
        "the request body is over the limit of {limit} bytes"
    ))
}

type Upstream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The service's body, scrubbed of the credential, ending with an error (so the client sees a
/// cut-off answer, not a complete one) if the service breaks off or goes quiet for `idle`.
pub fn scrubbed(
    inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    redactor: Redactor,
    idle: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let inner: Upstream = Box::pin(inner);
    futures_util::stream::unfold(
        (inner, redactor, false),
        move |(mut inner, mut redactor, done)| async move {
            if done {
                return None;
            }
            loop {
                let item = match tokio::time::timeout(idle, inner.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        let out = redactor.push(&chunk);
                        if out.is_empty() {
                            continue;
                        }
                        Ok(out)
                    }
                    Ok(None) => {
                        let rest = redactor.finish();
                        if rest.is_empty() {
                            return None;
                        }
                        return Some((Ok(rest), (inner, redactor, true)));
                    }
                    Ok(Some(Err(_))) => Err(io::Error::other("the service's answer broke off")),
                    Err(_) => Err(io::Error::other("the service stopped sending")),
                };
                let done = item.is_err();
                return Some((item, (inner, redactor, done)));
            }
        },
    )
}
