//! `GET /api/spend`: the privacy center's spend section. The daily and monthly limits with
//! what is spent and reserved (`Budget::status`, as `/api/privacy` and `maestra cost report
//! --json` show them), and the settled charges since `days` ago grouped by day, model and user
//! with the very grouping `maestra cost report --days N --by day|model|user` prints, each
//! group with the requests it paid for and their tokens beside the dollars.
//!
//! `by_key` is the per-key view of cloud mode: every API key (revoked ones only when they
//! spent in the period) with its charges, and the calls and errors the audit log counts under
//! its name (a `/v1` call made with a key is audited as the key's agent). Where per-user or
//! per-key limits are set, each user's and key's standing against them today and this month.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::ApiQuery;
use super::report_api::Tally;
use super::state::Shared;
use crate::cost::ledger::{Charge, Micros, to_usd};
use crate::cost::report::{GroupBy, Totals, group_totals, group_with, largest_first};
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

fn row(key: &str, t: &Totals) -> Value {
    json!({"key": key, "usd": to_usd(t.spent), "micros": t.spent, "requests": t.requests,
           "tokens_in": t.tokens.input, "tokens_out": t.tokens.output})
}

fn rows(list: &[(String, Totals)]) -> Vec<Value> {
    list.iter().map(|(key, t)| row(key, t)).collect()
}

/// Calls and errors per agent name from `since` to `until`, from the audit summary.
async fn calls_by_agent(
    state: &Shared,
    since: String,
    until: String,
) -> Result<HashMap<String, Tally>> {
    state.audit.settled().await;
    let summary = state.audit.summary().clone();
    tokio::task::spawn_blocking(move || {
        summary.read(|s| {
            let mut out: HashMap<String, Tally> = HashMap::new();
            for (k, c) in s.rows_between(&since, &until) {
                if k.is_call() {
                    out.entry(k.agent.clone()).or_default().add(k, c);
                }
            }
            out
        })
    })
    .await
    .map_err(|e| Error::Audit("the spend report stopped unexpectedly".into()).because(e))?
}

/// One row per API key: every key still valid, and revoked ones that spent in the period.
async fn by_key(
    state: &Shared,
    charges: &[Charge],
    since: &str,
    until: &str,
) -> Result<Vec<Value>> {
    let keys = state.store.api_key_list().await?;
    let spent: HashMap<String, Totals> = group_with(charges, |c| c.key_id.clone())
        .into_iter()
        .collect();
    let mut list: Vec<(String, Totals)> = Vec::new();
    let mut meta: HashMap<String, (&str, bool)> = HashMap::new();
    for k in &keys {
        let revoked = k.revoked_at.is_some();
        let totals = spent.get(&k.id).copied();
        if revoked && totals.is_none() {
            continue;
        }
        meta.insert(k.name.clone(), (k.id.as_str(), revoked));
        list.push((k.name.clone(), totals.unwrap_or_default()));
    }
    let calls = calls_by_agent(state, since.to_string(), until.to_string()).await?;
    let mut out = Vec::new();
    for (name, t) in largest_first(list) {
        let Some((id, revoked)) = meta.get(&name).copied() else {
            continue;
        };
        let tally = calls.get(&name).copied().unwrap_or_default();
        let mut v = row(&name, &t);
        v["key_id"] = json!(id);
        v["revoked"] = json!(revoked);
        v["calls"] = json!(tally.calls);
        v["errors"] = json!(tally.errors);
        if state.budget.has_limits(false) {
            v["limits"] = state.budget.key_status(id).await?;
        }
        out.push(v);
    }
    Ok(out)
}

pub(super) async fn spend(
    State(state): State<Shared>,
    ApiQuery(q): ApiQuery<SpendQuery>,
) -> Result<Json<Value>> {
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::BadRequest(format!("days must be 1-{MAX_DAYS}")));
    }
    let today = time::OffsetDateTime::now_utc().date();
    let since = since_day(days, today);
    let charges = state.store.cost_charges(&since).await?;
    let total = group_with(&charges, |_| Some(String::new()))
        .pop()
        .map(|(_, t)| t)
        .unwrap_or_default();
    let by_user = group_totals(&charges, GroupBy::User);
    let mut users = rows(&by_user);
    if state.budget.has_limits(true) {
        for (v, (user, _)) in users.iter_mut().zip(&by_user) {
            if user != "(none)" {
                let mut status = state.budget.user_status(user).await?;
                if let Some(o) = status.as_object_mut() {
                    o.remove("user_id");
                }
                v["limits"] = status;
            }
        }
    }
    let total_micros: Micros = total.spent;
    Ok(Json(json!({
        "days": days,
        "since": since,
        "limits": state.budget.status().await?,
        "total_usd": to_usd(total_micros),
        "total_micros": total_micros,
        "total_requests": total.requests,
        "total_tokens_in": total.tokens.input,
        "total_tokens_out": total.tokens.output,
        "by_day": rows(&group_totals(&charges, GroupBy::Day)),
        "by_model": rows(&group_totals(&charges, GroupBy::Model)),
        "by_user": users,
        "by_key": by_key(&state, &charges, &since, &today.to_string()).await?,
    })))
}
