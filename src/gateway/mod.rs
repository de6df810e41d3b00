//! `maestra serve`: the HTTP API of SPEC §4, the data path of SPEC §2.
//!
//! - `router`        — the routes, and the edge layers in pipeline order
//! - `edge`          — request ids, limits, timeouts, metrics, JSON in and errors out
//! - `checks`        — a request's shape: head size, declared body length, known query names
//! - `access`        — the auth and rate-limit stages: host and key checks, GCRA limits
//! - `chat`          — one model call: route, egress, fallback, audit, metrics
//! - `core`          — `/api/maestra/core` and the legacy `/api/maestra/advisor/ask`
//! - `openai_api`    — `/v1/chat/completions` (with SSE streaming) and `/v1/models`
//! - `conversations` — conversation listing, export and deletion, a user's data rights
//! - `services`      — `/api/services/{service}/{path}`: the credential-injecting proxy
//! - `audit_api`     — `GET /api/audit` and `POST /api/audit/events` (local tool actions)
//! - `system`        — `/health`, `/metrics`, `/api/privacy`, `/openapi.json`
//! - `openapi`       — the OpenAPI document
//! - `server`        — the accept loop: header limits, graceful shutdown

mod access;
mod audit_api;
mod checks;
mod conversations;
mod core;
mod edge;
mod openai_api;
mod openapi;
mod pipeline;
mod router;
mod routes;
mod server;
mod services;
mod system;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

pub use router::router;
pub use server::serve;

use crate::access::Access;
use crate::config::Config;
use crate::cost::budget::Budget;
use crate::egress::Egress;
use crate::metrics::Metrics;
use crate::privsec::audit::AuditLog;
use crate::privsec::vault::Vault;
use crate::providers::Providers;
use crate::store::Store;

/// Everything a request may touch, built once at start and shared.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub audit: AuditLog,
    pub egress: Egress,
    pub providers: Providers,
    pub metrics: Metrics,
    pub budget: Budget,
    pub access: Access,
    pub started: Instant,
}

pub type Shared = Arc<AppState>;
