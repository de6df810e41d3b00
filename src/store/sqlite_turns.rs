//! Conversation appends with group commit.
//!
//! Every SQL call through sqlx's SQLite driver is a round trip to the connection's worker
//! thread, and on this kind of machine that hand-off costs more CPU than the statement: at
//! 2,000 turns/s the hand-offs of a statement-by-statement transaction made the whole p99 tail
//! of the gateway. So appends queue for one task that writes whatever has gathered while it was
//! busy, and sends the whole transaction as one multi-statement query — `BEGIN`, per turn an
//! upsert of its conversation and an insert of its messages, `COMMIT` — one round trip per
//! batch. Nobody waits for a batch to fill: an idle writer takes a turn at once. Each caller
//! still waits for its own turn's commit, and a refused turn (foreign owner, full conversation)
//! writes nothing and does not affect the others.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::Turn;
use super::codec::{not_found, to_i64, to_json, too_large, value_rows};
use crate::conversations::model::{Message, now_millis};
use crate::error::{Error, Result};

/// Turns waiting to be written, at most; a full queue makes callers wait.
const QUEUE: usize = 4_096;
/// Turns written in one transaction, at most.
const BATCH: usize = 256;
/// Message rows per insert statement (9 parameters each).
const ROWS_PER_STATEMENT: usize = 100;
/// Batches of up to this many turns keep their prepared statements for the next batch of the
/// same shape (steady load repeats a few shapes); larger ones are prepared for one use.
const CACHED_BATCH: usize = 8;

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

/// A [`Turn`] that can wait in the queue.
struct Job {
    conversation_id: String,
    owner: String,
    topic: String,
    surface: String,
    messages: Vec<Message>,
    max_messages: u64,
    done: oneshot::Sender<Result<()>>,
}

pub(super) struct TurnWriter {
    tx: mpsc::Sender<Job>,
}

impl TurnWriter {
    /// Starts the writer task on the store's one writer connection.
    pub fn start(writer: SqlitePool) -> TurnWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, rx));
        TurnWriter { tx }
    }

    /// Appends `turn` and waits until it is committed or refused.
    pub async fn append(&self, turn: &Turn<'_>) -> Result<()> {
        if turn.messages.len() as u64 > turn.max_messages {
            return Err(too_large(turn.conversation_id, turn.max_messages));
        }
        let (done, result) = oneshot::channel();
        let job = Job {
            conversation_id: turn.conversation_id.to_owned(),
            owner: turn.owner.to_owned(),
            topic: turn.topic.to_owned(),
            surface: turn.surface.to_owned(),
            messages: turn.messages.to_vec(),
            max_messages: turn.max_messages,
            done,
        };
        let stopped = || Error::Store("the conversation writer stopped".into());
        self.tx.send(job).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run(writer: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match write(&writer, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.done.send(outcome);
                }
            }
            // The batch rolled back whole; each turn is tried on its own so that one turn's
            // failure is reported to its caller alone.
            Err(_) => {
                for job in batch.drain(..) {
                    let outcome = match write(&writer, std::slice::from_ref(&job)).await {
                        Ok(mut one) => one.pop().unwrap_or(Ok(())),
                        Err(e) => Err(e),
                    };
                    let _ = job.done.send(outcome);
                }
            }
        }
    }
}

/// Writes `jobs` in one transaction sent as one query; returns each one's outcome (a refusal),
/// or an error if the transaction failed and wrote nothing.
async fn write(writer: &SqlitePool, jobs: &[Job]) -> Result<Vec<Result<()>>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store};

    fn turn<'a>(id: &'a str, messages: &'a [Message]) -> Turn<'a> {
        Turn {
            conversation_id: id,
            owner: "alice",
            topic: "t",
            surface: "cli",
            messages,
            max_messages: 1000,
        }
    }

    fn message(content: &str) -> Message {
        Message {
            id: format!("id-{content}"),
            role: "user".into(),
            content: content.into(),
            surface: "cli".into(),
            mode: "chat".into(),
            timestamp: 1,
            meta: serde_json::Value::Null,
        }
    }

    /// A statement failing inside the one-query transaction leaves nothing of it behind and
    /// the shared writer connection usable: without the `ROLLBACK`, the next `BEGIN` would fail
    /// ("cannot start a transaction within a transaction") and so would every later write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        // The writer pool is one connection, so this trigger sees every write the test makes.
        sqlx::query(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN NEW.content = 'boom'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(store.writer())
        .await
        .unwrap();
        let writer = TurnWriter::start(store.writer().clone());

        let bad = [message("fine"), message("boom")];
        assert!(writer.append(&turn("c-bad", &bad)).await.is_err());
        assert!(store.conversation_get("c-bad").await.unwrap().is_none());

        // Turns queued together with a failing one: only that one fails.
        let good = [message("a"), message("b")];
        let (t1, t2, t3) = (turn("c-1", &good), turn("c-bad", &bad), turn("c-2", &good));
        let (one, two, three) =
            tokio::join!(writer.append(&t1), writer.append(&t2), writer.append(&t3));
        assert!(one.is_ok() && two.is_err() && three.is_ok());
        for id in ["c-1", "c-2"] {
            let c = store.conversation_get(id).await.unwrap().unwrap();
            assert_eq!(c.messages, good);
        }
        assert!(store.conversation_get("c-bad").await.unwrap().is_none());
    }
}
