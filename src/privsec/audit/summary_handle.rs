//! The summary a running process shares between its writer thread and its readers.
//!
//! The writer never waits for a reader: if a report holds the summary (catching up after a
//! restart, say), the batch is not counted in memory and the summary is marked to catch up
//! from the log on the next read instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use super::entry::Event;
use super::summary::Summary;
use crate::error::Result;

#[derive(Clone)]
pub struct SharedSummary {
    path: PathBuf,
    /// `None` until the first read loads it: processes that only write never pay for it.
    inner: Arc<Mutex<Option<Summary>>>,
    missed: Arc<AtomicBool>,
}

impl SharedSummary {
    pub fn new(log: &Path) -> SharedSummary {
        SharedSummary {
            path: log.to_path_buf(),
            inner: Arc::new(Mutex::new(None)),
            missed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Called by the writer after a commit; never blocks.
    pub(super) fn add_batch<'a>(
        &self,
        events: impl Iterator<Item = &'a Event>,
        first_seq: u64,
        last_hash: &str,
    ) {
        match self.inner.try_lock() {
            Ok(mut guard) => {
                if let Some(s) = guard.as_mut() {
                    s.add_batch(events, first_seq, last_hash);
                }
            }
            Err(TryLockError::WouldBlock) => self.missed.store(true, Ordering::Relaxed),
            Err(TryLockError::Poisoned(p)) => {
                if let Some(s) = p.into_inner().as_mut() {
                    s.stale = true;
                }
            }
        }
    }

    /// Runs `f` on the summary brought up to date with the log (blocking: file reads).
    pub fn read<R>(&self, f: impl FnOnce(&Summary) -> R) -> Result<R> {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let summary = guard.get_or_insert_with(|| Summary::load(&self.path));
        if self.missed.swap(false, Ordering::Relaxed) {
            summary.stale = true;
        }
        summary.follow_prune(&self.path);
        if summary.stale {
            summary.catch_up(&self.path)?;
        }
        if let Err(e) = summary.save(&self.path) {
            // A summary that cannot be saved is rebuilt next start; the report still answers.
            tracing::warn!(error = %e, "cannot save the audit summary");
        }
        Ok(f(summary))
    }

    /// Saves what is in memory (at shutdown), so the next start has less to catch up.
    pub fn save(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = guard.as_mut()
            && let Err(e) = s.save(&self.path)
        {
            tracing::warn!(error = %e, "cannot save the audit summary");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use crate::privsec::audit::{AuditLog, Category, ChainKey, Outcome, current_summary};

    fn entries(s: &Summary) -> u64 {
        s.rows.values().map(|c| c.entries).sum()
    }

    fn config(dir: &std::path::Path, retention_days: u32) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit.log"),
            retention_days,
            fail_closed: true,
            queue_capacity: 64,
        }
    }

    fn key() -> ChainKey {
        ChainKey::from_bytes(&[7u8; 32])
    }

    fn call(bytes: u64) -> Event {
        Event::new(Category::Llm, "openai", "core", Outcome::Success).detail("bytes_sent", bytes)
    }

    /// Recording only queues an entry; a reader that first waits for `settled` sees every
    /// entry recorded before it, however the writer batches them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settled_reader_sees_every_entry_recorded_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 90);
        cfg.fail_closed = false;
        let log = AuditLog::open(&cfg, key()).unwrap();
        for round in 1..=20u64 {
            for _ in 0..10 {
                log.record(call(1)).await.unwrap();
            }
            log.settled().await;
            assert_eq!(log.summary().read(entries).unwrap(), round * 10);
        }
        log.close().await;
    }

    #[tokio::test]
    async fn the_writer_keeps_it_and_what_others_wrote_is_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 90);
        let server = AuditLog::open(&cfg, key()).unwrap();
        server.append(call(5)).await.unwrap();
        assert_eq!(server.summary().read(entries).unwrap(), 1);
        server.append(call(6)).await.unwrap();
        // Counted by the writer itself: nothing to catch up.
        assert_eq!(
            server.summary().read(|s| (entries(s), s.stale)).unwrap(),
            (2, false)
        );
        // Another process (a CLI command) writes to the same log.
        let other = AuditLog::open(&cfg, key()).unwrap();
        other.append(call(7)).await.unwrap();
        other.close().await;
        server.append(call(8)).await.unwrap();
        let (n, sent) = server
            .summary()
            .read(|s| {
                (
                    entries(s),
                    s.rows.values().map(|c| c.bytes_sent).sum::<u64>(),
                )
            })
            .unwrap();
        assert_eq!((n, sent), (4, 26));
        server.close().await;
        // Saved at close: the next process starts from it, and a rebuild agrees.
        let saved = Summary::load(&cfg.path);
        assert_eq!((entries(&saved), saved.through_seq), (4, 4));
        std::fs::remove_file(super::super::summary::summary_path(&cfg.path)).unwrap();
        assert_eq!(entries(&current_summary(&cfg.path).unwrap()), 4);
    }

    /// What the writer counted as it committed and what a rebuild reads from the sealed
    /// lines are the same rows: tool calls per tool, with their times.
    #[tokio::test]
    async fn the_writer_and_a_rebuild_agree_on_tools() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 90);
        let server = AuditLog::open(&cfg, key()).unwrap();
        // Loaded before the entries: from here the writer counts them.
        server.summary().read(|_| ()).unwrap();
        let tool = |action: &str, result| {
            Event::new(Category::Tool, "time", action, result).detail("tool", "get_current_time")
        };
        for e in [
            tool("tools/pin get_current_time", Outcome::Success),
            tool("tools/call get_current_time", Outcome::Success),
            tool("tools/call get_current_time", Outcome::Failed),
            Event::new(Category::Smarthome, "hue", "GET /lights", Outcome::Success)
                .detail("tool", "list_lights"),
            call(3),
        ] {
            server.append(e).await.unwrap();
        }
        server.settled().await;
        let handle = server.summary();
        let written = {
            let held = handle.inner.lock().unwrap();
            let s = held.as_ref().unwrap();
            assert!(!s.stale && !handle.missed.load(Ordering::Relaxed));
            s.rows.clone()
        };
        server.close().await;
        std::fs::remove_file(super::super::summary::summary_path(&cfg.path)).unwrap();
        let rebuilt = current_summary(&cfg.path).unwrap().rows;
        assert_eq!(written, rebuilt);
        let tools: Vec<(&str, u64)> = rebuilt
            .iter()
            .filter(|(k, _)| !k.tool.is_empty())
            .map(|(k, c)| (k.tool.as_str(), c.entries))
            .collect();
        assert_eq!(tools.len(), 3, "{tools:?}");
        assert!(rebuilt.values().all(|c| c.last > 0));
    }

    /// Retention (`maestra audit prune`, another process) removes old files: the running
    /// server's summary stops counting what they held.
    #[tokio::test]
    async fn a_prune_takes_its_entries_out_of_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1);
        let server = AuditLog::open(&cfg, key()).unwrap();
        server.append(call(5)).await.unwrap();
        server.append(call(6)).await.unwrap();
        assert!(crate::privsec::audit::rotate(&cfg.path, key()).unwrap());
        server.append(call(7)).await.unwrap();
        assert_eq!(server.summary().read(entries).unwrap(), 3);
        let later = time::OffsetDateTime::now_utc().date() + time::Duration::days(3);
        let removed = crate::privsec::audit::prune(&cfg.path, &key(), 1, later).unwrap();
        assert_eq!(removed.len(), 1);
        let (n, sent) = server
            .summary()
            .read(|s| {
                (
                    entries(s),
                    s.rows.values().map(|c| c.bytes_sent).sum::<u64>(),
                )
            })
            .unwrap();
        assert_eq!((n, sent), (1, 7), "only the live file's entry is left");
        server.append(call(8)).await.unwrap();
        assert_eq!(server.summary().read(entries).unwrap(), 2);
        server.close().await;
    }

    /// A log that is not the one counted (restored from elsewhere, deleted by hand: its `seq`
    /// starts over) is counted afresh, whether it is shorter or longer than the old one.
    #[tokio::test]
    async fn a_replaced_log_is_counted_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 90);
        // A log written from nothing with these entries, in place of whatever was there.
        let write_log = |amounts: Vec<u64>| {
            let cfg = cfg.clone();
            let head = dir.path().join("audit.head");
            async move {
                let _ = std::fs::remove_file(&cfg.path);
                let _ = std::fs::remove_file(head);
                let log = AuditLog::open(&cfg, key()).unwrap();
                for b in amounts {
                    log.append(call(b)).await.unwrap();
                }
                log.close().await;
            }
        };
        let counted = || {
            let s = current_summary(&cfg.path).unwrap();
            (
                entries(&s),
                s.rows.values().map(|c| c.bytes_sent).sum::<u64>(),
            )
        };
        write_log(vec![1, 2, 3]).await;
        assert_eq!(counted(), (3, 6));
        // Shorter, longer, and the same length as before with other entries.
        for (amounts, expected) in [
            (vec![100], (1, 100)),
            (vec![10, 20, 30, 40], (4, 100)),
            (vec![1000; 4], (4, 4000)),
        ] {
            write_log(amounts.clone()).await;
            assert_eq!(counted(), expected, "{amounts:?}");
        }
    }
}
