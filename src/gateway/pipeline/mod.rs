//! The inner data path of one model call (SPEC §2), a file per stage, in the order a call
//! meets them:
//!
//! 1. `guard`   — local-only mode decides first: a call that may not leave holds nothing (the
//!    services proxy runs this stage too, before it reads a credential)
//! 2. `minimise` — a cloud call loses its personal data to placeholders (SPEC §2.12); the
//!    answer gets them back, streamed too
//! 3. `reserve` — the worst case reserved against every cost limit (402 past one, audited)
//! 4. `call`    — egress through the provider, which checks the guard again on every host it
//!    dials; a cloud fallback only where the user allowed one
//! 5. `settle`  — the charge settled to the real (or counted) usage, or the hold released
//! 6. `audit`   — the entry (`llm`, or `local_only_block`) and the metrics
//! 7. `store`   — the turn written to the conversation (core and advisor routes)
//!
//! Stages 1-6 of every paid call run on a task of their own that outlives the request
//! (`call` for whole answers, `relay` for streams): a client that hangs up, or a request cut
//! off by `server.request_timeout`, drops only the side that waits for the answer, so the
//! call is still settled and audited exactly once (as `abandoned`). The audit entry is written
//! before the turn is stored because it is what the call cost, and the cost is owed whether or
//! not the handler lives to store the answer.
//!
//! Audit entries name the model, provider, tokens, latency and result, never the content.
//!
//! Beside the stages: `relay` (stages 4-6 of a stream) and `embed` (stages 1-6 of an
//! embeddings call). The tasks they run on, and the wait for them at shutdown, are
//! `gateway::calls`.

mod audit;
mod call;
mod caller;
mod embed;
mod guard;
mod minimise;
mod relay;
mod reserve;
mod settle;
pub mod store;

pub use call::complete;
pub use caller::Caller;
pub use embed::embed;
pub use guard::service as guard_service;
pub use relay::{Relayed, relay};
