//! The OpenAPI 3.1 document served at `/openapi.json`, written from the route table it is
//! handed (`routes::ROUTES`, the router's own declaration), once, when the router is built.

use serde_json::{Map, Value, json};

use super::route::{Query, Route};
use crate::access::scope::KeyScope;
use crate::conversations::model::MAX_ID_LEN;

/// `POST /v1/chat/completions`'s body: the fields `providers::chat::read` understands, each as
/// it checks them, so the document is never stricter than the server; any other field is a 400
/// naming it. A message may carry no other key; parts, tools and tool calls may (the reader
/// ignores what it does not use).
fn chat_request() -> Value {
    let s = |t: &str| json!({"type": t});
    let nullable = |v: Value| json!({"anyOf": [v, {"type": "null"}]});
    let name = || json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    let call_id = || json!({"type": "string", "minLength": 1, "maxLength": 256});
    let open = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let closed = |props: Value, required: &[&str]| {
        json!({"type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    };
    let part = json!({"anyOf": [
        open(json!({"type": {"const": "text"}, "text": s("string")}), &["type", "text"]),
        open(json!({"type": {"const": "image_url"}, "image_url": open(json!({
            "url": {"type": "string", "description": "A base64 `data:` URL (PNG, JPEG, GIF, WebP), or an http(s) URL for a cloud model, which fetches it itself (named in the audit entry's `image_hosts`; refused for a local model)"},
            "detail": nullable(json!({"enum": ["low", "high", "auto"]}))}), &["url"])}),
            &["type", "image_url"]),
        open(json!({"type": {"const": "refusal"}, "refusal": s("string")}), &["type", "refusal"])
    ]});
    let tool_call = open(
        json!({"id": call_id(), "type": {"const": "function"},
        "function": open(json!({"name": name(), "arguments": s("string")}), &["name", "arguments"])}),
        &["id", "type", "function"],
    );
    let message = closed(
        json!({
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"description": "Text, or parts (text; image_url in a user message; refusal in an assistant's); may be null for an assistant that called functions",
                "anyOf": [s("string"), s("null"), {"type": "array", "items": part}]},
            "tool_calls": nullable(json!({"type": "array", "items": tool_call,
                "description": "An assistant message's function calls"})),
            "tool_call_id": {"description": "The call a tool message answers", "allOf": [call_id()]},
            "refusal": {"description": "An assistant's refusal, kept in the history"}
        }),
        &["role"],
    );
    let tool = open(
        json!({"type": {"const": "function"}, "function": open(json!({
        "name": name(), "description": nullable(s("string")),
        "parameters": nullable(s("object")), "strict": nullable(s("boolean"))}), &["name"])}),
        &["type", "function"],
    );
    let format = json!({"anyOf": [
        open(json!({"type": {"enum": ["text", "json_object"]}}), &["type"]),
        open(json!({"type": {"const": "json_schema"}, "json_schema": open(json!({
            "name": name(), "description": nullable(s("string")),
            "schema": nullable(s("object")), "strict": nullable(s("boolean"))}), &["name"])}),
            &["type", "json_schema"])]});
    let range =
        |lo: f64, hi: f64| nullable(json!({"type": "number", "minimum": lo, "maximum": hi}));
    let tokens = || nullable(json!({"type": "integer", "minimum": 1, "maximum": 1_000_000}));
    closed(
        json!({
            "model": {"type": "string", "minLength": 1, "examples": ["llama3.2"]},
            "messages": {"type": "array", "minItems": 1, "items": message,
                "description": "At most 1000, each at most 256 KiB of text, at most 20 images in all (413 above)"},
            "stream": nullable(s("boolean")),
            "stream_options": nullable(closed(json!({"include_usage": nullable(s("boolean"))}), &[])),
            "user": {"description": "The user the call acts for (an admin key or local mode; a user's key acts for its own user); never sent to the provider",
                "anyOf": [path_schema("id"), s("null")]},
            "max_tokens": tokens(),
            "max_completion_tokens": tokens(),
            "n": nullable(json!({"type": "integer", "minimum": 1, "maximum": 8,
                "description": "Choices; the reservation is multiplied by it. Above 1 refused for Anthropic and local models"})),
            "tools": nullable(json!({"type": "array", "maxItems": 128, "items": tool,
                "description": "Function tools (names unique)"})),
            "tool_choice": {"anyOf": [s("null"), {"enum": ["auto", "none", "required"]},
                open(json!({"type": {"const": "function"}, "function": open(json!({"name": name()}), &["name"])}),
                    &["type", "function"])]},
            "parallel_tool_calls": nullable(s("boolean")),
            "response_format": nullable(format),
            "logprobs": nullable(json!({"type": "boolean", "description": "Refused for Anthropic"})),
            "top_logprobs": nullable(json!({"type": "integer", "minimum": 0, "maximum": 20,
                "description": "Needs `logprobs: true`"})),
            "store": {"enum": [false, null], "description": "Maestra asks no provider to keep what an assistant sends"},
            "temperature": range(0.0, 2.0),
            "top_p": range(0.0, 1.0),
            "presence_penalty": range(-2.0, 2.0),
            "frequency_penalty": range(-2.0, 2.0),
            "seed": nullable(json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})),
            "stop": {"anyOf": [s("null"), {"type": "string", "maxLength": 256},
                {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 256}}]},
            "logit_bias": nullable(json!({"type": "object", "maxProperties": 300,
                "propertyNames": {"pattern": "^\\+?[0-9]+$"},
                "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}})),
            "reasoning_effort": nullable(json!({"enum": ["minimal", "low", "medium", "high"]}))
        }),
        &["model", "messages"],
    )
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
        "ChatCompletionRequest": chat_request(),
        "ChatCompletionStream": {"type": "string", "description": "Server-sent events: `data: {chunk}` lines, then `data: [DONE]`"},
        "ResponseRequest": response_request(),
        "Response": obj(json!({"id": s("string"), "object": {"const": "response"},
            "created_at": s("integer"), "model": s("string"),
            "status": {"type": "string", "enum": ["completed", "incomplete", "failed"]},
            "output": {"type": "array", "items": s("object"),
                "description": "A `message` item with the text, and a `function_call` item per call"},
            "usage": s("object"), "error": s("null"), "incomplete_details": nullable(s("object")),
            "store": {"const": false}, "meta": {"$ref": "#/components/schemas/Meta"}}),
            &["id", "object", "created_at", "model", "status", "output"]),
        "ResponseStream": {"type": "string", "description": "Server-sent events, each `event: <type>` with `data: {type, sequence_number, ...}`: response.created, response.in_progress, per output item response.output_item.added, its deltas and .done events, response.output_item.done; last response.completed (response.incomplete when cut at max_output_tokens, response.failed with Maestra's error code when the upstream failed)"},
        "ChatCompletion": obj(json!({"id": s("string"), "object": s("string"), "created": s("integer"),
            "model": s("string"), "choices": s("array"), "usage": s("object"),
            "meta": {"$ref": "#/components/schemas/Meta"}}), &["id", "choices"]),
        "EmbeddingsRequest": closed(obj(json!({
            "model": {"type": "string", "minLength": 1, "examples": ["llama3.2", "text-embedding-3-small"],
                "description": "`text-embedding-*` goes to OpenAI (a cloud call); a configured local model or `local/NAME` to the local server"},
            "input": {"description": "Text, or 1 to 2048 texts; at most 1 MiB in all (413 above). Token-id arrays are refused",
                "anyOf": [{"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "string", "minLength": 1}}]},
            "encoding_format": nullable(json!({"type": "string", "enum": ["float", "base64"]})),
            "dimensions": nullable(json!({"type": "integer", "minimum": 1, "maximum": 4096})),
            "user": nullable(id())
        }), &["model", "input"])),
        "EmbeddingList": obj(json!({
            "object": {"const": "list"},
            "data": {"type": "array", "items": obj(json!({
                "object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
                "embedding": {"description": "Numbers, or base64 of little-endian float32 (`encoding_format: base64`)",
                    "anyOf": [{"type": "array", "items": s("number")}, s("string")]}
            }), &["object", "index", "embedding"])},
            "model": s("string"),
            "usage": obj(json!({"prompt_tokens": s("integer"), "total_tokens": s("integer")}),
                &["prompt_tokens", "total_tokens"]),
            "meta": {"$ref": "#/components/schemas/Meta"}
        }), &["object", "data", "model", "usage"]),
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
        "McpMessage": obj(json!({"jsonrpc": {"const": "2.0"}, "id": {"type": ["string", "integer"]},
            "method": s("string"), "params": s("object"), "result": s("object"), "error": s("object")}), &["jsonrpc"]),
        "McpResponse": obj(json!({"jsonrpc": {"const": "2.0"}, "id": {"type": ["string", "integer", "null"]},
            "result": s("object"), "error": s("object")}), &["jsonrpc"]),
        // A refusal on /mcp: the transport's own (a SPEC §4 error), or a JSON-RPC error object
        // where MCP says the answer is one (a protocol-version mismatch, say).
        "McpError": {"oneOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/McpResponse"}]},
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

/// `POST /v1/responses`'s body. Only what Maestra carries: a documented field it does not
/// (stored responses, provider-run tools, reasoning options) passes only as null or its
/// default, and anything else is a 400 naming it.
fn response_request() -> Value {
    let nullable = |v: Value| json!({"anyOf": [v, {"type": "null"}]});
    let name = || json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    let call_id = || json!({"type": "string", "minLength": 1, "maxLength": 256});
    let closed = |props: Value, required: &[&str]| {
        json!({"type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    };
    let parts = || json!({"type": "array", "items": {"type": "object"}});
    let unset = |why: &str| json!({"type": "null", "description": why});
    let stateless = "Stateless: Maestra stores no response; send the history in `input`";
    json!({"type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string", "minLength": 1, "examples": ["llama3.2"]},
        "input": {"description": "Text (one user message), or items: messages, function_call and function_call_output (at most 1000; each text at most 256 KiB, 413 above)",
            "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"anyOf": [
                {"type": "object", "required": ["role", "content"], "properties": {
                    "type": {"enum": ["message", null]},
                    "role": {"enum": ["user", "system", "developer", "assistant"]},
                    "content": {"anyOf": [{"type": "string"}, parts()]}}},
                {"type": "object", "required": ["type", "call_id", "name", "arguments"], "properties": {
                    "type": {"const": "function_call"}, "call_id": call_id(), "name": name(),
                    "arguments": {"type": "string"}}},
                {"type": "object", "required": ["type", "call_id", "output"], "properties": {
                    "type": {"const": "function_call_output"}, "call_id": call_id(),
                    "output": {"anyOf": [{"type": "string"}, parts()]}}}
            ]}}]},
        "instructions": nullable(json!({"type": "string"})),
        "tools": nullable(json!({"type": "array", "maxItems": 128,
            "description": "Function tools only: a tool the provider would run itself (web search, file search, computer use) is refused",
            "items": closed(json!({"type": {"const": "function"}, "name": name(),
                "description": nullable(json!({"type": "string"})),
                "parameters": nullable(json!({"type": "object"})),
                "strict": nullable(json!({"type": "boolean"}))}), &["type", "name"])})),
        "tool_choice": {"anyOf": [{"type": "null"}, {"enum": ["auto", "none", "required"]},
            closed(json!({"type": {"const": "function"}, "name": name()}), &["type", "name"])]},
        "parallel_tool_calls": nullable(json!({"type": "boolean"})),
        "max_output_tokens": nullable(json!({"type": "integer", "minimum": 1, "maximum": 1_000_000})),
        "temperature": nullable(json!({"type": "number", "minimum": 0, "maximum": 2})),
        "top_p": nullable(json!({"type": "number", "minimum": 0, "maximum": 1})),
        "text": nullable(closed(json!({"verbosity": {"type": "null"}, "format": {"anyOf": [
            {"type": "null"},
            closed(json!({"type": {"enum": ["text", "json_object"]}}), &["type"]),
            closed(json!({"type": {"const": "json_schema"}, "name": name(),
                "schema": nullable(json!({"type": "object"})),
                "description": nullable(json!({"type": "string"})),
                "strict": nullable(json!({"type": "boolean"}))}), &["type", "name"])]}}), &[])),
        "stream": nullable(json!({"type": "boolean"})),
        "stream_options": nullable(closed(json!({"include_obfuscation": {"enum": [false, null]}}), &[])),
        "store": {"enum": [false, null], "description": "Maestra keeps nothing and asks no provider to keep it"},
        "user": nullable(path_schema("id")),
        "previous_response_id": unset(stateless),
        "conversation": unset(stateless),
        "prompt": unset("Stored prompt templates are not used: send the text in `instructions`"),
        "reasoning": unset("Not carried"),
        "service_tier": unset("Not carried: it changes the price past what the cost guard bounds"),
        "max_tool_calls": unset("Not carried: Maestra offers no built-in tools"),
        "top_logprobs": unset("Not carried"),
        "include": nullable(json!({"type": "array", "maxItems": 0})),
        "metadata": nullable(json!({"type": "object", "maxProperties": 0})),
        "truncation": {"enum": ["disabled", null]},
        "background": {"enum": [false, null]}
    }})
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
            json!({"$ref": format!("#/components/schemas/{schema}Stream")})
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
    } else if r.response == "McpResponse" {
        // MCP answers a notification with 202 and no body, and some refusals as JSON-RPC.
        json!({
            "200": {"description": "OK", "content": content(r.produces, r.response)},
            "202": {"description": "A notification or a response, accepted; no body"},
            "default": {"description": "A SPEC §4 error or a JSON-RPC error", "content": content(r.errors, "McpError")}
        })
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
    // The `/v1` calls name their agent (see `gateway::agent`); the header is one way to.
    if r.method == "post" && r.path.starts_with("/v1/") {
        params.push(json!({"name": "X-Maestra-Surface", "in": "header", "required": false,
            "description": "Names the calling agent or surface in the audit log and the privacy report (else the User-Agent's product; in cloud mode the API key's name wins). Not an id: 400",
            "schema": path_schema("id")}));
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

/// The document, rendered once: `/openapi.json` answers these bytes.
pub struct Document(pub bytes::Bytes);

impl Document {
    pub fn new(routes: &[Route]) -> Document {
        Document(bytes::Bytes::from(document(routes).to_string()))
    }
}

fn document(routes: &[Route]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
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
