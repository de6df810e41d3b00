//! A call to a tool server the person added (`[mcp.servers.NAME]`): the key's `--services`
//! list, local-only mode and the tool's rule decide first (an `ask` tool waits for the
//! person's approval), then the server answers within `mcp.call_timeout`, and one audit entry
//! records the call (category `tool`, or `local_only_block`): server, tool, caller, result,
//! duration, bytes each way, and the approval when one was asked for. What was said travels
//! only as keyed digests, so two identical calls can be matched without the log holding
//! either.

use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonObject};
use tokio_util::sync::CancellationToken;

use crate::config::mcp::Rule;
use crate::error::{Error, Result};
use crate::gateway::calls::Calls;
use crate::gateway::request_info::RequestInfo;
use crate::gateway::state::AppState;
use crate::mcp::approvals::{Answer, Ask};
use crate::mcp::names;
use crate::mcp::upstream::Listed;
use crate::privsec::audit::{Category, Event, Outcome};

pub async fn call(
    state: &AppState,
    info: &RequestInfo,
    server: &str,
    tool: &str,
    args: JsonObject,
    cancelled: &CancellationToken,
) -> Result<CallToolResult> {
    let start = Instant::now();
    let sent = serde_json::to_vec(&args).unwrap_or_default();
    let mut entry = Entry {
        state,
        info,
        server,
        tool: if names::valid_tool(tool) {
            tool
        } else {
            "(not a tool name)"
        },
        start,
        approval: None,
    };
    if !info.principal.may_call(server) {
        let e = Error::Forbidden(format!(
            "this API key may not call the tool server {server:?} (see `keys create --services`)"
        ));
        entry.refused(&e, &sent).await?;
        return Err(e);
    }
    let admitted = match state
        .tools
        .check(server, tool, &state.vault, state.egress.local_only())
        .await
    {
        Ok(a) if a.rule == Rule::Ask => {
            let ask = Ask {
                server,
                tool,
                asked_by: asked_by(info),
                arguments: &sent,
                digest: state.audit.digest(&sent),
            };
            let answer = state
                .approvals
                .ask(ask, gone(cancelled, &state.calls))
                .await
                .map_err(|e| (e, None))
                .and_then(|answer| approved(answer, state.approvals.timeout()));
            match answer {
                Ok(by) => entry.approval = Some(("approved", by)),
                Err((e, how)) => {
                    entry.approval = how.map(|h| (h, String::new()));
                    entry.refused(&e, &sent).await?;
                    return Err(e);
                }
            }
            // The wait may have been long: local-only mode, the pins and the listing are
            // looked at again before the call goes out.
            state
                .tools
                .check(server, tool, &state.vault, state.egress.local_only())
                .await
        }
        checked => checked,
    };
    let called = match admitted {
        Ok(admitted) => {
            state
                .tools
                .call(
                    admitted,
                    Some(args),
                    &state.vault,
                    state.egress.local_only(),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match called {
        Ok(c) => {
            let answer = &c.answer;
            let outcome = if c.result.is_error == Some(true) {
                Outcome::Failed
            } else {
                Outcome::Success
            };
            let mut e = entry
                .event(Category::Tool, outcome, &sent)
                .detail("bytes_out", answer.len() as u64)
                .detail("result_digest", state.audit.digest(answer));
            if c.restarted {
                e = e.detail("restarted", true);
                // The program had stopped since its last call: its restart is an event of its
                // own, so a server that keeps dying shows in the log.
                let restart = Event::new(Category::Tool, server, "tools/restart", Outcome::Success)
                    .request_id(&info.id)
                    .detail("reason", "the program had stopped since its last call");
                state.audit.record(restart).await?;
            }
            state.audit.record(e).await?;
            Ok(c.result)
        }
        Err(e) => {
            entry.refused(&e, &sent).await?;
            Err(e)
        }
    }
}

/// A listing's news for the log: tools seen (and pinned) for the first time, and tools left
/// out because their definition changed since it was pinned.
pub async fn audit_pins(
    state: &AppState,
    info: &RequestInfo,
    server: &str,
    listed: &Listed,
) -> Result<()> {
    let news = listed
        .pinned
        .iter()
        .map(|t| (t, "tools/pin", Outcome::Success))
        .chain(
            listed
                .changed
                .iter()
                // Once per change, not once per listing of every client.
                .filter(|t| state.tools.first_report(server, t))
                .map(|t| (t, "tools/changed", Outcome::Blocked)),
        );
    for (tool, action, result) in news {
        let mut e = Event::new(Category::Tool, server, format!("{action} {tool}"), result)
            .request_id(&info.id)
            .detail("tool", tool.as_str());
        if result == Outcome::Blocked {
            e = e.detail(
                "reason",
                "its description or schema changed since it was pinned; `maestra mcp approve` \
                 enables the new one",
            );
        }
        state.audit.record(e).await?;
    }
    Ok(())
}

/// A call of a tool name that no service or server has.
pub async fn audit_unknown(state: &AppState, info: &RequestInfo, err: &Error) -> Result<()> {
    let e = Event::new(
        Category::Tool,
        "mcp",
        "tools/call (unknown tool)",
        Outcome::Failed,
    )
    .detail("error", err.code());
    state.audit.record(info.stamp(e)).await
}

/// Completes when nobody waits for the call's answer any more (its client hung up, or its
/// request's deadline passed: rmcp cancels the call's token) or the server stops: an approval
/// given after that would run a call nobody reads.
async fn gone(cancelled: &CancellationToken, calls: &Calls) {
    tokio::select! {
        () = cancelled.cancelled() => {}
        () = calls.stopping() => {}
    }
}

/// An approval's answer as who approved, or the refusal and how the wait ended.
fn approved(answer: Answer, timeout: Duration) -> Result<String, (Error, Option<&'static str>)> {
    match answer {
        Answer::Approved { by } => Ok(by),
        Answer::Denied { by } => Err((
            Error::Forbidden(format!("the person ({by}) denied this tool call")),
            Some("denied"),
        )),
        Answer::TimedOut => Err((
            Error::Forbidden(format!(
                "nobody approved this tool call within {} s (mcp.ask_timeout), so it is refused",
                timeout.as_secs()
            )),
            Some("timed_out"),
        )),
        Answer::Abandoned => Err((
            Error::Forbidden("the caller went away before the person decided".into()),
            Some("abandoned"),
        )),
    }
}

/// Who asks, as the person deciding reads it.
fn asked_by(info: &RequestInfo) -> String {
    let p = &info.principal;
    let mut parts = Vec::new();
    match crate::gateway::agent::of_key(p) {
        Some(agent) => parts.push(format!("agent {agent}")),
        None => parts.extend(p.key_name.as_ref().map(|k| format!("key {k}"))),
    }
    if let Ok(Some(surface)) = info.claim.claimed() {
        parts.push(format!("surface {surface}"));
    }
    if let Some(user) = &p.user_id {
        parts.push(format!("user {user}"));
    }
    if parts.is_empty() {
        "the person at this machine (local mode)".into()
    } else {
        parts.join(", ")
    }
}

struct Entry<'a> {
    state: &'a AppState,
    info: &'a RequestInfo,
    server: &'a str,
    tool: &'a str,
    start: Instant,
    /// How the person's approval ended, and who gave it, for an `ask` tool.
    approval: Option<(&'static str, String)>,
}

impl Entry<'_> {
    fn event(&self, category: Category, result: Outcome, sent: &[u8]) -> Event {
        let mut e = self.info.stamp(
            Event::new(
                category,
                self.server,
                format!("tools/call {}", self.tool),
                result,
            )
            .detail("tool", self.tool)
            .detail("duration_ms", self.start.elapsed().as_millis() as u64)
            .detail("bytes_in", sent.len() as u64)
            .detail("arguments_digest", self.state.audit.digest(sent)),
        );
        if let Some(name) = crate::gateway::agent::of_key(&self.info.principal) {
            e = e.agent(name);
        }
        if let Ok(Some(s)) = self.info.claim.claimed() {
            e = e.surface(s);
        }
        if let Some((how, by)) = &self.approval {
            e = e.detail("approval", *how);
            if !by.is_empty() {
                e = e.detail("approved_by", by.as_str());
            }
        }
        e
    }

    async fn refused(&self, err: &Error, sent: &[u8]) -> Result<()> {
        let e = match err.plain() {
            Error::LocalOnly(block) => self
                .event(Category::LocalOnlyBlock, Outcome::Blocked, sent)
                .detail("reason", block.reason.as_str()),
            Error::Forbidden(_) => self
                .event(Category::Tool, Outcome::Blocked, sent)
                .detail("error", err.code()),
            Error::ToolError(t) => self
                .event(Category::Tool, Outcome::Failed, sent)
                .detail("error", err.code())
                .detail("rpc_code", t.code),
            _ => self
                .event(Category::Tool, Outcome::Error, sent)
                .detail("error", err.code()),
        };
        self.state.audit.record(e).await
    }
}
