//! The structured payloads some variants carry into their bodies: a local-only refusal (403),
//! a cost limit (402) and a tool server's own error. They live with the error, below the guard and the budget that
//! raise them, so `error` imports nothing above it.

use serde::Serialize;

use crate::cost::ledger::{Period, Scope};

/// Why a call was refused, carried by [`crate::error::Error::LocalOnly`] into the 403 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalOnlyBlock {
    pub service: String,
    pub reason: String,
    pub suggested_alternatives: Vec<String>,
}

impl std::fmt::Display for LocalOnlyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "local-only mode blocked {:?}: {}",
            self.service, self.reason
        )
    }
}

/// What a 402 reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLimitExceeded {
    pub period: Period,
    pub scope: Scope,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub reserved_usd: f64,
    pub resets_at: String,
}

impl std::fmt::Display for CostLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let period = match self.period {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
        };
        let scope = match &self.scope {
            Scope::Global => String::new(),
            Scope::User(u) => format!(" for user {u}"),
            Scope::Key(k) => format!(" for API key {k}"),
        };
        write!(
            f,
            "the {period} cost limit{scope} of ${:.2} would be exceeded (spent ${:.4}, ${:.4} reserved by calls in flight); it resets at {}",
            self.limit_usd, self.spent_usd, self.reserved_usd, self.resets_at
        )
    }
}

/// A tool server's own JSON-RPC error for a `tools/call` (SPEC §2.11), carried by
/// [`crate::error::Error::ToolError`] so the MCP side can answer with the same code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRpcError {
    pub code: i32,
    /// Cut to 1,024 characters.
    pub message: String,
}

impl std::fmt::Display for ToolRpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (JSON-RPC {})", self.message, self.code)
    }
}
