//! The privacy center's own writes. A browser sends `Origin` with every `POST` and `DELETE`,
//! the page's own included, and the auth stage refuses an `Origin` that is not configured in
//! `cors_origins`. A request whose `Origin` is this very server (same scheme, same `Host`) is
//! the page Maestra serves itself, so the header is dropped here, before that stage: every
//! other check still applies to it (a loopback `Host` in local mode, which a DNS-rebinding
//! page cannot present; a key in cloud mode; a JSON body for writes).
//!
//! Another origin keeps its `Origin` header, and is refused as before. The CORS grant for
//! the configured origins ([`cors`]) is here too.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::Shared;
use crate::config::network::Tls;

/// Whether `origin` names the server the request was sent to.
pub fn is_same_origin(origin: &str, host: &str, tls: bool) -> bool {
    let scheme = if tls { "https://" } else { "http://" };
    !host.is_empty()
        && origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

pub async fn strip(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let tls = state.config.network.tls != Tls::Off;
    let same = match (
        req.headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => is_same_origin(origin, host, tls),
        _ => false,
    };
    if same {
        req.headers_mut().remove(header::ORIGIN);
    }
    next.run(req).await
}

/// What a preflight may ask for: the methods and headers the API reads.
const ALLOW_METHODS: &str = "GET, POST, DELETE";
const ALLOW_HEADERS: &str = "content-type, authorization, x-api-key";

/// Whether `req` is a CORS preflight: `OPTIONS` with an `Origin` and the method it asks for.
/// Any other `OPTIONS` is an ordinary request, with a key like every route.
fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// CORS for the configured origins only (never `*`), after the network stage: an `Origin`
/// that is still on the request is a configured one (an unlisted one was refused, this
/// server's own page's removed by [`strip`]). A preflight is answered here without a key, as
/// browsers send none; every other request, `OPTIONS` included, goes on to the key check,
/// and its answer (a refusal too) carries the grant so the page can read it.
pub async fn cors(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| state.access.cors_origins.iter().any(|a| a == o))
        })
        .cloned();
    let mut resp = match &origin {
        Some(_) if is_preflight(&req) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            resp
        }
        _ => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    resp
}

/// Runs the rest of the request inside an egress tally, so its audit entries get the bytes
/// and hosts of the calls it made (see [`crate::egress::tally`]).
pub async fn tally(req: Request, next: Next) -> Response {
    crate::egress::tally::scope(next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_server_is_same_origin() {
        assert!(is_same_origin(
            "http://127.0.0.1:8825",
            "127.0.0.1:8825",
            false
        ));
        assert!(!is_same_origin(
            "http://127.0.0.1:8826",
            "127.0.0.1:8825",
            false
        ));
        assert!(!is_same_origin(
            "https://127.0.0.1:8825",
            "127.0.0.1:8825",
            false
        ));
        assert!(!is_same_origin(
            "http://localhost:3000",
            "127.0.0.1:8825",
            false
        ));
        assert!(!is_same_origin("null", "127.0.0.1:8825", false));
        assert!(!is_same_origin("http://", "", false));
        assert!(is_same_origin(
            "https://maestra.example",
            "maestra.example",
            true
        ));
    }
}
