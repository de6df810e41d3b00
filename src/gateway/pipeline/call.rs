//! Stage 3: the call itself, through egress, with a cloud fallback only where allowed.
//!
//! A whole answer is produced on a task of its own ([`complete`]); the handler only waits for
//! it. Why: hyper drops a handler's future when its client disconnects, and the deadline
//! stage drops it at `server.request_timeout`. A call made inside that future would be cut off
//! with its reservation open and no audit entry, and a restart would release the hold, so the
//! upstream's work would cost nothing. On its own task the call runs to its end, however the
//! waiting side ends, and is settled and audited exactly once.

use std::future::Future;
use std::time::{Duration, Instant};

use super::audit::Withheld;
use super::caller::Caller;
use crate::cost::budget::Hold;
use crate::cost::ledger::{MAX_CALL_SECS, Micros, STALE_AFTER_MS};
use crate::error::{Error, Result};
use crate::gateway::calls::Waiting;
use crate::gateway::state::{AppState, Shared};
use crate::minimise::Withholding;
use crate::providers::{ChatRequest, Completion, DeltaStream, Route};

/// A whole answer, as the call made it and settle charged it.
pub struct Answer {
    pub completion: Completion,
    pub route: Route,
    pub latency_ms: u64,
    /// What the ledger charged, in micro-USD (settle's figure; nothing recomputes it).
    pub charged: Micros,
}

/// A stream that has been opened: where it goes, the deltas, and the reservation to settle
/// when it ends.
pub struct OpenStream {
    pub route: Route,
    pub deltas: DeltaStream,
    pub hold: Hold,
    pub request: ChatRequest,
    /// What was withheld from a cloud call, to restore in its deltas.
    pub withheld: Option<Withholding>,
}

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
    let (owned, caller, req) = (state.clone(), caller.clone(), req.clone());
    let waited = state.calls.answer(move |waiting| {
        Box::pin(async move { complete_owned(&owned, &caller, route, &req, waiting).await })
    });
    waited.await
}

/// The task's side of [`complete`]; `waiting` tells whether anyone still waits for the answer.
async fn complete_owned(
    state: &AppState,
    caller: &Caller,
    route: Route,
    req: &ChatRequest,
    waiting: &Waiting<Answer>,
) -> Result<Answer> {
    let start = Instant::now();
    // One bound for the whole call, fallback included: its hold must not outlive the ledger's
    // patience with holds (an upstream timeout may be set to days).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(MAX_CALL_SECS);
    let gone = || waiting.is_closed();
    let mut route = route;
    let mut result = complete_once(state, caller, &route, req, deadline, &gone).await;
    if let Err(Failure::Failed(e)) = &result
        && !gone()
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        super::audit::record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = complete_once(state, caller, &route, req, deadline, &gone).await;
    }
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((completion, charged, withheld)) => {
            let charge = super::audit::Charge {
                withheld,
                usage: completion.usage,
                charged,
                latency_ms,
                stream: false,
                functions: req.audited_calls(completion.called_functions()),
                image_hosts: req.remote_image_hosts(),
                ..Default::default()
            };
            if gone() {
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
                charged,
                latency_ms,
                image_hosts: req.remote_image_hosts(),
                ..Default::default()
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
pub(super) enum Failure {
    Failed(Error),
    /// Nobody waits any more (or the server stopped waiting) and the upstream did not answer
    /// in time: it may have done the work, so the reservation's worst case was charged.
    Unanswered {
        charged: Micros,
    },
}

/// The longest a stream may wait for its upstream's first byte; its own relay then runs at
/// most [`MAX_CALL_SECS`], and a hold must end before the ledger takes it for a dead one.
const MAX_OPEN: Duration = Duration::from_secs(5 * 60);
const _: () = assert!((MAX_OPEN.as_secs() + MAX_CALL_SECS) as i64 * 1000 < STALE_AFTER_MS);

/// Awaits an upstream `call` until `deadline`, or until the server stops waiting for its
/// calls: both read as the upstream not answering in time.
pub(super) async fn bounded<T>(
    state: &AppState,
    route: &Route,
    deadline: tokio::time::Instant,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let service = route.provider.service();
    tokio::select! {
        r = tokio::time::timeout_at(deadline, call) => r.unwrap_or_else(|_| {
            Err(Error::UpstreamTimeout(format!("{service} took longer than a call may")))
        }),
        () = state.calls.stopping() => {
            Err(Error::UpstreamTimeout(format!("the server stopped before {service} answered")))
        }
    }
}

/// What a failed upstream call costs. One that did not answer in time after its client left
/// (or while the server stops) is charged its reservation: its work may be billed, and there
/// is no one left to retry. Any other failure gives the reservation back.
pub(super) async fn failed(state: &AppState, hold: Hold, e: Error, gone: bool) -> Failure {
    match e {
        _ if matches!(e.plain(), Error::UpstreamTimeout(_))
            && (gone || state.calls.is_stopping()) =>
        {
            match super::settle::worst_case(state, hold).await {
                Ok(charged) => Failure::Unanswered { charged },
                Err(e) => Failure::Failed(e),
            }
        }
        e => {
            super::settle::release(state, hold).await;
            Failure::Failed(e)
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Failed(e)
    }
}

/// Guard, reserve, call, then settle to the real usage, or as [`failed`] says. A paid answer
/// that reports no usage at all is charged what was counted, like a stream: never $0.
async fn complete_once(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
    deadline: tokio::time::Instant,
    gone: &(dyn Fn() -> bool + Sync),
) -> std::result::Result<(Completion, Micros, Withheld), Failure> {
    super::guard::check(state, route)?;
    state.providers.check(route, req)?;
    let withheld = super::minimise::withhold(state, caller, route, req).await?;
    let sent = withheld.as_ref().map_or(req, |(sent, _)| sent);
    let (req, hold) = super::reserve::reserve(state, caller, route, sent).await?;
    match bounded(
        state,
        route,
        deadline,
        state.providers.complete(route, &req),
    )
    .await
    {
        Ok(mut c) => {
            let charged = super::settle::answer(state, hold, route, &req, &mut c).await?;
            let counts = match &withheld {
                Some((_, w)) => {
                    super::minimise::restore(w, &mut c);
                    w.counts()
                }
                None => Withheld::new(),
            };
            Ok((c, charged, counts))
        }
        Err(e) => Err(failed(state, hold, e, gone()).await),
    }
}

/// Opens a stream; a failure before the first byte may fall back like [`complete`]. The
/// stream's relay task calls this, with `gone` telling whether its client has left; one that
/// did not answer in time after that is charged and audited here as abandoned.
pub(super) async fn open_stream(
    state: &AppState,
    caller: &Caller,
    route: Route,
    req: &ChatRequest,
    start: Instant,
    gone: &(dyn Fn() -> bool + Sync),
) -> std::result::Result<OpenStream, Failure> {
    let mut route = route;
    let mut result = stream_once(state, caller, &route, req, gone).await;
    if let Err(Failure::Failed(e)) = &result
        && !gone()
        && let Some(fallback) = state.providers.fallback_for(&route, e).await
    {
        super::audit::record_failure(state, caller, &route, e, start).await?;
        route = fallback;
        result = stream_once(state, caller, &route, req, gone).await;
    }
    match result {
        Ok((request, deltas, hold, withheld)) => Ok(OpenStream {
            route,
            deltas,
            hold,
            request,
            withheld,
        }),
        Err(Failure::Failed(e)) => {
            super::audit::record_failure(state, caller, &route, &e, start).await?;
            Err(Failure::Failed(e))
        }
        Err(Failure::Unanswered { charged }) => {
            let charge = super::audit::Charge {
                charged,
                latency_ms: start.elapsed().as_millis() as u64,
                stream: true,
                image_hosts: req.remote_image_hosts(),
                ..Default::default()
            };
            super::audit::record_abandoned(state, caller, &route, &charge).await?;
            Err(Failure::Unanswered { charged })
        }
    }
}

async fn stream_once(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
    gone: &(dyn Fn() -> bool + Sync),
) -> std::result::Result<(ChatRequest, DeltaStream, Hold, Option<Withholding>), Failure> {
    super::guard::check(state, route)?;
    state.providers.check(route, req)?;
    let withheld = super::minimise::withhold(state, caller, route, req).await?;
    let sent = withheld.as_ref().map_or(req, |(sent, _)| sent);
    let (req, hold) = super::reserve::reserve(state, caller, route, sent).await?;
    let deadline = tokio::time::Instant::now() + MAX_OPEN;
    match bounded(state, route, deadline, state.providers.stream(route, &req)).await {
        Ok(deltas) => Ok((req, deltas, hold, withheld.map(|(_, w)| w))),
        Err(e) => Err(failed(state, hold, e, gone()).await),
    }
}
