//! One group-commit batch of conversation turns, written to SQLite in one transaction.
//!
//! Every SQL call through sqlx's SQLite driver is a round trip to the connection's worker
//! thread, and on this kind of machine that hand-off costs more CPU than the statement. So the
//! turns go in groups, each one multi-statement query — per turn an upsert of its conversation
//! and an insert of its messages — between one `BEGIN` and one `COMMIT`: a batch of ten turns
//! is four round trips, not twenty-two. A refused turn (foreign owner, full conversation)
//! writes nothing and does not affect the others.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::oneshot;

use crate::conversations::model::{Message, now_millis};
use crate::error::{Error, Result};
use crate::store::codec::{not_found, to_i64, to_json, too_large, value_rows};

/// Message rows per insert statement (9 parameters each).
const ROWS_PER_STATEMENT: usize = 100;
/// A batch is sent in groups of these sizes (largest first), so that the statements of each
/// group shape are prepared once and reused. Preparing a batch's statements anew each time
/// cost more than the round trips the groups save.
const GROUPS: [usize; 4] = [8, 4, 2, 1];

/// A turn waiting in the writer's queue.
pub(super) struct Job {
    pub conversation_id: String,
    pub owner: String,
    pub topic: String,
    pub surface: String,
    pub messages: Vec<Message>,
    pub max_messages: u64,
    /// Who waits for the commit; `None` for a turn acknowledged before it (written behind).
    pub done: Option<oneshot::Sender<Result<()>>>,
}

/// Creates a conversation (`surfaces` given as a JSON array), or adds the turn's message count
/// to an existing one's when the caller owns it and the total stays within the limit (the last
/// parameter). A new surface joins `surfaces` the first time it is seen. A refused upsert
/// changes no row: the inserts of the turn's messages test that with `changes()`.
/// The batch appends `RETURNING <the turn's position>`, so its rows name the turns taken.
const GROW_SQL: &str = "
    INSERT INTO conversations (id, owner, topic, surfaces, created_at, updated_at, message_count)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(id) DO UPDATE SET
        message_count = message_count + excluded.message_count,
        updated_at = excluded.updated_at,
        surfaces = CASE
            WHEN ? = '' OR EXISTS (SELECT 1 FROM json_each(conversations.surfaces) WHERE value = ?)
                THEN surfaces
            ELSE json_insert(surfaces, '$[#]', ?)
        END
    WHERE owner = excluded.owner AND message_count + excluded.message_count <= ?";

/// Writes `jobs` in one transaction; returns each one's outcome (a refusal), or an error if the
/// transaction failed and wrote nothing.
pub(super) async fn write(writer: &SqlitePool, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let now = now_millis();
    // Dropped without a commit (an error below), the transaction rolls back.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut accepted = vec![false; jobs.len()];
    let mut start = 0;
    while start < jobs.len() {
        let size = GROUPS
            .into_iter()
            .find(|&g| g <= jobs.len() - start)
            .unwrap_or(1);
        let group = &jobs[start..start + size];
        let sql = group_sql(group);
        let query = bind_group(sqlx::query(&sql), group, now)?;
        for row in query.fetch_all(&mut *tx).await? {
            let i: i64 = row.try_get(0)?;
            if let Some(slot) = usize::try_from(i)
                .ok()
                .and_then(|i| accepted.get_mut(start + i))
            {
                *slot = true;
            }
        }
        start += size;
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, accepted) in jobs.iter().zip(accepted) {
        outcomes.push(match accepted {
            true => Ok(()),
            false => Err(refusal(&mut tx, job).await?),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The turns of `group` as one multi-statement query: per turn its upsert, `RETURNING` the
/// turn's position in the group when taken, then its messages. The text depends only on the
/// group's size and its turns' message counts, so under steady load a few prepared shapes
/// serve every batch.
fn group_sql(group: &[Job]) -> String {
    let mut sql = String::new();
    for (i, job) in group.iter().enumerate() {
        sql.push_str(GROW_SQL);
        sql.push_str(&format!(" RETURNING {i};"));
        for chunk in job.messages.chunks(ROWS_PER_STATEMENT) {
            sql.push_str(&messages_sql(chunk.len()));
        }
    }
    sql
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the parameters of [`group_sql`]: anonymous `?`s, in the order they appear across
/// the statements.
fn bind_group<'q>(mut query: Query<'q>, group: &'q [Job], now: i64) -> Result<Query<'q>> {
    for job in group {
        let count = job.messages.len();
        let surfaces = if job.surface.is_empty() {
            "[]".to_owned()
        } else {
            to_json("surfaces", &[&job.surface])?
        };
        query = query
            .bind(job.conversation_id.as_str())
            .bind(job.owner.as_str())
            .bind(job.topic.as_str())
            .bind(surfaces)
            .bind(now)
            .bind(now)
            .bind(to_i64("message count", count as u64)?)
            .bind(job.surface.as_str())
            .bind(job.surface.as_str())
            .bind(job.surface.as_str())
            .bind(to_i64("message limit", job.max_messages)?);
        for (start, chunk) in (0..)
            .step_by(ROWS_PER_STATEMENT)
            .zip(job.messages.chunks(ROWS_PER_STATEMENT))
        {
            query = query.bind(to_i64("message count", (count - start) as u64)?);
            for (k, m) in (0i64..).zip(chunk) {
                query = bind_message(query.bind(k), m)?;
            }
            query = query.bind(job.conversation_id.as_str());
        }
    }
    Ok(query)
}

/// Binds a message's stored columns, in table order from `id` to `meta`.
fn bind_message<'q>(query: Query<'q>, m: &'q Message) -> Result<Query<'q>> {
    Ok(query
        .bind(m.id.as_str())
        .bind(m.role.as_str())
        .bind(m.content.as_str())
        .bind(m.surface.as_str())
        .bind(m.mode.as_str())
        .bind(m.timestamp)
        .bind(to_json("message meta", &m.meta)?))
}

/// One chunk of a turn's messages, inserted only if the statement before it (the turn's
/// upsert, or its previous chunk) changed rows. `seq` counts on from the conversation's count
/// before the turn: the first parameter is how many of the turn's messages are in this chunk
/// and after it, and each row's first value is its position in the chunk.
fn messages_sql(rows: usize) -> String {
    format!(
        "INSERT INTO messages
             (conversation_id, seq, id, role, content, surface, mode, timestamp, meta)
         SELECT c.id, c.message_count - ? + v.column1, v.column2, v.column3, v.column4,
                v.column5, v.column6, v.column7, v.column8
         FROM conversations AS c, (VALUES {}) AS v
         WHERE c.id = ? AND changes() > 0;",
        value_rows(rows, 8, false)
    )
}

/// Why the upsert of `job` changed nothing, from the conversation as it stands.
async fn refusal(conn: &mut sqlx::SqliteConnection, job: &Job) -> Result<Error> {
    let id = job.conversation_id.as_str();
    let owner: Option<String> = sqlx::query_scalar("SELECT owner FROM conversations WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match owner {
        Some(owner) if owner == job.owner => too_large(id, job.max_messages),
        _ => not_found(id),
    })
}

/// Inserts `(conversation id, seq, message)` rows in multi-row statements.
pub(super) async fn insert_messages(
    conn: &mut sqlx::SqliteConnection,
    rows: &[(&str, i64, &Message)],
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values = value_rows(chunk.len(), 9, false);
        let sql = format!(
            "INSERT INTO messages
                 (conversation_id, seq, id, role, content, surface, mode, timestamp, meta)
             VALUES {values}"
        );
        let mut q = sqlx::query(&sql);
        for (conversation_id, seq, m) in chunk {
            q = bind_message(q.bind(*conversation_id).bind(*seq), m)?;
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::prelude::*;

    fn job(id: &str, owner: &str, n: usize, max_messages: u64) -> Job {
        Job {
            conversation_id: id.into(),
            owner: owner.into(),
            topic: "t".into(),
            surface: "cli".into(),
            messages: (0..n)
                .map(|i| Message {
                    id: format!("{id}-{owner}-{i}"),
                    role: "user".into(),
                    content: format!("{i}"),
                    surface: "cli".into(),
                    mode: "chat".into(),
                    timestamp: 1,
                    meta: serde_json::Value::Null,
                })
                .collect(),
            max_messages,
            done: None,
        }
    }

    /// Thirteen turns go as groups of 8, 4 and 1: each turn's outcome must come back to its own
    /// position, refusals included, and turns of one conversation must count on in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outcomes_follow_their_turns_across_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        write(store.writer(), &[job("bobs", "bob", 1, 100)])
            .await
            .unwrap();
        let jobs: Vec<Job> = (0..13)
            .map(|i| match i % 4 {
                // Someone else's conversation: refused as not found.
                1 => job("bobs", "alice", 2, 100),
                // A conversation that only has room for its first turn: later ones too large.
                2 => job("tight", "alice", 2, 2),
                // One conversation growing turn by turn.
                3 => job("shared", "alice", 2, 100),
                _ => job(&format!("own-{i}"), "alice", 2, 100),
            })
            .collect();
        let outcomes = write(store.writer(), &jobs).await.unwrap();
        for (i, outcome) in outcomes.iter().enumerate() {
            match (i % 4, outcome) {
                (1, Err(Error::NotFound(_))) => {}
                (2, Err(Error::TooLarge(_))) if i > 2 => {}
                (0 | 3, Ok(())) => {}
                (2, Ok(())) if i == 2 => {}
                other => panic!("turn {i}: {other:?}"),
            }
        }
        let shared = store.conversation_get("shared").await.unwrap().unwrap();
        assert_eq!(shared.meta.message_count, 6);
        let ids: Vec<&str> = shared.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["shared-alice-0", "shared-alice-1"].repeat(3));
        for (id, count) in [("bobs", 1), ("tight", 2)] {
            let c = store.conversation_get(id).await.unwrap().unwrap();
            assert_eq!(c.meta.message_count, count, "{id}");
        }
    }
}
