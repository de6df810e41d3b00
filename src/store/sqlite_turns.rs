//! Conversation appends: a queue in front of one writer task that group-commits.
//!
//! Appends queue for one task that writes whatever has gathered while it was busy as one
//! transaction (see `sqlite_turn_batch`): under load the batches grow, and the cost per turn
//! falls as it is needed.
//!
//! A turn that nothing stored can refuse is acknowledged once queued, and lingers a few
//! milliseconds for others to share its commit — the same trade the audit log makes for its
//! queued entries. That is a turn opening a conversation under an id the server has just
//! generated, or one continuing a conversation whose context its owner read, when the
//! [book](super::sqlite_turn_book) vouches that it still fits. Every other turn is committed
//! before its caller hears back. Measured at 2,000 requests/s, that commit was the whole p99
//! tail of `/api/maestra/core`, and small commits most of its CPU (BENCHMARKS.md).
//!
//! What is given up: a crash (a graceful stop flushes first, and from then on acknowledges
//! turns only once committed) loses the last [`LINGER`] of such turns, whose replies went out;
//! so does a write that fails (disk full, the database locked by another process past its busy
//! timeout) or that another process made impossible meanwhile (the CLI deleting the
//! conversation and importing another under its id), which is logged with the conversation's
//! id. Another process (the CLI) sees such turns up to [`LINGER`] late. What is kept: every
//! read of this store sees them — a read that names a conversation with turns still queued, or
//! that reads or deletes across conversations while any are, waits for their commit first
//! ([`TurnWriter::settle`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, mpsc, oneshot};

use super::codec::too_large;
use super::sqlite_turn_batch::{Job, write};
use super::sqlite_turn_book::{Book, KEEP};
use super::{Seen, Turn};
use crate::error::{Error, Result};

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

type SharedBook = Arc<Mutex<Book>>;

fn open(book: &SharedBook) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct TurnWriter {
    tx: mpsc::Sender<Queued>,
    book: SharedBook,
    /// Wakes a lingering writer: somebody waits.
    urgent: Arc<Notify>,
}

impl TurnWriter {
    /// Starts the writer task on the store's one writer connection.
    pub fn start(writer: SqlitePool) -> TurnWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let book = SharedBook::default();
        let urgent = Arc::new(Notify::new());
        tokio::spawn(run(writer, rx, book.clone(), urgent.clone()));
        TurnWriter { tx, book, urgent }
    }

    /// Appends `turn`: waits until it is committed or refused, or, when the book vouches for
    /// it, until it is queued.
    pub async fn append(&self, turn: &Turn<'_>) -> Result<()> {
        if turn.messages.len() as u64 > turn.max_messages {
            return Err(too_large(turn.conversation_id, turn.max_messages));
        }
        // Room first, so that the book's count and the queue change together below: a read
        // that flushes the queue after its `Seen` then finds every message that `Seen` counted.
        let permit = self.tx.reserve().await.map_err(|_| stopped())?;
        let mut job = Job {
            conversation_id: turn.conversation_id.to_owned(),
            owner: turn.owner.to_owned(),
            topic: turn.topic.to_owned(),
            surface: turn.surface.to_owned(),
            messages: turn.messages.to_vec(),
            max_messages: turn.max_messages,
            done: None,
        };
        let result = {
            let mut book = open(&self.book);
            let result = match book.admit(turn) {
                true => None,
                false => {
                    let (done, result) = oneshot::channel();
                    job.done = Some(done);
                    Some(result)
                }
            };
            permit.send(Queued::Turn(job));
            result
        };
        match result {
            // The writer tells the book once it is written.
            None => Ok(()),
            Some(result) => {
                self.urgent.notify_one();
                result.await.map_err(|_| stopped())?
            }
        }
    }

    /// Notes a context read of conversation `id` about to start, for a turn answering it.
    pub fn watch(&self, id: &str) -> Option<Seen> {
        open(&self.book).watch(id, Instant::now())
    }

    /// Voids what was read of conversation `id` (of all, for `None`), which is being deleted:
    /// a turn answering such a read is committed before its reply.
    pub fn forget(&self, id: Option<&str>) {
        open(&self.book).forget(id);
    }

    /// Writes every queued turn; turns appended from now on are acknowledged only once
    /// committed, so none can be acknowledged and then lost to the store closing.
    pub async fn close(&self) -> Result<()> {
        open(&self.book).closing = true;
        self.flush().await
    }

    /// Waits until the turns acknowledged before this call are committed: those of
    /// conversation `id`, or of every conversation for `None`. Returns at once when there are
    /// none, which is nearly always for one conversation.
    pub async fn settle(&self, id: Option<&str>) -> Result<()> {
        let waiting = open(&self.book).is_behind(id);
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
        result.await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Store("the conversation writer stopped".into())
}

async fn run(
    writer: SqlitePool,
    mut rx: mpsc::Receiver<Queued>,
    book: SharedBook,
    urgent: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    let mut swept = Instant::now();
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
        write_batch(&writer, &mut batch, &book).await;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if swept.elapsed() > KEEP {
            swept = Instant::now();
            open(&book).sweep(swept);
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
async fn write_batch(writer: &SqlitePool, batch: &mut Vec<Job>, book: &SharedBook) {
    if batch.is_empty() {
        return;
    }
    match write(writer, batch).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                finish(job, outcome, book);
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
                finish(job, outcome, book);
            }
        }
    }
}

fn finish(job: Job, outcome: Result<()>, book: &SharedBook) {
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
            open(book).written(&job.conversation_id, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::model::Message;
    use crate::store::{Basis, SqliteStore, Store};

    fn turn<'a>(id: &'a str, messages: &'a [Message]) -> Turn<'a> {
        Turn {
            conversation_id: id,
            owner: "alice",
            topic: "t",
            surface: "cli",
            messages,
            max_messages: 1000,
            basis: Basis::Unknown,
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
            basis: Basis::Opens,
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
        assert!(!open(&store.turns().book).is_behind(None));
    }

    /// A turn continuing a conversation whose context was just read fits for sure, so it is
    /// acknowledged while its commit cannot happen yet; one answering a read of a conversation
    /// deleted since is not: the store, not the book, decides that one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_continued_turn_goes_behind_only_while_its_read_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let (first, next) = (
            [message("q1"), message("a1")],
            [message("q2"), message("a2")],
        );
        for id in ["kept", "deleted"] {
            store.conversation_append(&turn(id, &first)).await.unwrap();
        }
        let read = |id: &'static str| {
            let store = store.clone();
            async move {
                let ctx = store.conversation_context(id, 10).await.unwrap().unwrap();
                Basis::Read(ctx.seen.unwrap())
            }
        };
        let (kept, deleted) = (read("kept").await, read("deleted").await);
        assert!(store.conversation_delete("deleted").await.unwrap());

        let held = store.writer().acquire().await.unwrap();
        let continued = Turn {
            basis: kept,
            ..turn("kept", &next)
        };
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            store.conversation_append(&continued),
        )
        .await
        .expect("a turn the book vouches for must not wait for its commit")
        .unwrap();
        let late = {
            let store = store.clone();
            tokio::spawn(async move {
                let next = [message("q2"), message("a2")];
                let answer = Turn {
                    basis: deleted,
                    ..turn("deleted", &next)
                };
                store.conversation_append(&answer).await
            })
        };
        tokio::time::sleep(LINGER * 20).await;
        assert!(!late.is_finished(), "acknowledged on a void read");
        drop(held);
        late.await.unwrap().unwrap();
        let kept = store.conversation_get("kept").await.unwrap().unwrap();
        assert_eq!(kept.messages, [first, next.clone()].concat());
        let deleted = store.conversation_get("deleted").await.unwrap().unwrap();
        assert_eq!(deleted.messages, next);
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
                    basis: Basis::Opens,
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
                basis: Basis::Opens,
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
        assert!(!open(&writer.book).is_behind(Some(cancelled)));
        drop(held);
        writer.settle(None).await.unwrap();
        assert!(!open(&writer.book).is_behind(None));
    }
}
