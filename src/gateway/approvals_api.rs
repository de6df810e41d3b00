//! The privacy center's waiting tool calls (`tools = { NAME = "ask" }`): `GET
//! /api/tools/approvals` lists the calls that wait for the person's decision, on any process
//! sharing the store; `POST /api/tools/approvals/{id}` approves or denies one. Each decision
//! is an admin entry in the audit log; the call's own entry says how its wait ended.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::{ApiJson, ApiPath};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::conversations::model::format_millis;
use crate::error::Result;
use crate::mcp::approvals::Waiting;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::store::{ApprovalRecord, Decision};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    decision: Choice,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Choice {
    Approve,
    Deny,
}

pub(super) async fn list(State(state): State<Shared>) -> Result<Json<Value>> {
    let waiting = state.approvals.waiting().await?;
    Ok(Json(json!({
        "timeout_secs": state.approvals.timeout().as_secs(),
        "waiting": waiting.iter().map(shown).collect::<Vec<_>>(),
    })))
}

pub(super) async fn decide(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let req: DecisionRequest = super::center_body::object(body)?;
    let decision = match req.decision {
        Choice::Approve => Decision::Approved,
        Choice::Deny => Decision::Denied,
    };
    let by = match &info.key_id {
        Some(k) => format!("the privacy center (key {k})"),
        None => "the privacy center".to_string(),
    };
    let record = state.approvals.decide(&id, decision, &by).await?;
    let mut e = Event::new(
        Category::Admin,
        "maestra",
        format!("mcp.{}", decision.as_str()),
        Outcome::Success,
    )
    .request_id(&info.id)
    .detail("call", record.id.as_str())
    .detail("server", record.server.as_str())
    .detail("tool", record.tool.as_str());
    if let Some(k) = &info.key_id {
        e = e.detail("key_id", k.as_str());
    }
    state.audit.record(e).await?;
    Ok(Json(record_json(&record)))
}

fn shown(w: &Waiting) -> Value {
    let mut v = record_json(&w.record);
    v["arguments_preview"] = json!(w.preview);
    v
}

fn record_json(r: &ApprovalRecord) -> Value {
    json!({
        "id": r.id,
        "server": r.server,
        "tool": r.tool,
        "asked_by": r.asked_by,
        "arguments_bytes": r.arguments_bytes,
        "arguments_digest": r.arguments_digest,
        "asked_at": format_millis(r.asked_at),
        "expires_at": format_millis(r.expires_at),
        "decision": r.decision.map(Decision::as_str),
        "decided_by": r.decided_by,
    })
}
