//! The one declaration of every route: the router is built from [`ROUTES`] (method, path,
//! handler), `/openapi.json` is written from it (summary, request, response, query, media
//! types), and the edge reads from it which query parameters a route takes and which API key
//! scope it needs. A route cannot be served without being documented, nor documented without
//! being served.

use std::sync::OnceLock;

use axum::routing::{MethodRouter, delete, get, patch, post, put};

use super::{
    Shared, audit_api, controls_api, conversations, core, jobs, openai_api, report_api, services,
    spend_api, system, vault_api, verify_api,
};
use crate::access::scope::KeyScope;

/// One operation of the API: what the router serves and what the document says of it.
pub struct Route {
    pub method: &'static str,
    /// The OpenAPI template (`{path}` where the router has `{*path}`).
    pub path: &'static str,
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub response: &'static str,
    pub query: Query,
    /// Media types of a success.
    pub produces: &'static [&'static str],
    /// Media types of a failure.
    pub errors: &'static [&'static str],
    /// What answers it.
    pub handler: fn() -> MethodRouter<Shared>,
    /// The least API key scope that may call it (cloud mode; README's scope table); `None`:
    /// no key at all (`/health`).
    pub scope: Option<KeyScope>,
}

/// What a route accepts in its query string. The edge refuses any other parameter (400), so
/// a misspelt filter is never silently ignored into a wider answer.
pub enum Query {
    /// No query string at all.
    None,
    /// Exactly these parameters: (name, JSON schema).
    Named(&'static [(&'static str, &'static str)]),
    /// Passed on untouched (the services proxy).
    Forwarded,
}

/// The media type `GET /metrics` answers with: the OpenMetrics text exposition, which is
/// what `prometheus_client` writes (it ends with `# EOF`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        r#"{"type": "string", "enum": ["llm", "media", "smarthome", "creative", "local_only_block", "auth", "admin", "data"]}"#,
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

/// The scope a route needs, by method and the document's path template. A route the table
/// does not know needs admin: an undocumented route can never be open to lesser keys.
pub fn scope_of(method: &str, path: &str) -> Option<KeyScope> {
    find(path, method).map_or(Some(KeyScope::Admin), |r| r.scope)
}

/// The route template a request's path matched, found by the edge before the router runs, so
/// the edge stages can wrap the router once instead of being cloned into every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    /// The document's template (`{path}`): what [`find`] and the scope table take.
    pub path: &'static str,
    /// The router's template (`{*path}`), as axum's `MatchedPath` names it: the metric label.
    pub template: &'static str,
}

/// Matches a request path against the table's templates, with the router's own matcher
/// (`matchit`), so the answer is the one the router reaches.
pub fn matched(path: &str) -> Option<Matched> {
    static MATCHER: OnceLock<(matchit::Router<usize>, Vec<Matched>)> = OnceLock::new();
    let (matcher, all) = MATCHER.get_or_init(|| {
        let mut matcher = matchit::Router::new();
        let mut all: Vec<Matched> = Vec::new();
        for r in ROUTES {
            if all.iter().any(|m| m.path == r.path) {
                continue;
            }
            let template: &'static str = router_template(r.path).leak();
            // The router itself refuses an invalid or conflicting template at start.
            if matcher.insert(template, all.len()).is_ok() {
                all.push(Matched {
                    path: r.path,
                    template,
                });
            }
        }
        (matcher, all)
    });
    let found = matcher.at(path).ok()?;
    all.get(*found.value).copied()
}

/// The router's form of a document template: a trailing `{path}` matches the rest.
/// The routes that carry a model's input: images as `data:` URLs, thousands of texts to
/// embed. Their bodies may be as large as `server.max_model_body_bytes`; every other route
/// keeps `server.max_body_bytes`.
pub const MODEL_ROUTES: &[&str] = &["/v1/chat/completions", "/v1/responses", "/v1/embeddings"];

/// The largest body the route at `path` (the document's template) accepts.
pub fn body_limit(server: &crate::config::ServerConfig, path: Option<&str>) -> usize {
    if path.is_some_and(|p| MODEL_ROUTES.contains(&p)) {
        server.max_model_body_bytes
    } else {
        server.max_body_bytes
    }
}

pub fn router_template(path: &str) -> String {
    path.replace("{path}", "{*path}")
}

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
        produces: &[METRICS_CONTENT_TYPE],
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

/// The documented operation for a router path template and method (`HEAD` as `GET`).
pub fn find(path: &str, method: &str) -> Option<&'static Route> {
    let method = if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
}

/// The `Allow` header's value for a router path template: its documented methods, and
/// `HEAD` wherever `GET` is (axum answers it).
pub fn allowed_methods(path: &str) -> String {
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method.to_uppercase())
        .collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.join(", ")
}

/// `/a/{x}/{path}` (OpenAPI) and `/a/{x}/{*path}` (axum) name the same route.
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
        assert!(find("/api/services/{service}/{path}", "PATCH").is_some());
        assert!(find("/api/conversations/{id}", "HEAD").is_some());
        assert!(find("/api/conversations/{id}", "PUT").is_none());
        assert!(find("/api/conversations/{id}/export", "GET").is_some());
        assert_eq!(allowed_methods("/health"), "GET, HEAD");
        // HEAD needs what GET needs; a route nobody declared needs admin.
        assert_eq!(scope_of("HEAD", "/v1/models"), Some(KeyScope::Read));
        assert_eq!(
            scope_of("HEAD", "/api/services/{service}/{path}"),
            Some(KeyScope::Assistant)
        );
        assert_eq!(scope_of("GET", "/nowhere"), Some(KeyScope::Admin));
        assert_eq!(scope_of("GET", "/health"), None);
        // The edge's matcher finds what the router would, in both forms.
        let m = matched("/api/services/hue/lights/1/state").unwrap();
        assert_eq!(m.path, "/api/services/{service}/{path}");
        assert_eq!(m.template, "/api/services/{service}/{*path}");
        assert_eq!(
            matched("/api/conversations/c1").unwrap().path,
            "/api/conversations/{id}"
        );
        assert_eq!(matched("/health").unwrap().template, "/health");
        assert!(matched("/nowhere").is_none());
    }
}
