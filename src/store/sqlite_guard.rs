//! The embedded store's cost ledger and API keys. Reservations run under `BEGIN IMMEDIATE`:
//! SQLite then has one writer at a time, so check-and-insert is atomic.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::ApiKeyRecord;
use super::sqlite::SqliteStore;
use crate::cost::ledger::{
    Charge, Limit, Micros, Period, Reservation, ReserveOutcome, Scope, Usage,
};
use crate::error::{Error, Result};

/// The usage query for a scope and period; binds: key (day/month), stale horizon, [scope id].
fn usage_sql(scope: &Scope, period: Period) -> String {
    let column = match period {
        Period::Daily => "day",
        Period::Monthly => "month",
    };
    let filter = match scope {
        Scope::Global => "",
        Scope::User(_) => " AND user_id = ?3",
        Scope::Key(_) => " AND key_id = ?3",
    };
    format!(
        "SELECT COALESCE(SUM(spent), 0) AS spent,
                COALESCE(SUM(CASE WHEN settled = 0 AND created_at >= ?2 THEN reserved ELSE 0 END), 0)
                    AS reserved
         FROM cost_ledger WHERE {column} = ?1{filter}"
    )
}

async fn usage_in(
    conn: &mut sqlx::SqliteConnection,
    scope: &Scope,
    period: Period,
    key: &str,
    stale_before_ms: i64,
) -> Result<Usage> {
    let sql = usage_sql(scope, period);
    let mut q = sqlx::query(&sql).bind(key).bind(stale_before_ms);
    if let Scope::User(id) | Scope::Key(id) = scope {
        q = q.bind(id);
    }
    let row = q.fetch_one(conn).await?;
    Ok(Usage {
        spent: row.try_get("spent")?,
        reserved: row.try_get("reserved")?,
    })
}

fn key_record(row: &SqliteRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl SqliteStore {
    pub(super) async fn reserve(
        &self,
        r: &Reservation<'_>,
        limits: &[Limit],
    ) -> Result<ReserveOutcome> {
        let mut tx = self.begin_write().await?;
        for limit in limits {
            let key = match limit.period {
                Period::Daily => r.day,
                Period::Monthly => r.month,
            };
            let usage =
                usage_in(&mut tx, &limit.scope, limit.period, key, r.stale_before_ms).await?;
            if usage.spent + usage.reserved + r.amount > limit.limit {
                tx.rollback().await?;
                return Ok(ReserveOutcome::Exceeded {
                    limit: limit.clone(),
                    usage,
                });
            }
        }
        let done = sqlx::query(
            "INSERT INTO cost_ledger (day, month, user_id, key_id, model, provider, reserved, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(r.day)
        .bind(r.month)
        .bind(r.user_id)
        .bind(r.key_id)
        .bind(r.model)
        .bind(r.provider)
        .bind(r.amount)
        .bind(r.now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReserveOutcome::Reserved(done.last_insert_rowid()))
    }

    pub(super) async fn settle(&self, id: i64, spent: Micros) -> Result<()> {
        sqlx::query("UPDATE cost_ledger SET spent = ?2, reserved = 0, settled = 1 WHERE id = ?1")
            .bind(id)
            .bind(spent)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(super) async fn release(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM cost_ledger WHERE id = ?1 AND settled = 0")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(super) async fn usage(
        &self,
        scope: &Scope,
        period: Period,
        key: &str,
        stale: i64,
    ) -> Result<Usage> {
        let mut conn = self.pool().acquire().await?;
        usage_in(&mut conn, scope, period, key, stale).await
    }

    pub(super) async fn charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        let rows = sqlx::query(
            "SELECT day, model, user_id, spent FROM cost_ledger
             WHERE settled = 1 AND day >= ?1 ORDER BY day, id",
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
        let month = day.get(..7).unwrap_or(day);
        let done = sqlx::query(
            "INSERT INTO cost_ledger (day, month, model, provider, spent, settled, source, created_at)
             VALUES (?1, ?2, 'imported', 'seed', ?3, 1, 'import', ?4)
             ON CONFLICT DO NOTHING",
        )
        .bind(day)
        .bind(month)
        .bind(spent)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn key_insert(&self, k: &ApiKeyRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.hash)
        .bind(k.created_at)
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
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?1")
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
            "UPDATE api_keys SET revoked_at = ?2
             WHERE (name = ?1 OR id = ?1) AND revoked_at IS NULL",
        )
        .bind(name_or_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn keys_revoke_all(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn key_touch(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
