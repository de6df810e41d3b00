//! The one declaration of every route: the router is built from [`ROUTES`] (method, path,
//! handler), `/openapi.json` is written from it (summary, request, response, query, media
//! types), and the edge reads from it which query parameters a route takes and which API key
//! scope it needs. A route cannot be served without being documented, nor documented without
//! being served. This file is the data; `route` is what reads it.

use std::sync::OnceLock;

use axum::routing::{delete, get, patch, post, put};

use super::route::{Query, Route, RouteTable};
use super::{
    approvals_api, audit_api, controls_api, conversations, core, discover_api, jobs, mcp,
    openai_api, report_api, services, spend_api, system, vault_api, verify_api,
};
use crate::access::scope::KeyScope;

/// The table and its matcher, built on first use and kept for the life of the process: the
/// edge matches every request against it before the router runs.
pub fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::new(ROUTES, MODEL_ROUTES))
}

const JSON: &[&str] = &["application/json"];
const JSON_OR_EVENTS: &[&str] = &["application/json", "text/event-stream"];
/// A service's own answer, passed through.
const ANY: &[&str] = &["*/*"];

const CONVERSATION_QUERY: &[(&str, &str)] = &[
    (
        "user_id",
        r#"{"type": "string", "minLength": 1, "maxLength": 128}"#,
    ),
    (
        "limit",
        r#"{"type": "integer", "minimum": 1, "maximum": 500, "default": 50}"#,
    ),
    (
        "offset",
        r#"{"type": "integer", "minimum": 0, "maximum": 4294967295, "default": 0}"#,
    ),
];

const AUDIT_QUERY: &[(&str, &str)] = &[
    ("user", r#"{"type": "string", "maxLength": 128}"#),
    ("service", r#"{"type": "string", "maxLength": 128}"#),
    (
        "category",
        r#"{"type": "string", "enum": ["llm", "media", "smarthome", "creative", "local_only_block", "auth", "admin", "data", "tool", "network"]}"#,
    ),
    (
        "result",
        r#"{"type": "string", "enum": ["success", "failed", "blocked", "error"]}"#,
    ),
    (
        "since",
        r#"{"type": "string", "description": "RFC 3339 time or YYYY-MM-DD"}"#,
    ),
    (
        "until",
        r#"{"type": "string", "description": "RFC 3339 time or YYYY-MM-DD"}"#,
    ),
    (
        "limit",
        r#"{"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}"#,
    ),
];

const REPORT_QUERY: &[(&str, &str)] = &[(
    "period",
    r#"{"type": "string", "enum": ["today", "7d", "30d"], "default": "7d"}"#,
)];

const SPEND_QUERY: &[(&str, &str)] = &[(
    "days",
    r#"{"type": "integer", "minimum": 1, "maximum": 366, "default": 30}"#,
)];

/// The privacy center's operations (issue 17): admin, like `/api/audit`, since they show and
/// change everyone's data.
macro_rules! center {
    ($method:literal, $path:literal, $handler:expr, $summary:literal, $req:expr, $resp:literal, $query:expr) => {
        Route {
            method: $method,
            path: $path,
            handler: $handler,
            scope: Some(KeyScope::Admin),
            summary: $summary,
            request: $req,
            response: $resp,
            query: $query,
            produces: JSON,
            errors: JSON,
        }
    };
}

/// The routes that carry a model's input: images as `data:` URLs, thousands of texts to
/// embed. Their bodies may be as large as `server.max_model_body_bytes`; every other route
/// keeps `server.max_body_bytes`.
pub const MODEL_ROUTES: &[&str] = &["/v1/chat/completions", "/v1/responses", "/v1/embeddings"];

/// Every operation the router serves; the router test walks it, so a route added without
/// its description here fails a test.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/api/maestra/core",
        handler: || post(core::core),
        scope: Some(KeyScope::Assistant),
        summary: "Ask the assistant (the seed's MaestraRequest)",
        request: Some("MaestraRequest"),
        response: "MaestraEnvelope",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "post",
        path: "/api/maestra/advisor/ask",
        handler: || post(core::advisor_ask),
        scope: Some(KeyScope::Assistant),
        summary: "Legacy advisor shape on the same pipeline",
        request: Some("AdvisorRequest"),
        response: "MaestraEnvelope",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "post",
        path: "/v1/chat/completions",
        handler: || post(openai_api::chat_completions),
        scope: Some(KeyScope::Assistant),
        summary: "OpenAI-compatible chat completion; `stream: true` answers as server-sent events",
        request: Some("ChatCompletionRequest"),
        response: "ChatCompletion",
        query: Query::None,
        produces: JSON_OR_EVENTS,
        errors: JSON,
    },
    Route {
        method: "post",
        path: "/v1/responses",
        handler: || post(super::responses::create),
        scope: Some(KeyScope::Assistant),
        summary: "OpenAI Responses API, stateless (nothing stored: send the history in `input`); `stream: true` answers as typed server-sent events",
        request: Some("ResponseRequest"),
        response: "Response",
        query: Query::None,
        produces: JSON_OR_EVENTS,
        errors: JSON,
    },
    Route {
        method: "post",
        path: "/v1/embeddings",
        handler: || post(super::embeddings_api::embeddings),
        scope: Some(KeyScope::Assistant),
        summary: "OpenAI-compatible embeddings: a local model unless the name is a cloud one (`text-embedding-*`); the input is never stored",
        request: Some("EmbeddingsRequest"),
        response: "EmbeddingList",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/v1/models",
        handler: || get(openai_api::models),
        scope: Some(KeyScope::Read),
        summary: "OpenAI-compatible model list",
        request: None,
        response: "ModelList",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/conversations",
        handler: || get(conversations::list),
        scope: Some(KeyScope::Read),
        summary: "List conversations, newest first",
        request: None,
        response: "ConversationList",
        query: Query::Named(CONVERSATION_QUERY),
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/conversations/{id}",
        handler: || get(conversations::get),
        scope: Some(KeyScope::Read),
        summary: "One conversation with its messages",
        request: None,
        response: "Conversation",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "delete",
        path: "/api/conversations/{id}",
        handler: || delete(conversations::delete),
        scope: Some(KeyScope::Assistant),
        summary: "Delete a conversation; its content leaves the database files",
        request: None,
        response: "Deleted",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/conversations/{id}/export",
        handler: || get(conversations::export),
        scope: Some(KeyScope::Read),
        summary: "Export a conversation in the seed's JSON format",
        request: None,
        response: "Conversation",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/users/{user_id}/export",
        handler: || get(conversations::export_user),
        scope: Some(KeyScope::Read),
        summary: "Export everything of a user",
        request: None,
        response: "UserExport",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    center!(
        "post",
        "/api/users/{user_id}/export",
        || post(conversations::export_user_job),
        "Export everything of a user as a job (poll /api/jobs/{id}; its result is the export, handed out once: later polls, and any after the user is forgotten, show {\"emptied\": reason})",
        Some("EmptyRequest"),
        "Job",
        Query::None
    ),
    Route {
        method: "delete",
        path: "/api/users/{user_id}/data",
        handler: || delete(conversations::forget_user),
        scope: Some(KeyScope::Assistant),
        summary: "Forget a user: delete every conversation",
        request: None,
        response: "Forgotten",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/privacy",
        handler: || get(system::privacy),
        scope: Some(KeyScope::Read),
        summary: "Mode, local-only, limits, storage, vault and audit status",
        request: None,
        response: "Privacy",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/health",
        handler: || get(system::health),
        scope: None,
        summary: "Liveness",
        request: None,
        response: "Health",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/metrics",
        handler: || get(system::metrics),
        scope: Some(KeyScope::Admin),
        summary: "Prometheus metrics (text)",
        request: None,
        response: "Metrics",
        query: Query::None,
        produces: &[crate::metrics::CONTENT_TYPE],
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/openapi.json",
        handler: || get(system::openapi),
        scope: Some(KeyScope::Read),
        summary: "This document",
        request: None,
        response: "OpenApi",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/services/{service}/{path}",
        handler: || get(services::proxy),
        scope: Some(KeyScope::Assistant),
        summary: "Proxy to a personal service with its credential injected (any method)",
        request: None,
        response: "ServiceResponse",
        query: Query::Forwarded,
        produces: ANY,
        errors: ANY,
    },
    Route {
        method: "post",
        path: "/api/services/{service}/{path}",
        handler: || post(services::proxy),
        scope: Some(KeyScope::Assistant),
        summary: "Proxy to a personal service with its credential injected (any method)",
        request: None,
        response: "ServiceResponse",
        query: Query::Forwarded,
        produces: ANY,
        errors: ANY,
    },
    Route {
        method: "put",
        path: "/api/services/{service}/{path}",
        handler: || put(services::proxy),
        scope: Some(KeyScope::Assistant),
        summary: "Proxy to a personal service with its credential injected (any method)",
        request: None,
        response: "ServiceResponse",
        query: Query::Forwarded,
        produces: ANY,
        errors: ANY,
    },
    Route {
        method: "delete",
        path: "/api/services/{service}/{path}",
        handler: || delete(services::proxy),
        scope: Some(KeyScope::Assistant),
        summary: "Proxy to a personal service with its credential injected (any method)",
        request: None,
        response: "ServiceResponse",
        query: Query::Forwarded,
        produces: ANY,
        errors: ANY,
    },
    Route {
        method: "patch",
        path: "/api/services/{service}/{path}",
        handler: || patch(services::proxy),
        scope: Some(KeyScope::Assistant),
        summary: "Proxy to a personal service with its credential injected (any method)",
        request: None,
        response: "ServiceResponse",
        query: Query::Forwarded,
        produces: ANY,
        errors: ANY,
    },
    Route {
        method: "post",
        path: "/mcp",
        handler: || post(mcp::post),
        scope: Some(KeyScope::Assistant),
        summary: "MCP over streamable HTTP, stateless: tools/list and tools/call for the services and the tool servers (SPEC §2.11)",
        request: Some("McpMessage"),
        response: "McpResponse",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/api/audit",
        handler: || get(audit_api::list),
        scope: Some(KeyScope::Admin),
        summary: "Query the audit log, newest first",
        request: None,
        response: "AuditList",
        query: Query::Named(AUDIT_QUERY),
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "post",
        path: "/api/audit/events",
        handler: || post(audit_api::report),
        scope: Some(KeyScope::Assistant),
        summary: "Report a local tool action (e.g. ffmpeg, category creative) to the audit log",
        request: Some("AuditEventRequest"),
        response: "AuditRecorded",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    center!(
        "get",
        "/api/report",
        || get(report_api::report),
        "Privacy report for a period: per agent, services and hosts called, bytes, blocks and why; top hosts; per day",
        None,
        "PrivacyReport",
        Query::Named(REPORT_QUERY)
    ),
    center!(
        "get",
        "/api/spend",
        || get(spend_api::spend),
        "Spend: limits with spent and reserved, and charges by day, model and user (as `cost report`)",
        None,
        "Spend",
        Query::Named(SPEND_QUERY)
    ),
    center!(
        "get",
        "/api/tools/approvals",
        || get(approvals_api::list),
        "Tool calls waiting for the person's approval (`ask` tools), on every instance sharing the store",
        None,
        "ToolApprovals",
        Query::None
    ),
    center!(
        "post",
        "/api/tools/approvals/{id}",
        || post(approvals_api::decide),
        "Approve or deny a waiting tool call; the first decision is the one kept",
        Some("ToolDecisionRequest"),
        "ToolApproval",
        Query::None
    ),
    center!(
        "get",
        "/api/vault",
        || get(vault_api::info),
        "Vault: secret names, encryption, key source, last use; never a value",
        None,
        "VaultInfo",
        Query::None
    ),
    center!(
        "post",
        "/api/vault/rotate",
        || post(vault_api::rotate),
        "Rotate the vault key (a job; poll /api/jobs/{id})",
        Some("ConfirmRequest"),
        "Job",
        Query::None
    ),
    center!(
        "post",
        "/api/audit/verify",
        || post(verify_api::start),
        "Verify the audit chain (a job; poll /api/jobs/{id})",
        Some("EmptyRequest"),
        "Job",
        Query::None
    ),
    center!(
        "get",
        "/api/audit/verify",
        || get(verify_api::latest),
        "The newest audit verify and its result",
        None,
        "LatestJob",
        Query::None
    ),
    center!(
        "get",
        "/api/jobs/{id}",
        || get(jobs::get),
        "A long action's progress and result",
        None,
        "Job",
        Query::None
    ),
    center!(
        "post",
        "/api/services/discover",
        || post(discover_api::start),
        "Find devices on the local network over mDNS and SSDP, as `maestra services discover --json` does (a job; poll /api/jobs/{id}); one audit entry per run; never writes maestra.toml (`maestra services discover --write` does); 409 discovery_off when the `discovery` setting is off",
        Some("DiscoverRequest"),
        "Job",
        Query::None
    ),
    center!(
        "get",
        "/api/devices",
        || get(discover_api::list),
        "Devices list: the devices discovery runs found (kept in memory, first and last seen), the configured services and the calls made to each over the period",
        None,
        "Devices",
        Query::Named(REPORT_QUERY)
    ),
    center!(
        "post",
        "/api/controls/local-only",
        || post(controls_api::local_only),
        "Turn local-only mode on or off (effective at once)",
        Some("LocalOnlyRequest"),
        "LocalOnlyState",
        Query::None
    ),
    center!(
        "post",
        "/api/controls/lockdown",
        || post(controls_api::lockdown),
        "Lockdown: local-only on, every API key revoked, the vault key rotated",
        Some("ConfirmRequest"),
        "LockdownResult",
        Query::None
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_schemas_parse_and_templates_match() {
        for r in ROUTES {
            if let Query::Named(list) = r.query {
                for (name, schema) in list {
                    let v: serde_json::Value = serde_json::from_str(schema).unwrap();
                    assert!(v.is_object(), "{} {name}", r.path);
                }
            }
        }
        let t = table();
        let at = |path: &str| t.matched(path).unwrap();
        let services = at("/api/services/hue/lights/1/state");
        assert!(services.route("PATCH").is_some());
        let conversation = at("/api/conversations/c1");
        assert!(conversation.route("HEAD").is_some());
        assert!(conversation.route("PUT").is_none());
        assert!(at("/api/conversations/c1/export").route("GET").is_some());
        assert_eq!(at("/health").allowed_methods(), "GET, HEAD");
        // HEAD needs what GET needs; a method nobody declared needs admin.
        assert_eq!(at("/v1/models").scope("HEAD"), Some(KeyScope::Read));
        assert_eq!(services.scope("HEAD"), Some(KeyScope::Assistant));
        assert_eq!(at("/health").scope("DELETE"), Some(KeyScope::Admin));
        assert_eq!(at("/health").scope("GET"), None);
        // The edge's matcher finds what the router would, in both forms.
        assert_eq!(services.path, "/api/services/{service}/{path}");
        assert_eq!(services.template, "/api/services/{service}/{*path}");
        assert_eq!(conversation.path, "/api/conversations/{id}");
        assert_eq!(at("/health").template, "/health");
        assert!(t.matched("/nowhere").is_none());
        // Only the model routes take the larger body.
        assert!(at("/v1/chat/completions").model_body());
        assert!(!conversation.model_body());
        // A file of the page, named by its own path, is no route of the table.
        let page = t.file("/index.html");
        assert!(page.route("GET").is_none());
        assert_eq!(page.scope("GET"), Some(KeyScope::Admin));
    }
}
