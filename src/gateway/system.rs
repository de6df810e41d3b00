//! `/health`, `/metrics`, `/api/privacy` and `/openapi.json`.

use super::request_info::RequestInfo;
use crate::access::scope::KeyScope;
use crate::config::network::Tls;
use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::openapi::Document;
use super::state::Shared;
use crate::config::Mode;
use crate::error::Result;
use std::sync::Arc;

pub async fn health(State(state): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

pub async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    state.metrics.audit_lost.set(state.audit.lost() as i64);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

/// What protects the user right now: mode, local-only, limits, storage, vault and audit.
pub async fn privacy(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
) -> Result<axum::Json<Value>> {
    let c = &state.config;
    let secrets = state.vault.list().await?;
    // A user's key sees its own user's spend; only admin (and local mode) sees everyone's.
    let cost = match (
        &info.principal.user_id,
        info.principal.allows(KeyScope::Admin),
    ) {
        (Some(user), false) => state.budget.user_status(user).await?,
        (None, false) => json!(null),
        (_, true) => state.budget.status().await?,
    };
    Ok(axum::Json(json!({
        "mode": match c.mode { Mode::Local => "local", Mode::Cloud => "cloud" },
        "local_only": state.egress.local_only(),
        "cloud_fallback": c.cloud_fallback && !state.egress.local_only(),
        "cost": cost,
        "storage": if c.uses_postgres() { "postgresql" } else { "sqlite" },
        "limits": {
            "daily_cost_limit_usd": c.daily_cost_limit,
            "monthly_cost_limit_usd": c.monthly_cost_limit,
            "rate_limit": {"requests": c.rate_limit_requests, "window_seconds": c.rate_limit_window},
            "max_body_bytes": c.server.max_body_bytes,
            "max_model_body_bytes": c.server.max_model_body_bytes,
        },
        "conversations": {
            "retention_days": c.conversations.retention_days,
            "max_messages": c.conversations.max_messages,
        },
        "vault": {
            "active_keys": state.vault.keys().len(),
            "key_source": if c.encryption_keys.is_some() { "environment" } else { "file" },
            "secrets": secrets.len(),
            "unencrypted_secrets": secrets.iter().filter(|s| !s.encrypted).count(),
        },
        // How the server faces a network; names and addresses only, never a key or a path.
        "network": {
            "tls": match c.network.tls {
                Tls::Off => "off",
                Tls::Files { .. } => "on",
                Tls::BehindProxy => "behind-proxy",
            },
            "hsts": c.network.tls != Tls::Off,
            "allow_ips": c.network.allow_ips.to_strings(),
            "trusted_proxies": c.network.trusted_proxies.to_strings(),
        },
        "audit": {
            "fail_closed": c.audit.fail_closed,
            "retention_days": c.audit.retention_days,
            "entries_lost": state.audit.lost(),
        },
    })))
}

pub async fn openapi(Extension(doc): Extension<Arc<Document>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.clone())
}
