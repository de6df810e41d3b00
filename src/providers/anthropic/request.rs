//! The Messages API request body, built from a [`ChatRequest`].
//!
//! System (and developer) messages become the top-level `system`. Every other message becomes
//! content blocks: text and images for a user, text and `tool_use` for an assistant, and a
//! tool message becomes a `tool_result` block of a user turn. Consecutive turns of one role are
//! merged block by block, since the API wants user and assistant turns to alternate and every
//! result of one assistant turn's calls in the single user turn after it, results first.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::super::chat::{ChatMessage, ChatRequest, ImageSource, Part, ToolChoice};
use super::structured;
use crate::error::{Error, Result};

/// `max_tokens` is required by the Messages API; used when the client gave none.
const DEFAULT_MAX_TOKENS: u64 = 1024;

pub fn request_body(req: &ChatRequest, model: &str, stream: bool) -> Result<Value> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.push(m.content.as_str());
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(i, m)?),
            "tool" => ("user", vec![tool_result(m)]),
            _ => ("user", user_blocks(m)),
        };
        // The API refuses empty content; an empty message carries nothing anyway.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(Error::BadRequest(
            "`messages` holds no user or assistant content; anthropic models need some".into(),
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        turns
            .into_iter()
            .map(|(role, blocks)| json!({"role": role, "content": content(blocks)}))
            .collect(),
    );
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    tools(req, &mut body);
    for (k, v) in &req.options {
        match k.as_str() {
            "temperature" | "top_p" => {
                body.insert(k.clone(), v.clone());
            }
            "stop" => {
                let seqs = match v {
                    Value::String(s) => json!([s]),
                    other => other.clone(),
                };
                body.insert("stop_sequences".into(), seqs);
            }
            // `check` refused the rest.
            _ => {}
        }
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// A turn's content: tool results first (the API's rule), and a turn of text only as one
/// string, the compact form every server takes.
fn content(mut blocks: Vec<Value>) -> Value {
    blocks.sort_by_key(|b| b["type"] != "tool_result");
    if blocks.iter().all(|b| b["type"] == "text") {
        let texts: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        return json!(texts.join("\n\n"));
    }
    Value::Array(blocks)
}

fn text(t: &str) -> Option<Value> {
    (!t.is_empty()).then(|| json!({"type": "text", "text": t}))
}

/// Text and images in the order sent. OpenAI's `detail` has no counterpart and is dropped: it
/// only lowers what an image costs, and the reservation already priced its worst case.
fn user_blocks(m: &ChatMessage) -> Vec<Value> {
    if m.parts.is_empty() {
        return text(&m.content).into_iter().collect();
    }
    m.parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => text(t),
            Part::Image(image) => Some(match &image.source {
                ImageSource::Inline { media_type, base64 } => json!({"type": "image",
                    "source": {"type": "base64", "media_type": media_type, "data": base64}}),
                ImageSource::Remote(url) => json!({"type": "image",
                    "source": {"type": "url", "url": url.as_str()}}),
            }),
        })
        .collect()
}

fn assistant_blocks(i: usize, m: &ChatMessage) -> Result<Vec<Value>> {
    let mut blocks: Vec<Value> = text(&m.content).into_iter().collect();
    for (j, call) in m.tool_calls.iter().enumerate() {
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name,
                           "input": tool_input(i, j, &call.arguments)?}));
    }
    Ok(blocks)
}

fn tool_result(m: &ChatMessage) -> Value {
    let mut block = json!({"type": "tool_result", "tool_use_id": m.tool_call_id});
    if !m.content.is_empty() {
        block["content"] = json!(m.content);
    }
    block
}

/// A call's arguments as the object `tool_use.input` must be (empty arguments are none).
fn tool_input(i: usize, j: usize, arguments: &str) -> Result<Value> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Error::BadRequest(format!(
            "`messages[{i}].tool_calls[{j}].function.arguments` must be a JSON object for \
             anthropic models"
        ))),
    }
}

/// `tools` and `tool_choice`. A request asking for JSON gets one forced tool; a history that
/// calls functions the request no longer declares gets them declared by name (the API wants
/// every function in the history declared), with calls turned off as OpenAI's would be.
fn tools(req: &ChatRequest, body: &mut Map<String, Value>) {
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": t.parameters.clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(d) = &t.description {
                tool["description"] = json!(d);
            }
            // `check` let it through only for a model that can guarantee the schema.
            if t.strict == Some(true) {
                tool["strict"] = json!(true);
            }
            tool
        })
        .collect();
    let forced = structured(req);
    if tools.is_empty() {
        let mut names: Vec<&str> = req
            .messages
            .iter()
            .flat_map(|m| m.tool_calls.iter().map(|c| c.name.as_str()))
            .filter(|n| forced.as_ref().is_none_or(|f| f.name != *n))
            .collect();
        names.sort_unstable();
        names.dedup();
        tools.extend(
            names
                .into_iter()
                .map(|n| json!({"name": n, "input_schema": {"type": "object", "properties": {}}})),
        );
    }
    let choice = if let Some(f) = &forced {
        let mut tool = json!({"name": f.name, "description": f.description,
                              "input_schema": f.schema});
        if f.strict {
            tool["strict"] = json!(true);
        }
        tools.push(tool);
        Some(json!({"type": "tool", "name": f.name, "disable_parallel_tool_use": true}))
    } else if req.tools.is_empty() {
        Some(json!({"type": "none"}))
    } else {
        let mut choice = req.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        });
        if req.parallel_tool_calls == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = json!(true);
            }
        }
        choice
    };
    if tools.is_empty() {
        return;
    }
    body.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
}

/// The function calls in the history, checked as the Messages API will: call ids unique,
/// arguments objects, every call answered by a tool message before the conversation goes on,
/// and every tool message answering a call of the assistant message before it.
pub(super) fn check_history(req: &ChatRequest) -> Result<()> {
    let bad = |m: String| Err(Error::BadRequest(m));
    let mut ids = HashSet::new();
    // The calls of the last assistant message not yet answered, as (message, call, id).
    let mut open: Vec<(usize, usize, &str)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => {}
            "tool" => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                match open.iter().position(|(_, _, open_id)| *open_id == id) {
                    Some(k) => {
                        open.remove(k);
                    }
                    None => {
                        return bad(format!(
                            "`messages[{i}].tool_call_id` {id:?} answers no call of the assistant \
                             message before it"
                        ));
                    }
                }
            }
            _ => {
                if let Some((ci, cj, id)) = open.first() {
                    return bad(format!(
                        "`messages[{ci}].tool_calls[{cj}]` ({id:?}) has no tool message answering \
                         it before `messages[{i}]`"
                    ));
                }
                for (j, call) in m.tool_calls.iter().enumerate() {
                    tool_input(i, j, &call.arguments)?;
                    if !ids.insert(call.id.as_str()) {
                        return bad(format!(
                            "`messages[{i}].tool_calls[{j}].id` {:?} is used twice",
                            call.id
                        ));
                    }
                    open.push((i, j, call.id.as_str()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
