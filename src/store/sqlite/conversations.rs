//! The embedded store's conversations and messages.

use async_trait::async_trait;

use super::*;
use crate::store::codec::{
    RAW_CONVERSATION_REWRITE_SQL, RAW_CONVERSATIONS_SQL, RAW_MESSAGE_REWRITE_SQL, RAW_MESSAGES_SQL,
    raw_conversation, raw_message,
};
use crate::store::{RawContent, RawConversation, RawMessage};

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
        turn_batch::insert_messages(&mut tx, &rows).await?;
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
impl RawContent for SqliteStore {
    async fn raw_conversations(&self, after: &str, limit: u32) -> Result<Vec<RawConversation>> {
        self.turns.settle(None).await?;
        let rows = sqlx::query(RAW_CONVERSATIONS_SQL)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(raw_conversation).collect()
    }

    async fn raw_messages(&self, after: (&str, i64), limit: u32) -> Result<Vec<RawMessage>> {
        self.turns.settle(None).await?;
        let rows = sqlx::query(RAW_MESSAGES_SQL)
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
        self.turns.settle(None).await?;
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        for (old, new) in rows {
            changed += sqlx::query(RAW_CONVERSATION_REWRITE_SQL)
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
        self.turns.settle(None).await?;
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        for (old, new) in rows {
            changed += sqlx::query(RAW_MESSAGE_REWRITE_SQL)
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
        self.turns.settle(None).await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM conversations), (SELECT COUNT(*) FROM messages)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((to_u64(row.try_get(0)?), to_u64(row.try_get(1)?)))
    }
}
