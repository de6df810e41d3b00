//! The report's Tools list: per server (a tool server of `[mcp.servers]`, or the service a
//! service tool calls) and tool, the period's calls, how many were blocked (by local-only
//! mode, the key's `--services`, the tool's `deny` policy, or a definition changed since it
//! was pinned), how many failed, and when the tool was last called.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::is_error;
use crate::conversations::model::format_millis;
use crate::privsec::audit::{Counts, MAX_NAMES, OTHER, Outcome, SummaryKey};

/// Rows the list holds: over a period each day keeps its own most called names, so the days
/// together may name more tools than a day does; the least called beyond this many are
/// counted together in one [`OTHER`] row, so the list stays as bounded as a day's and every
/// call is still counted.
pub const MAX_TOOLS: usize = MAX_NAMES;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Use {
    calls: u64,
    blocked: u64,
    /// Calls that failed (`failed` or `error`), counted among `calls`.
    errors: u64,
    /// Unix seconds of the newest call, 0 when unknown.
    last: i64,
}

impl Use {
    fn merge(&mut self, o: &Use) {
        self.calls += o.calls;
        self.blocked += o.blocked;
        self.errors += o.errors;
        self.last = self.last.max(o.last);
    }
}

/// The period's tool calls, per (server, tool).
#[derive(Debug, Default)]
pub struct ToolUse {
    by: BTreeMap<(String, String), Use>,
}

impl ToolUse {
    /// Counts a row of calls; rows that are not tool calls (no tool named) are left out.
    pub fn add(&mut self, k: &SummaryKey, c: &Counts) {
        if k.tool.is_empty() {
            return;
        }
        let add = Use {
            calls: c.entries,
            blocked: if k.result == Outcome::Blocked {
                c.entries
            } else {
                0
            },
            errors: if is_error(k.result) { c.entries } else { 0 },
            last: c.last,
        };
        self.by
            .entry((k.service.clone(), k.tool.clone()))
            .or_default()
            .merge(&add);
    }

    /// The list: most calls first (then by server and tool), at most [`MAX_TOOLS`] rows and
    /// the (other) one.
    pub fn into_json(self) -> Vec<Value> {
        let folded = (OTHER.to_string(), OTHER.to_string());
        let mut rows: Vec<((String, String), Use)> = self.by.into_iter().collect();
        rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(&b.0)));
        if rows.len() > MAX_TOOLS + 1 {
            let mut other = Use::default();
            let mut kept = Vec::with_capacity(MAX_TOOLS + 1);
            for (key, u) in rows {
                if key == folded || kept.len() >= MAX_TOOLS {
                    other.merge(&u);
                } else {
                    kept.push((key, u));
                }
            }
            kept.push((folded, other));
            rows = kept;
        }
        rows.into_iter()
            .map(|((server, tool), u)| {
                json!({
                    "server": server, "tool": tool, "calls": u.calls, "blocked": u.blocked,
                    "errors": u.errors, "last_used": rfc3339(u.last),
                })
            })
            .collect()
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-03-01T09:30:00Z`); `None` for an unknown time.
fn rfc3339(seconds: i64) -> Option<String> {
    (seconds != 0).then(|| format_millis(seconds.saturating_mul(1000)))
}
