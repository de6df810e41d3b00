//! The embedded store: one SQLite file under `$MAESTRA_HOME`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

use super::codec::{from_json, to_i64, to_json, to_u64};
use super::{
    ApiKeyRecord, ApiKeys, Context, Conversations, Ledger, Meta, SecretInfo, SecretRecord, Secrets,
    Store, Turn,
};
use crate::cost::ledger::{Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Usage};

use crate::conversations::model::{Conversation, ConversationMeta, Message, Summary};
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
    /// Runs the write-ahead-log checkpoints (see `sqlite_checkpoint`).
    checkpointer: SqlitePool,
    /// Conversation appends, group-committed on `writer` (see `sqlite_turns`).
    turns: super::sqlite_turns::TurnWriter,
    /// The cost ledger, checked in memory and written behind (see `sqlite_ledger`).
    ledger: super::sqlite_ledger::MemLedger,
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
                super::sqlite_checkpoint::LOG_LIMIT_BYTES.to_string(),
            );
        // A connection to a local file cannot go stale, and sqlx's default liveness ping costs
        // a round trip to the connection's worker thread on every acquire.
        let pool_options = || SqlitePoolOptions::new().test_before_acquire(false);
        // Commits never checkpoint: `sqlite_checkpoint` does it on a connection of its own.
        let writer = pool_options()
            .max_connections(1)
            .connect_with(opts.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let pool = pool_options()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        let checkpointer = pool_options().max_connections(1).connect_with(opts).await?;
        super::sqlite_checkpoint::spawn(checkpointer.clone());
        let ledger = super::sqlite_ledger::MemLedger::open(pool.clone(), writer.clone()).await?;
        let turns = super::sqlite_turns::TurnWriter::start(writer.clone());
        Ok(SqliteStore {
            pool,
            writer,
            checkpointer,
            turns,
            ledger,
        })
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    #[cfg(test)]
    pub(super) fn turns(&self) -> &super::sqlite_turns::TurnWriter {
        &self.turns
    }

    pub(super) fn ledger(&self) -> &super::sqlite_ledger::MemLedger {
        &self.ledger
    }

    /// Starts a write transaction that holds the write lock from its first statement, so a
    /// read-then-write sequence inside it can never fail with `SQLITE_BUSY` half way.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn message(row: &SqliteRow) -> Result<Message> {
    Ok(Message {
        id: row.try_get("id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        surface: row.try_get("surface")?,
        mode: row.try_get("mode")?,
        timestamp: row.try_get("timestamp")?,
        meta: from_json("message meta", &row.try_get::<String, _>("meta")?)?,
    })
}

fn summary(row: &SqliteRow) -> Result<Summary> {
    Ok(Summary {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        owner: row.try_get("owner")?,
        surfaces: from_json("surfaces", &row.try_get::<String, _>("surfaces")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        message_count: to_u64(row.try_get("message_count")?),
    })
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
impl Secrets for SqliteStore {
    async fn secret_put(&self, r: &SecretRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (name, value, encrypted, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value,
                 encrypted = excluded.encrypted, updated_at = excluded.updated_at",
        )
        .bind(&r.name)
        .bind(r.value.expose_secret())
        .bind(r.encrypted as i64)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn secret_get(&self, name: &str) -> Result<Option<SecretRecord>> {
        let row = sqlx::query("SELECT * FROM secrets WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    async fn secret_list(&self) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query("SELECT name, encrypted, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: r.try_get("name")?,
                    encrypted: r.try_get::<i64, _>("encrypted")? != 0,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn secret_delete(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn secret_swap(
        &self,
        name: &str,
        expected: &SecretString,
        new_value: &SecretString,
        encrypted: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE secrets SET value = ?1, encrypted = ?2 WHERE name = ?3 AND value = ?4",
        )
        .bind(new_value.expose_secret())
        .bind(encrypted as i64)
        .bind(name)
        .bind(expected.expose_secret())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl Meta for SqliteStore {
    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = ?1")
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Conversations for SqliteStore {
    async fn conversation_append(&self, turn: &Turn<'_>) -> Result<()> {
        self.turns.append(turn).await
    }

    async fn conversation_get(&self, id: &str) -> Result<Option<Conversation>> {
        self.turns.settle(Some(id)).await?;
        // One read transaction, so the header and the messages come from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM conversations WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Conversation {
            id: row.try_get("id")?,
            topic: row.try_get("topic")?,
            owner: row.try_get("owner")?,
            surfaces: from_json("surfaces", &row.try_get::<String, _>("surfaces")?)?,
            tags: from_json("tags", &row.try_get::<String, _>("tags")?)?,
            messages: rows.iter().map(message).collect::<Result<_>>()?,
            artifacts: from_json("artifacts", &row.try_get::<String, _>("artifacts")?)?,
            meta: ConversationMeta {
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                status: row.try_get("status")?,
                message_count: to_u64(row.try_get("message_count")?),
            },
        }))
    }

    async fn conversation_summary(&self, id: &str) -> Result<Option<Summary>> {
        self.turns.settle(Some(id)).await?;
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM conversations WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(summary).transpose()
    }

    async fn conversation_context(&self, id: &str, limit: u32) -> Result<Option<Context>> {
        self.turns.settle(Some(id)).await?;
        let rows = sqlx::query(CONTEXT_SQL)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut recent = Vec::with_capacity(rows.len());
        for row in &rows {
            // The conversation's one row with no message joined has NULL message columns.
            if row.try_get::<Option<String>, _>("id")?.is_some() {
                recent.push(message(row)?);
            }
        }
        Ok(Some(Context {
            owner: first.try_get("c_owner")?,
            message_count: to_u64(first.try_get("c_count")?),
            recent,
        }))
    }

    async fn conversation_list(
        &self,
        owner: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Summary>> {
        self.turns.settle(None).await?;
        let rows = match owner {
            Some(owner) => {
                sqlx::query(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM conversations WHERE owner = ?1
                     ORDER BY updated_at DESC, id LIMIT ?2 OFFSET ?3"
                ))
                .bind(owner)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM conversations
                     ORDER BY updated_at DESC, id LIMIT ?1 OFFSET ?2"
                ))
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(summary).collect()
    }

    async fn conversation_delete(&self, id: &str) -> Result<bool> {
        self.turns.settle(Some(id)).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM messages WHERE conversation_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM conversations WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn conversations_delete_owner(&self, owner: &str) -> Result<u64> {
        self.turns.settle(None).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN
                 (SELECT id FROM conversations WHERE owner = ?1)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM conversations WHERE owner = ?1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn conversations_delete_before(&self, updated_before_ms: i64) -> Result<u64> {
        self.turns.settle(None).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN
                 (SELECT id FROM conversations WHERE updated_at < ?1)",
        )
        .bind(updated_before_ms)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM conversations WHERE updated_at < ?1")
            .bind(updated_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn conversation_import(&self, c: &Conversation) -> Result<bool> {
        self.turns.settle(Some(&c.id)).await?;
        let mut tx = self.begin_write().await?;
        // `message_count` is what is stored, not what the file claims: the limit on appends
        // counts real messages.
        let done = sqlx::query(
            "INSERT INTO conversations (id, owner, topic, surfaces, tags, artifacts, status,
                                        created_at, updated_at, message_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.owner)
        .bind(&c.topic)
        .bind(to_json("surfaces", &c.surfaces)?)
        .bind(to_json("tags", &c.tags)?)
        .bind(to_json("artifacts", &c.artifacts)?)
        .bind(&c.meta.status)
        .bind(c.meta.created_at)
        .bind(c.meta.updated_at)
        .bind(to_i64("message count", c.messages.len() as u64)?)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let rows: Vec<_> = (0..)
            .zip(&c.messages)
            .map(|(seq, m)| (c.id.as_str(), seq, m))
            .collect();
        super::sqlite_turn_batch::insert_messages(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deleted rows are already overwritten with zeros (`secure_delete`), but the pages that held
    /// them may still sit in the write-ahead log: a `TRUNCATE` checkpoint copies the latest pages
    /// into the main file and empties the log. A reader or writer in progress can keep it from
    /// finishing, so it is retried a few times before giving up with an error.
    async fn scrub(&self) -> Result<()> {
        self.turns.settle(None).await?;
        for attempt in 1..=CHECKPOINT_ATTEMPTS {
            let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.writer)
                .await?;
            let busy: i64 = row.try_get(0)?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        Err(Error::Store(
            "could not checkpoint the write-ahead log: the database stayed busy".into(),
        ))
    }
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        self.reserve(r, limits).await
    }

    async fn cost_recover(&self) -> Result<()> {
        self.ledger.recover().await
    }

    async fn cost_settle(&self, id: i64, spent: Micros) -> Result<()> {
        self.settle(id, spent).await
    }

    async fn cost_release(&self, id: i64) -> Result<()> {
        self.release(id).await
    }

    async fn cost_usage(&self, scope: &Scope, period: &str) -> Result<Usage> {
        self.usage(scope, period).await
    }

    async fn cost_charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        self.charges(since_day).await
    }

    async fn cost_import(&self, day: &str, spent: Micros, now_ms: i64) -> Result<bool> {
        self.import_spend(day, spent, now_ms).await
    }
}

#[async_trait]
impl ApiKeys for SqliteStore {
    async fn api_key_insert(&self, key: &ApiKeyRecord) -> Result<()> {
        self.key_insert(key).await
    }

    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.key_get(id).await
    }

    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        self.key_list().await
    }

    async fn api_key_revoke(&self, name_or_id: &str, now: i64) -> Result<bool> {
        self.key_revoke(name_or_id, now).await
    }

    async fn api_keys_revoke_all(&self, now: i64) -> Result<u64> {
        self.keys_revoke_all(now).await
    }

    async fn api_key_touch(&self, id: &str, now: i64) -> Result<()> {
        self.key_touch(id, now).await
    }
}

#[async_trait]
impl Store for SqliteStore {
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
