//! Bytes per destination for one request's audit entry.
//!
//! A request's handler runs inside [`scope`]; every call egress sends on its behalf is listed
//! there with the host it dialled and the bytes it sent and received. When the handler then
//! records the call's audit entry, [`annotate`] adds `host`, `bytes_sent` and
//! `bytes_received` for that service to `details` and takes the destination off the list, so a
//! fallback's second call is counted in its own entry. Only names and counts are added: never
//! a header, a path or a body.
//!
//! Received bytes are the response head plus its declared length, else what was read by the
//! time the entry is written (a model's stream is relayed by a task that [`inherit`]s the
//! list and writes its entry at the end, so all of it; a service's body without a length is
//! counted in `/metrics` as it flows, and in the entry only as far as it had been read).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::privsec::audit::{Category, Event};

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
    let list = TALLY.try_with(List::clone).ok();
    async move {
        match list {
            Some(list) => TALLY.scope(list, f).await,
            None => f.await,
        }
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

/// Categories whose entries stand for an outbound call.
fn is_call(c: Category) -> bool {
    matches!(
        c,
        Category::Llm
            | Category::Media
            | Category::Smarthome
            | Category::Creative
            | Category::LocalOnlyBlock
    )
}

/// Adds the oldest unclaimed destination of the event's service to its details.
pub fn annotate(mut event: Event) -> Event {
    if !is_call(event.category) || event.details.contains_key("bytes_sent") {
        return event;
    }
    let found = TALLY
        .try_with(|list| {
            let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
            let at = list.iter().position(|d| d.service == event.service)?;
            Some(list.remove(at))
        })
        .ok()
        .flatten();
    if let Some(d) = found {
        if !d.host.is_empty() {
            event = event.detail("host", d.host.as_str());
        }
        event = event
            .detail("bytes_sent", d.sent.load(Ordering::Relaxed))
            .detail("bytes_received", d.received.load(Ordering::Relaxed));
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privsec::audit::Outcome;

    #[tokio::test]
    async fn each_entry_takes_its_own_call() {
        scope(async {
            let a = destination("openai", "api.openai.com");
            a.sent.store(10, Ordering::Relaxed);
            a.received.store(20, Ordering::Relaxed);
            destination("openai", "api.openai.com");
            let e = annotate(Event::new(Category::Llm, "openai", "core", Outcome::Error));
            assert_eq!(e.details["bytes_sent"], 10);
            assert_eq!(e.details["host"], "api.openai.com");
            let e = annotate(Event::new(
                Category::Llm,
                "openai",
                "core",
                Outcome::Success,
            ));
            assert_eq!(e.details["bytes_sent"], 0);
            let e = annotate(Event::new(
                Category::Llm,
                "openai",
                "core",
                Outcome::Success,
            ));
            assert!(
                !e.details.contains_key("bytes_sent"),
                "nothing left to claim"
            );
            let e = annotate(Event::new(Category::Admin, "openai", "x", Outcome::Success));
            assert!(e.details.is_empty());
        })
        .await;
        // Outside a request: nothing listed, nothing added.
        destination("hue", "bridge");
        let e = annotate(Event::new(
            Category::Smarthome,
            "hue",
            "x",
            Outcome::Success,
        ));
        assert!(e.details.is_empty());
    }
}
