//! The embedded store's cost ledger and API keys. The ledger itself is checked in memory and
//! written behind (`sqlite_ledger`); this file holds the reports, imports and keys.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::ApiKeyRecord;
use super::codec::totals_sql;
use super::sqlite::SqliteStore;
use crate::cost::ledger::{Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Usage};
use crate::error::{Error, Result};

/// Imported days get negative ids, so they can never collide with ids the in-memory ledger
/// hands out (positive, ahead of what is written).
fn import_id(day: &str) -> i64 {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, fmt).map_or(i64::MIN, |d| -i64::from(d.to_julian_day()))
}

fn key_record(row: &SqliteRow) -> Result<ApiKeyRecord> {
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

impl SqliteStore {
    pub(super) async fn reserve(
        &self,
        r: &Reservation<'_>,
        limits: &[Limit],
    ) -> Result<ReserveOutcome> {
        self.ledger().reserve(r, limits).await
    }

    pub(super) async fn settle(&self, id: i64, spent: Micros) -> Result<()> {
        self.ledger().settle(id, spent).await
    }

    pub(super) async fn release(&self, id: i64) -> Result<()> {
        self.ledger().release(id).await
    }

    pub(super) async fn usage(&self, scope: &Scope, key: &str) -> Result<Usage> {
        self.ledger().usage(scope, key).await
    }

    pub(super) async fn charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        self.ledger().flush().await?;
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
        let spent = crate::cost::ledger::clamp(spent);
        let month = day.get(..7).unwrap_or(day);
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO cost_ledger (id, day, month, model, provider, spent, settled, source, created_at)
             VALUES (?5, ?1, ?2, 'imported', 'seed', ?3, 1, 'import', ?4)
             ON CONFLICT DO NOTHING",
        )
        .bind(day)
        .bind(month)
        .bind(spent)
        .bind(now_ms)
        .bind(import_id(day))
        .execute(&mut *tx)
        .await?;
        let inserted = done.rows_affected() == 1;
        if inserted {
            for sql in totals_sql(2, false) {
                sqlx::query(&sql)
                    .bind("global")
                    .bind(day)
                    .bind(spent)
                    .bind(0_i64)
                    .bind("global")
                    .bind(month)
                    .bind(spent)
                    .bind(0_i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.ledger().invalidate(&[day, month]).await;
        Ok(inserted)
    }

    pub(super) async fn key_insert(&self, k: &ApiKeyRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, hash, created_at, user_id, scope, services, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
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
        .execute(self.writer())
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
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn keys_revoke_all(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn key_touch(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
