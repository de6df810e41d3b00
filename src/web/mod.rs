//! The privacy center (issue 17): one page served at `/` by `maestra serve`, where the person
//! sees what their assistant did (calls, hosts, bytes, blocks, spend, conversations, vault,
//! audit chain) and controls it (local-only, lockdown, deletion).
//!
//! A small static front end: `assets/index.html`, `app.css` and `app.js`, embedded in the
//! binary at build time, no framework, nothing from another origin. The script reads the
//! JSON API (the same endpoints other clients use, so every figure is the API's) and draws
//! charts as inline SVG. The files hold no data: they are served without an API key (a page
//! load cannot carry one); in cloud mode the page asks for a key, keeps it in
//! `sessionStorage` and sends it as `X-API-Key` with every API call.
//!
//! Headers: `Content-Security-Policy: default-src 'self'` (no inline script or style, no
//! other origin), `Cache-Control: no-store`, no framing, no referrer. In local mode the files
//! are served only to a loopback `Host`, as the API is.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Mode;
use crate::error::Error;
use crate::gateway::Shared;

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

pub fn router(state: Shared) -> Router {
    let mut r = Router::new()
        .route("/", get(|| file(INDEX, "text/html; charset=utf-8")))
        .route(
            "/assets/app.js",
            get(|| file(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(|| file(STYLE, "text/css; charset=utf-8")),
        )
        .route("/assets/icon.svg", get(|| file(ICON, "image/svg+xml")))
        // Browsers ask for it on their own; answered, so a page load logs no 404.
        .route("/favicon.ico", get(|| file(ICON, "image/svg+xml")));
    for (name, value) in HEADERS {
        r = r.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    r.layer(middleware::from_fn_with_state(state.clone(), loopback_only))
        .with_state(state)
}

async fn file(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Local mode: a `Host` that is not a loopback name (DNS rebinding) gets a 403, as from the
/// API's auth stage.
async fn loopback_only(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if state.config.mode == Mode::Local && !loopback_host(req.headers().get(header::HOST)) {
        return Error::Forbidden("the Host header is not a loopback name".into()).into_response();
    }
    next.run(req).await
}

fn loopback_host(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host else { return true };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for (host, ok) in [
            ("127.0.0.1:8825", true),
            ("localhost:8825", true),
            ("[::1]:8825", true),
            ("evil.example:8825", false),
            ("127.0.0.1.evil.example", false),
        ] {
            assert_eq!(
                loopback_host(Some(&HeaderValue::from_static(host))),
                ok,
                "{host}"
            );
        }
    }

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
