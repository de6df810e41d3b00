//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! [`ROUTES`] is the one list of what the router serves: the router test walks it, so a route
//! added without its description here fails a test.

use serde_json::{Map, Value, json};

/// (method, path, summary, request schema, response schema)
pub const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    (
        "post",
        "/api/maestra/core",
        "Ask the assistant (the seed's MaestraRequest)",
        Some("MaestraRequest"),
        "MaestraEnvelope",
    ),
    (
        "post",
        "/api/maestra/advisor/ask",
        "Legacy advisor shape on the same pipeline",
        Some("AdvisorRequest"),
        "MaestraEnvelope",
    ),
    (
        "post",
        "/v1/chat/completions",
        "OpenAI-compatible chat completion; `stream: true` answers as server-sent events",
        Some("ChatCompletionRequest"),
        "ChatCompletion",
    ),
    (
        "get",
        "/v1/models",
        "OpenAI-compatible model list",
        None,
        "ModelList",
    ),
    (
        "get",
        "/api/conversations",
        "List conversations, newest first (query: user_id, limit, offset)",
        None,
        "ConversationList",
    ),
    (
        "get",
        "/api/conversations/{id}",
        "One conversation with its messages",
        None,
        "Conversation",
    ),
    (
        "delete",
        "/api/conversations/{id}",
        "Delete a conversation; its content leaves the database files",
        None,
        "Deleted",
    ),
    (
        "get",
        "/api/conversations/{id}/export",
        "Export a conversation in the seed's JSON format",
        None,
        "Conversation",
    ),
    (
        "get",
        "/api/users/{user_id}/export",
        "Export everything of a user",
        None,
        "UserExport",
    ),
    (
        "delete",
        "/api/users/{user_id}/data",
        "Forget a user: delete every conversation",
        None,
        "Forgotten",
    ),
    (
        "get",
        "/api/privacy",
        "Mode, local-only, limits, storage, vault and audit status",
        None,
        "Privacy",
    ),
    ("get", "/health", "Liveness", None, "Health"),
    (
        "get",
        "/metrics",
        "Prometheus metrics (text)",
        None,
        "Metrics",
    ),
    ("get", "/openapi.json", "This document", None, "OpenApi"),
    (
        "get",
        "/api/services/{service}/{path}",
        "Proxy to a personal service with its credential injected (any method)",
        None,
        "ServiceResponse",
    ),
    (
        "post",
        "/api/services/{service}/{path}",
        "Proxy to a personal service with its credential injected (any method)",
        None,
        "ServiceResponse",
    ),
    (
        "put",
        "/api/services/{service}/{path}",
        "Proxy to a personal service with its credential injected (any method)",
        None,
        "ServiceResponse",
    ),
    (
        "delete",
        "/api/services/{service}/{path}",
        "Proxy to a personal service with its credential injected (any method)",
        None,
        "ServiceResponse",
    ),
    (
        "get",
        "/api/audit",
        "Query the audit log, newest first (query: user, service, category, since, until, limit)",
        None,
        "AuditList",
    ),
    (
        "post",
        "/api/audit/events",
        "Report a local tool action (e.g. ffmpeg, category creative) to the audit log",
        Some("AuditEventRequest"),
        "AuditRecorded",
    ),
];

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    json!({
        "Error": obj(json!({"error": obj(json!({
            "code": s("string"), "message": s("string"),
            "service": s("string"), "reason": s("string"),
            "suggested_alternatives": {"type": "array", "items": s("string")}
        }), &["code", "message"])}), &["error"]),
        "MaestraRequest": obj(json!({
            "user_id": s("string"), "surface_id": s("string"), "conversation_id": s("string"),
            "message": s("string"), "mode_hint": s("string"), "surface_context": s("object")
        }), &["user_id", "surface_id", "message"]),
        "AdvisorRequest": obj(json!({
            "question": s("string"), "user_id": s("string"), "surface_id": s("string"),
            "conversation_id": s("string"), "context": s("object")
        }), &["question"]),
        "Meta": obj(json!({"latency_ms": s("integer"), "model": s("string"),
            "tokens": s("integer"), "cost_usd": s("number")}), &["latency_ms", "model", "tokens", "cost_usd"]),
        "MaestraEnvelope": obj(json!({
            "reply": s("string"), "mode": s("string"), "conversation_id": s("string"),
            "source": {"type": "string", "enum": ["local", "cloud"]}, "version": s("string"),
            "artifacts": s("array"), "actions": s("array"), "meta": {"$ref": "#/components/schemas/Meta"}
        }), &["reply", "mode", "conversation_id", "source", "version", "artifacts", "actions", "meta"]),
        "ChatCompletionRequest": obj(json!({
            "model": s("string"), "messages": {"type": "array", "items": obj(json!({
                "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                "content": s("string")}), &["role"])},
            "stream": s("boolean"), "max_tokens": s("integer"), "temperature": s("number"),
            "top_p": s("number"), "stop": {}, "user": s("string")
        }), &["model", "messages"]),
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
        "AuditEventRequest": obj(json!({
            "category": {"type": "string", "enum": ["llm", "media", "smarthome", "creative", "local_only_block", "auth", "admin", "data"]},
            "service": s("string"), "action": s("string"),
            "result": {"type": "string", "enum": ["success", "failed", "blocked", "error"]},
            "user_id": s("string"), "agent_id": s("string"), "surface_id": s("string"),
            "details": s("object")
        }), &["category", "service", "action", "result"]),
        "AuditRecorded": obj(json!({"recorded": s("boolean"), "request_id": s("string")}), &["recorded"]),
    })
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, request, response) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}}},
                "default": {"description": "A SPEC §4 error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(req) = request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{req}")}}}});
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Maestra", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Local-first, privacy-first backend for personal AI assistants"},
        "paths": paths,
        "components": {"schemas": schemas()},
    })
}
