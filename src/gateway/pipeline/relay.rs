//! Stages 4-6 for a stream: its own task opens the stream, relays the deltas to the client
//! and, however the stream ends (complete, failed upstream, or the client gone — before the
//! first byte too), settles its hold and audits it exactly once, in code that runs to the end
//! rather than in a `Drop`.
//!
//! Why a task: a response body is dropped, not told, when its client disconnects, and a
//! handler's future is dropped the same way while it waits for the upstream's first byte.
//! Here the handler and the body only read a channel; the task that owns the [`Settlement`]
//! sees the channel close and settles then, so a client that walks away still pays for the
//! tokens it made the upstream produce. Dropping the upstream's stream then closes its
//! connection, which stops the generation.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::call::Failure;
use super::caller::Caller;
use super::minimise::StreamRestore;
use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::Error;
use crate::gateway::state::AppState;
use crate::providers::chat::MAX_AUDITED_CALLS;
use crate::providers::{ChatRequest, Delta, DeltaStream, Route, Usage};

/// Events queued between the upstream and a slow client. Past it the relay stops reading the
/// upstream (back-pressure) instead of buffering an answer of any size.
const RELAY_QUEUE: usize = 32;

/// What the client's side of a relayed stream receives, in order: `Opened` or `Refused`
/// first, then the deltas, `Failed` or `Done` last.
#[derive(Debug)]
pub enum Relayed {
    /// The upstream accepted the call; the model that answers.
    Opened {
        model: String,
    },
    /// The call could not be opened (refused, over a limit, upstream down): nothing to relay.
    Refused(Error),
    Delta(Delta),
    /// The upstream failed mid-stream: the error's JSON body, for a last event.
    Failed(Value),
    Done,
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
    /// Functions the model asked to call, for the audit entry: by name where the request
    /// declared it ([`ChatRequest::audited_call`]), at most [`MAX_AUDITED_CALLS`].
    called: Vec<String>,
    /// A cloud call's withheld values, put back into the deltas on their way to the client.
    restore: Option<StreamRestore>,
}

/// How a relayed stream ended.
enum End {
    Done,
    Failed(Error),
    /// The client left (before the first byte, or mid-answer).
    Abandoned,
}

/// Opens a stream and relays it on a task of its own; the receiver is the client's side.
pub fn relay(
    state: Arc<AppState>,
    caller: Caller,
    route: Route,
    request: ChatRequest,
) -> mpsc::Receiver<Relayed> {
    let (tx, rx) = mpsc::channel(RELAY_QUEUE);
    let start = Instant::now();
    // In the request's egress tally, so the entry names the bytes the stream moved.
    let calls = state.calls.clone();
    calls.spawn(crate::egress::tally::inherit(async move {
        let gone = || tx.is_closed();
        let opened = super::call::open_stream(&state, &caller, route, &request, start, &gone);
        let open = match opened.await {
            Ok(open) => open,
            // Audited, and settled or released, by `open_stream`; the client may be gone.
            Err(Failure::Failed(e)) => {
                let _ = tx.send(Relayed::Refused(e)).await;
                return;
            }
            Err(Failure::Unanswered { .. }) => return,
        };
        let mut settlement = Settlement {
            hold: open.hold,
            route: open.route,
            request: open.request,
            start,
            reported: None,
            streamed_bytes: 0,
            called: Vec::new(),
            restore: open.withheld.map(StreamRestore::new),
        };
        let opened = Relayed::Opened {
            model: settlement.route.model.clone(),
        };
        let end = match tx.send(opened).await {
            Ok(()) => pump(&state, open.deltas, &tx, &mut settlement).await,
            Err(_) => End::Abandoned,
        };
        settlement.finish(&state, &caller, end).await;
    }));
    rx
}

/// Moves deltas from the upstream to the client until one side ends; notes what settle needs.
async fn pump(
    state: &AppState,
    mut deltas: DeltaStream,
    tx: &mpsc::Sender<Relayed>,
    s: &mut Settlement,
) -> End {
    loop {
        let next = tokio::select! {
            // A client that left while the upstream is silent is noticed now, not at the next
            // delta (a stalled upstream may never send one).
            () = tx.closed() => return End::Abandoned,
            // The server gave up waiting: what was streamed is charged, as for a client gone.
            () = state.calls.stopping() => return End::Abandoned,
            next = deltas.next() => next,
        };
        let event = match next {
            Some(Ok(delta)) => {
                match &delta {
                    Delta::Text { text, .. } | Delta::Refusal { text, .. } => {
                        s.streamed_bytes += text.len()
                    }
                    Delta::ToolCall {
                        name, arguments, ..
                    } => {
                        s.streamed_bytes += name.as_deref().map_or(0, str::len) + arguments.len();
                        if let Some(name) = name
                            && s.called.len() < MAX_AUDITED_CALLS
                        {
                            s.called.push(s.request.audited_call(name));
                        }
                    }
                    Delta::Usage(u) => s.reported = Some(*u),
                    Delta::Finish { .. } | Delta::Logprobs { .. } => {}
                }
                match &mut s.restore {
                    Some(r) => {
                        for d in r.delta(delta) {
                            if tx.send(Relayed::Delta(d)).await.is_err() {
                                return End::Abandoned;
                            }
                        }
                        continue;
                    }
                    None => Relayed::Delta(delta),
                }
            }
            Some(Err(e)) => {
                // The client may already be gone; the failure is what gets audited either way.
                let _ = tx.send(Relayed::Failed(e.body())).await;
                return End::Failed(e);
            }
            None => {
                // What a restorer still holds was not a placeholder's start after all.
                let held = s
                    .restore
                    .as_mut()
                    .map(|r| r.flush(None))
                    .unwrap_or_default();
                for d in held {
                    if tx.send(Relayed::Delta(d)).await.is_err() {
                        return End::Abandoned;
                    }
                }
                // A server that reports no usage in its stream (llama.cpp's ignores
                // `stream_options`) is settled on what was counted: the client that asked for
                // usage gets that figure, the one it is charged on, rather than none.
                if s.reported.is_none() {
                    let counted =
                        super::settle::counted_usage(&s.route, &s.request, s.streamed_bytes);
                    if tx
                        .send(Relayed::Delta(Delta::Usage(counted)))
                        .await
                        .is_err()
                    {
                        return End::Abandoned;
                    }
                }
                return match tx.send(Relayed::Done).await {
                    Ok(()) => End::Done,
                    Err(_) => End::Abandoned,
                };
            }
        };
        if tx.send(event).await.is_err() {
            return End::Abandoned;
        }
    }
}

impl Settlement {
    /// Settles the hold to the reported usage, or to what was counted when none was reported
    /// (a stream is never recorded at $0), then audits the call.
    async fn finish(self, state: &AppState, caller: &Caller, end: End) {
        let usage = self.reported.unwrap_or_else(|| {
            super::settle::counted_usage(&self.route, &self.request, self.streamed_bytes)
        });
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
        let charge = super::audit::Charge {
            usage,
            charged,
            latency_ms: self.start.elapsed().as_millis() as u64,
            stream: true,
            functions: self.called,
            image_hosts: self.request.remote_image_hosts(),
            withheld: self
                .restore
                .as_ref()
                .map(|r| r.withholding().counts())
                .unwrap_or_default(),
            ..Default::default()
        };
        let audited = match end {
            End::Done => super::audit::record_success(state, caller, &self.route, &charge).await,
            End::Abandoned => {
                super::audit::record_abandoned(state, caller, &self.route, &charge).await
            }
            End::Failed(e) => {
                super::audit::record_failure(state, caller, &self.route, &e, self.start).await
            }
        };
        if let Err(e) = audited {
            tracing::error!(error = %e, "could not audit a streamed call");
        }
    }
}
