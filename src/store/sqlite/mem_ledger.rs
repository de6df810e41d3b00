//! The embedded store's cost ledger, checked in memory and written behind.
//!
//! A SQLite file is served by one `maestra serve` (several instances share PostgreSQL), so
//! this process sees every reservation: checking limits against totals held in memory, under
//! one async lock, is exact, and costs microseconds instead of two serialised write
//! transactions per paid call. Every change is queued to a task that writes it, batched, in
//! one transaction (ledger rows and running totals together). The price: a crash loses the
//! charges not yet written (the last [`LINGER`] and one write, some 50 milliseconds);
//! reservations of requests in flight at a crash are released when `maestra serve` next starts.

use std::collections::HashMap;

use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::cost::ledger::{
    Limit, Micros, Period, Reservation, ReserveOutcome, Scope, Tokens, Usage, clamp,
};
use crate::error::{Error, Result};
use crate::store::codec::{scope_key, scopes, totals_sql, value_rows};

/// Changes waiting to be written, at most; a full queue makes callers wait.
const QUEUE: usize = 65_536;
/// Changes written in one transaction, at most.
const BATCH: usize = 2_048;
/// How long the writer gathers changes before writing them. Each statement costs a hand-off
/// to SQLite's worker thread, so batching makes a paid call's ledger writes a share of one
/// multi-row insert instead of two statements of its own. 50 ms rather than 5 ms: at 2,000
/// paid calls/s it took Maestra's CPU per call from +0.040 ms over unguarded calls to
/// +0.011 ms (BENCHMARKS.md), and the window a crash can lose stays a twentieth of a second.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Clone)]
struct Row {
    day: String,
    month: String,
    user_id: Option<String>,
    key_id: Option<String>,
    model: String,
    provider: String,
    reserved: Micros,
    created_at: i64,
}

impl Row {
    fn keys(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for scope in scopes(self.user_id.as_deref(), self.key_id.as_deref()) {
            out.push((scope.clone(), self.day.clone()));
            out.push((scope, self.month.clone()));
        }
        out
    }
}

enum Op {
    Reserve {
        id: i64,
        row: Row,
    },
    Settle {
        id: i64,
        spent: Micros,
        tokens: Tokens,
        row: Row,
    },
    Release {
        id: i64,
        row: Row,
    },
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
struct State {
    totals: HashMap<(String, String), Usage>,
    open: HashMap<i64, Row>,
    next_id: i64,
}

pub(super) struct MemLedger {
    state: Mutex<State>,
    tx: mpsc::Sender<Op>,
    reader: SqlitePool,
    writer: SqlitePool,
}

impl MemLedger {
    /// Starts the writer task.
    pub async fn open(reader: SqlitePool, writer: SqlitePool) -> Result<MemLedger> {
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM cost_ledger")
            .fetch_one(&writer)
            .await?
            .try_get("next")?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(persist(writer.clone(), rx));
        Ok(MemLedger {
            state: Mutex::new(State {
                next_id: next.max(1),
                ..State::default()
            }),
            tx,
            reader,
            writer,
        })
    }

    /// Releases reservations a previous run left open (its requests died with it). Only the
    /// process that serves this file may call it, at start: other commands share the file
    /// with a running server whose reservations are live.
    pub async fn recover(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        if !st.open.is_empty() {
            return Ok(());
        }
        release_leftovers(&self.writer).await?;
        // Totals read before the release are out of date now.
        st.totals.clear();
        Ok(())
    }

    async fn total<'a>(&self, st: &'a mut State, key: &(String, String)) -> Result<&'a mut Usage> {
        if !st.totals.contains_key(key) {
            let row = sqlx::query(
                "SELECT spent, reserved FROM cost_totals WHERE scope = ?1 AND period = ?2",
            )
            .bind(&key.0)
            .bind(&key.1)
            .fetch_optional(&self.reader)
            .await?;
            let u = match row {
                Some(r) => Usage {
                    spent: r.try_get("spent")?,
                    reserved: r.try_get("reserved")?,
                },
                None => Usage::default(),
            };
            st.totals.insert(key.clone(), u);
        }
        st.totals
            .get_mut(key)
            .ok_or_else(|| Error::Store("ledger totals out of step".into()))
    }

    async fn apply(
        &self,
        st: &mut State,
        row: &Row,
        spent: Micros,
        reserved: Micros,
    ) -> Result<()> {
        for key in row.keys() {
            self.total(st, &key).await?.apply(spent, reserved);
        }
        Ok(())
    }

    async fn send(&self, op: Op) -> Result<()> {
        self.tx
            .send(op)
            .await
            .map_err(|_| Error::Store("the ledger writer stopped".into()))
    }

    pub async fn reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        let amount = clamp(r.amount);
        let mut st = self.state.lock().await;
        for limit in limits {
            let period = match limit.period {
                Period::Daily => r.day,
                Period::Monthly => r.month,
            };
            let key = (scope_key(&limit.scope), period.to_string());
            let mut usage = *self.total(&mut st, &key).await?;
            if !usage.admits(amount, limit.limit) {
                // Holds of requests that died may be in the way: only a refusal pays for this.
                self.sweep(&mut st, r.stale_before_ms).await?;
                usage = *self.total(&mut st, &key).await?;
            }
            if !usage.admits(amount, limit.limit) {
                return Ok(ReserveOutcome::Exceeded {
                    limit: limit.clone(),
                    usage,
                });
            }
        }
        let row = Row {
            day: r.day.into(),
            month: r.month.into(),
            user_id: r.user_id.map(Into::into),
            key_id: r.key_id.map(Into::into),
            model: r.model.into(),
            provider: r.provider.into(),
            reserved: amount,
            created_at: r.now_ms,
        };
        self.apply(&mut st, &row, 0, amount).await?;
        let id = st.next_id;
        st.next_id += 1;
        st.open.insert(id, row.clone());
        self.send(Op::Reserve { id, row }).await?;
        Ok(ReserveOutcome::Reserved(id))
    }

    pub async fn settle(&self, id: i64, spent: Micros, tokens: Tokens) -> Result<()> {
        let spent = clamp(spent);
        let mut st = self.state.lock().await;
        let Some(row) = st.open.remove(&id) else {
            // Swept as stale: no call may live that long (MAX_CALL_SECS), so this is a bug.
            tracing::error!(id, "settled a reservation that is no longer held");
            return Ok(());
        };
        // Never more than was held: the hold is the call's worst case, and a charge above it
        // could take a scope past its limit after the check that admitted the call.
        let spent = spent.min(row.reserved);
        self.apply(&mut st, &row, spent, -row.reserved).await?;
        self.send(Op::Settle {
            id,
            spent,
            tokens,
            row,
        })
        .await
    }

    pub async fn release(&self, id: i64) -> Result<()> {
        let mut st = self.state.lock().await;
        let Some(row) = st.open.remove(&id) else {
            return Ok(());
        };
        self.apply(&mut st, &row, 0, -row.reserved).await?;
        self.send(Op::Release { id, row }).await
    }

    async fn sweep(&self, st: &mut State, stale_before_ms: i64) -> Result<()> {
        let stale: Vec<i64> = st
            .open
            .iter()
            .filter(|(_, row)| row.created_at < stale_before_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(row) = st.open.remove(&id) {
                self.apply(st, &row, 0, -row.reserved).await?;
                self.send(Op::Release { id, row }).await?;
            }
        }
        Ok(())
    }

    pub async fn usage(&self, scope: &Scope, period: &str) -> Result<Usage> {
        let mut st = self.state.lock().await;
        Ok(*self
            .total(&mut st, &(scope_key(scope), period.to_string()))
            .await?)
    }

    /// Waits until every change so far is written (reports read the tables).
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx)).await?;
        rx.await
            .map_err(|e| Error::Store("the ledger writer stopped".into()).because(e))
    }

    /// Forgets cached totals of these periods (another writer, an import, changed them).
    pub async fn invalidate(&self, periods: &[&str]) {
        let mut st = self.state.lock().await;
        st.totals.retain(|(_, p), _| !periods.contains(&p.as_str()));
    }
}

async fn release_leftovers(writer: &SqlitePool) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query(
        "SELECT id, day, month, user_id, key_id, reserved FROM cost_ledger WHERE settled = 0",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut deltas: HashMap<(String, String), (Micros, Micros)> = HashMap::new();
    for r in &rows {
        let row = Row {
            day: r.try_get("day")?,
            month: r.try_get("month")?,
            user_id: r.try_get("user_id")?,
            key_id: r.try_get("key_id")?,
            model: String::new(),
            provider: String::new(),
            reserved: r.try_get("reserved")?,
            created_at: 0,
        };
        for key in row.keys() {
            let d = deltas.entry(key).or_default();
            d.1 = d.1.saturating_sub(row.reserved);
        }
    }
    sqlx::query("DELETE FROM cost_ledger WHERE settled = 0")
        .execute(&mut *tx)
        .await?;
    write_totals(&mut tx, deltas).await?;
    tx.commit().await?;
    Ok(())
}

async fn write_totals(
    conn: &mut sqlx::SqliteConnection,
    deltas: HashMap<(String, String), (Micros, Micros)>,
) -> Result<()> {
    let deltas: Vec<_> = deltas.into_iter().collect();
    // Four binds per row; SQLite allows 32,766 per statement.
    for chunk in deltas.chunks(1_000) {
        for sql in totals_sql(chunk.len(), false) {
            let mut q = sqlx::query(&sql);
            for ((scope, period), (spent, reserved)) in chunk {
                q = q.bind(scope).bind(period).bind(*spent).bind(*reserved);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

async fn persist(writer: SqlitePool, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(op) = rx.recv().await {
        let flush = matches!(op, Op::Flush(_));
        batch.push(op);
        // Sleep through LINGER rather than wait on the queue: changes queued meanwhile do not
        // wake this task one by one, and a call's reservation and its settlement usually meet
        // in one batch, written as one row. A flush (reports, shutdown) is written at once.
        if !flush {
            tokio::time::sleep(LINGER).await;
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = write(&writer, &batch).await {
            tracing::error!(error = %e, changes = batch.len(), "could not write cost ledger changes");
        }
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                let _ = done.send(());
            }
        }
    }
}

/// A row to insert: the reservation, then what it was charged and still holds, the tokens
/// its call used, and whether it is settled.
type NewRow<'a> = (&'a Row, Micros, Micros, Tokens, bool);

/// A batch folded into what the tables need: rows to insert (reservations made in this batch,
/// already settled if their call ended in it too), settlements and releases of older rows, and
/// the change of each running total.
#[derive(Default)]
struct Folded<'a> {
    new: std::collections::BTreeMap<i64, NewRow<'a>>,
    settled: Vec<(i64, Micros, Tokens)>,
    released: Vec<i64>,
    deltas: HashMap<(String, String), (Micros, Micros)>,
}

fn fold(batch: &[Op]) -> Folded<'_> {
    let mut f = Folded::default();
    for op in batch {
        let (row, spent, reserved) = match op {
            Op::Reserve { id, row } => {
                f.new
                    .insert(*id, (row, 0, row.reserved, Tokens::default(), false));
                (row, 0, row.reserved)
            }
            Op::Settle {
                id,
                spent,
                tokens,
                row,
            } => {
                match f.new.get_mut(id) {
                    Some(new) => *new = (row, *spent, 0, *tokens, true),
                    None => f.settled.push((*id, *spent, *tokens)),
                }
                (row, *spent, -row.reserved)
            }
            Op::Release { id, row } => {
                if f.new.remove(id).is_none() {
                    f.released.push(*id);
                }
                (row, 0, -row.reserved)
            }
            Op::Flush(_) => continue,
        };
        for key in row.keys() {
            let d = f.deltas.entry(key).or_default();
            // Saturating: a batch of 2,048 capped amounts cannot reach the i64 range anyway.
            d.0 = d.0.saturating_add(spent);
            d.1 = d.1.saturating_add(reserved);
        }
    }
    f
}

/// Rows per multi-row statement: SQLite allows 32,766 parameters per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

async fn write(writer: &SqlitePool, batch: &[Op]) -> Result<()> {
    let f = fold(batch);
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let new: Vec<_> = f.new.iter().collect();
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO cost_ledger (id, day, month, user_id, key_id, model, provider,
                                      reserved, spent, settled, created_at,
                                      tokens_in, tokens_out)
             VALUES {}",
            value_rows(chunk.len(), 13, false)
        );
        let mut q = sqlx::query(&sql);
        for (id, (row, spent, reserved, tokens, settled)) in chunk {
            let (tokens_in, tokens_out) = tokens.columns();
            q = q
                .bind(**id)
                .bind(&row.day)
                .bind(&row.month)
                .bind(&row.user_id)
                .bind(&row.key_id)
                .bind(&row.model)
                .bind(&row.provider)
                .bind(*reserved)
                .bind(*spent)
                .bind(i64::from(*settled))
                .bind(row.created_at)
                .bind(tokens_in)
                .bind(tokens_out);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in f.settled.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE cost_ledger SET spent = v.column2, reserved = 0, settled = 1,
                    tokens_in = v.column3, tokens_out = v.column4
             FROM (VALUES {}) AS v WHERE cost_ledger.id = v.column1",
            value_rows(chunk.len(), 4, false)
        );
        let mut q = sqlx::query(&sql);
        for (id, spent, tokens) in chunk {
            let (tokens_in, tokens_out) = tokens.columns();
            q = q.bind(*id).bind(*spent).bind(tokens_in).bind(tokens_out);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in f.released.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM cost_ledger WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }
    write_totals(&mut tx, f.deltas).await?;
    tx.commit().await?;
    Ok(())
}
