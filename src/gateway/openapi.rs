//! The OpenAPI 3.1 document served at `/openapi.json`, written from [`ROUTES`], the router's
//! own declaration.

use serde_json::{Map, Value, json};

use super::routes::{Query, ROUTES, Route};
use crate::access::scope::KeyScope;
use crate::conversations::model::MAX_ID_LEN;

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
            "user_id": {"description": "Required, unless the API key belongs to a user (then it is that user)", "anyOf": [id(), {"type": "null"}]}, "surface_id": id(), "conversation_id": new_or_id(),
            "message": text(), "mode_hint": nullable(json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$",
                "description": "A short name (stored in the clear beside the sealed content), default `chat`"})),
            "surface_context": nullable(json!({"type": "object", "description": "Context from the surface; kept, minimised, with the turn"}))
        }), &["surface_id", "message"]),
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

/// The common schemas and the privacy center's (`center_schemas`).
fn with_center(mut all: Value) -> Value {
    if let (Some(all), Value::Object(more)) =
        (all.as_object_mut(), super::center_schemas::schemas())
    {
        all.extend(more);
    }
    all
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
        "components": {"schemas": with_center(schemas())},
    })
}
