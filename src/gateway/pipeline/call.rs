//! Stage 3: the call itself, through egress, with a cloud fallback only where allowed.

use std::time::Instant;

use super::{Answer, Caller, OpenStream};
use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::Result;
use crate::gateway::AppState;
use crate::providers::{ChatRequest, Completion, DeltaStream, Route};

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
        super::audit::record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = complete_once(state, caller, &route, req).await;
    }
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((completion, charged)) => {
            let usage = completion.usage;
            super::audit::record_success(state, caller, &route, usage, charged, latency_ms, false)
                .await?;
            Ok(Answer {
                completion,
                route,
                latency_ms,
                charged,
            })
        }
        Err(e) => {
            super::audit::record_failure(state, caller, &route, &e, start).await?;
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
    let (req, hold) = super::reserve::reserve(state, caller, route, req).await?;
    match state.providers.complete(route, &req).await {
        Ok(mut c) => {
            let charged = super::settle::answer(state, hold, route, &req, &mut c).await?;
            Ok((c, charged))
        }
        Err(e) => {
            super::settle::release(state, hold).await;
            Err(e)
        }
    }
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
        super::audit::record_failure(state, caller, &route, e, start).await?;
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
            super::audit::record_failure(state, caller, &route, &e, start).await?;
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
    let (req, hold) = super::reserve::reserve(state, caller, route, req).await?;
    match state.providers.stream(route, &req).await {
        Ok(deltas) => Ok((req, deltas, hold)),
        Err(e) => {
            super::settle::release(state, hold).await;
            Err(e)
        }
    }
}
