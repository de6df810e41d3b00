//! `GET /api/spend`: the privacy center's spend section. The daily and monthly limits with
//! what is spent and reserved (`Budget::status`, as `/api/privacy` and `maestra cost report
//! --json` show them), and the settled charges since `days` ago grouped by day, model and user
//! with the very grouping `maestra cost report --days N --by day|model|user` prints.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::edge::ApiQuery;
use crate::cost::ledger::{Micros, to_usd};
use crate::cost::report::{GroupBy, group};
use crate::error::{Error, Result};

const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpendQuery {
    days: Option<u32>,
}

/// The first day counted, as `cost report` computes it: `days` days before today (UTC).
pub fn since_day(days: u32, today: time::Date) -> String {
    (today - time::Duration::days(i64::from(days))).to_string()
}

fn rows(list: Vec<(String, Micros)>) -> Vec<Value> {
    list.into_iter()
        .map(|(key, m)| json!({"key": key, "usd": to_usd(m), "micros": m}))
        .collect()
}

pub(super) async fn spend(
    State(state): State<Shared>,
    ApiQuery(q): ApiQuery<SpendQuery>,
) -> Result<Json<Value>> {
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::BadRequest(format!("days must be 1-{MAX_DAYS}")));
    }
    let since = since_day(days, time::OffsetDateTime::now_utc().date());
    let charges = state.store.cost_charges(&since).await?;
    let total: Micros = charges.iter().map(|c| c.spent).sum();
    Ok(Json(json!({
        "days": days,
        "since": since,
        "limits": state.budget.status().await?,
        "total_usd": to_usd(total),
        "total_micros": total,
        "by_day": rows(group(&charges, GroupBy::Day)),
        "by_model": rows(group(&charges, GroupBy::Model)),
        "by_user": rows(group(&charges, GroupBy::User)),
    })))
}
