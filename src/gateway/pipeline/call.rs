//! Stage 3: the call itself, through egress, with a cloud fallback only where allowed.
//!
//! A whole answer is produced on a task of its own ([`complete`]); the handler only waits for
//! it. Why: hyper drops a handler's future when its client disconnects, and the deadline
//! stage drops it at `server.request_timeout`. A call made inside that future would be cut off
//! with its reservation open and no audit entry, and a restart would release the hold, so the
//! upstream's work would cost nothing. On its own task the call runs to its end, however the
//! waiting side ends, and is settled and audited exactly once.

use std::time::Instant;

use tokio::sync::oneshot;

use super::{Answer, Caller, OpenStream};
use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::{Error, Result};
use crate::gateway::{AppState, Shared};
use crate::providers::{ChatRequest, Completion, DeltaStream, Route};

/// A whole answer, falling back to the cloud only where [`Providers::fallback_for`] allows.
/// The call runs on its own task (see the module doc); dropping this future abandons only the
/// wait.
///
/// [`Providers::fallback_for`]: crate::providers::Providers::fallback_for
pub async fn complete(
    state: &Shared,
    caller: &Caller,
    route: Route,
    req: &ChatRequest,
) -> Result<Answer> {
    let (tx, rx) = oneshot::channel();
    let (state, caller, req) = (state.clone(), caller.clone(), req.clone());
    // In the request's egress tally, so the entry names the bytes the call moved.
    let calls = state.calls.clone();
    calls.spawn(crate::egress::tally::inherit(async move {
        let answer = complete_owned(&state, &caller, route, &req, &tx).await;
        let _ = tx.send(answer);
    }));
    rx.await
        .unwrap_or_else(|_| Err(Error::Upstream("the call ended without an answer".into())))
}

/// The task's side of [`complete`]; `waiting` tells whether anyone still waits for the answer.
async fn complete_owned(
    state: &AppState,
    caller: &Caller,
    route: Route,
    req: &ChatRequest,
    waiting: &oneshot::Sender<Result<Answer>>,
) -> Result<Answer> {
    let start = Instant::now();
    let mut route = route;
    let mut result = complete_once(state, caller, &route, req, waiting).await;
    if let Err(Failure::Failed(e)) = &result
        && !waiting.is_closed()
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        super::audit::record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = complete_once(state, caller, &route, req, waiting).await;
    }
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((completion, charged)) => {
            let charge = super::audit::Charge {
                usage: completion.usage,
                charged,
                latency_ms,
                stream: false,
            };
            if waiting.is_closed() {
                super::audit::record_abandoned(state, caller, &route, &charge).await?;
            } else {
                super::audit::record_success(state, caller, &route, &charge).await?;
            }
            Ok(Answer {
                completion,
                route,
                latency_ms,
                charged,
            })
        }
        Err(Failure::Unanswered { charged }) => {
            let charge = super::audit::Charge {
                usage: Default::default(),
                charged,
                latency_ms,
                stream: false,
            };
            super::audit::record_abandoned(state, caller, &route, &charge).await?;
            Err(Error::UpstreamTimeout(format!(
                "{} did not answer in time",
                route.provider.service()
            )))
        }
        Err(Failure::Failed(e)) => {
            super::audit::record_failure(state, caller, &route, &e, start).await?;
            Err(e)
        }
    }
}

/// A failed call, told apart from one whose client left before an answer that never came.
enum Failure {
    Failed(Error),
    /// Nobody waits any more and the upstream timed out: it may have done the work, so the
    /// reservation's worst case was charged.
    Unanswered {
        charged: Micros,
    },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Failed(e)
    }
}

/// Guard, reserve, call, then settle to the real usage or release. A paid answer that reports
/// no usage at all is charged what was counted, like a stream: never $0. An upstream that
/// timed out after the client left is charged the worst case it was reserved for: its work
/// may be billed, and there is no one left to retry.
async fn complete_once(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
    waiting: &oneshot::Sender<Result<Answer>>,
) -> std::result::Result<(Completion, Micros), Failure> {
    super::guard::check(state, route)?;
    let (req, hold) = super::reserve::reserve(state, caller, route, req).await?;
    match state.providers.complete(route, &req).await {
        Ok(mut c) => {
            let charged = super::settle::answer(state, hold, route, &req, &mut c).await?;
            Ok((c, charged))
        }
        Err(Error::UpstreamTimeout(_)) if waiting.is_closed() => {
            let charged = super::settle::worst_case(state, hold).await?;
            Err(Failure::Unanswered { charged })
        }
        Err(e) => {
            super::settle::release(state, hold).await;
            Err(e.into())
        }
    }
}

/// Opens a stream; a failure before the first byte may fall back like [`complete`]. The
/// stream's relay task calls this, so a client gone before the first byte leaves it to the
/// relay to settle and audit.
pub(super) async fn open_stream(
    state: &AppState,
    caller: &Caller,
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
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
) -> Result<(ChatRequest, DeltaStream, Hold)> {
    super::guard::check(state, route)?;
    let (req, hold) = super::reserve::reserve(state, caller, route, req).await?;
    match state.providers.stream(route, &req).await {
        Ok(deltas) => Ok((req, deltas, hold)),
        Err(e) => {
            super::settle::release(state, hold).await;
            Err(e)
        }
    }
}
