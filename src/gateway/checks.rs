//! The edge's checks of a request's shape, before any handler runs, each answering with a
//! SPEC §4 JSON error:
//!
//! - the head (request line and headers) over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`]: 431;
//! - a declared `Content-Length` over the body limit: 413 at once, before a byte of the body
//!   is read, with `Connection: close` so the rest is never read either;
//! - a query parameter the route does not take: 400 naming it, so a misspelt filter such as
//!   `?user=x` for `?user_id=x` never silently widens an answer to every user's data.
//!
//! hyper parses the head before the router sees it, and its own refusals (a malformed request
//! line, a head over its buffer) are bare status lines that no hook of hyper 1 can dress: see
//! [`super::server`]. Its buffer is set well above [`MAX_HEADER_BYTES`], so every head this
//! limit refuses gets the JSON answer here instead.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::route::{Matched, Query};
use super::state::Shared;
use crate::error::Error;

/// Largest request head accepted (request line and headers), in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// Longest parameter name quoted back in an error.
const MAX_NAME_ECHO: usize = 64;

/// The head's size as it came over the wire, give or take the line endings' spaces.
fn head_bytes(req: &Request) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// Most bytes past the limit read (and dropped) before a 413, and for how long.
const DRAIN_BYTES: u64 = 4 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a body of `declared` bytes to its end and drops it; the caller bounds it in time.
async fn drain(body: axum::body::Body, declared: u64) {
    let mut frames = body.into_data_stream();
    let mut read: u64 = 0;
    while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut frames).await {
        read += chunk.len() as u64;
        if read >= declared {
            break;
        }
    }
}

/// 431 for a head over the limits, 413 for a declared body over the limit.
pub async fn shape(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if req.headers().len() > MAX_HEADERS || head_bytes(&req) > MAX_HEADER_BYTES {
        return Error::HeadersTooLarge(format!(
            "the request head is over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} header fields"
        ))
        .into_response();
    }
    let server = &state.config.server;
    let model = req
        .extensions()
        .get::<Matched>()
        .is_some_and(Matched::model_body);
    let limit = if model {
        server.max_model_body_bytes
    } else {
        server.max_body_bytes
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        // A client that writes its whole body before it reads (most do) would meet a closed
        // connection, not this answer: what it sends is read and dropped first, when the
        // excess is at most DRAIN_BYTES and arrives within DRAIN_TIME.
        if n - limit as u64 <= DRAIN_BYTES {
            let _ = tokio::time::timeout(DRAIN_TIME, drain(req.into_body(), n)).await;
        }
        let mut resp = Error::TooLarge(format!(
            "the declared body is over the limit of {limit} bytes"
        ))
        .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

/// A 405 always says what is allowed (RFC 9110 §15.5.6), whichever handler refused the
/// method: the `Allow` header is added from the document when the refusal lacks one.
pub async fn allow_on_405(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<Matched>().copied();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(header::ALLOW)
        && let Some(m) = matched
        && let Ok(v) = HeaderValue::from_str(&m.allowed_methods())
    {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// 400 for a query parameter the matched route does not document.
pub async fn known_query(req: Request, next: Next) -> Response {
    if let Err(e) = check_query(&req) {
        return e.into_response();
    }
    next.run(req).await
}

fn check_query(req: &Request) -> Result<(), Error> {
    let Some(query) = req.uri().query() else {
        return Ok(());
    };
    let Some(matched) = req.extensions().get::<Matched>() else {
        return Ok(()); // no route: the fallback answers 404
    };
    let Some(route) = matched.route(req.method().as_str()) else {
        return Ok(()); // a method the route does not serve: 405 follows
    };
    let allowed: &[(&str, &str)] = match route.query {
        Query::Forwarded => return Ok(()),
        Query::None => &[],
        Query::Named(list) => list,
    };
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        if !allowed.iter().any(|(a, _)| *a == name) {
            let shown: String = name.chars().take(MAX_NAME_ECHO).collect();
            let accepted = if allowed.is_empty() {
                "it takes none".to_string()
            } else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                format!("it takes {}", names.join(", "))
            };
            return Err(Error::BadRequest(format!(
                "unknown query parameter {shown:?} for {} {}; {accepted}",
                route.method.to_uppercase(),
                route.path
            )));
        }
    }
    Ok(())
}
