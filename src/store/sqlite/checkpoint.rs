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

/// How often the log is copied into the database file. Between two checkpoints the log grows
/// by what was written meanwhile (at 2,000 turns/s, some tens of MiB).
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// A log grown past this is cut back to it once checkpointed, so a burst does not leave a large
/// file behind.
pub(super) const LOG_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Checkpoints every [`EVERY`] until `pool` is closed (the store's `close`).
pub(super) fn spawn(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
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
                // tick tries again.
                tracing::warn!(error = %e, "write-ahead-log checkpoint failed");
            }
        }
    });
}
