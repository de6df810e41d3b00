//! The mock's Anthropic function calling: the Messages API's request checks and its answers to
//! tool use, plain and as the real event sequence (a `tool_use` block opened with an empty
//! `input`, its JSON in `input_json_delta` pieces, `stop_reason: "tool_use"`).
//!
//! Every request is first checked as the real API checks it: only its own fields, user and
//! assistant turns alternating, non-empty content, unique `tool_use` ids, each `tool_result`
//! answering a `tool_use` of the assistant turn just before it (results first in their turn),
//! each call answered in the next turn, tools declared whenever the history holds tool blocks
//! (an `input_schema` of type object, nothing else but a description). A request that breaks
//! a rule gets the API's 400 `invalid_request_error`.
//!
//! Then: a last user turn holding tool results is answered `tool said: <result content>`; a
//! request with tools (and a `tool_choice` that is not `none`) is answered by a call of the
//! first tool (or the forced one) with `{"city":"Oslo","unit":"celsius"}`, after a text block
//! unless a call was forced, and by a second call (`{"city":"Bergen",...}`, the second tool if
//! there is one) when the last user text says `mode:two-calls` and parallel use is allowed;
//! when it says `mode:no-input` the call takes no input (`{}`), which the API streams as one
//! empty `input_json_delta` piece and nothing more.
//! Anything else is left to the plain text mock ([`respond`] returns `None`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The Messages API's top-level request fields.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
];

/// The mock's answer to an Anthropic request: a 400 for a request the API would refuse, a tool
/// answer, or `None` for the plain text behaviours.
/// `beta` is the request's `anthropic-beta` header: strict tools need structured outputs on.
pub fn respond(body: &Value, beta: Option<&str>) -> Option<Response> {
    let strict_on = beta.is_some_and(|b| b.split(',').any(|b| b.trim() == STRUCTURED_OUTPUTS));
    if let Err(message) = check(body, strict_on) {
        return Some(
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"type": "error",
                    "error": {"type": "invalid_request_error", "message": message}})),
            )
                .into_response(),
        );
    }
    let messages = body["messages"].as_array()?;
    let last = messages.last()?;
    let blocks = blocks(last);
    let results: Vec<String> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| result_text(&b["content"]))
        .collect();
    let stream = body["stream"] == true;
    if last["role"] == "user" && !results.is_empty() {
        let text = format!("tool said: {}", results.join(" | "));
        return Some(answer(
            body,
            vec![json!({"type": "text", "text": text})],
            stream,
        ));
    }
    let tools = body["tools"].as_array().filter(|t| !t.is_empty())?;
    let choice = &body["tool_choice"];
    if choice["type"] == "none" {
        return None;
    }
    let forced = matches!(choice["type"].as_str(), Some("any" | "tool"));
    let first = choice["name"]
        .as_str()
        .unwrap_or_else(|| tools[0]["name"].as_str().unwrap());
    let mut content = Vec::new();
    // A model whose call is forced writes no text before it.
    if !forced {
        content.push(json!({"type": "text", "text": "Let me check."}));
    }
    let text = user_text(last);
    let input = if text.contains("mode:no-input") {
        json!({})
    } else {
        json!({"city": "Oslo", "unit": "celsius"})
    };
    content.push(json!({"type": "tool_use", "id": "toolu_01", "name": first, "input": input}));
    if text.contains("mode:two-calls") && choice["disable_parallel_tool_use"] != true {
        let second = tools.get(1).unwrap_or(&tools[0])["name"].as_str().unwrap();
        content.push(json!({"type": "tool_use", "id": "toolu_02", "name": second,
                            "input": {"city": "Bergen", "unit": "celsius"}}));
    }
    Some(answer(body, content, stream))
}

/// A turn's content as blocks (a string is one text block).
fn blocks(turn: &Value) -> Vec<Value> {
    match &turn["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}

fn user_text(turn: &Value) -> String {
    blocks(turn)
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `tool_result`'s content: a string, or text blocks.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// The beta that lets a tool be `strict`.
const STRUCTURED_OUTPUTS: &str = "structured-outputs-2025-11-13";

fn check(body: &Value, strict_on: bool) -> Result<(), String> {
    let obj = body.as_object().ok_or("the body must be an object")?;
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            return Err(format!("{key}: Extra inputs are not permitted"));
        }
    }
    if !body["max_tokens"].is_u64() {
        return Err("max_tokens: Field required".into());
    }
    let declared = check_tools(body, strict_on)?;
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required")?;
    let mut ids = HashSet::new();
    let mut has_tool_blocks = false;
    for (k, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{k}.role: Input should be 'user' or 'assistant'"
            ));
        }
        if k > 0 && messages[k - 1]["role"] == role {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found \
                 multiple \"{role}\" roles in a row"
            ));
        }
        let blocks = blocks(m);
        if blocks.is_empty() {
            return Err(format!(
                "messages.{k}: all messages must have non-empty content"
            ));
        }
        // The calls of the turn before, which this turn's results must answer.
        let asked: Vec<&str> = if k > 0 && role == "user" {
            messages[k - 1]["content"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter(|b| b["type"] == "tool_use")
                        .filter_map(|b| b["id"].as_str())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut answered = HashSet::new();
        let mut past_results = false;
        for (n, b) in blocks.iter().enumerate() {
            let at = format!("messages.{k}.content.{n}");
            match (b["type"].as_str().unwrap_or(""), role) {
                ("text", _) => {
                    if b["text"].as_str().is_none_or(str::is_empty) {
                        return Err(format!("{at}: text content blocks must be non-empty"));
                    }
                    past_results = true;
                }
                ("image", "user") => {
                    let s = &b["source"];
                    let ok = match s["type"].as_str() {
                        Some("base64") => s["media_type"].is_string() && s["data"].is_string(),
                        Some("url") => s["url"].is_string(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{at}.source: invalid image source"));
                    }
                    past_results = true;
                }
                ("tool_use", "assistant") => {
                    has_tool_blocks = true;
                    let id = b["id"].as_str().unwrap_or("");
                    if id.is_empty() || !b["name"].is_string() || !b["input"].is_object() {
                        return Err(format!(
                            "{at}: a tool_use needs an id, a name and an input object"
                        ));
                    }
                    if !ids.insert(id.to_string()) {
                        return Err(format!("{at}: `tool_use` ids must be unique"));
                    }
                }
                ("tool_result", "user") => {
                    has_tool_blocks = true;
                    let id = b["tool_use_id"].as_str().unwrap_or("");
                    if !asked.contains(&id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block \
                             in the previous message."
                        ));
                    }
                    if past_results {
                        return Err(format!(
                            "{at}: tool_result blocks must come before any other content"
                        ));
                    }
                    answered.insert(id);
                }
                (other, _) => {
                    return Err(format!("{at}: a {role} turn cannot hold a {other:?} block"));
                }
            }
        }
        let unanswered: Vec<&str> = asked
            .iter()
            .copied()
            .filter(|a| !answered.contains(a))
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately \
                 after: {}. Each `tool_use` block must have a corresponding `tool_result` block \
                 in the next message.",
                k - 1,
                unanswered.join(", ")
            ));
        }
    }
    if has_tool_blocks && declared.is_empty() {
        return Err(
            "Requests which include `tool_use` or `tool_result` blocks must define tools.".into(),
        );
    }
    Ok(())
}

/// `tools` and `tool_choice` as the API takes them; the declared names.
fn check_tools(body: &Value, strict_on: bool) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        for key in t
            .as_object()
            .ok_or(format!("tools.{i}: must be an object"))?
            .keys()
        {
            let allowed = ["name", "description", "input_schema"].contains(&key.as_str())
                || (key == "strict" && strict_on);
            if !allowed {
                return Err(format!("tools.{i}.{key}: Extra inputs are not permitted"));
            }
        }
        if t["input_schema"]["type"] != "object" {
            return Err(format!(
                "tools.{i}.input_schema.type: Input should be 'object'"
            ));
        }
        let name = t["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() || names.contains(&name) {
            return Err(format!(
                "tools.{i}.name: tool names must be unique and non-empty"
            ));
        }
        names.push(name);
    }
    let choice = &body["tool_choice"];
    if choice.is_null() {
        return Ok(names);
    }
    if names.is_empty() {
        return Err("tool_choice may only be specified while providing tools.".into());
    }
    match choice["type"].as_str() {
        Some("auto" | "any" | "none") => {}
        Some("tool")
            if choice["name"]
                .as_str()
                .is_some_and(|n| names.iter().any(|d| d == n)) => {}
        _ => return Err(format!("tool_choice: {choice} is not a valid tool choice")),
    }
    Ok(names)
}

/// The whole answer, or the events the Messages API streams for it.
fn answer(body: &Value, content: Vec<Value>, stream: bool) -> Response {
    let stop = if content.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    };
    if !stream {
        return axum::Json(json!({
            "id": "msg_tools", "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 6}
        }))
        .into_response();
    }
    let ev = |data: Value| {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        )
    };
    let mut parts = vec![ev(
        json!({"type": "message_start", "message": {"id": "msg_tools", "type": "message",
            "role": "assistant", "model": body["model"], "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    )];
    for (index, block) in content.iter().enumerate() {
        if block["type"] == "text" {
            parts.push(ev(json!({"type": "content_block_start", "index": index,
                                 "content_block": {"type": "text", "text": ""}})));
            parts.push(ev(json!({"type": "ping"})));
            for word in block["text"].as_str().unwrap().split_inclusive(' ') {
                parts.push(ev(json!({"type": "content_block_delta", "index": index,
                                     "delta": {"type": "text_delta", "text": word}})));
            }
        } else {
            let mut opened = block.clone();
            opened["input"] = json!({});
            parts.push(ev(json!({"type": "content_block_start", "index": index,
                                 "content_block": opened})));
            // The first piece is empty, as the API sends it; the rest split the JSON anywhere.
            // An empty input is that empty piece alone.
            let input = block["input"].to_string();
            let chars: Vec<char> = if input == "{}" {
                Vec::new()
            } else {
                input.chars().collect()
            };
            let pieces =
                std::iter::once(String::new()).chain(chars.chunks(9).map(|c| c.iter().collect()));
            for piece in pieces {
                parts.push(ev(json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
        }
        parts.push(ev(json!({"type": "content_block_stop", "index": index})));
    }
    parts.push(ev(json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 6}})));
    parts.push(ev(json!({"type": "message_stop"})));
    let paced = futures_util::stream::unfold(parts.into_iter(), |mut it| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        it.next().map(|p| (Ok::<_, Infallible>(Bytes::from(p)), it))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(paced),
    )
        .into_response()
}
