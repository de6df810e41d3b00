//! What one audit line says (SPEC §2.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Llm,
    Media,
    Smarthome,
    Creative,
    LocalOnlyBlock,
    Auth,
    Admin,
    Data,
    /// A tool server's `tools/call` (SPEC §2.11).
    Tool,
    /// Maestra's own traffic on the local network: a device discovery run (issue 28).
    Network,
}

impl Category {
    /// Whether an entry of this category can stand for an outbound call (one a local-only
    /// block stopped included): every entry of a service category or a local-only block, and
    /// of `tool` only a `tools/call` (the category also holds pins, changed definitions and
    /// restarts). [`is_call`] decides for one entry.
    pub fn may_be_call(self) -> bool {
        matches!(
            self,
            Category::Llm
                | Category::Media
                | Category::Smarthome
                | Category::Creative
                | Category::LocalOnlyBlock
                | Category::Tool
        )
    }
}

/// What a tool call's action starts with, the tool's name after it (`tools/call get_time`).
pub const TOOL_CALL: &str = "tools/call ";

/// Whether an entry stands for an outbound call (one a local-only block stopped included):
/// what the report counts as calls and errors, and what the egress tally's bytes are written
/// onto.
pub fn is_call(category: Category, action: &str) -> bool {
    category.may_be_call()
        && (category != Category::Tool || called_tool(category, action, None).is_some())
}

/// The tool an entry is a call of, if it is one: the name in a `tools/call NAME` action (a
/// tool server's call, or a service tool's refused before its request was made), or, for the
/// request a service tool made through the services proxy (its action the proxy's
/// `METHOD /path`), its `details.tool` (`detail`). Other events about tools (`tools/pin`,
/// `tools/changed`, `tools/restart`) are not calls. A client's report cannot pass for one: its
/// action is a token without spaces or `/`, and its details are not read (the callers pass
/// none for a reported entry).
pub fn called_tool<'a>(
    category: Category,
    action: &'a str,
    detail: Option<&'a str>,
) -> Option<&'a str> {
    if !category.may_be_call() {
        return None;
    }
    match action.strip_prefix(TOOL_CALL) {
        Some(tool) => Some(tool),
        None if category == Category::Tool || action.starts_with("tools/") => None,
        None => detail,
    }
    .filter(|t| !t.is_empty())
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(Value::String(s.to_string()))
            .map_err(|_| format!("unknown audit category {s:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failed,
    Blocked,
    Error,
}

/// An event as a caller reports it; the writer adds `seq`, `prev_hash` and `hash`.
///
/// `details` must never hold message content or secrets: callers put names, counts and
/// reasons there.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub ts: String,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub surface_id: Option<String>,
    pub category: Category,
    pub service: String,
    pub action: String,
    pub result: Outcome,
    pub ip_address: Option<String>,
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(
        category: Category,
        service: impl Into<String>,
        action: impl Into<String>,
        result: Outcome,
    ) -> Event {
        Event {
            ts: now_rfc3339(),
            request_id: None,
            user_id: None,
            agent_id: None,
            surface_id: None,
            category,
            service: service.into(),
            action: action.into(),
            result,
            ip_address: None,
            details: Map::new(),
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    pub fn surface(mut self, surface: impl Into<String>) -> Self {
        self.surface_id = Some(surface.into());
        self
    }

    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent_id = Some(agent.into());
        self
    }

    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip_address = Some(ip.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Whether the entry stands for an outbound call: see [`is_call`].
    pub fn is_call(&self) -> bool {
        is_call(self.category, &self.action)
    }

    /// The UTC date (`YYYY-MM-DD`) of the event, which names its rotated file.
    pub fn date(&self) -> &str {
        self.ts.get(..10).unwrap_or("")
    }
}

/// The fields of a stored line, in the order they are written (the hash covers these bytes).
#[derive(Serialize)]
pub(super) struct Sealed<'a> {
    pub ts: &'a str,
    pub seq: u64,
    pub request_id: &'a Option<String>,
    pub user_id: &'a Option<String>,
    pub agent_id: &'a Option<String>,
    pub surface_id: &'a Option<String>,
    pub category: Category,
    pub service: &'a str,
    pub action: &'a str,
    pub result: Outcome,
    pub ip_address: &'a Option<String>,
    pub details: &'a Map<String, Value>,
    pub prev_hash: &'a str,
}

/// A stored entry as read back by queries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEntry {
    pub ts: String,
    pub seq: u64,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub surface_id: Option<String>,
    pub category: Category,
    pub service: String,
    pub action: String,
    pub result: Outcome,
    pub ip_address: Option<String>,
    #[serde(default)]
    pub details: Map<String, Value>,
    pub prev_hash: String,
    pub hash: String,
}

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
