//! Conversation appends with group commit.
//!
//! Every SQL statement through sqlx's SQLite driver is a round trip to the connection's worker
//! thread, and on this kind of machine that hand-off costs more CPU than the statement. So
//! appends queue for one task that writes whatever has gathered while it was busy in one
//! transaction: one `BEGIN`, one upsert per turn, one multi-row insert for all their messages,
//! one `COMMIT`. Nobody waits for a batch to fill — an idle writer takes a turn at once — but
//! under load the batches grow, and the cost per turn falls as it is needed. Each caller still
//! waits for its own turn's commit, and a refused turn (foreign owner, full conversation)
//! writes nothing and does not affect the others.

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

/// Creates a conversation holding `?6` messages, or adds `?6` to an existing one's count when
/// `?2` owns it and the total stays within `?7`; returns the new count, or no row when refused.
/// A non-empty surface `?4` joins the conversation's `surfaces` the first time it is seen.
const GROW_SQL: &str = "
    INSERT INTO conversations (id, owner, topic, surfaces, created_at, updated_at, message_count)
    VALUES (?1, ?2, ?3, CASE WHEN ?4 = '' THEN '[]' ELSE json_array(?4) END, ?5, ?5, ?6)
    ON CONFLICT(id) DO UPDATE SET
        message_count = message_count + excluded.message_count,
        updated_at = excluded.updated_at,
        surfaces = CASE
            WHEN ?4 = '' OR EXISTS (SELECT 1 FROM json_each(conversations.surfaces) WHERE value = ?4)
                THEN surfaces
            ELSE json_insert(surfaces, '$[#]', ?4)
        END
    WHERE owner = excluded.owner AND message_count + excluded.message_count <= ?7
    RETURNING message_count";

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

/// Writes `jobs` in one transaction; returns each one's outcome (a refusal), or an error if
/// the transaction failed and wrote nothing.
async fn write(writer: &SqlitePool, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rows: Vec<(&str, i64, &Message)> = Vec::new();
    for job in jobs {
        match grow(&mut tx, job, now).await? {
            Ok(first_seq) => {
                rows.extend(
                    job.messages
                        .iter()
                        .zip(first_seq..)
                        .map(|(m, seq)| (job.conversation_id.as_str(), seq, m)),
                );
                outcomes.push(Ok(()));
            }
            Err(refused) => outcomes.push(Err(refused)),
        }
    }
    insert_messages(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Creates or grows the conversation of `job`: the inner result is the turn's first `seq`, or
/// why it was refused.
async fn grow(
    conn: &mut sqlx::SqliteConnection,
    job: &Job,
    now: i64,
) -> Result<std::result::Result<i64, Error>> {
    let id = job.conversation_id.as_str();
    let added = to_i64("message count", job.messages.len() as u64)?;
    let grown: Option<i64> = sqlx::query_scalar(GROW_SQL)
        .bind(id)
        .bind(&job.owner)
        .bind(&job.topic)
        .bind(&job.surface)
        .bind(now)
        .bind(added)
        .bind(to_i64("message limit", job.max_messages)?)
        .fetch_optional(&mut *conn)
        .await?;
    match grown {
        // Messages are never deleted one by one, so the count before this turn is its first seq.
        Some(count) => Ok(Ok(count - added)),
        None => {
            // The guard refused: tell the caller which way, from the row as it stands.
            let owner: Option<String> =
                sqlx::query_scalar("SELECT owner FROM conversations WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(Err(match owner {
                Some(owner) if owner == job.owner => too_large(id, job.max_messages),
                _ => not_found(id),
            }))
        }
    }
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
