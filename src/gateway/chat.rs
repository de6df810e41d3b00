//! One model call as the data path makes it: route → guard and egress (inside the provider) →
//! cloud fallback when allowed → audit (`llm`, or `local_only_block`) and metrics.
//!
//! Audit entries name the model, provider, tokens, latency and result, never the content.

use std::time::Instant;

use serde_json::json;

use super::AppState;
use super::edge::RequestInfo;
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
    let mut result = state.providers.complete(&route, req).await;
    if let Err(e) = &result
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = state.providers.complete(&route, req).await;
    }
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok(completion) => {
            record_success(state, caller, &route, completion.usage, latency_ms, false).await?;
            Ok(Answer {
                completion,
                route,
                latency_ms,
            })
        }
        Err(e) => {
            record_failure(state, caller, &route, &e, start).await?;
            Err(e)
        }
    }
}

/// Opens a stream; a failure before the first byte may fall back like [`complete`]. The
/// caller reports the end of the stream with [`record_success`] or [`record_failure`].
pub async fn open_stream(
    state: &AppState,
    caller: &Caller<'_>,
    route: Route,
    req: &ChatRequest,
    start: Instant,
) -> Result<(Route, DeltaStream)> {
    let mut route = route;
    let mut result = state.providers.stream(&route, req).await;
    if let Err(e) = &result
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = state.providers.stream(&route, req).await;
    }
    match result {
        Ok(stream) => Ok((route, stream)),
        Err(e) => {
            record_failure(state, caller, &route, &e, start).await?;
            Err(e)
        }
    }
}

pub fn cost_usd(route: &Route, usage: Usage) -> f64 {
    crate::cost::pricing::cost_usd(route.provider, &route.model, usage)
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
    latency_ms: u64,
    stream: bool,
) -> Result<()> {
    let e = event(caller, Category::Llm, route, Outcome::Success)
        .detail("tokens_in", usage.prompt_tokens)
        .detail("tokens_out", usage.completion_tokens)
        .detail("cost_usd", cost_usd(route, usage))
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
