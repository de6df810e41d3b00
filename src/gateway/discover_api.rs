//! `POST /api/services/discover` runs device discovery (SPEC §2.7, issue 28) as a job, the one
//! implementation `maestra services discover` runs, audited the same way (one `network` entry);
//! `GET /api/devices` is the privacy center's Devices list: the devices the runs found, the
//! configured services and the calls made to each.
//!
//! The server never writes `maestra.toml`: adding devices stays an action of the person at the
//! machine (`maestra services discover --write`). With the `discovery` setting off the route
//! answers 409 `discovery_off` and sends nothing, which is how the tests that call every route
//! from the host's own network keep multicast off real networks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::devices::Devices;
use super::edge::{ApiJson, ApiQuery};
use super::jobs::{self, Jobs, Kind};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::conversations::model::format_millis;
use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Outcome};
use crate::privsec::guard::Catalog;
use crate::services::discover::{self, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW, report, write};

/// What the job's result says about `maestra.toml`.
const NEVER_WRITES: &str = "the server never changes maestra.toml: to add the devices found, \
                            run `maestra services discover --write` on the machine";

/// The start's body: `{}` or `{"timeout_ms": N}` (how long to listen).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Start {
    timeout_ms: Option<u64>,
}

/// The listening window asked for, within [`MIN_WINDOW`] and [`MAX_WINDOW`].
fn window(timeout_ms: Option<u64>) -> Result<Duration> {
    let Some(ms) = timeout_ms else {
        return Ok(DEFAULT_WINDOW);
    };
    let d = Duration::from_millis(ms);
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
        return Err(Error::BadRequest(format!(
            "timeout_ms must be between {} and {}, not {ms}",
            MIN_WINDOW.as_millis(),
            MAX_WINDOW.as_millis()
        )));
    }
    Ok(d)
}

pub(super) async fn start(
    State(state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(devices): Extension<Arc<Devices>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let start: Start = super::center_body::object(body)?;
    let window = window(start.timeout_ms)?;
    if !state.config.discovery {
        return Err(report::turned_off());
    }
    let (job, new) = jobs.start(Kind::ServiceDiscover);
    if new {
        let request_id = info.id.clone();
        jobs::spawn(job.clone(), async move {
            // Descriptions are fetched only from local addresses, whatever the mode.
            let egress = Egress::local_network(Catalog::new(&state.config.guard))?;
            let found = discover::discover(window, &egress).await;
            let offers = write::offers(&found.devices, &state.config.services);
            let event = report::audit_event(&found, &offers, &[]).request_id(request_id);
            state.audit.record(event).await?;
            let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            devices.record(&found.devices, &offers, now_ms);
            let mut result = report::to_json(&found, &offers);
            result["written"] = json!([]);
            result["note"] = json!(NEVER_WRITES);
            Ok(result)
        });
    }
    Ok(Json(job.to_json()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    period: Option<String>,
}

/// Calls to one service over the period, from the audit log's summary.
#[derive(Debug, Default, Clone, Copy)]
struct Use {
    calls: u64,
    errors: u64,
    blocked: u64,
    /// Unix seconds of the newest call, 0 when unknown.
    last: i64,
}

/// `GET /api/devices`.
pub(super) async fn list(
    State(state): State<Shared>,
    Extension(devices): Extension<Arc<Devices>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>> {
    let period = q.period.unwrap_or_else(|| "7d".into());
    let days = super::report_api::period_days(&period, OffsetDateTime::now_utc().date())?;
    let names: Vec<String> = state.config.services.keys().cloned().collect();
    state.audit.settled().await;
    let summary = state.audit.summary().clone();
    let uses = tokio::task::spawn_blocking(move || summary.read(|s| calls(s, &names, &days)))
        .await
        .map_err(|e| Error::Audit("the devices list stopped unexpectedly".into()).because(e))??;
    let catalog = Catalog::new(&state.config.guard);
    let services: Vec<Value> = state
        .config
        .services
        .keys()
        .map(|name| {
            let u = uses.get(name).copied().unwrap_or_default();
            let resolved = crate::services::resolve(name, &state.config.services, &catalog).ok();
            json!({
                "service": name,
                // The origin only: a base URL's path or user part is none of the page's business.
                "address": resolved.as_ref().map(|s| s.base_url.origin().ascii_serialization()),
                "category": resolved.as_ref().map(|s| s.category),
                "calls": u.calls, "errors": u.errors, "blocked": u.blocked,
                "last_call": (u.last != 0).then(|| format_millis(u.last.saturating_mul(1000))),
            })
        })
        .collect();
    let (found, last_run) = devices.list();
    Ok(Json(json!({
        "discovery": state.config.discovery,
        "period": period,
        "last_run": last_run,
        "devices": found,
        "services": services,
    })))
}

/// Calls per configured service over `days`, as the report counts them.
fn calls(
    s: &crate::privsec::audit::Summary,
    names: &[String],
    days: &[String],
) -> BTreeMap<String, Use> {
    let mut by: BTreeMap<String, Use> = BTreeMap::new();
    let (Some(since), Some(until)) = (days.first(), days.last()) else {
        return by;
    };
    for (k, c) in s.rows_between(since, until) {
        if !k.is_call() || !names.contains(&k.service) {
            continue;
        }
        let u = by.entry(k.service.clone()).or_default();
        u.calls += c.entries;
        if k.category == Category::LocalOnlyBlock || k.result == Outcome::Blocked {
            u.blocked += c.entries;
        }
        if matches!(k.result, Outcome::Failed | Outcome::Error) {
            u.errors += c.entries;
        }
        u.last = u.last.max(c.last);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded() {
        assert_eq!(window(None).unwrap(), DEFAULT_WINDOW);
        assert_eq!(window(Some(1000)).unwrap(), MIN_WINDOW);
        assert_eq!(window(Some(120_000)).unwrap(), MAX_WINDOW);
        for bad in [0, 999, 120_001, u64::MAX] {
            let e = window(Some(bad)).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }
}
