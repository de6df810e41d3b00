//! The embedded store's cost ledger: checked in memory and written behind (`mem_ledger`);
//! this file holds the trait's face of it, the reports and the seed's imported days.

use async_trait::async_trait;

use super::*;

use super::SqliteStore;
use crate::cost::ledger::{
    Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Tokens, Usage,
};
use crate::error::Result;
use crate::store::codec::totals_sql;
use sqlx::Row;

/// Imported days get negative ids, so they can never collide with ids the in-memory ledger
/// hands out (positive, ahead of what is written).
fn import_id(day: &str) -> i64 {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, fmt).map_or(i64::MIN, |d| -i64::from(d.to_julian_day()))
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        self.ledger().reserve(r, limits).await
    }

    async fn cost_recover(&self) -> Result<()> {
        self.ledger.recover().await
    }

    async fn cost_settle(&self, id: i64, spent: Micros, tokens: Tokens) -> Result<()> {
        self.ledger().settle(id, spent, tokens).await
    }

    async fn cost_release(&self, id: i64) -> Result<()> {
        self.ledger().release(id).await
    }

    async fn cost_usage(&self, scope: &Scope, key: &str) -> Result<Usage> {
        self.ledger().usage(scope, key).await
    }

    async fn cost_charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        self.ledger().flush().await?;
        let rows = sqlx::query(
            "SELECT day, model, user_id, key_id, spent, tokens_in, tokens_out, source
             FROM cost_ledger WHERE settled = 1 AND day >= ?1 ORDER BY day, id",
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
}
