//! One group-commit batch of conversation turns, sent to SQLite as one query.
//!
//! Every SQL call through sqlx's SQLite driver is a round trip to the connection's worker
//! thread, and on this kind of machine that hand-off costs more CPU than the statement. So the
//! whole transaction — `BEGIN`, per turn an upsert of its conversation and an insert of its
//! messages, `COMMIT` — is one multi-statement query: one round trip per batch, however many
//! turns it holds. A refused turn (foreign owner, full conversation) writes nothing and does
//! not affect the others.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::oneshot;

use super::codec::{not_found, to_i64, to_json, too_large, value_rows};
use crate::conversations::model::{Message, now_millis};
use crate::error::{Error, Result};

/// Message rows per insert statement (9 parameters each).
const ROWS_PER_STATEMENT: usize = 100;
/// Batches of up to this many turns keep their prepared statements for the next batch of the
/// same shape (steady load repeats a few shapes); larger ones are prepared for one use.
const CACHED_BATCH: usize = 8;

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

/// Writes `jobs` in one transaction sent as one query; returns each one's outcome (a refusal),
/// or an error if the transaction failed and wrote nothing.
pub(super) async fn write(writer: &SqlitePool, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let now = now_millis();
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for (i, job) in jobs.iter().enumerate() {
        sql.push_str(GROW_SQL);
        sql.push_str(&format!(" RETURNING {i};"));
        for chunk in job.messages.chunks(ROWS_PER_STATEMENT) {
            sql.push_str(&messages_sql(chunk.len()));
        }
    }
    sql.push_str("COMMIT;");
    // Parameters are anonymous `?`s, bound in the order they appear across the statements.
    let mut query = sqlx::query(&sql).persistent(jobs.len() <= CACHED_BATCH);
    for job in jobs {
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
                query = query
                    .bind(k)
                    .bind(m.id.as_str())
                    .bind(m.role.as_str())
                    .bind(m.content.as_str())
                    .bind(m.surface.as_str())
                    .bind(m.mode.as_str())
                    .bind(m.timestamp)
                    .bind(to_json("message meta", &m.meta)?);
            }
            query = query.bind(job.conversation_id.as_str());
        }
    }

    let mut conn = writer.acquire().await?;
    let taken = match query.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            // The statements stop at the first failure, inside the transaction: end it, or the
            // connection would go back to the pool holding it; one that cannot is not reused.
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                conn.close_on_drop();
            }
            return Err(e.into());
        }
    };
    let mut accepted = vec![false; jobs.len()];
    for row in &taken {
        let i: i64 = row.try_get(0)?;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| accepted.get_mut(i)) {
            *slot = true;
        }
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, accepted) in jobs.iter().zip(accepted) {
        outcomes.push(match accepted {
            true => Ok(()),
            false => Err(refusal(&mut conn, job).await?),
        });
    }
    Ok(outcomes)
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
            q = q
                .bind(*conversation_id)
                .bind(*seq)
                .bind(&m.id)
                .bind(&m.role)
                .bind(&m.content)
                .bind(&m.surface)
                .bind(&m.mode)
                .bind(m.timestamp)
                .bind(to_json("message meta", &m.meta)?);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
