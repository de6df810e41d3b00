//! Stage 4: a call's charge settled to its real usage (or what was counted when none was
//! reported), or its hold released when it failed.

use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::Result;
use crate::gateway::AppState;
use crate::providers::{ChatRequest, Completion, Route, Usage};

/// Settles a whole answer. A paid answer that reports no usage at all is charged what was
/// counted, like a stream: never $0. Returns the ledger's charge.
pub(super) async fn answer(
    state: &AppState,
    hold: Hold,
    route: &Route,
    req: &ChatRequest,
    c: &mut Completion,
) -> Result<Micros> {
    if hold.reserved > 0 && c.usage == Usage::default() {
        c.usage = counted_usage(req, c.output_bytes());
    }
    state.budget.settle(hold, route, c.usage).await
}

/// Charges a call its whole reservation: for one whose client left and whose upstream never
/// answered, which may still bill for the work. The reservation is the bound the limits
/// counted on, so this can never take a scope past its limit.
pub(super) async fn worst_case(state: &AppState, hold: Hold) -> Result<Micros> {
    state.budget.settle_reserved(hold).await
}

/// Gives a failed call's reservation back.
pub(super) async fn release(state: &AppState, hold: Hold) {
    state.budget.release(hold).await;
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
