//! Write-ahead-log checkpoints off the request path.
//!
//! By default SQLite checkpoints inside the commit that takes the log past 1,000 pages: that
//! commit copies the log into the database file and `fsync`s it, holding the one writer for
//! milliseconds while every request behind it waits (the p99 tail of the gateway). The
//! server's writer connection turns that off (`wal_autocheckpoint = 0`) and this task runs a
//! `PASSIVE` checkpoint on a connection of its own instead: it never takes the write lock, so
//! writers and readers go on while it copies and syncs.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::watch;

/// How often, at most, the log is copied into the database file while commits come in.
/// Between two checkpoints the log grows by what was written meanwhile (at 2,000 turns/s, some
/// tens of MiB).
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// A log grown past this is cut back to it once checkpointed, so a burst does not leave a large
/// file behind.
pub(super) const LOG_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Checkpoints after writes (`written` grows with each use of the writer's connection), at
/// most once per [`EVERY`], until `pool` is closed (the store's `close`) or the store is gone:
/// a database nobody writes to is never looked at, so a server at rest is not woken for it.
pub(super) fn spawn(pool: SqlitePool, mut written: watch::Receiver<u64>) {
    tokio::spawn(async move {
        loop {
            if written.changed().await.is_err() {
                return;
            }
            // The commits of the next moment join this checkpoint.
            tokio::time::sleep(EVERY).await;
            written.borrow_and_update();
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    return;
                }
                // A failed checkpoint loses nothing (the log keeps every commit); the next
                // write brings another.
                tracing::warn!(error = %e, "write-ahead-log checkpoint failed");
            }
        }
    });
}
