//! Stage 2: the worst case of a call reserved against every cost limit.

use super::caller::Caller;
use crate::cost::budget::Hold;
use crate::error::{Error, Result};
use crate::gateway::state::AppState;
use crate::providers::{ChatRequest, Route, Usage};

/// The request as sent upstream (capped when it costs money) and its reservation. A refusal
/// is audited (category `auth`) and counted. The guard stage has run before.
pub(super) async fn reserve(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
) -> Result<(ChatRequest, Hold)> {
    let key = caller.info.key_id.as_deref();
    let user = caller.user_id.as_deref();
    let held = state.budget.reserve(route, req, user, key).await;
    refused_audited(state, caller, held).await
}

/// Reserves `bound`, the most a call other than chat (embeddings) can use, the same way.
pub(super) async fn reserve_bound(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    bound: Usage,
) -> Result<Hold> {
    let key = caller.info.key_id.as_deref();
    let user = caller.user_id.as_deref();
    let held = state.budget.reserve_bound(route, bound, user, key).await;
    refused_audited(state, caller, held).await
}

/// A cost-limit refusal is audited (category `auth`) and counted before it is returned.
async fn refused_audited<T>(state: &AppState, caller: &Caller, held: Result<T>) -> Result<T> {
    if let Err(e @ Error::CostLimit(_)) = &held {
        let user = caller.user_id.as_deref();
        crate::gateway::access::refused(state, &caller.info, user, "cost_limit", e).await?;
    }
    held
}
