//! One model call as the data path makes it: local-only guard → cost reservation → egress
//! (inside the provider, which checks the guard again on every host it dials) → settle or
//! release → cloud fallback when allowed → audit (`llm`, or `local_only_block`) and metrics.
//!
//! Audit entries name the model, provider, tokens, latency and result, never the content.

use std::time::Instant;

use serde_json::json;

use super::AppState;
use super::edge::RequestInfo;
use crate::cost::budget::Hold;
use crate::cost::ledger::{Micros, to_usd};
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::providers::{ChatRequest, Completion, DeltaStream, Route, Usage};

/// Who asked, for the audit entry.
pub struct Caller<'a> {
    pub info: &'a RequestInfo,
    pub user_id: Option<&'a str>,
    pub surface_id: Option<&'a str>,
    /// The audit `action`: `core`, `advisor.ask`, `chat.completions`.
    pub action: &'static str,
}

pub struct Answer {
    pub completion: Completion,
    pub route: Route,
    pub latency_ms: u64,
    /// What the ledger charged, in micro-USD (settle's figure; nothing recomputes it).
    pub charged: Micros,
}

/// A whole answer, falling back to the cloud only where [`Providers::fallback_for`] allows.
///
/// [`Providers::fallback_for`]: crate::providers::Providers::fallback_for
pub async fn complete(
    state: &AppState,
    caller: &Caller<'_>,
    route: Route,
    req: &ChatRequest,
) -> Result<Answer> {
    let start = Instant::now();
    let mut route = route;
    let mut result = complete_once(state, caller, &route, req).await;
    if let Err(e) = &result
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = complete_once(state, caller, &route, req).await;
    }
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((completion, charged)) => {
            let usage = completion.usage;
            record_success(state, caller, &route, usage, charged, latency_ms, false).await?;
            Ok(Answer {
                completion,
                route,
                latency_ms,
                charged,
            })
        }
        Err(e) => {
            record_failure(state, caller, &route, &e, start).await?;
            Err(e)
        }
    }
}

/// Reserve, call, then settle to the real usage or release. A paid answer that reports no
/// usage at all is charged what was counted, like a stream: never $0.
async fn complete_once(
    state: &AppState,
    caller: &Caller<'_>,
    route: &Route,
    req: &ChatRequest,
) -> Result<(Completion, Micros)> {
    let (req, hold) = reserve(state, caller, route, req).await?;
    match state.providers.complete(route, &req).await {
        Ok(mut c) => {
            if hold.reserved > 0 && c.usage == Usage::default() {
                c.usage = counted_usage(&req, c.content.len());
            }
            let charged = state.budget.settle(hold, route, c.usage).await?;
            Ok((c, charged))
        }
        Err(e) => {
            state.budget.release(hold).await;
            Err(e)
        }
    }
}

/// The request as sent upstream (capped when it costs money) and its reservation. A refusal
/// is audited (category `auth`) and counted.
async fn reserve(
    state: &AppState,
    caller: &Caller<'_>,
    route: &Route,
    req: &ChatRequest,
) -> Result<(ChatRequest, Hold)> {
    // The local-only guard decides first: a call that may not leave the machine holds no
    // budget, not even for the moment until egress would refuse it.
    state.egress.check_service(route.provider.service())?;
    let key = caller.info.key_id.as_deref();
    match state.budget.reserve(route, req, caller.user_id, key).await {
        Ok(held) => Ok(held),
        Err(e @ Error::CostLimit(_)) => {
            super::access::refused(state, caller.info, caller.user_id, "cost_limit", &e).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// A stream that has been opened: where it goes, the deltas, and the reservation to settle
/// when it ends.
pub struct OpenStream {
    pub route: Route,
    pub deltas: DeltaStream,
    pub hold: Hold,
    pub request: ChatRequest,
}

/// Opens a stream; a failure before the first byte may fall back like [`complete`]. The
/// caller settles the hold and reports the end with [`record_success`] or [`record_failure`].
pub async fn open_stream(
    state: &AppState,
    caller: &Caller<'_>,
    route: Route,
    req: &ChatRequest,
    start: Instant,
) -> Result<OpenStream> {
    let mut route = route;
    let mut result = stream_once(state, caller, &route, req).await;
    if let Err(e) = &result
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = stream_once(state, caller, &route, req).await;
    }
    match result {
        Ok((request, deltas, hold)) => Ok(OpenStream {
            route,
            deltas,
            hold,
            request,
        }),
        Err(e) => {
            record_failure(state, caller, &route, &e, start).await?;
            Err(e)
        }
    }
}

async fn stream_once(
    state: &AppState,
    caller: &Caller<'_>,
    route: &Route,
    req: &ChatRequest,
) -> Result<(ChatRequest, DeltaStream, Hold)> {
    let (req, hold) = reserve(state, caller, route, req).await?;
    match state.providers.stream(route, &req).await {
        Ok(deltas) => Ok((req, deltas, hold)),
        Err(e) => {
            state.budget.release(hold).await;
            Err(e)
        }
    }
}

/// Usage counted from what was streamed, when the provider reported none: about four bytes a
/// token, rounded up, so a missing report is never charged as free.
pub fn counted_usage(req: &ChatRequest, streamed_bytes: usize) -> Usage {
    let prompt: usize = req.messages.iter().map(|m| m.content.len()).sum();
    Usage {
        prompt_tokens: prompt.div_ceil(4) as u64,
        completion_tokens: streamed_bytes.div_ceil(4) as u64,
    }
}

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
