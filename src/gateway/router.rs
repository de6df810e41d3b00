//! The routes, and the edge layers in data-path order (SPEC §2).
//!
//! Layers wrap from the outside in, so the list below reads top to bottom as a request meets
//! them: panic guard → request id → metrics and log → head and declared-length limits →
//! deadline → CORS → auth and rate limit → known query parameters → security headers → body
//! limit → handler. The later stages (cost, guard, egress, store,
//! audit) are calls inside the handlers.

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::network::Tls;

use std::sync::Arc;

use super::routes::ROUTES;
use super::{Shared, access, checks, edge};
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
    let mut routes = Router::new();
    for r in ROUTES {
        routes = routes.route(&r.path.replace("{path}", "{*path}"), (r.handler)());
    }
    let routes = routes
        .layer(Extension(Arc::new(Refresher::default())))
        .fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed);

    let mut app = routes.layer(DefaultBodyLimit::max(state.config.server.max_body_bytes));
    for (name, value) in SECURITY_HEADERS {
        app = app.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    // Served over HTTPS (here, or by the trusted proxy in front): browsers are told to keep
    // to HTTPS for a year, so a later plain-HTTP link cannot strip it.
    if state.config.network.tls != Tls::Off {
        app = app.layer(SetResponseHeaderLayer::overriding(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    app.layer(
        ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(edge::panic_response))
            .layer(middleware::from_fn(edge::request_id))
            .layer(middleware::from_fn_with_state(state.clone(), edge::observe))
            .layer(middleware::from_fn_with_state(state.clone(), checks::shape))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                edge::deadline,
            ))
            .layer(cors(&state.config.cors_origins))
            .layer(middleware::from_fn_with_state(state.clone(), access::stage))
            .layer(middleware::from_fn(checks::known_query))
            .layer(middleware::from_fn(checks::allow_on_405)),
    )
    .with_state(state)
}

/// CORS for the configured origins only (never `*`); with none configured, browsers get no
/// CORS grant at all.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ])
}
