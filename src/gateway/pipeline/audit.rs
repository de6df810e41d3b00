//! Stage 5: the audit entry of a call, success or failure, and its metrics.

use serde_json::json;

use std::time::Instant;

use super::caller::Caller;
use crate::cost::ledger::{Micros, to_usd};
use crate::error::{Error, Result};
use crate::gateway::state::AppState;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::providers::{Route, Usage};

/// Values withheld from a cloud call, per kind (SPEC §2.12): counts, never the values.
pub type Withheld = std::collections::BTreeMap<&'static str, usize>;

/// What a call used and was charged, for its entry.
#[derive(Default)]
pub struct Charge {
    pub usage: Usage,
    pub charged: Micros,
    pub latency_ms: u64,
    pub stream: bool,
    /// The functions the model asked to call, by name (never their arguments).
    pub functions: Vec<String>,
    /// Hosts of `http(s)` images the provider was asked to fetch: egress Maestra did not
    /// make itself, named so the person can see where it went.
    pub image_hosts: Vec<String>,
    /// Strings embedded, for an embeddings call (its entry counts them, never shows them).
    pub inputs: Option<usize>,
    /// What minimisation withheld from the call.
    pub withheld: Withheld,
}

fn event(caller: &Caller, category: Category, route: &Route, result: Outcome) -> Event {
    let mut e = Event::new(category, route.provider.service(), caller.action, result)
        .request_id(&caller.info.id)
        .detail("model", route.model.as_str())
        .detail("source", json!(route.provider.source()));
    if let Some(u) = &caller.user_id {
        e = e.user(u);
    }
    if let Some(s) = &caller.surface_id {
        e = e.surface(s);
    }
    // The API key's name is the authenticated agent (the Report groups by it); the surface
    // stays what the request claimed (see `gateway::agent`).
    if let Some(k) = crate::gateway::agent::of_key(&caller.info.principal) {
        e = e.agent(k);
    }
    if let Some(ip) = caller.info.ip_string() {
        e = e.ip(ip);
    }
    e
}

fn charged(e: Event, c: &Charge) -> Event {
    let mut e = e
        .detail("tokens_in", c.usage.prompt_tokens)
        .detail("tokens_out", c.usage.completion_tokens)
        .detail("cost_usd", to_usd(c.charged))
        .detail("latency_ms", c.latency_ms)
        .detail("stream", c.stream);
    if !c.functions.is_empty() {
        e = e.detail("functions", json!(c.functions));
    }
    if !c.image_hosts.is_empty() {
        e = e.detail("image_hosts", json!(c.image_hosts));
    }
    if !c.withheld.is_empty() {
        e = e.detail("withheld", json!(c.withheld));
    }
    if let Some(n) = c.inputs {
        e = e.detail("inputs", n);
    }
    e
}

pub async fn record_success(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    charge: &Charge,
) -> Result<()> {
    let e = charged(
        event(caller, Category::Llm, route, Outcome::Success),
        charge,
    );
    state.audit.record(e).await
}

/// A call whose client left (hung up, or cut off by the request timeout) before its answer
/// was delivered: result `failed`, `abandoned: true`, with what it used and was charged,
/// since the upstream did the work.
pub async fn record_abandoned(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    charge: &Charge,
) -> Result<()> {
    let e = charged(event(caller, Category::Llm, route, Outcome::Failed), charge)
        .detail("abandoned", true)
        .detail("error", "client_gone");
    state.audit.record(e).await
}

/// Audits and counts a failed call; a local-only refusal is its own category.
pub async fn record_failure(
    state: &AppState,
    caller: &Caller,
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
