//! Stage 1: the local-only guard, before anything else: a call that may not leave the machine
//! holds no budget, not even for the moment until egress would refuse it.

use crate::error::Result;
use crate::gateway::state::AppState;
use crate::providers::Route;
use crate::services::Service;

pub(super) fn check(state: &AppState, route: &Route) -> Result<()> {
    state.egress.check_service(route.provider.service())
}

/// The same stage for a personal service: in local-only mode a cloud service (by catalog name,
/// or `kind = "cloud"` in its table) is refused before its credential is even read, as
/// `maestra guard check` decides; egress checks every address dialled again.
pub fn service(state: &AppState, service: &Service) -> Result<()> {
    if !state.egress.local_only() {
        return Ok(());
    }
    let group = serde_json::to_value(service.category).unwrap_or_default();
    state
        .egress
        .catalog()
        .check_service(
            &service.name,
            service.kind,
            group.as_str().unwrap_or_default(),
        )
        .map_err(Into::into)
}
