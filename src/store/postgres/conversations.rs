//! The shared store's conversations and messages.

use async_trait::async_trait;

use super::*;
use crate::store::codec::{
    RAW_CONVERSATION_REWRITE_SQL, RAW_CONVERSATIONS_SQL, RAW_MESSAGE_REWRITE_SQL, RAW_MESSAGES_SQL,
    dollars, raw_conversation, raw_message,
};
use crate::store::{RawContent, RawConversation, RawMessage};

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
    /// backups, which the operator's retention governs. When older transactions or a backup's
    /// locks are in the way it is deferred and retried, not waited for (see `scrub`).
    async fn scrub(&self) -> Result<()> {
        self.scrubber.scrub().await
    }
}

#[async_trait]
impl RawContent for PostgresStore {
    async fn raw_conversations(&self, after: &str, limit: u32) -> Result<Vec<RawConversation>> {
        let rows = sqlx::query(&dollars(RAW_CONVERSATIONS_SQL))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(raw_conversation).collect()
    }

    async fn raw_messages(&self, after: (&str, i64), limit: u32) -> Result<Vec<RawMessage>> {
        let rows = sqlx::query(&dollars(RAW_MESSAGES_SQL))
            .bind(after.0)
            .bind(after.1)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(raw_message).collect()
    }

    async fn raw_conversations_rewrite(
        &self,
        rows: &[(RawConversation, RawConversation)],
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for (old, new) in rows {
            changed += sqlx::query(&dollars(RAW_CONVERSATION_REWRITE_SQL))
                .bind(&new.topic)
                .bind(&new.tags)
                .bind(&new.artifacts)
                .bind(&old.id)
                .bind(&old.owner)
                .bind(&old.topic)
                .bind(&old.tags)
                .bind(&old.artifacts)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn raw_messages_rewrite(&self, rows: &[(RawMessage, RawMessage)]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for (old, new) in rows {
            changed += sqlx::query(&dollars(RAW_MESSAGE_REWRITE_SQL))
                .bind(&new.content)
                .bind(&new.meta)
                .bind(&old.conversation_id)
                .bind(old.seq)
                .bind(&old.content)
                .bind(&old.meta)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn raw_counts(&self) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM conversations), (SELECT COUNT(*) FROM messages)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((to_u64(row.try_get(0)?), to_u64(row.try_get(1)?)))
    }
}
