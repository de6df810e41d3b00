//! Making deleted content leave PostgreSQL's files, without stalling the server to do it.
//!
//! `VACUUM FULL` copies into its new files every row that a running transaction may still
//! see: a row deleted a moment ago survives the rewrite while a transaction older than the
//! delete is open: this database's sessions, and a `CREATE DATABASE` anywhere on the server
//! (seen in the tests, where another test's database was being created). The scrub would then leave a forgotten user's content,
//! or their wrapped data key, in the files. So it first waits, briefly, until every
//! transaction of the server that began before it has ended.
//!
//! Some wait longer than a request can: a backup's `pg_dump` keeps its snapshot, and a share
//! lock on every table, for the whole dump. Rewriting then would keep the rows, and the
//! rewrite's exclusive lock, queued behind the dump's, would queue every other query of the
//! server behind it. So a scrub that cannot start cleanly within [`PATIENCE`], or cannot lock
//! a table within [`SET_LOCK_TIMEOUT`], is deferred: a marker in `meta` records that one is owed,
//! and a task retries every [`RETRY`] until one succeeds. The next start of any process takes
//! up a marker left by a process that stopped first. Meanwhile the deleted rows sit in dead
//! tuples; a forgotten user's are ciphertext whose key is already destroyed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::Mutex;

use crate::error::Result;

/// How long a scrub waits for older transactions before it defers.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the rewrite may wait for a table's lock before it defers.
const SET_LOCK_TIMEOUT: &str = "SET lock_timeout = '2s'";
/// How often a deferred scrub is tried again.
const RETRY: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);
/// Meta key present while a scrub is owed.
const PENDING: &str = "store.scrub_pending";
/// The tables that hold user content; `data_keys` so a forgotten user's wrapped key leaves
/// the files too.
const VACUUM_SQL: &str = "VACUUM (FULL) messages, conversations, secrets, data_keys";
/// SQLSTATE `lock_not_available`: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Sessions (other than the asking one) with a snapshot or a transaction id older than the
/// transaction id `$1`. `pg_stat_activity` shows both to every role. Since PostgreSQL 14 a
/// session holds back only its own database's tables, so sessions of other databases (other
/// instances' databases, the tests' own) count only before 14 — and a `CREATE DATABASE`,
/// which was seen to hold back every database's.
const OLDER_SQL: &str = "
    SELECT COUNT(*) FROM pg_stat_activity
    WHERE pid <> pg_backend_pid()
      AND (datname = current_database()
           OR current_setting('server_version_num')::int < 140000
           OR query ILIKE 'create database%')
      AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid))";

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

    /// Rewrites the content tables now, or defers that (see the module's docs).
    pub async fn scrub(&self) -> Result<()> {
        if attempt(&self.pool).await? {
            return Ok(());
        }
        tracing::warn!(
            "scrub deferred: an older transaction (a backup's snapshot?) or a table lock is in \
             the way; retrying every {}s",
            RETRY.as_secs()
        );
        self.defer().await
    }

    /// Takes up a scrub that a process which stopped first still owed.
    pub async fn resume_owed(&self) -> Result<()> {
        let owed = sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
            .bind(PENDING)
            .fetch_optional(&self.pool)
            .await?;
        match owed {
            Some(_) => self.defer().await,
            None => Ok(()),
        }
    }

    async fn defer(&self) -> Result<()> {
        let mut owed = self.owed.lock().await;
        owed.deferrals += 1;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(PENDING)
        .bind(crate::conversations::model::format_millis(
            crate::conversations::model::now_millis(),
        ))
        .execute(&self.pool)
        .await?;
        if !owed.retrying {
            owed.retrying = true;
            tokio::spawn(self.clone().retry());
        }
        Ok(())
    }

    async fn retry(self) {
        loop {
            tokio::time::sleep(RETRY).await;
            if self.pool.is_closed() {
                return; // the store was closed: the marker stays for the next start
            }
            let before = self.owed.lock().await.deferrals;
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
            let cleared = sqlx::query("DELETE FROM meta WHERE key = $1")
                .bind(PENDING)
                .execute(&self.pool)
                .await;
            if let Err(e) = cleared {
                tracing::warn!(error = %e, "cannot clear the owed-scrub marker; retrying");
                continue;
            }
            owed.retrying = false;
            tracing::info!("deferred scrub done");
            return;
        }
    }
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
