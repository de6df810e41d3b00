//! Stage 2: the worst case of a call reserved against every cost limit.

use super::Caller;
use crate::cost::budget::Hold;
use crate::error::{Error, Result};
use crate::gateway::AppState;
use crate::providers::{ChatRequest, Route};

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
    match state.budget.reserve(route, req, user, key).await {
        Ok(held) => Ok(held),
        Err(e @ Error::CostLimit(_)) => {
            crate::gateway::access::refused(state, &caller.info, user, "cost_limit", &e).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}
