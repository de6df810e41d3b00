//! Stage 1: the local-only guard, before anything else: a call that may not leave the machine
//! holds no budget, not even for the moment until egress would refuse it.

use crate::error::Result;
use crate::gateway::AppState;
use crate::providers::Route;

pub(super) fn check(state: &AppState, route: &Route) -> Result<()> {
    state.egress.check_service(route.provider.service())
}
