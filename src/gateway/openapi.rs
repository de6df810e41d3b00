//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! [`ROUTES`] is the one list of what the router serves: the router test walks it, so a route
//! added without its description here fails a test.

use crate::access::scope::KeyScope;
use serde_json::{Map, Value, json};

use crate::conversations::model::MAX_ID_LEN;

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

/// The scope a route needs, by method and the router's path template. A route the table does
/// not know needs admin: an undocumented route can never be open to lesser keys.
pub fn scope_of(method: &str, matched: &str) -> Option<KeyScope> {
    let path = matched.replace("{*", "{");
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
        .map_or(Some(KeyScope::Admin), |r| r.scope)
}

/// Every operation the router serves; the router test walks it, so a route added without
/// its description here fails a test.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/api/maestra/core",
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
        scope: Some(KeyScope::Assistant),
        summary: "OpenAI-compatible chat completion; `stream: true` answers as server-sent events",
        request: Some("ChatCompletionRequest"),
        response: "ChatCompletion",
        query: Query::None,
        produces: JSON_OR_EVENTS,
        errors: JSON,
    },
    Route {
        method: "get",
        path: "/v1/models",
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
        scope: Some(KeyScope::Read),
        summary: "Export everything of a user",
        request: None,
        response: "UserExport",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
    Route {
        method: "delete",
        path: "/api/users/{user_id}/data",
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
        scope: Some(KeyScope::Assistant),
        summary: "Report a local tool action (e.g. ffmpeg, category creative) to the audit log",
        request: Some("AuditEventRequest"),
        response: "AuditRecorded",
        query: Query::None,
        produces: JSON,
        errors: JSON,
    },
];

/// The documented operation for a router path template and method (`HEAD` as `GET`).
pub fn find(router_path: &str, method: &str) -> Option<&'static Route> {
    let method = if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && same_template(r.path, router_path))
}

/// The `Allow` header's value for a router path template: its documented methods, and
/// `HEAD` wherever `GET` is (axum answers it).
pub fn allowed_methods(router_path: &str) -> String {
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|r| same_template(r.path, router_path))
        .map(|r| r.method.to_uppercase())
        .collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.join(", ")
}

/// `/a/{x}/{path}` (OpenAPI) and `/a/{x}/{*path}` (axum) name the same route.
fn same_template(doc: &str, router: &str) -> bool {
    doc.len() + router.matches("{*").count() == router.len() && doc == router.replace("{*", "{")
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    // An id as `validate_id` takes it; a non-empty text; a plain token as `check_token` takes it.
    let id = || path_schema("id");
    // Sizes are in bytes on the server (413 over them), so they are described, not enforced
    // as JSON Schema `maxLength` (which counts characters).
    let text =
        || json!({"type": "string", "minLength": 1, "description": "At most 256 KiB (413 above)"});
    let nullable = |v: Value| json!({"anyOf": [v, {"type": "null"}]});
    // A conversation to continue; empty or null starts a new one.
    let new_or_id = || json!({"anyOf": [id(), {"const": ""}, {"type": "null"}]});
    let token = |max: usize| {
        json!({"type": "string", "maxLength": max,
        "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"})
    };
    let closed = |mut v: Value| {
        v["additionalProperties"] = json!(false);
        v
    };
    json!({
        "Error": obj(json!({"error": obj(json!({
            "code": s("string"), "message": s("string"),
            "service": s("string"), "reason": s("string"),
            "suggested_alternatives": {"type": "array", "items": s("string")}
        }), &["code", "message"])}), &["error"]),
        "MaestraRequest": obj(json!({
            "user_id": id(), "surface_id": id(), "conversation_id": new_or_id(),
            "message": text(), "mode_hint": nullable(s("string")),
            "surface_context": nullable(json!({"type": "object", "description": "Context from the surface; kept, minimised, with the turn"}))
        }), &["user_id", "surface_id", "message"]),
        "AdvisorRequest": obj(json!({
            "question": text(), "user_id": nullable(id()), "surface_id": nullable(id()),
            "conversation_id": new_or_id(),
            "context": nullable(json!({"type": "object", "description": "Context from the surface"}))
        }), &["question"]),
        "Meta": obj(json!({"latency_ms": s("integer"), "model": s("string"),
            "tokens": s("integer"), "cost_usd": s("number")}), &["latency_ms", "model", "tokens", "cost_usd"]),
        "MaestraEnvelope": obj(json!({
            "reply": s("string"), "mode": s("string"), "conversation_id": s("string"),
            "source": {"type": "string", "enum": ["local", "cloud"]}, "version": s("string"),
            "artifacts": s("array"), "actions": s("array"), "meta": {"$ref": "#/components/schemas/Meta"}
        }), &["reply", "mode", "conversation_id", "source", "version", "artifacts", "actions", "meta"]),
        "ChatCompletionRequest": obj(json!({
            "model": {"type": "string", "minLength": 1, "examples": ["llama3.2"]},
            "messages": {"type": "array", "minItems": 1, "description": "At most 1000 (413 above)",
                "items": obj(json!({
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                    "content": {"description": "Text, or text parts; may be null for an assistant",
                        "anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": obj(json!({
                            "type": {"const": "text"}, "text": s("string")}), &["type", "text"])}]}
                }), &["role"])},
            "stream": nullable(s("boolean")),
            "user": nullable(id()),
            "max_tokens": nullable(json!({"type": "integer", "minimum": 1, "maximum": 1_000_000})),
            "max_completion_tokens": nullable(json!({"type": "integer", "minimum": 1, "maximum": 1_000_000})),
            "temperature": nullable(json!({"type": "number", "minimum": 0, "maximum": 2})),
            "top_p": nullable(json!({"type": "number", "minimum": 0, "maximum": 1})),
            "stop": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 256},
                {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 256}}]}
        }), &["model", "messages"]),
        "ChatCompletionStream": {"type": "string", "description": "Server-sent events: `data: {chunk}` lines, then `data: [DONE]`"},
        "ChatCompletion": obj(json!({"id": s("string"), "object": s("string"), "created": s("integer"),
            "model": s("string"), "choices": s("array"), "usage": s("object"),
            "meta": {"$ref": "#/components/schemas/Meta"}}), &["id", "choices"]),
        "ModelList": obj(json!({"object": s("string"), "data": s("array")}), &["data"]),
        "Message": obj(json!({"id": s("string"), "role": s("string"), "content": s("string"),
            "surface": s("string"), "mode": s("string"), "timestamp": s("string"), "meta": s("object")}),
            &["id", "role", "content", "timestamp"]),
        "Conversation": obj(json!({
            "id": s("string"), "topic": s("string"), "owner": s("string"),
            "surfaces": s("array"), "tags": s("array"),
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "artifacts": s("array"),
            "meta": obj(json!({"created_at": s("string"), "updated_at": s("string"),
                "status": s("string"), "message_count": s("integer")}), &[])
        }), &["id", "owner", "messages", "meta"]),
        "ConversationList": obj(json!({"conversations": s("array"), "limit": s("integer"), "offset": s("integer")}), &["conversations"]),
        "UserExport": obj(json!({"user_id": s("string"), "exported_at": s("string"),
            "conversations": {"type": "array", "items": {"$ref": "#/components/schemas/Conversation"}}}), &["user_id", "conversations"]),
        "Deleted": obj(json!({"deleted": s("string")}), &["deleted"]),
        "Forgotten": obj(json!({"user_id": s("string"), "deleted_conversations": s("integer")}), &["user_id"]),
        "Privacy": s("object"),
        "Health": obj(json!({"status": s("string"), "version": s("string")}), &["status"]),
        "Metrics": s("string"),
        "OpenApi": s("object"),
        "ServiceResponse": {"description": "The service's own response, passed through"},
        "AuditList": obj(json!({"entries": s("array"), "count": s("integer")}), &["entries"]),
        "AuditEventRequest": closed(obj(json!({
            "category": {"type": "string", "enum": ["llm", "media", "smarthome", "creative"]},
            "service": token(64), "action": token(128),
            "result": {"type": "string", "enum": ["success", "failed", "blocked", "error"]},
            "user_id": nullable(token(128)), "agent_id": nullable(token(128)),
            "surface_id": nullable(token(128)),
            "details": {"type": "object", "maxProperties": 32}
        }), &["category", "service", "action", "result"])),
        "AuditRecorded": obj(json!({"recorded": s("boolean"), "request_id": s("string")}), &["recorded"]),
    })
}

/// The JSON schema of a path parameter: ids follow `validate_id`, a proxied path is text.
fn path_schema(name: &str) -> Value {
    match name {
        "id" | "user_id" => json!({"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN,
            "pattern": "^(?!\\.)(?!.*\\.\\.)[A-Za-z0-9_.@-]+$"}),
        "service" => {
            json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "examples": ["echo"]})
        }
        _ => json!({"type": "string", "minLength": 1}),
    }
}

fn content(types: &[&str], schema: &str) -> Value {
    let mut map = Map::new();
    for t in types {
        let schema = if *t == "*/*" {
            json!({})
        } else if *t == "text/event-stream" {
            json!({"$ref": "#/components/schemas/ChatCompletionStream"})
        } else {
            json!({"$ref": format!("#/components/schemas/{schema}")})
        };
        map.insert((*t).to_string(), json!({ "schema": schema }));
    }
    Value::Object(map)
}

fn operation(r: &Route) -> Value {
    let responses = if matches!(r.query, Query::Forwarded) {
        // Whatever the service answers, with its status, type and body (or none), or a
        // SPEC §4 JSON error of Maestra's own.
        json!({"default": {"description": "The service's answer, passed through, or a SPEC §4 error"}})
    } else {
        json!({
            "200": {"description": "OK", "content": content(r.produces, r.response)},
            "default": {"description": "A SPEC §4 error", "content": content(r.errors, "Error")}
        })
    };
    // The least API key scope that may call it in cloud mode (`/health` needs no key).
    let mut op = json!({"summary": r.summary, "responses": responses,
                        "x-maestra-scope": r.scope.map_or("none", KeyScope::as_str)});
    if let Some(req) = r.request {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{req}")}}}});
    }
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_schema(name)}))
        .collect();
    match r.query {
        Query::None => {}
        Query::Named(list) => {
            for (name, schema) in list {
                let schema: Value = serde_json::from_str(schema).unwrap_or_default();
                params.push(
                    json!({"name": name, "in": "query", "required": false, "schema": schema}),
                );
            }
        }
        Query::Forwarded => params.push(json!({
            "name": "query", "in": "query", "required": false,
            "description": "Passed on to the service unchanged",
            "style": "form", "explode": true,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
        })),
    }
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    op
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Maestra", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Local-first, privacy-first backend for personal AI assistants"},
        "paths": paths,
        "components": {"schemas": schemas()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_schemas_parse_and_templates_match() {
        for r in ROUTES {
            if let Query::Named(list) = r.query {
                for (name, schema) in list {
                    let v: Value = serde_json::from_str(schema).unwrap();
                    assert!(v.is_object(), "{} {name}", r.path);
                }
            }
        }
        assert!(find("/api/services/{service}/{*path}", "PATCH").is_some());
        assert!(find("/api/conversations/{id}", "HEAD").is_some());
        assert!(find("/api/conversations/{id}", "PUT").is_none());
        assert!(find("/api/conversations/{id}/export", "GET").is_some());
        assert_eq!(allowed_methods("/health"), "GET, HEAD");
    }
}
