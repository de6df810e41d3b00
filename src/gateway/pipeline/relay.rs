//! Stages 4 and 6 for a stream: its own task relays the deltas to the client and, however the
//! stream ends (complete, failed upstream, or the client gone), settles its hold and audits it
//! exactly once, in code that runs to the end rather than in a `Drop`.
//!
//! Why a task: a response body is dropped, not told, when its client disconnects, and a
//! dropped body can only spawn work it cannot await. Here the body only reads a channel; the
//! task that owns the [`Settlement`] sees the channel close and settles then, so a client that
//! walks away mid-answer still pays for the tokens it made the upstream produce.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Caller, OpenStream};
use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::{Error, Result};
use crate::gateway::AppState;
use crate::gateway::edge::RequestInfo;
use crate::providers::{ChatRequest, Delta, DeltaStream, Route, Usage};

/// Events queued between the upstream and a slow client. Past it the relay stops reading the
/// upstream (back-pressure) instead of buffering an answer of any size.
const RELAY_QUEUE: usize = 32;

/// What the client's side of a relayed stream receives, in order; `Failed` or `Done` last.
#[derive(Debug)]
pub enum Relayed {
    Delta(Delta),
    /// The upstream failed mid-stream: the error's JSON body, for a last event.
    Failed(Value),
    Done,
}

/// Who asked, owned, since the relay outlives the handler that opened the stream.
pub struct StreamCaller {
    pub info: RequestInfo,
    pub user_id: Option<String>,
    pub action: &'static str,
}

/// A stream's reservation and what is needed to settle it. Consumed by [`Settlement::finish`],
/// which every end of the relay reaches.
struct Settlement {
    hold: Hold,
    route: Route,
    request: ChatRequest,
    start: Instant,
    reported: Option<Usage>,
    streamed_bytes: usize,
}

/// Starts relaying an opened stream; the receiver is the client's side.
pub fn relay(
    state: Arc<AppState>,
    caller: StreamCaller,
    open: OpenStream,
    start: Instant,
) -> mpsc::Receiver<Relayed> {
    let (tx, rx) = mpsc::channel(RELAY_QUEUE);
    let settlement = Settlement {
        hold: open.hold,
        route: open.route,
        request: open.request,
        start,
        reported: None,
        streamed_bytes: 0,
    };
    // In the request's egress tally, so the entry names the bytes the stream moved.
    tokio::spawn(crate::egress::tally::inherit(async move {
        let mut settlement = settlement;
        let outcome = pump(open.deltas, &tx, &mut settlement).await;
        settlement.finish(&state, &caller, outcome).await;
    }));
    rx
}

fn disconnected() -> Error {
    Error::Upstream("the client disconnected before the stream ended".into())
}

/// Moves deltas from the upstream to the client until one side ends; notes what settle needs.
async fn pump(
    mut deltas: DeltaStream,
    tx: &mpsc::Sender<Relayed>,
    s: &mut Settlement,
) -> Result<()> {
    loop {
        let next = tokio::select! {
            // A client that left while the upstream is silent is noticed now, not at the next
            // delta (a stalled upstream may never send one).
            () = tx.closed() => return Err(disconnected()),
            next = deltas.next() => next,
        };
        let event = match next {
            Some(Ok(delta)) => {
                match &delta {
                    Delta::Text(t) => s.streamed_bytes += t.len(),
                    Delta::Usage(u) => s.reported = Some(*u),
                    Delta::Finish(_) => {}
                }
                Relayed::Delta(delta)
            }
            Some(Err(e)) => {
                // The client may already be gone; the failure is what gets audited either way.
                let _ = tx.send(Relayed::Failed(e.body())).await;
                return Err(e);
            }
            None => {
                return match tx.send(Relayed::Done).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(disconnected()),
                };
            }
        };
        if tx.send(event).await.is_err() {
            return Err(disconnected());
        }
    }
}

impl Settlement {
    /// Settles the hold to the reported usage, or to what was counted when none was reported
    /// (a stream is never recorded at $0), then audits the call.
    async fn finish(self, state: &AppState, caller: &StreamCaller, outcome: Result<()>) {
        let usage = self
            .reported
            .unwrap_or_else(|| super::counted_usage(&self.request, self.streamed_bytes));
        let charged: Micros = match state.budget.settle(self.hold, &self.route, usage).await {
            Ok(charged) => charged,
            Err(e) => {
                // The hold stays open and goes stale (STALE_AFTER_MS); the audit entry still
                // names what the call cost.
                tracing::error!(error = %e, "could not settle a streamed call's cost");
                state
                    .budget
                    .pricing()
                    .cost(self.route.provider, &self.route.model, usage)
            }
        };
        let caller = Caller {
            info: &caller.info,
            user_id: caller.user_id.as_deref(),
            surface_id: None,
            action: caller.action,
        };
        let latency_ms = self.start.elapsed().as_millis() as u64;
        let audited = match outcome {
            Ok(()) => {
                super::record_success(
                    state,
                    &caller,
                    &self.route,
                    usage,
                    charged,
                    latency_ms,
                    true,
                )
                .await
            }
            Err(e) => super::record_failure(state, &caller, &self.route, &e, self.start).await,
        };
        if let Err(e) = audited {
            tracing::error!(error = %e, "could not audit a streamed call");
        }
    }
}
