//! The privacy center (issue 17): one page served at `/` by `maestra serve`, where the person
//! sees what their assistant did (calls, hosts, bytes, blocks, tools, spend, conversations,
//! vault, audit chain), the devices on their local network, and controls it (local-only,
//! lockdown, deletion).
//!
//! A small static front end: `assets/index.html`, `app.css` and `app.js`, embedded in the
//! binary at build time, no framework, nothing from another origin. The script reads the
//! JSON API (the same endpoints other clients use, so every figure is the API's) and draws
//! charts as inline SVG. The files hold no data: they are served without an API key (a page
//! load cannot carry one); in cloud mode the page asks for a key, keeps it in
//! `sessionStorage` and sends it as `X-API-Key` with every API call.
//!
//! Headers: `Content-Security-Policy: default-src 'self'` (no inline script or style, no
//! other origin), `Cache-Control: no-store`, no framing, no referrer. The files meet the same
//! edge as the API up to the key (in local mode, a loopback `Host` only).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// What every file of the page is sent with.
const HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Every file of the page: (path, body, media type). Browsers ask for `/favicon.ico` on their
/// own; it is answered, so a page load logs no 404.
const FILES: &[(&str, &str, &str)] = &[
    ("/", INDEX, "text/html; charset=utf-8"),
    ("/assets/app.js", SCRIPT, "text/javascript; charset=utf-8"),
    ("/assets/app.css", STYLE, "text/css; charset=utf-8"),
    ("/assets/icon.svg", ICON, "image/svg+xml"),
    ("/favicon.ico", ICON, "image/svg+xml"),
];

/// Marks a response of the page: it carries the page's own headers ([`HEADERS`]), which the
/// API's (a CSP of `default-src 'none'`) would otherwise replace.
#[derive(Debug, Clone, Copy)]
pub struct PageHeaders;

/// The path of one of the page's files, as a `'static` metric label.
pub fn file_path(path: &str) -> Option<&'static str> {
    FILES.iter().map(|(p, ..)| *p).find(|p| *p == path)
}

/// Answers `GET`/`HEAD` of one of the page's files; everything else goes on to the API. It
/// sits after the edge's network stage (allow-list, behind-proxy rule, loopback `Host` in
/// local mode, configured `Origin`) and before the key check, which a page load cannot pass:
/// see `gateway::router` for the one order every path takes.
pub async fn page(req: Request, next: Next) -> Response {
    let found = FILES.iter().find(|(p, ..)| *p == req.uri().path());
    match found {
        Some((_, body, media_type)) if matches!(*req.method(), Method::GET | Method::HEAD) => {
            file(body, media_type)
        }
        _ => next.run(req).await,
    }
}

fn file(body: &'static str, media_type: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, media_type)], body).into_response();
    for (name, value) in HEADERS {
        resp.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp.extensions_mut().insert(PageHeaders);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_inline_script_or_style_and_nothing_from_elsewhere() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("<style"));
        for text in [INDEX, SCRIPT, STYLE, ICON] {
            // The SVG namespace is a name, not something fetched.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }
}
