//! The tasks paid calls run on, apart from their requests (see `pipeline::call` and
//! `pipeline::relay`); beside the pipeline, since the shared state holds them and shutdown
//! waits on them.
//!
//! A stopping server owes each of them its settlement and its audit entry before the store and
//! the audit log close: a hold left open is released by the next start's recovery, which would
//! make the upstream's work free. So shutdown first waits for them; past the grace it tells
//! the rest to stop, and each one still charges its call (the reservation, or a stream what it
//! streamed) and audits it as abandoned on its way out.

use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TrackedFuture;

use crate::error::{Error, Result};

/// The side a call's task answers on; `is_closed` tells it whether anyone still waits.
pub(in crate::gateway) type Waiting<T> = oneshot::Sender<Result<T>>;

/// How long the calls told to stop get to settle and audit themselves.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Cheap to clone: a task takes a handle so it can spawn while it moves the state.
#[derive(Clone, Default)]
pub struct Calls {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Calls {
    pub(super) fn spawn<F>(&self, call: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(call);
    }

    /// Runs `call` on a task of its own, in the request's egress tally (so its audit entry names
    /// the bytes it moved), and waits for its answer. Dropping the returned future abandons
    /// only the wait: the call still runs to its end, settled and audited once.
    pub(super) async fn answer<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'w> FnOnce(&'w Waiting<T>) -> BoxFuture<'w, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.spawn(crate::egress::tally::inherit(async move {
            let answer = call(&tx).await;
            let _ = tx.send(answer);
        }));
        rx.await
            .unwrap_or_else(|_| Err(Error::Upstream("the call ended without an answer".into())))
    }

    /// Counts `call` among the calls shutdown waits for, on the task it already runs on: an
    /// MCP tool call, which rmcp runs on a task of its own that a client hanging up does not
    /// stop (it cancels the call's token instead), so a second task would only cost a
    /// hand-off per call.
    pub(super) fn track<F: Future>(&self, call: F) -> TrackedFuture<F> {
        self.tracker.track_future(call)
    }

    /// Completes when the server gives up waiting for its calls.
    pub(super) fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// At shutdown, after the last request: waits up to `grace` for the calls to end by
    /// themselves, then stops the rest and waits for their settlements.
    pub async fn finish(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        self.stop.cancel();
        if tokio::time::timeout(STOP_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                calls = self.tracker.len(),
                "paid calls could not be settled before the server stopped"
            );
        }
    }
}
