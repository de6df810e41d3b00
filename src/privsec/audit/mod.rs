//! The tamper-evident audit log (SPEC §2.3).
//!
//! Layout:
//! - `entry`  — what a line says (categories, results, the event callers report)
//! - `chain`  — the HMAC chain, the head and anchor marks
//! - `files`  — live, rotated and record files; rotation and compression
//! - `writer` — the group-commit writer thread
//! - `query`  — filters over live and rotated files, newest first
//! - `verify` — walks the chain and names the first broken line

mod chain;
mod entry;
mod files;
mod query;
mod summary;
mod summary_handle;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use chain::ChainKey;
pub use entry::{Category, Event, Outcome, StoredEntry, now_rfc3339};
pub use files::LogFiles;
pub use query::{Filter, query, query_matching};
pub use summary::{
    Counts, Key as SummaryKey, MAX_NAMES, MAX_ROWS, OTHER, Summary, current as current_summary,
};
pub use summary_handle::SharedSummary;
pub use verify::{Options as VerifyOptions, Problem, Report, verify, verify_observed, verify_with};

use crate::config::AuditConfig;
use crate::error::{Error, Result};

/// How long a caller waits for room in a full queue before the entry counts as not written.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a reader waits for the entries queued before it ([`AuditLog::settled`]).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// What the digest key is derived under (see [`AuditLog::digest`]).
const DIGEST_LABEL: &str = "maestra audit digest v1";

/// A handle for appending; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<writer::Pending>,
    fail_closed: bool,
    lost: Arc<AtomicU64>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    summary: SharedSummary,
    /// Entries handed to the writer so far, and (from the writer) how many of them it has
    /// handled, written or failed: what lets a reader see every entry recorded before it.
    queued: Arc<AtomicU64>,
    handled: watch::Receiver<u64>,
    digests: Arc<ChainKey>,
}

impl AuditLog {
    /// Starts the writer for the log at `cfg.path`, keyed with `key`.
    pub fn open(cfg: &AuditConfig, key: ChainKey) -> Result<AuditLog> {
        let files = LogFiles::new(&cfg.path);
        std::fs::create_dir_all(files.dir())
            .map_err(|e| Error::io(format!("cannot create {}", files.dir().display()), e))?;
        // Finish any rotation a crash interrupted before writing on.
        files.compress_pending()?;
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let summary = SharedSummary::new(&cfg.path);
        // A key of its own for digests, derived once: a digest never reveals the chain's key,
        // and one key's entries cannot be replayed as the other's.
        let digests = Arc::new(ChainKey::from_bytes(
            key.mac_hex(&[DIGEST_LABEL.as_bytes()]).as_bytes(),
        ));
        let w = writer::Writer::new(files, Arc::new(key)).with_summary(summary.clone());
        let lost = Arc::new(AtomicU64::new(0));
        let writer_lost = lost.clone();
        let (handled_tx, handled) = watch::channel(0);
        let thread = std::thread::Builder::new()
            .name("maestra-audit".into())
            .spawn(move || w.run(rx, writer_lost, handled_tx))
            .map_err(|e| Error::io("cannot start the audit writer", e))?;
        Ok(AuditLog {
            tx,
            fail_closed: cfg.fail_closed,
            lost,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            summary,
            queued: Arc::new(AtomicU64::new(0)),
            handled,
            digests,
        })
    }

    /// A keyed digest of what a call carried (a tool call's arguments, its result), for an
    /// entry that must tell two calls apart without holding what they said. Keyed because a
    /// plain hash of a short text ("turn on the kitchen light") is undone by hashing guesses;
    /// the key stays in the home.
    pub fn digest(&self, bytes: &[u8]) -> String {
        let mut d = self.digests.mac_hex(&[bytes]);
        d.truncate(32);
        d
    }

    /// Waits until every entry recorded before this call is written (or has failed), so a
    /// reader of the log or its summary (the audit query, the report, a secret's last use)
    /// sees the calls it was made after: recording only queues an entry (group commit), and
    /// without this a request's own entry could be missing from the page it opens next.
    /// Bounded: past [`SETTLE_TIMEOUT`] (a stalled disk) the reader goes on with what is there.
    pub async fn settled(&self) {
        let target = self.queued.load(Ordering::SeqCst);
        let mut handled = self.handled.clone();
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, handled.wait_for(|n| *n >= target)).await;
    }

    /// Hands an entry to the writer, counted in `queued` from before it is sent. Why before:
    /// entries leave the queue in order, and every entry ahead of one whose `record` returned
    /// was counted before it was sent, so once `handled` reaches a reader's count, that entry
    /// and all before it are on disk. An entry that fails to enter the queue (full or closed:
    /// the log is already failing) is uncounted again, and a reader that counted it meanwhile
    /// waits out [`SETTLE_TIMEOUT`] instead.
    async fn enqueue(&self, pending: writer::Pending) -> Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self.tx.send_timeout(pending, ENQUEUE_TIMEOUT).await;
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::AuditUnavailable(
                "the audit queue is full or closed".into(),
            ));
        }
        Ok(())
    }

    /// The summary of the log (for reports), kept as entries are written.
    pub fn summary(&self) -> &SharedSummary {
        &self.summary
    }

    /// Appends an entry and waits until it is on disk; returns its `seq`.
    pub async fn append(&self, event: Event) -> Result<u64> {
        let event = annotate(event);
        let (ack, done) = oneshot::channel();
        let pending = writer::Pending {
            event,
            ack: Some(ack),
        };
        self.enqueue(pending).await?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(msg)) => Err(Error::AuditUnavailable(msg)),
            Err(_) => Err(Error::AuditUnavailable("the audit writer stopped".into())),
        }
    }

    /// Records a request's entry. Under `fail_closed` it waits until the entry is on disk and
    /// an error refuses the request. Otherwise it only waits for room in the bounded queue (a
    /// slow disk delays requests only once the queue is full), and a failure to write is
    /// logged loudly and counted in [`AuditLog::lost`], never silent.
    pub async fn record(&self, event: Event) -> Result<()> {
        if self.fail_closed {
            return self.append(event).await.map(|_| ());
        }
        let event = annotate(event);
        let what = format!("{:?}/{}", event.category, event.action);
        let pending = writer::Pending { event, ack: None };
        match self.enqueue(pending).await {
            Ok(_) => Ok(()),
            Err(e) if self.fail_closed => Err(e),
            Err(e) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(entry = %what, error = %e, "audit entry could not be written");
                Ok(())
            }
        }
    }

    /// Entries that could not be written (with `fail_closed = false`).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops accepting entries, writes what is queued, and waits for the writer to finish.
    pub async fn close(self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        drop(self.tx);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.summary.save();
    }
}

/// Rotates the live log now (`maestra audit rotate`); false when it was empty.
pub fn rotate(path: &Path, key: ChainKey) -> Result<bool> {
    let mut w = writer::Writer::new(LogFiles::new(path), Arc::new(key));
    w.rotate_now()
}

/// Deletes rotated files dated more than `retention_days` before `today` (`YYYY-MM-DD`),
/// first recording the last pruned entry as the chain's new anchor. Returns the files removed.
pub fn prune(
    path: &Path,
    key: &ChainKey,
    retention_days: u32,
    today: time::Date,
) -> Result<Vec<PathBuf>> {
    let files = LogFiles::new(path);
    let _lock = files::Locked::acquire(&files.lock())?;
    let cutoff = today - time::Duration::days(i64::from(retention_days));
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let cutoff = cutoff
        .format(&fmt)
        .map_err(|e| Error::Audit("cannot name the retention cutoff's date".into()).because(e))?;
    let old: Vec<_> = files
        .rotated()?
        .into_iter()
        .filter(|r| r.date < cutoff)
        .collect();
    let Some(newest) = old.last() else {
        return Ok(Vec::new());
    };
    let text = files::read_all(&newest.path)?;
    let last_line = text
        .split(|b| *b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .ok_or_else(|| Error::Audit(format!("{} is empty", newest.path.display())))?;
    let mark = writer::parse_mark(last_line).ok_or_else(|| {
        Error::Audit(format!(
            "the last line of {} is not a valid entry; nothing pruned",
            newest.path.display()
        ))
    })?;
    files::write_record(&files.anchor(), &mark.encode(key, "anchor"))?;
    let mut removed = Vec::new();
    for r in old {
        std::fs::remove_file(&r.path)
            .map_err(|e| Error::io(format!("cannot remove {}", r.path.display()), e))?;
        removed.push(r.path);
    }
    files::sync_dir(files.dir());
    Ok(removed)
}

/// Adds the host and byte counts of the oldest unclaimed call to the event's service (from
/// [`crate::egress::tally`]) to its details.
fn annotate(mut event: Event) -> Event {
    if !event.is_call() || event.details.contains_key("bytes_sent") {
        return event;
    }
    if let Some(c) = crate::egress::tally::claim(&event.service) {
        if !c.host.is_empty() {
            event = event.detail("host", c.host.as_str());
        }
        event = event
            .detail("bytes_sent", c.sent)
            .detail("bytes_received", c.received);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::tally::{destination, scope};

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
