//! One embeddings call through the stages of a paid call: guard, minimise (the texts a cloud
//! model embeds lose their personal data; nothing comes back to restore), reserve, call,
//! settle, audit, on a task of its own like a whole chat answer (`call`), so a client that hangs up
//! cannot leave the call unsettled or unaudited.
//!
//! What differs from chat: the bound is the input itself (every byte a token), there is no
//! output, and there is no cloud fallback (another model's vectors live in another space).
//! The input and the vectors are never stored, logged or audited; the entry counts them.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::audit::{Charge, Withheld};
use super::call::{Failure, bounded, failed};
use super::caller::Caller;
use crate::cost::ledger::{MAX_CALL_SECS, Micros};
use crate::error::{Error, Result};
use crate::gateway::calls::Waiting;
use crate::gateway::state::{AppState, Shared};
use crate::providers::embeddings::{Embeddings, EmbeddingsRequest};
use crate::providers::{Route, Usage};

/// A call's vectors and what it cost.
pub struct Embedded {
    pub embeddings: Embeddings,
    pub route: Route,
    pub usage: Usage,
    /// What the ledger charged, in micro-USD (settle's figure).
    pub charged: Micros,
    pub latency_ms: u64,
}

/// Embeds `req` on the call's own task; dropping this future abandons only the wait.
pub async fn embed(
    state: &Shared,
    caller: &Caller,
    route: Route,
    req: EmbeddingsRequest,
) -> Result<Embedded> {
    let (owned, caller) = (state.clone(), caller.clone());
    let waited = state.calls.answer(move |waiting| {
        Box::pin(async move { embed_owned(&owned, &caller, route, &req, waiting).await })
    });
    waited.await
}

/// The task's side of [`embed`]; `waiting` tells whether anyone still waits for the answer.
async fn embed_owned(
    state: &AppState,
    caller: &Caller,
    route: Route,
    req: &EmbeddingsRequest,
    waiting: &Waiting<Embedded>,
) -> Result<Embedded> {
    let start = Instant::now();
    let gone = || waiting.is_closed();
    let result = embed_once(state, caller, &route, req, &gone).await;
    let latency_ms = start.elapsed().as_millis() as u64;
    let inputs = Some(req.inputs.len());
    match result {
        Ok((embeddings, usage, charged, withheld)) => {
            let charge = Charge {
                usage,
                charged,
                latency_ms,
                inputs,
                withheld,
                ..Default::default()
            };
            if gone() {
                super::audit::record_abandoned(state, caller, &route, &charge).await?;
            } else {
                super::audit::record_success(state, caller, &route, &charge).await?;
            }
            Ok(Embedded {
                embeddings,
                route,
                usage,
                charged,
                latency_ms,
            })
        }
        Err(Failure::Unanswered { charged }) => {
            let charge = Charge {
                charged,
                latency_ms,
                inputs,
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

/// Guard, reserve the bound, call, then settle to the reported usage (or the counted one).
async fn embed_once(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &EmbeddingsRequest,
    gone: &(dyn Fn() -> bool + Sync),
) -> std::result::Result<(Embeddings, Usage, Micros, Withheld), Failure> {
    super::guard::check(state, route)?;
    let minimised = super::minimise::withhold_texts(state, caller, route, &req.inputs).await?;
    let (sent, withheld) = match minimised {
        Some((inputs, w)) => {
            let mut sent = req.clone();
            sent.inputs = inputs;
            (Cow::Owned(sent), w.counts())
        }
        None => (Cow::Borrowed(req), Withheld::new()),
    };
    let req = sent.as_ref();
    let hold = super::reserve::reserve_bound(state, caller, route, req.usage_bound()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(MAX_CALL_SECS);
    match bounded(state, route, deadline, state.providers.embed(route, req)).await {
        Ok(embeddings) => {
            let usage = embeddings.usage(req);
            let charged = state.budget.settle(hold, route, usage).await?;
            Ok((embeddings, usage, charged, withheld))
        }
        Err(e) => Err(failed(state, hold, e, gone()).await),
    }
}
