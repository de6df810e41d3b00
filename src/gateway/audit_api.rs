//! `GET /api/audit` (the log, filtered, newest first) and `POST /api/audit/events` (SPEC §2.3,
//! §2.7): tools the assistant runs itself, such as ffmpeg (`creative`), report what they did,
//! so the log covers the assistant's local actions as well as what passed through Maestra.
//!
//! A reported event is strictly shaped: plain tokens for names, a result from the fixed list,
//! and small flat `details` whose strings pass through the same secret redaction as stored
//! messages. Only the service categories can be reported; `auth`, `admin`, `data` and
//! `local_only_block` are what Maestra itself records. Reported entries carry
//! `details.reported = true`.
//!
//! Reporting is bounded, in every mode, first by limits that do not depend on any name the
//! client chooses: [`EVENTS_PER_MINUTE_PER_CLIENT`] per client address and per API key, and
//! [`EVENTS_PER_MINUTE_ALL`] for everyone together (in local mode every client is 127.0.0.1).
//! Then [`EVENTS_PER_MINUTE`] per surface, so one tool cannot crowd out the others (429 with
//! `Retry-After` for any of these). Then the log's daily disk budget, in shares: each of the
//! first [`BUDGET_SURFACES`] surfaces has its own, every other name shares one small one, so a
//! flood under new names spends only that (429 `budget_exhausted` until the next UTC day).
//! A refused event is never written and the client is told so: nothing reported is dropped
//! silently.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::edge::{ApiJson, ApiQuery};
use super::request_info::RequestInfo;
use super::state::{AppState, Shared};
use crate::access::ratelimit::{
    BUDGET_SURFACES, Buckets, Decision, EVENTS_PER_MINUTE, EVENTS_PER_MINUTE_ALL,
    EVENTS_PER_MINUTE_PER_CLIENT, OTHER_SURFACES_BYTES_PER_DAY, SURFACE_BYTES_PER_DAY,
    SurfaceBudgets,
};
use crate::conversations::redact::redact;
use crate::error::{Error, Result};
use crate::privsec::audit::{self, Category, Event, Filter, Outcome, StoredEntry};

/// Limits on a reported event's `details`.
const MAX_DETAILS_BYTES: usize = 4096;
const MAX_DETAIL_KEYS: usize = 32;
const MAX_DETAIL_STRING: usize = 256;
const MAX_DETAIL_ARRAY: usize = 16;
/// The longest `details.host`: a DNS name's limit.
const MAX_HOST: usize = 253;
/// Entries a query returns by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A line's fields the event does not hold yet: `seq`, `prev_hash` and `hash`.
const LINE_OVERHEAD: u64 = 200;

/// The bounds on reported events (see the module's docs), one per server.
#[derive(Default)]
pub struct Intake {
    rates: Buckets,
    budget: SurfaceBudgets,
}

impl Intake {
    /// Admits `e`, reported by `surface` from the client `info` describes, or says why not
    /// (429 either way). The buckets no name can change come first: a refusal names the
    /// first limit that binds, and a refused event spends none of them.
    fn admit(&self, info: &RequestInfo, surface: &str, e: &Event) -> Result<()> {
        let mut buckets = vec![(
            crate::access::client_bucket(info.ip),
            EVENTS_PER_MINUTE_PER_CLIENT,
        )];
        if let Some(k) = &info.key_id {
            buckets.push((format!("key:{k}"), EVENTS_PER_MINUTE_PER_CLIENT));
        }
        buckets.push(("all".to_string(), EVENTS_PER_MINUTE_ALL));
        buckets.push((format!("surface:{surface}"), EVENTS_PER_MINUTE));
        if let Decision::Deny { retry_after_secs } =
            self.rates.check(&buckets, std::time::Instant::now())
        {
            return Err(Error::RateLimited { retry_after_secs });
        }
        let bytes = serde_json::to_vec(e).map_or(0, |v| v.len() as u64) + LINE_OVERHEAD;
        let mib = |b: u64| b / (1024 * 1024);
        self.budget
            .take(surface, bytes, crate::store::now_unix())
            .map_err(|spent| Error::BudgetSpent {
                message: if spent.own {
                    format!(
                        "this surface has used today's {} MiB of the audit log; nothing was recorded",
                        mib(SURFACE_BYTES_PER_DAY)
                    )
                } else {
                    format!(
                        "surfaces beyond the first {BUDGET_SURFACES} share {} MiB of the audit log a day, and have used it; nothing was recorded",
                        mib(OTHER_SURFACES_BYTES_PER_DAY)
                    )
                },
                retry_after_secs: spent.retry_after_secs,
            })
    }
}

/// Categories a client may report.
const REPORTABLE: [Category; 4] = [
    Category::Creative,
    Category::Media,
    Category::Smarthome,
    Category::Llm,
];

/// A plain token: 1..=`max` letters, digits and `_ . : @ -`, starting with a letter or digit.
/// Free text (which is where content would hide) does not fit.
pub fn check_token(field: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{field} must be 1-{max} letters, digits, `_`, `.`, `:`, `@` or `-`"
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportedEvent {
    category: Category,
    service: String,
    action: String,
    result: Outcome,
    user_id: Option<String>,
    agent_id: Option<String>,
    surface_id: Option<String>,
    #[serde(default)]
    details: Map<String, Value>,
}

pub(super) async fn report(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    Extension(intake): Extension<Arc<Intake>>,
    ApiJson(ev): ApiJson<ReportedEvent>,
) -> Result<Json<Value>> {
    if !REPORTABLE.contains(&ev.category) {
        return Err(Error::BadRequest(
            "category must be creative, media, smarthome or llm; the others are recorded by Maestra itself".into(),
        ));
    }
    check_token("service", &ev.service, 64)?;
    check_token("action", &ev.action, 128)?;
    for (field, v) in [
        ("user_id", &ev.user_id),
        ("agent_id", &ev.agent_id),
        ("surface_id", &ev.surface_id),
    ] {
        if let Some(v) = v {
            check_token(field, v, 128)?;
        }
    }
    // A user's key reports for its own user only.
    let user_id = super::access::acting_user(&state, &info, ev.user_id.as_deref()).await?;
    let details = check_details(ev.details)?;
    let mut e = Event::new(ev.category, ev.service, ev.action, ev.result).request_id(&info.id);
    e.details = details;
    e.user_id = user_id;
    e.agent_id = ev.agent_id;
    e.surface_id = ev.surface_id;
    e.ip_address = info.ip_string();
    if let Some(k) = &info.key_id {
        e = e.detail("key_id", k.as_str());
    }
    let e = e.detail("reported", true);
    // The surface a tool reports as (else its agent): its own rate and share, whatever the
    // mode, after the limits no name escapes.
    let surface = e.surface_id.as_deref().or(e.agent_id.as_deref());
    intake.admit(&info, surface.unwrap_or_default(), &e)?;
    let seq = state.audit.append(e).await?;
    Ok(Json(
        json!({"recorded": true, "seq": seq, "request_id": info.id}),
    ))
}

/// Small and flat: plain keys, scalars or short arrays of scalars, strings redacted.
fn check_details(details: Map<String, Value>) -> Result<Map<String, Value>> {
    let bad = |why: &str| Error::BadRequest(format!("details: {why}"));
    if details.len() > MAX_DETAIL_KEYS {
        return Err(bad(&format!("at most {MAX_DETAIL_KEYS} keys")));
    }
    let size = serde_json::to_vec(&details).map_or(usize::MAX, |v| v.len());
    if size > MAX_DETAILS_BYTES {
        return Err(bad(&format!("at most {MAX_DETAILS_BYTES} bytes of JSON")));
    }
    let mut out = Map::new();
    for (k, v) in details {
        check_token("a details key", &k, 64)?;
        if matches!(k.as_str(), "reported" | "key_id") {
            return Err(bad(&format!("{k:?} is set by Maestra")));
        }
        // A host names a machine, never free text: a token like the ids (the summary counts
        // only hosts egress dialled, but what the log says must not pass for one of its names,
        // such as `(other)`).
        if k == "host" {
            match &v {
                Value::String(host) => check_token("details.host", host, MAX_HOST)?,
                _ => return Err(bad("host is a string")),
            }
        }
        let v = match v {
            Value::Array(items) => {
                if items.len() > MAX_DETAIL_ARRAY {
                    return Err(bad(&format!(
                        "arrays hold at most {MAX_DETAIL_ARRAY} items"
                    )));
                }
                Value::Array(items.into_iter().map(scalar).collect::<Result<_>>()?)
            }
            other => scalar(other)?,
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn scalar(v: Value) -> Result<Value> {
    match v {
        Value::String(s) if s.chars().count() > MAX_DETAIL_STRING => Err(Error::BadRequest(
            format!("details: strings are at most {MAX_DETAIL_STRING} characters"),
        )),
        Value::String(s) => Ok(Value::String(redact(&s))),
        Value::Array(_) | Value::Object(_) => Err(Error::BadRequest(
            "details: values are strings, numbers, booleans, null or flat arrays of these".into(),
        )),
        other => Ok(other),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    user: Option<String>,
    service: Option<String>,
    category: Option<String>,
    result: Option<Outcome>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list(
    State(state): State<Shared>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>> {
    let result = q.result;
    let filter = filter(q)?;
    let entries = query(&state, filter, result).await?;
    Ok(Json(json!({"count": entries.len(), "entries": entries})))
}

fn filter(q: AuditQuery) -> Result<Filter> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!("limit must be 1-{MAX_LIMIT}")));
    }
    let category = q
        .category
        .map(|c| c.parse::<Category>().map_err(Error::BadRequest))
        .transpose()?;
    let since = q.since.as_deref().map(Filter::parse_time).transpose()?;
    let until = q.until.as_deref().map(Filter::parse_time).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(Error::BadRequest("since is after until".into()));
    }
    for (field, v) in [("user", &q.user), ("service", &q.service)] {
        if let Some(v) = v
            && v.len() > 128
        {
            return Err(Error::BadRequest(format!("{field} is too long")));
        }
    }
    Ok(Filter {
        user: q.user,
        service: q.service,
        category,
        since,
        until,
        limit: Some(limit),
    })
}

/// The query reads files (rotated ones gzip-compressed): off the async threads.
async fn query(
    state: &AppState,
    filter: Filter,
    result: Option<Outcome>,
) -> Result<Vec<StoredEntry>> {
    state.audit.settled().await;
    let path = state.config.audit.path.clone();
    tokio::task::spawn_blocking(move || {
        audit::query_matching(&path, &filter, &|e| result.is_none_or(|r| e.result == r))
    })
    .await
    .map_err(|e| Error::Audit("the audit query stopped unexpectedly".into()).because(e))?
}
