//! The routes, and the edge stages in data-path order (SPEC §2).
//!
//! The stages wrap the router from the outside in, so the list below reads top to bottom as a
//! request meets them, whatever its path or method: panic guard → security headers → request
//! id → route match → metrics and log → head and declared-length limits → deadline →
//! same-origin check → network (behind-proxy rule, client address, allow-list, loopback
//! `Host`, configured `Origin`) → CORS (a configured origin's preflight is answered here) →
//! (the privacy center's files leave here, `crate::web`) → key, rate limit and scope → known
//! query parameters → `Allow` on 405 → egress tally → body limit → router → handler. The later
//! stages (guard, cost, egress, settle, store, audit) are the pipeline the handlers call
//! (`gateway::pipeline`).

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::network::Tls;

use std::sync::Arc;

use super::mcp::McpHttp;
use super::openapi::Document;
use super::route::router_template;
use super::routes;
use super::state::Shared;
use super::{access, checks, edge, same_origin};
use crate::services::oauth::Refresher;

/// Response headers every answer carries: it is an API, never a page to frame, sniff or cache.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cross-origin-resource-policy", "same-origin"),
];

pub fn router(state: Shared) -> Router {
    // Every route from the one table; methods of one path merge into one method router.
    let table = routes::table();
    // One token refresher for the services proxy, whether a route or a service tool calls it.
    let refresher = Arc::new(Refresher::default());
    let mut handlers = Router::new();
    let server = &state.config.server;
    for r in table.routes() {
        let mut handler = (r.handler)();
        // The model routes' own limit, set inside the stack's: the innermost one is the one
        // the body extractor reads.
        if routes::MODEL_ROUTES.contains(&r.path) {
            handler = handler.layer(DefaultBodyLimit::max(server.max_model_body_bytes));
        }
        handlers = handlers.route(&router_template(r.path), handler);
    }
    let handlers = handlers
        .fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed)
        .with_state(state.clone());
    // The stages wrap the router as one typed stack, outside it: a layer added to a `Router`
    // is boxed into every route and deep-cloned by each stage above it on every request,
    // while this stack clones only `Arc`s and the router (itself an `Arc`). The stages find
    // the matched route with the router's own matcher (`edge::match_route`).
    // One order for every path, the page's files and `OPTIONS` included: who may connect
    // (allow-list, proxy rule, Host, Origin) before CORS answers a preflight, and the page's
    // files leave after that, before the key a page load cannot carry.
    let hsts = state.config.network.tls != Tls::Off;
    let edge = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(edge::panic_response))
        .map_response(move |resp| with_security_headers(resp, hsts))
        .layer(middleware::from_fn(edge::request_id))
        .map_request(move |req| edge::match_route(table, req))
        .layer(middleware::from_fn_with_state(state.clone(), edge::observe))
        .layer(middleware::from_fn_with_state(state.clone(), checks::shape))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            edge::deadline,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin::strip,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::network_stage,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin::cors,
        ))
        .layer(middleware::from_fn(crate::web::page))
        .layer(middleware::from_fn_with_state(state.clone(), access::stage))
        .layer(middleware::from_fn(checks::known_query))
        .layer(middleware::from_fn(checks::allow_on_405))
        .layer(middleware::from_fn(same_origin::tally))
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .layer(Extension(refresher.clone()))
        .layer(Extension(Arc::new(McpHttp::new(state.clone(), refresher))))
        .layer(Extension(Arc::new(super::jobs::Jobs::default())))
        .layer(Extension(Arc::new(super::devices::Devices::default())))
        .layer(Extension(Arc::new(super::audit_api::Intake::default())))
        .layer(Extension(Arc::new(Document::new(table.routes()))))
        .service(handlers);
    Router::new().fallback_service(edge)
}

/// What every answer carries, the stages' own refusals included: it is an API, never a page
/// to frame, sniff or cache. Over HTTPS (here, or by the trusted proxy in front) browsers are
/// also told to keep to HTTPS for a year, so a later plain-HTTP link cannot strip it.
/// The page's files keep their own (a CSP that lets the page load its script and style).
fn with_security_headers(mut resp: Response, hsts: bool) -> Response {
    let page = resp.extensions().get::<crate::web::PageHeaders>().is_some();
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS.iter().filter(|_| !page) {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if hsts {
        headers.insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}
