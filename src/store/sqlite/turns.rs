//! Conversation appends: a queue in front of one writer task that group-commits.
//!
//! Appends queue for one task that writes whatever has gathered while it was busy as one
//! transaction (see `turn_batch`): under load the batches grow, and the cost per turn
//! falls as it is needed.
//!
//! Most turns are committed before their caller hears back, and nobody waits for a batch to
//! fill. A turn that opens a conversation whose id the server has just generated
//! ([`Turn::opens`]) is different: nothing stored can refuse it, so it is acknowledged once
//! queued and lingers a few milliseconds for others to share its commit — the same trade the
//! audit log makes for its queued entries. Measured at 2,000 requests/s, that commit was the
//! whole p99 tail of `/api/maestra/core` (BENCHMARKS.md). What is given up: a crash (a
//! graceful stop flushes first, and from then on acknowledges turns only once committed) loses
//! the last [`LINGER`] of such turns, whose replies went out; so does a write that fails
//! (disk full, the database locked by another process past its busy timeout), which is logged
//! with the conversation's id. Another process (the CLI) sees them up to [`LINGER`] late. What
//! is kept: every read of this store sees them — a read that names a conversation with turns
//! still queued, or that reads or deletes across conversations while any are, waits for their
//! commit first ([`TurnWriter::settle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, RwLock, mpsc, oneshot};

use super::turn_batch::{Job, write};
use crate::error::{Error, Result};
use crate::store::Turn;
use crate::store::codec::too_large;

/// Jobs waiting to be written, at most; a full queue makes callers wait.
const QUEUE: usize = 4_096;
/// Turns written in one transaction, at most.
const BATCH: usize = 256;
/// How long a turn acknowledged before its commit waits for others to share that commit. A
/// turn somebody waits for, or a flush, cuts it short.
pub(super) const LINGER: Duration = Duration::from_millis(5);

enum Queued {
    Turn(Job),
    /// Answered once every job queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Conversations with turns acknowledged but not yet committed, and how many each has.
type Behind = Arc<Mutex<HashMap<String, usize>>>;

pub(super) struct TurnWriter {
    tx: mpsc::Sender<Queued>,
    behind: Behind,
    /// Set by [`TurnWriter::close`]: no more turns acknowledged before their commit. An opening
    /// turn holds it for reading from the check until it is queued, so `close` (writing) cannot
    /// flush between the two and leave it behind.
    closing: RwLock<bool>,
    /// Wakes a lingering writer: somebody waits.
    urgent: Arc<Notify>,
}

impl TurnWriter {
    /// Starts the writer task on the store's one writer connection.
    pub fn start(writer: SqlitePool) -> TurnWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let behind = Behind::default();
        let urgent = Arc::new(Notify::new());
        tokio::spawn(run(writer, rx, behind.clone(), urgent.clone()));
        TurnWriter {
            tx,
            behind,
            closing: RwLock::new(false),
            urgent,
        }
    }

    /// Appends `turn`: waits until it is committed or refused, or, for a turn that
    /// [opens](Turn::opens) a conversation, until it is queued (unless the store is closing:
    /// then it waits too, and hears of a failed write).
    pub async fn append(&self, turn: &Turn<'_>) -> Result<()> {
        if turn.messages.len() as u64 > turn.max_messages {
            return Err(too_large(turn.conversation_id, turn.max_messages));
        }
        let gate = match turn.opens {
            true => Some(self.closing.read().await),
            false => None,
        };
        let behind = gate.as_deref() == Some(&false);
        let (done, result) = match behind {
            true => (None, None),
            false => {
                let (done, result) = oneshot::channel();
                (Some(done), Some(result))
            }
        };
        let job = Job {
            conversation_id: turn.conversation_id.to_owned(),
            owner: turn.owner.to_owned(),
            topic: turn.topic.to_owned(),
            surface: turn.surface.to_owned(),
            messages: turn.messages.to_vec(),
            max_messages: turn.max_messages,
            done,
        };
        // Marked before it is queued, so no read after this call returns can miss it; unmarked
        // again if it never gets queued (the send fails, or this call is dropped waiting).
        let mark = behind.then(|| Mark::new(&self.behind, turn.conversation_id));
        if self.tx.send(Queued::Turn(job)).await.is_err() {
            return Err(stopped());
        }
        drop(gate);
        match result {
            None => {
                // The writer owns the mark now: it unmarks after the commit.
                std::mem::forget(mark);
                Ok(())
            }
            Some(result) => {
                self.urgent.notify_one();
                result.await.map_err(|e| stopped().because(e))?
            }
        }
    }

    /// Writes every queued turn; turns appended from now on are acknowledged only once
    /// committed, so none can be acknowledged and then lost to the store closing.
    pub async fn close(&self) -> Result<()> {
        *self.closing.write().await = true;
        self.flush().await
    }

    /// Waits until the turns acknowledged before this call are committed: those of
    /// conversation `id`, or of every conversation for `None`. Returns at once when there are
    /// none, which is nearly always for one conversation.
    pub async fn settle(&self, id: Option<&str>) -> Result<()> {
        let waiting = {
            let behind = self.behind.lock().unwrap_or_else(PoisonError::into_inner);
            match id {
                Some(id) => behind.contains_key(id),
                None => !behind.is_empty(),
            }
        };
        if waiting { self.flush().await } else { Ok(()) }
    }

    /// Waits until every turn queued before this call is written.
    pub async fn flush(&self) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Queued::Flush(done))
            .await
            .map_err(|_| stopped())?;
        self.urgent.notify_one();
        result.await.map_err(|e| stopped().because(e))
    }
}

fn stopped() -> Error {
    Error::Store("the conversation writer stopped".into())
}

/// A turn counted among the ones written behind until dropped.
struct Mark<'a> {
    behind: &'a Behind,
    id: &'a str,
}

impl<'a> Mark<'a> {
    fn new(behind: &'a Behind, id: &'a str) -> Mark<'a> {
        mark(behind, id, true);
        Mark { behind, id }
    }
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        mark(self.behind, self.id, false);
    }
}

/// Counts a turn of conversation `id` in (`add`) or out of the ones written behind.
fn mark(behind: &Behind, id: &str, add: bool) {
    let mut behind = behind.lock().unwrap_or_else(PoisonError::into_inner);
    if add {
        *behind.entry(id.to_owned()).or_default() += 1;
    } else if let Some(n) = behind.get_mut(id) {
        *n -= 1;
        if *n == 0 {
            behind.remove(id);
        }
    }
}

async fn run(
    writer: SqlitePool,
    mut rx: mpsc::Receiver<Queued>,
    behind: Behind,
    urgent: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        // Only a batch of turns nobody waits for lingers. It sleeps rather than waiting on the
        // queue, so the turns queued meanwhile do not wake it one by one; a caller that waits
        // wakes it.
        if take(first, &mut batch, &mut flushes) && rx.len() + 1 < BATCH {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = urgent.notified() => {}
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    take(job, &mut batch, &mut flushes);
                }
                Err(_) => break,
            }
        }
        write_batch(&writer, &mut batch, &behind).await;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Adds `job` to the batch (or its flush to the ones to answer after it); true if the batch
/// may linger for it.
fn take(job: Queued, batch: &mut Vec<Job>, flushes: &mut Vec<oneshot::Sender<()>>) -> bool {
    match job {
        Queued::Turn(job) => {
            let linger = job.done.is_none();
            batch.push(job);
            linger
        }
        Queued::Flush(done) => {
            flushes.push(done);
            false
        }
    }
}

/// Writes `batch` and reports each turn's outcome, emptying it.
async fn write_batch(writer: &SqlitePool, batch: &mut Vec<Job>, behind: &Behind) {
    if batch.is_empty() {
        return;
    }
    match write(writer, batch).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                finish(job, outcome, behind);
            }
        }
        // The batch rolled back whole; each turn is tried on its own so that one turn's
        // failure is reported to its caller alone.
        Err(_) => {
            for job in batch.drain(..) {
                let outcome = match write(writer, std::slice::from_ref(&job)).await {
                    Ok(mut one) => one.pop().unwrap_or(Ok(())),
                    Err(e) => Err(e),
                };
                finish(job, outcome, behind);
            }
        }
    }
}

fn finish(job: Job, outcome: Result<()>, behind: &Behind) {
    match job.done {
        Some(done) => {
            let _ = done.send(outcome);
        }
        None => {
            // Its reply has gone out: all that is left is to say so. (Errors name the
            // conversation at most, never content.)
            if let Err(e) = outcome {
                tracing::error!(
                    conversation = %job.conversation_id,
                    error = %e,
                    "a turn acknowledged before its commit could not be stored"
                );
            }
            mark(behind, &job.conversation_id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::model::Message;
    use crate::store::SqliteStore;
    use crate::store::prelude::*;

    fn turn<'a>(id: &'a str, messages: &'a [Message]) -> Turn<'a> {
        Turn {
            conversation_id: id,
            owner: "alice",
            topic: "t",
            surface: "cli",
            messages,
            max_messages: 1000,
            opens: false,
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

    /// A turn that opens a conversation is acknowledged while its commit cannot happen yet
    /// (the test holds the one writer connection), and a read of it waits for that commit
    /// instead of missing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_opening_turn_is_acknowledged_before_its_commit_and_read_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let held = store.writer().acquire().await.unwrap();
        let messages = [message("hello"), message("hi")];
        let opening = Turn {
            opens: true,
            ..turn("c-new", &messages)
        };
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            store.conversation_append(&opening),
        )
        .await
        .expect("an opening turn must not wait for its commit")
        .unwrap();
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.conversation_get("c-new").await })
        };
        tokio::time::sleep(LINGER * 20).await;
        assert!(!reader.is_finished(), "the read must wait for the commit");
        drop(held);
        let c = reader.await.unwrap().unwrap().expect("the turn is stored");
        assert_eq!(c.messages, messages);
        // Once committed, nothing is left to wait for.
        assert!(store.turns().behind.lock().unwrap().is_empty());
    }

    /// After `close`, an opening turn is acknowledged only once committed, so a stop cannot
    /// acknowledge one and then lose it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_closing_opening_turns_wait_for_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let writer = std::sync::Arc::new(TurnWriter::start(store.writer().clone()));
        writer.close().await.unwrap();
        let held = store.writer().acquire().await.unwrap();
        let appending = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let messages = [message("late")];
                let late = Turn {
                    opens: true,
                    ..turn("c-late", &messages)
                };
                writer.append(&late).await
            })
        };
        tokio::time::sleep(LINGER * 20).await;
        assert!(!appending.is_finished(), "acknowledged before its commit");
        drop(held);
        appending.await.unwrap().unwrap();
        assert!(store.conversation_get("c-late").await.unwrap().is_some());
    }

    /// An opening turn whose append is dropped while it waits for room in the queue leaves no
    /// mark behind: otherwise every later list or delete would wait for a flush, forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_append_leaves_no_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let writer = TurnWriter::start(store.writer().clone());
        let held = store.writer().acquire().await.unwrap();
        let messages = [message("m")];
        let ids: Vec<String> = (0..QUEUE + BATCH + 2).map(|i| format!("c-{i}")).collect();
        // The writer takes a batch and waits for the held connection; the rest fill the queue.
        let mut queued = 0;
        for id in &ids {
            let t = Turn {
                opens: true,
                ..turn(id, &messages)
            };
            let sent =
                tokio::time::timeout(std::time::Duration::from_millis(50), writer.append(&t)).await;
            if sent.is_err() {
                break;
            }
            queued += 1;
        }
        assert!(queued < ids.len(), "the queue never filled");
        let cancelled = &ids[queued];
        assert!(
            !writer
                .behind
                .lock()
                .unwrap()
                .contains_key(cancelled.as_str())
        );
        drop(held);
        writer.settle(None).await.unwrap();
        assert!(writer.behind.lock().unwrap().is_empty());
    }
}
