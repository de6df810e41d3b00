//! `GET /api/report`: the privacy center's home, an App Privacy Report for the assistant.
//! For a period (today, 7 or 30 days, UTC): per agent (else surface), the services and hosts
//! it called, how often, the bytes sent and received, and what local-only mode blocked and
//! why; the most-contacted hosts; calls and blocks per day; and the tools called, per server
//! and tool (`tools`); and the values minimisation withheld from cloud calls, per day and
//! provider (`withheld`). Errors (calls whose result was `failed` or `error`) are counted apart,
//! among the calls.
//!
//! It reads the audit log's summary ([`crate::privsec::audit::Summary`]), not the log, so it
//! answers in milliseconds over a million entries. A call is an entry of a service category
//! (`llm`, `media`, `smarthome`, `creative`), a `tools/call`, or a `local_only_block`; a block
//! is the latter (other `tool` entries, a definition pinned or changed, a restart, are events,
//! not calls). At most [`MAX_NAMES`] agents are listed, the most counted, and the rest as one
//! `(other)`; the tools likewise (`tools::MAX_TOOLS`).

mod tools;

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::edge::ApiQuery;
use super::state::Shared;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Counts, MAX_NAMES, OTHER, Outcome, Summary, SummaryKey};
use tools::ToolUse;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    period: Option<String>,
}

/// The days a period covers, oldest first, ending today (UTC).
pub(super) fn period_days(period: &str, today: time::Date) -> Result<Vec<String>> {
    let n = match period {
        "today" => 1,
        "7d" => 7,
        "30d" => 30,
        other => {
            let shown: String = other.chars().take(16).collect();
            return Err(Error::BadRequest(format!(
                "period must be today, 7d or 30d, not {shown:?}"
            )));
        }
    };
    Ok((0..n)
        .rev()
        .map(|i| (today - Duration::days(i)).to_string())
        .collect())
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Tally {
    pub(super) calls: u64,
    pub(super) blocked: u64,
    /// Calls that failed (`failed`: refused upstream or abandoned; `error`: the upstream or
    /// Maestra broke), counted among `calls`.
    pub(super) errors: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    /// Values withheld from cloud calls (SPEC §2.12).
    pub(super) withheld: u64,
}

/// Whether an entry's result is a failure the person should see apart from the calls.
fn is_error(result: Outcome) -> bool {
    matches!(result, Outcome::Failed | Outcome::Error)
}

impl Tally {
    pub(super) fn add(&mut self, k: &SummaryKey, c: &Counts) {
        self.calls += c.entries;
        if k.category == Category::LocalOnlyBlock {
            self.blocked += c.entries;
        }
        if is_error(k.result) {
            self.errors += c.entries;
        }
        self.bytes_sent += c.bytes_sent;
        self.bytes_received += c.bytes_received;
        self.withheld += c.withheld;
    }
}

#[derive(Default)]
struct Agent {
    total: Tally,
    /// (service, host) → figures.
    destinations: BTreeMap<(String, String), Tally>,
    reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.calls += o.calls;
        self.blocked += o.blocked;
        self.errors += o.errors;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.withheld += o.withheld;
    }
}

/// Over a period each day keeps its own most counted names, so the days together may name more
/// than [`MAX_NAMES`] agents: the least counted beyond it join [`OTHER`] here too, and the
/// list stays as bounded as a day's. `agents` is sorted, most calls first.
fn fold_agents(agents: Vec<(String, Agent)>) -> Vec<(String, Agent)> {
    if agents.len() <= MAX_NAMES + 1 {
        return agents;
    }
    let mut kept = Vec::with_capacity(MAX_NAMES + 1);
    let mut other = Agent::default();
    for (name, a) in agents {
        if name == OTHER || kept.len() >= MAX_NAMES {
            other.total.merge(&a.total);
            for (dest, t) in a.destinations {
                other.destinations.entry(dest).or_default().merge(&t);
            }
            for (reason, n) in a.reasons {
                *other.reasons.entry(reason).or_default() += n;
            }
        } else {
            kept.push((name, a));
        }
    }
    kept.push((OTHER.to_string(), other));
    kept
}

/// The report for `days` (oldest first) from the summary.
pub fn build(summary: &Summary, period: &str, days: &[String]) -> Value {
    let (Some(since), Some(until)) = (days.first(), days.last()) else {
        return json!({});
    };
    let mut total = Tally::default();
    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    let mut hosts: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut tools = ToolUse::default();
    // (day, provider) -> values withheld from its calls.
    let mut withheld: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut per_day: BTreeMap<&str, Tally> = days
        .iter()
        .map(|d| (d.as_str(), Tally::default()))
        .collect();
    for (k, c) in summary.rows_between(since, until) {
        if !k.is_call() {
            continue;
        }
        total.add(k, c);
        tools.add(k, c);
        if c.withheld > 0 {
            *withheld
                .entry((k.day.clone(), k.service.clone()))
                .or_default() += c.withheld;
        }
        let agent = agents.entry(k.agent.clone()).or_default();
        agent.total.add(k, c);
        agent
            .destinations
            .entry((k.service.clone(), k.host.clone()))
            .or_default()
            .add(k, c);
        if k.category == Category::LocalOnlyBlock {
            *agent.reasons.entry(k.reason.clone()).or_default() += c.entries;
        }
        hosts
            .entry((k.host.clone(), k.service.clone()))
            .or_default()
            .add(k, c);
        if let Some(d) = per_day.get_mut(k.day.as_str()) {
            d.add(k, c);
        }
    }
    let mut agents: Vec<(String, Agent)> = agents.into_iter().collect();
    agents.sort_by(|a, b| b.1.total.calls.cmp(&a.1.total.calls).then(a.0.cmp(&b.0)));
    let agents = fold_agents(agents);
    let agents: Vec<Value> = agents
        .into_iter()
        .map(|(name, a)| {
            let mut dests: Vec<_> = a.destinations.into_iter().collect();
            dests.sort_by(|x, y| y.1.calls.cmp(&x.1.calls).then(x.0.cmp(&y.0)));
            json!({
                "agent": name,
                "totals": a.total,
                "destinations": dests.into_iter().map(|((service, host), t)| json!({
                    "service": service, "host": host, "calls": t.calls, "blocked": t.blocked,
                    "errors": t.errors,
                    "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received,
                })).collect::<Vec<_>>(),
                "blocked_reasons": a.reasons.into_iter().map(|(reason, count)| json!({
                    "reason": reason, "count": count})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut top: Vec<_> = hosts.into_iter().collect();
    top.sort_by(|x, y| y.1.calls.cmp(&x.1.calls).then(x.0.cmp(&y.0)));
    top.truncate(10);
    json!({
        "period": period,
        "since": since,
        "until": until,
        "through_seq": summary.through_seq,
        "totals": total,
        "agents": agents,
        "top_hosts": top.into_iter().map(|((host, service), t)| json!({
            "host": host, "service": service, "calls": t.calls, "blocked": t.blocked,
            "errors": t.errors,
            "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received,
        })).collect::<Vec<_>>(),
        "days": per_day.into_iter().map(|(day, t)| json!({
            "day": day, "calls": t.calls, "blocked": t.blocked, "errors": t.errors,
            "withheld": t.withheld,
        })).collect::<Vec<_>>(),
        "withheld": withheld.into_iter().map(|((day, service), values)| json!({
            "day": day, "service": service, "values": values,
        })).collect::<Vec<_>>(),
        "tools": tools.into_json(),
    })
}

pub(super) async fn report(
    State(state): State<Shared>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Json<Value>> {
    let period = q.period.unwrap_or_else(|| "7d".into());
    let days = period_days(&period, OffsetDateTime::now_utc().date())?;
    state.audit.settled().await;
    let summary = state.audit.summary().clone();
    let report = tokio::task::spawn_blocking(move || summary.read(|s| build(s, &period, &days)))
        .await
        .map_err(|e| Error::Audit("the report stopped unexpectedly".into()).because(e))??;
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_utc_days() {
        let today = time::macros::date!(2026 - 03 - 01);
        assert_eq!(period_days("today", today).unwrap(), vec!["2026-03-01"]);
        let week = period_days("7d", today).unwrap();
        assert_eq!(week.first().unwrap(), "2026-02-23");
        assert_eq!(week.len(), 7);
        assert!(period_days("365d", today).is_err());
    }

    fn row(s: &mut Summary, cat: Category, service: &str, tool: &str, result: Outcome, n: u64) {
        let k = SummaryKey {
            day: "2026-03-01".into(),
            agent: "desk".into(),
            category: cat,
            service: service.into(),
            host: String::new(),
            result,
            reason: String::new(),
            tool: tool.into(),
        };
        s.rows.entry(k).or_default().merge(&Counts {
            entries: n,
            last: 1_772_357_400 + n as i64, // 2026-03-01T09:30:00Z and a few seconds
            ..Counts::default()
        });
    }

    /// Tool calls per server and tool: calls, blocks (any refusal), errors and the last use,
    /// most called first; a tool's pins and restarts are events, neither calls nor tools.
    #[test]
    fn tools_are_listed_per_server_and_tool() {
        let mut s = Summary::default();
        row(
            &mut s,
            Category::Tool,
            "time",
            "get_current_time",
            Outcome::Success,
            3,
        );
        row(
            &mut s,
            Category::Tool,
            "time",
            "get_current_time",
            Outcome::Failed,
            1,
        );
        row(
            &mut s,
            Category::Tool,
            "time",
            "convert_time",
            Outcome::Blocked,
            1,
        );
        row(
            &mut s,
            Category::LocalOnlyBlock,
            "web",
            "fetch",
            Outcome::Blocked,
            2,
        );
        row(
            &mut s,
            Category::Smarthome,
            "hue",
            "set_light",
            Outcome::Success,
            2,
        );
        // Not tool calls: a pin (a `tool` row naming no tool) and a REST call.
        row(&mut s, Category::Tool, "time", "", Outcome::Success, 5);
        row(&mut s, Category::Smarthome, "hue", "", Outcome::Success, 7);
        let days = vec!["2026-03-01".to_string()];
        let r = build(&s, "today", &days);
        assert_eq!(r["totals"]["calls"], 3 + 1 + 1 + 2 + 2 + 7, "{r}");
        let tools = r["tools"].as_array().unwrap();
        let names: Vec<(&str, &str)> = tools
            .iter()
            .map(|t| (t["server"].as_str().unwrap(), t["tool"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("time", "get_current_time"),
                ("hue", "set_light"),
                ("web", "fetch"),
                ("time", "convert_time")
            ]
        );
        assert_eq!(
            tools[0],
            json!({"server": "time", "tool": "get_current_time", "calls": 4, "blocked": 0,
                   "errors": 1, "last_used": "2026-03-01T09:30:03Z"})
        );
        assert_eq!(
            (&tools[2]["blocked"], &tools[2]["errors"]),
            (&json!(2), &json!(0))
        );
        assert_eq!(tools[3]["blocked"], 1);
        // Another period: none.
        let other = vec!["2026-02-28".to_string()];
        assert_eq!(build(&s, "today", &other)["tools"], json!([]));
    }

    /// More tools over a period than a day keeps: the least called are one (other) row, and
    /// every call is still counted.
    #[test]
    fn the_tools_list_is_bounded() {
        let mut s = Summary::default();
        for i in 0..tools::MAX_TOOLS + 50 {
            let n = 1 + (i % 5) as u64;
            row(
                &mut s,
                Category::Tool,
                "many",
                &format!("t{i}"),
                Outcome::Success,
                n,
            );
        }
        row(&mut s, Category::Tool, OTHER, OTHER, Outcome::Failed, 1);
        let r = build(&s, "today", &["2026-03-01".to_string()]);
        let tools = r["tools"].as_array().unwrap();
        assert_eq!(tools.len(), tools::MAX_TOOLS + 1);
        let last = tools.last().unwrap();
        assert_eq!(
            (&last["server"], &last["tool"]),
            (&json!(OTHER), &json!(OTHER))
        );
        assert_eq!(last["errors"], 1);
        let calls: u64 = tools.iter().map(|t| t["calls"].as_u64().unwrap()).sum();
        assert_eq!(calls, r["totals"]["calls"].as_u64().unwrap());
        assert!(tools[0]["calls"].as_u64() >= tools[1]["calls"].as_u64());
    }
}
