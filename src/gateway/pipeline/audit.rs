//! Stage 6: the audit entry of a call, success or failure, and its metrics.

use serde_json::json;

use std::time::Instant;

use super::Caller;
use crate::cost::ledger::{Micros, to_usd};
use crate::error::{Error, Result};
use crate::gateway::AppState;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::providers::{Route, Usage};

fn event(caller: &Caller<'_>, category: Category, route: &Route, result: Outcome) -> Event {
    let mut e = Event::new(category, route.provider.service(), caller.action, result)
        .request_id(&caller.info.id)
        .detail("model", route.model.as_str())
        .detail("source", json!(route.provider.source()));
    if let Some(u) = caller.user_id {
        e = e.user(u);
    }
    if let Some(s) = caller.surface_id {
        e = e.surface(s);
    }
    if let Some(ip) = caller.info.ip_string() {
        e = e.ip(ip);
    }
    e
}

pub async fn record_success(
    state: &AppState,
    caller: &Caller<'_>,
    route: &Route,
    usage: Usage,
    charged: Micros,
    latency_ms: u64,
    stream: bool,
) -> Result<()> {
    let e = event(caller, Category::Llm, route, Outcome::Success)
        .detail("tokens_in", usage.prompt_tokens)
        .detail("tokens_out", usage.completion_tokens)
        .detail("cost_usd", to_usd(charged))
        .detail("latency_ms", latency_ms)
        .detail("stream", stream);
    state.audit.record(e).await
}

/// Audits and counts a failed call; a local-only refusal is its own category.
pub async fn record_failure(
    state: &AppState,
    caller: &Caller<'_>,
    route: &Route,
    err: &Error,
    start: Instant,
) -> Result<()> {
    state
        .metrics
        .upstream_failure(route.provider.service(), err);
    let e = match err {
        Error::LocalOnly(block) => event(caller, Category::LocalOnlyBlock, route, Outcome::Blocked)
            .detail("reason", block.reason.as_str()),
        other => event(caller, Category::Llm, route, Outcome::Error)
            .detail("error", other.code())
            .detail("latency_ms", start.elapsed().as_millis() as u64),
    };
    state.audit.record(e).await
}
