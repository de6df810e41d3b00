//! The shared store's cost ledger. Ledger changes take one transaction-scoped advisory lock,
//! so check-and-insert is atomic across every instance sharing the database.

use async_trait::async_trait;

use super::*;

use super::PostgresStore;
use crate::cost::ledger::{
    Charge, Limit, Micros, Period, Reservation, ReserveOutcome, STALE_AFTER_MS, Scope, Tokens,
    Usage, clamp,
};
use crate::error::Result;
use crate::store::codec::{scope_key, scopes, totals_sql};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// A ledger row's identity in the totals: which scopes and periods it counts towards.
struct Counted {
    day: String,
    month: String,
    user_id: Option<String>,
    key_id: Option<String>,
    reserved: Micros,
}

async fn usage_in(conn: &mut sqlx::PgConnection, scope: &Scope, period: &str) -> Result<Usage> {
    let row =
        sqlx::query("SELECT spent, reserved FROM cost_totals WHERE scope = $1 AND period = $2")
            .bind(scope_key(scope))
            .bind(period)
            .fetch_optional(conn)
            .await?;
    Ok(match row {
        Some(r) => Usage {
            spent: r.try_get("spent")?,
            reserved: r.try_get("reserved")?,
        },
        None => Usage::default(),
    })
}

/// Adds to the totals of every scope and period a row counts towards, in one statement.
async fn bump(
    conn: &mut sqlx::PgConnection,
    row: &Counted,
    spent: Micros,
    reserved: Micros,
) -> Result<()> {
    let scopes = scopes(row.user_id.as_deref(), row.key_id.as_deref());
    for sql in totals_sql(scopes.len() * 2, true) {
        let mut q = sqlx::query(&sql);
        for scope in &scopes {
            for period in [&row.day, &row.month] {
                q = q.bind(scope).bind(period).bind(spent).bind(reserved);
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn open_row(conn: &mut sqlx::PgConnection, id: i64) -> Result<Option<Counted>> {
    let row = sqlx::query(
        "SELECT day, month, user_id, key_id, reserved FROM cost_ledger WHERE id = $1 AND settled = FALSE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| counted(&r)).transpose()
}

fn counted(r: &PgRow) -> Result<Counted> {
    Ok(Counted {
        day: r.try_get("day")?,
        month: r.try_get("month")?,
        user_id: r.try_get("user_id")?,
        key_id: r.try_get("key_id")?,
        reserved: r.try_get("reserved")?,
    })
}

/// Drops reservations whose request died (older than the stale horizon), giving their hold back.
async fn sweep(conn: &mut sqlx::PgConnection, stale_before_ms: i64) -> Result<()> {
    let rows = sqlx::query(
        "SELECT id, day, month, user_id, key_id, reserved FROM cost_ledger
         WHERE settled = FALSE AND created_at < $1",
    )
    .bind(stale_before_ms)
    .fetch_all(&mut *conn)
    .await?;
    for r in &rows {
        let row = counted(r)?;
        sqlx::query("DELETE FROM cost_ledger WHERE id = $1")
            .bind(r.try_get::<i64, _>("id")?)
            .execute(&mut *conn)
            .await?;
        bump(conn, &row, 0, -row.reserved).await?;
    }
    Ok(())
}

/// The advisory lock every ledger change takes (an arbitrary constant: "maestra" in ASCII).
const LEDGER_LOCK: i64 = 0x006d_6165_7374_7261;

impl PostgresStore {
    async fn begin_ledger(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEDGER_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

#[async_trait]
impl Ledger for PostgresStore {
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        let amount = clamp(r.amount);
        let mut tx = self.begin_ledger().await?;
        for limit in limits {
            let period = match limit.period {
                Period::Daily => r.day,
                Period::Monthly => r.month,
            };
            let mut usage = usage_in(&mut tx, &limit.scope, period).await?;
            if !usage.admits(amount, limit.limit) {
                // Holds of requests that died may be in the way: drop them and look again.
                // Only a refusal pays for this, never the common case.
                sweep(&mut tx, r.stale_before_ms).await?;
                usage = usage_in(&mut tx, &limit.scope, period).await?;
            }
            if !usage.admits(amount, limit.limit) {
                tx.rollback().await?;
                return Ok(ReserveOutcome::Exceeded {
                    limit: limit.clone(),
                    usage,
                });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO cost_ledger (day, month, user_id, key_id, model, provider, reserved, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(r.day)
        .bind(r.month)
        .bind(r.user_id)
        .bind(r.key_id)
        .bind(r.model)
        .bind(r.provider)
        .bind(amount)
        .bind(r.now_ms)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = inserted.try_get("id")?;
        let row = Counted {
            day: r.day.into(),
            month: r.month.into(),
            user_id: r.user_id.map(Into::into),
            key_id: r.key_id.map(Into::into),
            reserved: amount,
        };
        bump(&mut tx, &row, 0, amount).await?;
        tx.commit().await?;
        Ok(ReserveOutcome::Reserved(id))
    }

    /// Sweeps holds older than the stale horizon: their requests died with their instance.
    async fn cost_recover(&self) -> Result<()> {
        let now_ms = crate::conversations::model::now_millis();
        let mut tx = self.begin_ledger().await?;
        sweep(&mut tx, now_ms.saturating_sub(STALE_AFTER_MS)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cost_settle(&self, id: i64, spent: Micros, tokens: Tokens) -> Result<()> {
        let spent = clamp(spent);
        let (tokens_in, tokens_out) = tokens.columns();
        let mut tx = self.begin_ledger().await?;
        if let Some(row) = open_row(&mut tx, id).await? {
            // Never more than was held: the hold is the call's worst case, and a charge above
            // it could take a scope past its limit after the check that admitted the call.
            let spent = spent.min(row.reserved);
            sqlx::query(
                "UPDATE cost_ledger SET spent = $2, reserved = 0, settled = TRUE,
                        tokens_in = $3, tokens_out = $4
                 WHERE id = $1",
            )
            .bind(id)
            .bind(spent)
            .bind(tokens_in)
            .bind(tokens_out)
            .execute(&mut *tx)
            .await?;
            bump(&mut tx, &row, spent, -row.reserved).await?;
        } else {
            // Swept as stale: no call may live that long (MAX_CALL_SECS), so this is a bug.
            tracing::error!(id, "settled a reservation that is no longer held");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn cost_release(&self, id: i64) -> Result<()> {
        let mut tx = self.begin_ledger().await?;
        if let Some(row) = open_row(&mut tx, id).await? {
            sqlx::query("DELETE FROM cost_ledger WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            bump(&mut tx, &row, 0, -row.reserved).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Totals as of the last reservation's sweep: a stale hold counts until the next one.
    async fn cost_usage(&self, scope: &Scope, key: &str) -> Result<Usage> {
        let mut conn = self.pool().acquire().await?;
        usage_in(&mut conn, scope, key).await
    }

    async fn cost_charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        let rows = sqlx::query(
            "SELECT day, model, user_id, key_id, spent, tokens_in, tokens_out, source
             FROM cost_ledger WHERE settled = TRUE AND day >= $1 ORDER BY day, id",
        )
        .bind(since_day)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Charge {
                    day: r.try_get("day")?,
                    model: r.try_get("model")?,
                    user_id: r.try_get("user_id")?,
                    key_id: r.try_get("key_id")?,
                    spent: r.try_get("spent")?,
                    tokens: Tokens::from_columns(r.try_get("tokens_in")?, r.try_get("tokens_out")?),
                    request: r.try_get::<String, _>("source")? != "import",
                })
            })
            .collect()
    }

    async fn cost_import(&self, day: &str, spent: Micros, now_ms: i64) -> Result<bool> {
        let spent = clamp(spent);
        let month = day.get(..7).unwrap_or(day);
        let mut tx = self.begin_ledger().await?;
        let done = sqlx::query(
            "INSERT INTO cost_ledger (day, month, model, provider, spent, settled, source, created_at)
             VALUES ($1, $2, 'imported', 'seed', $3, TRUE, 'import', $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(day)
        .bind(month)
        .bind(spent)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let inserted = done.rows_affected() == 1;
        if inserted {
            let row = Counted {
                day: day.into(),
                month: month.into(),
                user_id: None,
                key_id: None,
                reserved: 0,
            };
            bump(&mut tx, &row, spent, 0).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
