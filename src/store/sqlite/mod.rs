//! The embedded store: one SQLite file under `$MAESTRA_HOME`.

mod api_keys;
mod approvals;
mod checkpoint;
mod conversations;
mod data_keys;
mod ledger;
mod mem_ledger;
mod meta;
mod secrets;
pub mod snapshot;
mod turn_batch;
mod turns;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::store::changes::Changes;
use crate::store::codec::{from_json, to_i64, to_json, to_u64};
use crate::store::codec::{message, summary};
use crate::store::{
    ApiKeys, Context, Conversations, Ledger, Meta, SecretInfo, SecretRecord, Secrets, Store,
    ToolApprovals, Turn,
};

use crate::conversations::model::{Conversation, ConversationMeta, Summary};
use crate::error::{Error, Result};

/// How often `scrub` retries a checkpoint that a concurrent reader or writer kept from finishing.
const CHECKPOINT_ATTEMPTS: u32 = 5;

pub struct SqliteStore {
    /// Readers: WAL lets them run alongside the writer.
    pool: SqlitePool,
    /// One connection for every write. SQLite has one writer at a time anyway; queueing for
    /// this connection is fair and wakes at once, where competing connections would sleep in
    /// SQLite's busy handler with growing back-off (milliseconds of tail latency).
    writer: SqlitePool,
    /// Runs the write-ahead-log checkpoints (see `checkpoint`).
    checkpointer: SqlitePool,
    /// Conversation appends, group-committed on `writer` (see `turns`).
    turns: turns::TurnWriter,
    /// The cost ledger, checked in memory and written behind (see `mem_ledger`).
    ledger: mem_ledger::MemLedger,
    /// Changes to `meta`, this process's and others' (see `store::changes`).
    changes: Changes,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        crate::home::restrict_umask();
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Deleted content is overwritten with zeros, so erased data leaves no trace in the file.
            .pragma("secure_delete", "ON")
            // In WAL mode NORMAL never corrupts the database; it only lets a power cut (not a
            // crash of Maestra) lose the last commits. It saves an fsync per request, which
            // would otherwise dominate the gateway's latency.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .pragma(
                "journal_size_limit",
                checkpoint::LOG_LIMIT_BYTES.to_string(),
            );
        // A connection to a local file cannot go stale, and sqlx's default liveness ping costs
        // a round trip to the connection's worker thread on every acquire.
        let pool_options = || SqlitePoolOptions::new().test_before_acquire(false);
        // Commits never checkpoint: `checkpoint` does it on a connection of its own, after
        // the writer's connection comes back from a use (every write goes through it), so a
        // database nobody writes to is never looked at.
        let (wrote, written) = tokio::sync::watch::channel(0u64);
        let writer = pool_options()
            .max_connections(1)
            .after_release(move |_, _| {
                wrote.send_modify(|n| *n = n.wrapping_add(1));
                Box::pin(async { Ok(true) })
            })
            .connect_with(opts.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let pool = pool_options()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        let checkpointer = pool_options().max_connections(1).connect_with(opts).await?;
        checkpoint::spawn(checkpointer.clone(), written);
        let changes = Changes::of_sqlite(path);
        let ledger = mem_ledger::MemLedger::open(pool.clone(), writer.clone()).await?;
        let turns = turns::TurnWriter::start(writer.clone());
        Ok(SqliteStore {
            pool,
            writer,
            checkpointer,
            turns,
            ledger,
            changes,
        })
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    #[cfg(test)]
    fn turns(&self) -> &turns::TurnWriter {
        &self.turns
    }

    fn ledger(&self) -> &mem_ledger::MemLedger {
        &self.ledger
    }

    /// Starts a write transaction that holds the write lock from its first statement, so a
    /// read-then-write sequence inside it can never fail with `SQLITE_BUSY` half way.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

const MESSAGE_COLUMNS: &str = "id, role, content, surface, mode, timestamp, meta";
/// The conversation's header joined with its last `?2` messages, oldest first: one statement
/// for everything a model call reads.
const CONTEXT_SQL: &str = "
    SELECT c.owner AS c_owner, c.message_count AS c_count,
           m.id, m.role, m.content, m.surface, m.mode, m.timestamp, m.meta
    FROM conversations AS c
    LEFT JOIN (SELECT * FROM messages WHERE conversation_id = ?1 ORDER BY seq DESC LIMIT ?2) AS m
        ON 1 = 1
    WHERE c.id = ?1
    ORDER BY m.seq";

const SUMMARY_COLUMNS: &str = "id, topic, owner, surfaces, created_at, updated_at, message_count";

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        name: row.try_get("name")?,
        value: SecretString::from(row.try_get::<String, _>("value")?),
        encrypted: row.try_get::<i64, _>("encrypted")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn catch_up_changes(&self) {
        self.changes.catch_up();
    }

    /// Writes the queued turns and the ledger's queue, then closes every connection; the last
    /// one to close checkpoints the write-ahead log into the main file.
    async fn close(&self) {
        let _ = self.turns.close().await;
        let _ = self.ledger.flush().await;
        self.checkpointer.close().await;
        self.pool.close().await;
        self.writer.close().await;
    }
}
