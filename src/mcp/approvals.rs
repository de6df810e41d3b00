//! Calls of `ask` tools (`tools = { NAME = "ask" }`): each waits until the person approves or
//! denies it, in the privacy center or with `maestra mcp approve`, or until `mcp.ask_timeout`
//! passes, which refuses it.
//!
//! The waiting call is a row in the store, so the person can decide from any process or
//! instance that shares it: the page of another instance, or the command line beside a
//! `maestra mcp` that an assistant launched. A decision made in this process wakes the wait at
//! once; one made elsewhere is seen on the next look, every [`LOOK_EVERY`], and only while a
//! call waits. The store holds what the person needs to decide (server, tool, who asks, the
//! size of the arguments and their keyed digest), never the arguments: this process keeps a
//! short preview of them in memory for its own page, dropped when the wait ends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::conversations::model::now_millis;
use crate::error::{Error, Result};
use crate::store::{ApprovalRecord, Decision, Store};

/// How often a waiting call looks for a decision made by another process.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Calls that may wait at once in one process; more are refused at once rather than queued
/// behind a person who may not be looking.
pub const MAX_WAITING: usize = 32;
/// The most of a call's arguments kept in memory for the page to show.
const PREVIEW_BYTES: usize = 2048;
/// The most waiting calls listed.
const MAX_LISTED: u32 = 100;

/// The waits of this process and the store they are shared through.
pub struct Approvals {
    store: Arc<dyn Store>,
    timeout: Duration,
    decided: Notify,
    /// Id → preview of the arguments, for this process's own waits.
    waiting: Mutex<HashMap<String, String>>,
}

/// A call to ask about.
pub struct Ask<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub asked_by: String,
    /// The arguments as JSON.
    pub arguments: &'a [u8],
    /// Their keyed digest, as the call's audit entry has it.
    pub digest: String,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved {
        by: String,
    },
    Denied {
        by: String,
    },
    /// Nobody decided within `mcp.ask_timeout`.
    TimedOut,
    /// The caller went away (hung up, or its request's deadline passed) before a decision.
    Abandoned,
}

/// A waiting call as the page shows it.
pub struct Waiting {
    pub record: ApprovalRecord,
    /// The arguments' first bytes, when this process holds the call.
    pub preview: Option<String>,
}

impl Approvals {
    pub fn new(store: Arc<dyn Store>, timeout: Duration) -> Approvals {
        Approvals {
            store,
            timeout,
            decided: Notify::new(),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for the person's decision on `ask`, or `mcp.ask_timeout`, or `gone` (the caller
    /// left), whichever comes first. The row is removed when the wait ends.
    pub async fn ask(&self, ask: Ask<'_>, gone: impl Future<Output = ()>) -> Result<Answer> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.len() >= MAX_WAITING {
                return Err(Error::Forbidden(format!(
                    "{MAX_WAITING} tool calls already wait for approval; this one is refused"
                )));
            }
            waiting.insert(id.clone(), preview(ask.arguments));
        }
        let now = now_millis();
        let record = ApprovalRecord {
            id: id.clone(),
            server: ask.server.to_string(),
            tool: ask.tool.to_string(),
            asked_by: ask.asked_by,
            arguments_bytes: i64::try_from(ask.arguments.len()).unwrap_or(i64::MAX),
            arguments_digest: ask.digest,
            asked_at: now,
            expires_at: now.saturating_add(i64::try_from(self.timeout.as_millis()).unwrap_or(0)),
            decision: None,
            decided_by: None,
            decided_at: None,
        };
        let answer = match self.store.approval_insert(&record).await {
            Ok(()) => {
                tracing::warn!(
                    server = ask.server,
                    tool = ask.tool,
                    id = id.as_str(),
                    "a tool call waits for your approval: approve it in the privacy center or \
                     with `maestra mcp approve {id}` (`maestra mcp deny {id}` refuses it)"
                );
                let answer = self.wait(&id, gone).await;
                if let Err(e) = self.store.approval_delete(&id).await {
                    tracing::error!(error = %e, id = id.as_str(), "cannot remove a finished approval");
                }
                answer
            }
            Err(e) => Err(e),
        };
        self.forget(&id);
        answer
    }

    async fn wait(&self, id: &str, gone: impl Future<Output = ()>) -> Result<Answer> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::pin!(gone);
        loop {
            // Taken before the look, so a decision made between the two still wakes it.
            let woken = self.decided.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(answer) = self.look(id).await? {
                return Ok(answer);
            }
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(self.look(id).await?.unwrap_or(Answer::TimedOut));
                }
                () = &mut gone => return Ok(Answer::Abandoned),
            }
        }
    }

    async fn look(&self, id: &str) -> Result<Option<Answer>> {
        let Some(r) = self.store.approval_get(id).await? else {
            // Removed by someone else (a store restored from a backup): nobody approved it.
            return Ok(Some(Answer::TimedOut));
        };
        let by = r.decided_by.unwrap_or_default();
        Ok(match r.decision {
            Some(Decision::Approved) => Some(Answer::Approved { by }),
            Some(Decision::Denied) => Some(Answer::Denied { by }),
            None => None,
        })
    }

    fn forget(&self, id: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The calls waiting now, on every process sharing the store, oldest first.
    pub async fn waiting(&self) -> Result<Vec<Waiting>> {
        let records = self
            .store
            .approval_pending(now_millis(), MAX_LISTED)
            .await?;
        let previews = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        Ok(records
            .into_iter()
            .map(|record| Waiting {
                preview: previews.get(&record.id).cloned(),
                record,
            })
            .collect())
    }

    /// Records the person's decision on a waiting call and wakes its wait.
    pub async fn decide(&self, id: &str, decision: Decision, by: &str) -> Result<ApprovalRecord> {
        let decided = decide(self.store.as_ref(), id, decision, by).await?;
        self.decided.notify_waiters();
        Ok(decided)
    }
}

/// The decision alone, for a process that holds no waits (`maestra mcp approve ID`): the
/// waiting process sees it on its next look. Refused when the call no longer waits.
pub async fn decide(
    store: &dyn Store,
    id: &str,
    decision: Decision,
    by: &str,
) -> Result<ApprovalRecord> {
    let shown: String = id.chars().take(64).collect();
    let missing = || Error::NotFound(format!("no tool call waits under the id {shown:?}"));
    let mut record = store.approval_get(id).await?.ok_or_else(missing)?;
    let now = now_millis();
    if store.approval_decide(id, decision, by, now).await? {
        record.decision = Some(decision);
        record.decided_by = Some(by.to_string());
        record.decided_at = Some(now);
        return Ok(record);
    }
    let now = store.approval_get(id).await?.ok_or_else(missing)?;
    Err(match now.decision {
        Some(d) => Error::BadRequest(format!(
            "the call {shown:?} was {} already{}",
            d.as_str(),
            now.decided_by
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        )),
        None => Error::BadRequest(format!(
            "the call {shown:?} no longer waits: nobody decided in time, so it was refused"
        )),
    })
}

/// The arguments' first [`PREVIEW_BYTES`], cut on a character boundary.
fn preview(arguments: &[u8]) -> String {
    let text = String::from_utf8_lossy(arguments);
    if text.len() <= PREVIEW_BYTES {
        return text.into_owned();
    }
    let mut end = PREVIEW_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        let long = "é".repeat(PREVIEW_BYTES);
        let p = preview(long.as_bytes());
        assert!(p.ends_with('…'));
        assert!(p.len() <= PREVIEW_BYTES + '…'.len_utf8());
        assert_eq!(preview(b"{\"a\":1}"), "{\"a\":1}");
    }
}
