//! A service tool's call: the arguments become one request to `/api/services/{service}/...`,
//! made through the proxy's own code, so the call meets the same checks (path, body type,
//! local-only guard, the key's `--services` list), gets its credential from the vault, comes
//! back scrubbed of it, and is audited under the service's category, as a REST call is, its
//! entry naming the tool (`details.tool`). A call refused before any request is made (a key
//! without the service, a tool the service does not have, bad arguments) is one entry too,
//! `tools/call TOOL`, so every call is counted in the privacy report's tools.
//!
//! rmcp runs the call on a task of its own, which a client that hangs up (or a request cut off
//! by its deadline) does not stop, so a call that reached the device still ends and leaves its
//! entry (`tools` tracks it, so shutdown waits for it before the audit log closes).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use http_body_util::BodyExt;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};

use crate::error::{Error, Result};
use crate::gateway::request_info::RequestInfo;
use crate::gateway::services::{self, ForTool};
use crate::gateway::state::AppState;
use crate::mcp::limits::MAX_RESULT_BYTES;
use crate::mcp::{names, service_tools};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::services::oauth::Refresher;

/// The surface the proxy's audit entry names for these calls.
const SURFACE: &str = "mcp";

pub async fn call(
    state: &AppState,
    refresher: &Refresher,
    info: &RequestInfo,
    service: &str,
    tool: &str,
    args: JsonObject,
) -> Result<CallToolResult> {
    // The proxy would refuse it too, but as an access refusal naming no tool.
    if !info.principal.may_call(service) {
        let e = Error::Forbidden(format!(
            "this API key may not call the service {service:?} (see `keys create --services`)"
        ));
        audit_refusal(state, info, service, tool, Outcome::Blocked, &e).await?;
        return Err(e);
    }
    let made = service_tools::call(service, tool, &args).unwrap_or_else(|| {
        Err(Error::BadRequest(format!(
            "the service {service:?} has no tool {tool:?}; tools/list names them"
        )))
    });
    let call = match made {
        Ok(c) => c,
        Err(e) => {
            // Refused before any request was made: the entry the proxy would have written.
            audit_refusal(state, info, service, tool, Outcome::Failed, &e).await?;
            return Err(e);
        }
    };
    let mut req = Request::builder()
        .method(call.method)
        .uri(format!("/api/services/{}/{}", call.service, call.path))
        .header("x-maestra-surface", SURFACE)
        .extension(ForTool(tool.to_string()));
    // Declared as a client's would be: the proxy sends a body only with a length (or chunked).
    let body = match &call.body {
        Some(v) => {
            let bytes = serde_json::to_vec(v).unwrap_or_default();
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, bytes.len());
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => {
            let e = Error::BadRequest("the path is not a valid URL path".into()).because(e);
            audit_refusal(state, info, service, tool, Outcome::Failed, &e).await?;
            return Err(e);
        }
    };
    let resp = services::call(state, refresher, info, req).await?;
    let status = resp.status();
    let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESULT_BYTES)
        .collect()
        .await
        .map_err(|_| {
            Error::Upstream(format!(
                "{service} answered more than {MAX_RESULT_BYTES} bytes, or stopped mid-answer"
            ))
        })?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if status.is_success() {
        CallToolResult::success(vec![ContentBlock::text(text)])
    } else {
        // The service ran the call and said no: the assistant reads why.
        CallToolResult::error(vec![ContentBlock::text(format!(
            "{service} answered {status}: {text}"
        ))])
    })
}

async fn audit_refusal(
    state: &AppState,
    info: &RequestInfo,
    service: &str,
    tool: &str,
    result: Outcome,
    e: &Error,
) -> Result<()> {
    let category =
        crate::services::resolve(service, &state.config.services, state.egress.catalog())
            .map_or(Category::Tool, |s| s.category);
    let tool = if names::valid_tool(tool) {
        tool
    } else {
        "(not a tool name)"
    };
    let event = Event::new(category, service, format!("tools/call {tool}"), result)
        .surface(SURFACE)
        .detail("error", e.code());
    state.audit.record(info.stamp(event)).await
}
