//! Waiting for the transactions that could still see deleted rows, before a scrub.
//!
//! `VACUUM FULL` copies into its new files every row that a running transaction may still
//! see: a row deleted a moment ago survives the rewrite while a transaction older than the
//! delete is open. That is not only this database's sessions: a `CREATE DATABASE` anywhere on
//! the server holds back what every database may remove (seen in the tests, where another
//! test's database was being created). The scrub would then leave a forgotten user's content,
//! or their wrapped data key, in the files. So it first waits, briefly, until every
//! transaction of the server that began before it has ended.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

use crate::error::Result;

/// How long a scrub waits for older transactions before it rewrites anyway (and says so).
const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// Sessions (other than the asking one) with a snapshot or a transaction id older than the
/// transaction id `$1`. `pg_stat_activity` shows both to every role.
const OLDER_SQL: &str = "
    SELECT COUNT(*) FROM pg_stat_activity
    WHERE pid <> pg_backend_pid()
      AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid))";

/// Returns once no transaction that began before this call is still open, or after
/// [`PATIENCE`].
pub(super) async fn wait_for_older_transactions(pool: &PgPool) -> Result<()> {
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
            return Ok(());
        }
        if start.elapsed() > PATIENCE {
            tracing::warn!(
                transactions = older,
                "scrub: transactions older than the deletes are still open; rows they can see \
                 stay in the rewritten files until the next scrub"
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}
