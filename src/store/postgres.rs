//! The shared store: one PostgreSQL database for several `maestra serve` instances (SPEC §6).
//!
//! Same semantics as the embedded SQLite store; every multi-statement operation is one
//! transaction, and concurrent appends to one conversation are serialised by a row lock.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};

use super::codec::{add_surface, from_json, not_found, to_i64, to_json, to_u64, too_large};
use super::{
    ApiKeyRecord, ApiKeys, Context, Conversations, Ledger, Meta, SecretInfo, SecretRecord, Secrets,
    Store, Turn,
};
use crate::cost::ledger::{Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Usage};

use crate::conversations::model::{Conversation, ConversationMeta, Message, Summary, now_millis};
use crate::error::Result;

/// Connections per instance: several instances share one server, so each keeps few.
const MAX_CONNECTIONS: u32 = 8;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host/db`) and applies the migrations.
    /// Neither the URL nor its password ever appears in an error.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock around the migrations, so instances starting together
        // do not race each other.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn record(row: &PgRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        name: row.try_get("name")?,
        value: SecretString::from(row.try_get::<String, _>("value")?),
        encrypted: row.try_get("encrypted")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message(row: &PgRow) -> Result<Message> {
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

fn summary(row: &PgRow) -> Result<Summary> {
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
const SUMMARY_COLUMNS: &str = "id, topic, owner, surfaces, created_at, updated_at, message_count";

async fn insert_message(
    conn: &mut PgConnection,
    conversation_id: &str,
    seq: i64,
    m: &Message,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages
             (conversation_id, seq, id, role, content, surface, mode, timestamp, meta)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(conversation_id)
    .bind(seq)
    .bind(&m.id)
    .bind(&m.role)
    .bind(&m.content)
    .bind(&m.surface)
    .bind(&m.mode)
    .bind(m.timestamp)
    .bind(to_json("message meta", &m.meta)?)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Secrets for PostgresStore {
    async fn secret_put(&self, r: &SecretRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (name, value, encrypted, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value,
                 encrypted = EXCLUDED.encrypted, updated_at = EXCLUDED.updated_at",
        )
        .bind(&r.name)
        .bind(r.value.expose_secret())
        .bind(r.encrypted)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn secret_get(&self, name: &str) -> Result<Option<SecretRecord>> {
        let row = sqlx::query(
            "SELECT name, value, encrypted, created_at, updated_at FROM secrets WHERE name = $1",
        )
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
                    encrypted: r.try_get("encrypted")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn secret_delete(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
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
            "UPDATE secrets SET value = $1, encrypted = $2 WHERE name = $3 AND value = $4",
        )
        .bind(new_value.expose_secret())
        .bind(encrypted)
        .bind(name)
        .bind(expected.expose_secret())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl Meta for PostgresStore {
    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Conversations for PostgresStore {
    async fn conversation_append(&self, turn: &Turn<'_>) -> Result<()> {
        let id = turn.conversation_id;
        let now = now_millis();
        // Any early return drops `tx`, which rolls back: a refused append writes nothing.
        let mut tx = self.pool.begin().await?;
        // A concurrent creator of the same id waits here on the primary key until the first
        // commits; then this does nothing.
        sqlx::query(
            "INSERT INTO conversations (id, owner, topic, created_at, updated_at, message_count)
             VALUES ($1, $2, $3, $4, $4, 0)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(turn.owner)
        .bind(turn.topic)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The row lock serialises appends to one conversation across instances, so the count
        // check and the sequence numbers below cannot race.
        let row = sqlx::query(
            "SELECT owner, surfaces, message_count FROM conversations WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        // Deleted between the two statements: as good as someone else's.
        .ok_or_else(|| not_found(id))?;
        if row.try_get::<String, _>("owner")? != turn.owner {
            return Err(not_found(id));
        }
        let count = to_u64(row.try_get("message_count")?);
        let new_count = count.saturating_add(turn.messages.len() as u64);
        if new_count > turn.max_messages {
            return Err(too_large(id, turn.max_messages));
        }
        let mut surfaces: Vec<String> =
            from_json("surfaces", &row.try_get::<String, _>("surfaces")?)?;
        add_surface(&mut surfaces, turn.surface);

        let mut seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE conversation_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        for m in turn.messages {
            insert_message(&mut tx, id, seq, m).await?;
            seq += 1;
        }
        sqlx::query(
            "UPDATE conversations SET surfaces = $1, updated_at = $2, message_count = $3
             WHERE id = $4",
        )
        .bind(to_json("surfaces", &surfaces)?)
        .bind(now)
        .bind(to_i64("message count", new_count)?)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn conversation_get(&self, id: &str) -> Result<Option<Conversation>> {
        // One snapshot for the header and the messages.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let Some(row) = sqlx::query(
            "SELECT id, owner, topic, surfaces, tags, artifacts, status, created_at, updated_at,
                    message_count
             FROM conversations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
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
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM conversations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(summary).transpose()
    }

    async fn conversation_context(&self, id: &str, limit: u32) -> Result<Option<Context>> {
        let rows = sqlx::query(
            "SELECT c.owner AS c_owner, c.message_count AS c_count,
                    m.id, m.role, m.content, m.surface, m.mode, m.timestamp, m.meta
             FROM conversations AS c
             LEFT JOIN (SELECT * FROM messages WHERE conversation_id = $1
                        ORDER BY seq DESC LIMIT $2) AS m ON TRUE
             WHERE c.id = $1
             ORDER BY m.seq",
        )
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
        let rows = match owner {
            Some(owner) => {
                sqlx::query(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM conversations WHERE owner = $1
                     ORDER BY updated_at DESC, id LIMIT $2 OFFSET $3"
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
                     ORDER BY updated_at DESC, id LIMIT $1 OFFSET $2"
                ))
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(summary).collect()
    }

    // The deletes below are single statements: `ON DELETE CASCADE` removes the messages in the
    // same statement, including any an append racing with the delete has just added.

    async fn conversation_delete(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM conversations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn conversations_delete_owner(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM conversations WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn conversations_delete_before(&self, updated_before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM conversations WHERE updated_at < $1")
            .bind(updated_before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn conversation_import(&self, c: &Conversation) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // `message_count` is what is stored, not what the file claims: the limit on appends
        // counts real messages.
        let done = sqlx::query(
            "INSERT INTO conversations (id, owner, topic, surfaces, tags, artifacts, status,
                                        created_at, updated_at, message_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING",
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
        for (seq, m) in (0_i64..).zip(&c.messages) {
            insert_message(&mut tx, &c.id, seq, m).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// `VACUUM (FULL)` rewrites the tables that hold user content. PostgreSQL's MVCC never
    /// overwrites a row in place: a deleted row stays in its page as a dead tuple, readable by
    /// anyone with the data files, until a vacuum reclaims it, and a plain `VACUUM` only marks
    /// the space reusable. `FULL` copies the live rows into new files and drops the old ones.
    /// It takes an exclusive lock on each table for the duration, so other instances wait
    /// briefly. What it cannot reach: WAL segments not yet recycled, replicas' own copies and
    /// backups, which the operator's retention governs.
    async fn scrub(&self) -> Result<()> {
        // The simple query protocol, since VACUUM may not run inside a transaction block.
        sqlx::raw_sql("VACUUM (FULL) messages, conversations, secrets")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for PostgresStore {
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        self.reserve(r, limits).await
    }

    async fn cost_recover(&self) -> Result<()> {
        self.recover().await
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
impl ApiKeys for PostgresStore {
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
impl Store for PostgresStore {
    /// Closes every connection of the pool (nothing is held back in memory).
    async fn close(&self) {
        self.pool.close().await;
    }
}
