//! The shared store's cost ledger and API keys. Ledger changes take one transaction-scoped
//! advisory lock, so check-and-insert is atomic across every instance sharing the database.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::ApiKeyRecord;
use super::codec::{scope_key, scopes, totals_sql};
use super::postgres::PostgresStore;
use crate::cost::ledger::{
    Charge, Limit, Micros, Period, Reservation, ReserveOutcome, STALE_AFTER_MS, Scope, Usage, clamp,
};
use crate::error::{Error, Result};

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

fn key_record(row: &PgRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        user_id: row.try_get("user_id")?,
        scope: super::codec::key_scope(&row.try_get::<String, _>("scope")?)?,
        services: super::codec::key_services_from_column(row.try_get("services")?)?,
        expires_at: row.try_get("expires_at")?,
    })
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

    pub(super) async fn reserve(
        &self,
        r: &Reservation<'_>,
        limits: &[Limit],
    ) -> Result<ReserveOutcome> {
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
    pub(super) async fn recover(&self) -> Result<()> {
        let now_ms = crate::conversations::model::now_millis();
        let mut tx = self.begin_ledger().await?;
        sweep(&mut tx, now_ms.saturating_sub(STALE_AFTER_MS)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn settle(&self, id: i64, spent: Micros) -> Result<()> {
        let spent = clamp(spent);
        let mut tx = self.begin_ledger().await?;
        if let Some(row) = open_row(&mut tx, id).await? {
            // Never more than was held: the hold is the call's worst case, and a charge above
            // it could take a scope past its limit after the check that admitted the call.
            let spent = spent.min(row.reserved);
            sqlx::query(
                "UPDATE cost_ledger SET spent = $2, reserved = 0, settled = TRUE WHERE id = $1",
            )
            .bind(id)
            .bind(spent)
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

    pub(super) async fn release(&self, id: i64) -> Result<()> {
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
    pub(super) async fn usage(&self, scope: &Scope, key: &str) -> Result<Usage> {
        let mut conn = self.pool().acquire().await?;
        usage_in(&mut conn, scope, key).await
    }

    pub(super) async fn charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        let rows = sqlx::query(
            "SELECT day, model, user_id, spent FROM cost_ledger
             WHERE settled = TRUE AND day >= $1 ORDER BY day, id",
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
                    spent: r.try_get("spent")?,
                })
            })
            .collect()
    }

    pub(super) async fn import_spend(&self, day: &str, spent: Micros, now_ms: i64) -> Result<bool> {
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

    pub(super) async fn key_insert(&self, k: &ApiKeyRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, hash, created_at, user_id, scope, services, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.hash)
        .bind(k.created_at)
        .bind(&k.user_id)
        .bind(k.scope.as_str())
        .bind(super::codec::key_services_to_column(k.services.as_ref())?)
        .bind(k.expires_at)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::BadRequest(format!(
                "an API key named {:?} exists",
                k.name
            )));
        }
        Ok(())
    }

    pub(super) async fn key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(key_record).transpose()
    }

    pub(super) async fn key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(key_record).collect()
    }

    pub(super) async fn key_revoke(&self, name_or_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2
             WHERE (name = $1 OR id = $1) AND revoked_at IS NULL",
        )
        .bind(name_or_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn keys_revoke_all(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn key_touch(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
