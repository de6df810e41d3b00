//! Who asked for a call: what every stage records it under.

use crate::gateway::request_info::RequestInfo;

/// Who asked, for the audit entry. Owned, since the call's task outlives the handler.
#[derive(Clone)]
pub struct Caller {
    pub info: RequestInfo,
    pub user_id: Option<String>,
    pub surface_id: Option<String>,
    /// The audit `action`: `core`, `advisor.ask`, `chat.completions`.
    pub action: &'static str,
}
