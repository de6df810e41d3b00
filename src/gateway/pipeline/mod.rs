//! The inner data path of one model call (SPEC §2), a file per stage, in the order a call
//! meets them:
//!
//! 1. `guard`   — local-only mode decides first: a call that may not leave holds nothing (the
//!    services proxy runs this stage too, before it reads a credential)
//! 2. `reserve` — the worst case reserved against every cost limit (402 past one, audited)
//! 3. `call`    — egress through the provider, which checks the guard again on every host it
//!    dials; a cloud fallback only where the user allowed one
//! 4. `settle`  — the charge settled to the real (or counted) usage, or the hold released
//! 5. `audit`   — the entry (`llm`, or `local_only_block`) and the metrics
//! 6. `store`   — the turn written to the conversation (core and advisor routes)
//!
//! Stages 1-5 of every paid call run on a task of their own that outlives the request
//! (`call` for whole answers, `relay` for streams): a client that hangs up, or a request cut
//! off by `server.request_timeout`, drops only the side that waits for the answer, so the
//! call is still settled and audited exactly once (as `abandoned`). The audit entry is written
//! before the turn is stored because it is what the call cost, and the cost is owed whether or
//! not the handler lives to store the answer.
//!
//! Audit entries name the model, provider, tokens, latency and result, never the content.
//!
//! Beside the stages: `calls` (the tasks paid calls run on, and the wait for them at
//! shutdown), `relay` (stages 3-5 of a stream) and `embed` (stages 1-5 of an embeddings call).

mod audit;
mod call;
mod calls;
mod embed;
mod guard;
mod relay;
mod reserve;
mod settle;
pub mod store;

pub use audit::{record_failure, record_success};
pub use call::complete;
pub use calls::Calls;
pub use embed::embed;
pub use guard::service as guard_service;
pub use relay::{Relayed, relay};
use settle::counted_usage;

use super::edge::RequestInfo;
use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::providers::{ChatRequest, Completion, DeltaStream, Route};

/// Who asked, for the audit entry. Owned, since the call's task outlives the handler.
#[derive(Clone)]
pub struct Caller {
    pub info: RequestInfo,
    pub user_id: Option<String>,
    pub surface_id: Option<String>,
    /// The audit `action`: `core`, `advisor.ask`, `chat.completions`.
    pub action: &'static str,
}

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
}
