//! Bytes per destination for one request's audit entry.
//!
//! A request's handler runs inside [`scope`]; every call egress sends on its behalf is listed
//! there with the host it dialled and the bytes it sent and received. When the handler then
//! records the call's audit entry, the audit log [`claim`]s that service's destination (taking
//! it off the list, so a fallback's second call is counted in its own entry) and adds `host`,
//! `bytes_sent` and `bytes_received` to the entry's `details`. Only names and counts leave
//! here: never a header, a path or a body.
//!
//! Received bytes are the response head plus its declared length, else what was read by the
//! time the entry is written (a model's stream is relayed by a task that [`inherit`]s the
//! list and writes its entry at the end, so all of it; a service's body without a length is
//! counted in `/metrics` as it flows, and in the entry only as far as it had been read).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One outbound call of the current request.
#[derive(Debug)]
pub struct Destination {
    pub service: String,
    pub host: String,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

type List = Arc<Mutex<Vec<Arc<Destination>>>>;

tokio::task_local! {
    static TALLY: List;
}

/// Runs `f` with a fresh list of destinations (the router wraps each request in this).
pub async fn scope<F: Future>(f: F) -> F::Output {
    TALLY.scope(List::default(), f).await
}

/// Runs `f` in the current request's list (if any), for work that outlives the handler — a
/// stream's relay task — so the entry it writes still gets the bytes of the call it relayed.
pub fn inherit<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let list = carry();
    async move {
        match list {
            Some(list) => list.scope(f).await,
            None => f.await,
        }
    }
}

/// The current request's list, handed to a task that sends on the request's behalf but was
/// not started by it (a tool server's HTTP client runs on a task of its own and gets each
/// call's list with the call).
#[derive(Clone)]
pub struct Carried(List);

/// The current request's list, if there is one.
pub fn carry() -> Option<Carried> {
    TALLY.try_with(List::clone).ok().map(Carried)
}

impl Carried {
    /// Runs `f` in the carried list: the calls it sends are counted for that request.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        TALLY.scope(self.0, f).await
    }
}

/// Lists a call to `host` for `service` (when inside a [`scope`]) and returns its counters.
pub fn destination(service: &str, host: &str) -> Arc<Destination> {
    let d = Arc::new(Destination {
        service: service.to_string(),
        host: host.to_string(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let _ = TALLY.try_with(|list| {
        list.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d.clone())
    });
    d
}

/// The host and the byte counts of one call, taken off the request's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub host: String,
    pub sent: u64,
    pub received: u64,
}

/// Takes the oldest unclaimed destination of `service` off the current request's list (none
/// outside a [`scope`], or when every call to it was claimed already).
pub fn claim(service: &str) -> Option<Claim> {
    let d = TALLY
        .try_with(|list| {
            let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
            let at = list.iter().position(|d| d.service == service)?;
            Some(list.remove(at))
        })
        .ok()
        .flatten()?;
    Some(Claim {
        host: d.host.clone(),
        sent: d.sent.load(Ordering::Relaxed),
        received: d.received.load(Ordering::Relaxed),
    })
}
