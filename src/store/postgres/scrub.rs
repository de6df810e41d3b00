//! Making deleted content leave PostgreSQL's files, without stalling the server to do it.
//!
//! `VACUUM FULL` copies into its new files every row that a running transaction may still
//! see: a row deleted a moment ago survives the rewrite while a transaction older than the
//! delete is open — one of this database's sessions, a session of another database on the same
//! server (seen in the tests, which run many databases at once), a replica's feedback or a
//! replication slot. The scrub would then leave the deleted content (plaintext
//! from before encryption, a forgotten user's ciphertext and wrapped key) in the files. So it
//! first waits, briefly, until those transactions have ended.
//!
//! Some wait longer than a request can: a backup's `pg_dump` keeps its snapshot, and a share
//! lock on every table, for the whole dump. Rewriting then would keep the rows, and the
//! rewrite's exclusive lock, queued behind the dump's, would queue every other query of the
//! server behind it. So a scrub that cannot start cleanly within [`PATIENCE`], or cannot lock
//! a table in time ([`SET_LOCK_TIMEOUT`]), is deferred: a marker in `meta` records that one is
//! owed, and a task retries every [`RETRY`] until one succeeds; any process that opens the
//! store takes up a marker a process that stopped first left behind. Until then the deleted
//! rows sit in dead tuples (for a forgotten user: ciphertext whose key is already destroyed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::Mutex;

use crate::error::Result;
use crate::store::SCRUB_OWED;

/// How long a scrub waits for older transactions before it defers.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the rewrite may wait for a table's lock before it defers.
const SET_LOCK_TIMEOUT: &str = "SET lock_timeout = '2s'";
/// How often a deferred scrub is tried again.
const RETRY: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);
/// The tables that hold user content; `data_keys` so a forgotten user's wrapped key leaves
/// the files too.
const VACUUM_SQL: &str = "VACUUM (FULL) messages, conversations, secrets, data_keys";
/// SQLSTATE `lock_not_available`: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Sessions (other than the asking one) with a snapshot or a transaction id older than the
/// transaction id `$1`, and replication slots holding rows back, in every database of the
/// server. PostgreSQL 14 and later are documented to hold a table's dead rows back only for
/// sessions of its own database (and a few server-wide ones), and this query once counted
/// only those; but on PostgreSQL 15 the tests saw deleted rows survive the rewrite while
/// other databases' sessions were busy (4 of 8 runs of `tests/encryption.rs` with 16 threads,
/// 0 of 12 once every session counted). A scrub that waits a little longer, or is owed a
/// little longer, costs nothing; one that leaves deleted content in the files breaks a promise.
/// `pg_stat_activity` shows every session's horizon to every role.
const OLDER_SQL: &str = "
    SELECT (SELECT COUNT(*) FROM pg_stat_activity
            WHERE pid <> pg_backend_pid()
              AND (age(backend_xmin) > age($1::text::xid)
                   OR age(backend_xid) > age($1::text::xid)))
         + (SELECT COUNT(*) FROM pg_replication_slots
            WHERE age(xmin) > age($1::text::xid))";

#[derive(Default)]
struct Owed {
    /// Bumped by every deferral, so a retry that began before one does not settle it.
    deferrals: u64,
    retrying: bool,
}

/// One store's scrubs: done at once when possible, else owed and retried.
#[derive(Clone)]
pub(super) struct Scrubber {
    pool: PgPool,
    /// Held across the marker's writes, so the marker and this state agree.
    owed: Arc<Mutex<Owed>>,
}

impl Scrubber {
    pub fn new(pool: PgPool) -> Scrubber {
        Scrubber {
            pool,
            owed: Arc::default(),
        }
    }

    /// Rewrites the content tables now, or defers that (see the module's docs). Runs on a task
    /// of its own, so a caller that goes away (a client hanging up) cannot stop it half-way:
    /// with a session setting in place, or between a failed try and the marker.
    pub async fn scrub(&self) -> Result<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if attempt(&this.pool).await? {
                return Ok(());
            }
            tracing::warn!(
                "scrub deferred: an older transaction (a backup's snapshot?) or a table lock is \
                 in the way; retrying every {}s",
                RETRY.as_secs()
            );
            this.defer(RETRY).await
        })
        .await
        .map_err(|e| {
            crate::error::Error::Store("the scrub stopped unexpectedly".into()).because(e)
        })?
    }

    /// Takes up a scrub owed by this or another process (`maestra forget` from the command line
    /// exits before its own retry would run): tried at once, on a task, then retried.
    pub async fn resume_owed(&self) -> Result<()> {
        match owed_marker(&self.pool).await? {
            Some(_) => self.defer(Duration::ZERO).await,
            None => Ok(()),
        }
    }

    async fn defer(&self, first_try_in: Duration) -> Result<()> {
        let mut owed = self.owed.lock().await;
        owed.deferrals += 1;
        // A value of its own, so a retry clears only the marker it has seen.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(SCRUB_OWED)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .execute(&self.pool)
        .await?;
        if !owed.retrying {
            owed.retrying = true;
            tokio::spawn(self.clone().retry(first_try_in));
        }
        Ok(())
    }

    async fn retry(self, mut wait: Duration) {
        loop {
            tokio::time::sleep(wait).await;
            wait = RETRY;
            if self.pool.is_closed() {
                return; // the store was closed: the marker stays for the next start
            }
            let before = self.owed.lock().await.deferrals;
            let seen = match owed_marker(&self.pool).await {
                Ok(seen) => seen,
                Err(_) => continue,
            };
            match attempt(&self.pool).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "deferred scrub failed; retrying");
                    continue;
                }
            }
            let mut owed = self.owed.lock().await;
            if owed.deferrals != before {
                continue; // deferred again while this one ran: it may not cover that delete
            }
            // Only the marker seen before the scrub: one written since (another process's
            // deferral) stays, and is retried here.
            let cleared = sqlx::query("DELETE FROM meta WHERE key = $1 AND value = $2")
                .bind(SCRUB_OWED)
                .bind(seen.unwrap_or_default())
                .execute(&self.pool)
                .await
                .map_err(crate::error::Error::from);
            match (cleared, owed_marker(&self.pool).await) {
                (Ok(_), Ok(None)) => {}
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot clear the owed-scrub marker; retrying");
                    continue;
                }
                (Ok(_), Ok(Some(_))) => continue,
            }
            owed.retrying = false;
            tracing::info!("owed scrub done");
            return;
        }
    }
}

/// The owed-scrub marker's value, if a scrub is owed.
async fn owed_marker(pool: &PgPool) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
            .bind(SCRUB_OWED)
            .fetch_optional(pool)
            .await?,
    )
}

/// One scrub, if it can run cleanly now: `false` when older transactions outlast
/// [`PATIENCE`] or a table's lock is not granted in time ([`SET_LOCK_TIMEOUT`]). Boxed, so the
/// future is `Send` by declaration: the compiler cannot prove it through sqlx's executor
/// lifetimes when a spawned task awaits it.
fn attempt(pool: &PgPool) -> BoxFuture<'_, Result<bool>> {
    Box::pin(async move {
        if !older_transactions_end(pool).await? {
            return Ok(false);
        }
        let mut conn = pool.acquire().await?;
        vacuum(&mut conn).await
    })
}

async fn vacuum(conn: &mut PgConnection) -> Result<bool> {
    // Outside any transaction block, as VACUUM must be; the timeout set for this session
    // only, and reset before the connection goes back to the pool.
    let statement = |sql| sqlx::query(sql).persistent(false);
    statement(SET_LOCK_TIMEOUT).execute(&mut *conn).await?;
    let vacuum = statement(VACUUM_SQL).execute(&mut *conn).await;
    statement("RESET lock_timeout").execute(&mut *conn).await?;
    match vacuum {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether every transaction that began before this call has ended within [`PATIENCE`].
async fn older_transactions_end(pool: &PgPool) -> Result<bool> {
    // A fresh transaction id: every transaction older than it may hold a snapshot from before
    // the deletes this scrub is for. 32 bits, as `pg_stat_activity` shows them.
    let now: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(pool)
        .await?;
    let now = (now % (1 << 32)).to_string();
    let start = Instant::now();
    loop {
        let older: i64 = sqlx::query_scalar(OLDER_SQL)
            .bind(&now)
            .fetch_one(pool)
            .await?;
        if older == 0 {
            return Ok(true);
        }
        if start.elapsed() > PATIENCE {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}
