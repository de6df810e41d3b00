//! Streamed Messages API events to [`Delta`]s.
//!
//! A `tool_use` block opens a function call (its id and name, no arguments yet), and its
//! `input_json_delta` pieces are the call's arguments as they are written: exactly the
//! index-based fragments OpenAI streams, the index counting the answer's tool blocks. When the
//! request asked for JSON, the forced tool's pieces are the answer's text instead.
//!
//! A tool that takes no input streams no JSON at all (one empty piece, or none), while the
//! whole answer's `input` is `{}`: a block that wrote nothing writes `{}` when it stops, so a
//! streamed call (or JSON answer) parses as the plain one does. And a JSON request whose forced
//! tool is never called (a refusal, a cut-off answer) answers with its text, as the whole
//! answer does: that text is held until the message ends, and sent only then.

use serde_json::Value;

use super::super::chat::{ChatRequest, Delta, Usage};
use super::{finish_reason, garbage, num, structured};
use crate::error::{Error, Result};

/// Most tool blocks one streamed answer may open; more is not an answer but a flood.
const MAX_TOOL_BLOCKS: usize = 128;

/// Most text a JSON answer holds back in case its forced tool is never called: the answer's
/// text is what a refusal says, short; more than this is cut rather than held without end.
const MAX_HELD_TEXT: usize = 256 * 1024;

/// What a stream needs from earlier events: input tokens arrive at its start, output tokens
/// at its end, and a tool block's pieces name only the block they belong to.
#[derive(Debug, Default)]
pub struct StreamState {
    input_tokens: u64,
    /// The request asked for JSON: the forced tool's input is the text.
    structured: bool,
    /// The content-block indices of the tool blocks, in order: a block's position here is its
    /// call's `index`.
    tool_blocks: Vec<u64>,
    /// Per tool block (same order): whether it wrote any of its JSON.
    wrote: Vec<bool>,
    /// A JSON request's text, sent only if the forced tool is never called.
    held: String,
}

impl StreamState {
    pub fn new(req: &ChatRequest) -> StreamState {
        StreamState {
            structured: structured(req).is_some(),
            ..StreamState::default()
        }
    }
}

/// The deltas in one streamed event.
pub fn parse_event(state: &mut StreamState, event: &str, data: &str) -> Result<Vec<Delta>> {
    // A syntax error names a line and column, never the payload's text: safe to keep.
    let v: Value =
        serde_json::from_str(data).map_err(|e| garbage("a stream event is not JSON").because(e))?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(event)
        .to_string();
    Ok(match kind.as_str() {
        "message_start" => {
            state.input_tokens = num(&v, "/message/usage/input_tokens");
            Vec::new()
        }
        "content_block_start" => block_start(state, &v)?.into_iter().collect(),
        "content_block_delta" => block_delta(state, &v)?.into_iter().collect(),
        "content_block_stop" => block_stop(state, &v)?.into_iter().collect(),
        "message_delta" => {
            let mut out = Vec::new();
            // No forced tool was called: the answer is its text, as a whole answer's is.
            if state.structured && state.tool_blocks.is_empty() && !state.held.is_empty() {
                out.push(Delta::Text {
                    choice: 0,
                    text: std::mem::take(&mut state.held),
                });
            }
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                out.push(Delta::Finish {
                    choice: 0,
                    reason: finish_reason(Some(r), state.structured),
                });
            }
            out.push(Delta::Usage(Usage {
                prompt_tokens: state.input_tokens,
                completion_tokens: num(&v, "/usage/output_tokens"),
            }));
            out
        }
        "error" => {
            return Err(Error::Upstream(format!(
                "the stream reported an error: {}",
                super::super::upstream_message(v.get("error").unwrap_or(&v))
            )));
        }
        // ping, message_stop: nothing to relay.
        _ => Vec::new(),
    })
}

fn block_index(v: &Value) -> Result<u64> {
    v.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| garbage("a content block event without an `index`"))
}

/// A `tool_use` block opens call `k` (the k-th tool block), named; other blocks say nothing
/// until their deltas.
fn block_start(state: &mut StreamState, v: &Value) -> Result<Option<Delta>> {
    let block = v.get("content_block").unwrap_or(&Value::Null);
    if block.get("type").and_then(Value::as_str) != Some("tool_use") {
        return Ok(None);
    }
    let b = block_index(v)?;
    if state.tool_blocks.contains(&b) {
        return Err(garbage("a tool block started twice"));
    }
    if state.tool_blocks.len() >= MAX_TOOL_BLOCKS {
        return Err(garbage(&format!(
            "more than {MAX_TOOL_BLOCKS} function calls in one answer"
        )));
    }
    let field = |k: &str| {
        block
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| garbage(&format!("a `tool_use` block without `{k}`")))
    };
    let (id, name) = (field("id")?, field("name")?);
    let index = state.tool_blocks.len() as u32;
    state.tool_blocks.push(b);
    state.wrote.push(false);
    if state.structured {
        return Ok(None);
    }
    Ok(Some(Delta::ToolCall {
        choice: 0,
        index,
        id: Some(id),
        name: Some(name),
        arguments: String::new(),
    }))
}

/// A tool block that wrote no JSON took no input: it writes `{}`, the whole answer's `input`.
fn block_stop(state: &mut StreamState, v: &Value) -> Result<Option<Delta>> {
    let b = block_index(v)?;
    let Some(index) = state.tool_blocks.iter().position(|t| *t == b) else {
        return Ok(None);
    };
    if std::mem::replace(&mut state.wrote[index], true) {
        return Ok(None);
    }
    Ok(json_piece(state, index, "{}"))
}

/// A piece of tool block `index`'s JSON: its call's arguments, or the answer's text when it
/// is the forced JSON tool.
fn json_piece(state: &StreamState, index: usize, piece: &str) -> Option<Delta> {
    if state.structured {
        // The forced tool is asked for once; its input is the answer.
        return (index == 0).then(|| Delta::Text {
            choice: 0,
            text: piece.to_string(),
        });
    }
    Some(Delta::ToolCall {
        choice: 0,
        index: index as u32,
        id: None,
        name: None,
        arguments: piece.to_string(),
    })
}

fn block_delta(state: &mut StreamState, v: &Value) -> Result<Option<Delta>> {
    let delta = v.get("delta").unwrap_or(&Value::Null);
    match delta.get("type").and_then(Value::as_str) {
        Some("input_json_delta") => {
            let b = block_index(v)?;
            let index = state
                .tool_blocks
                .iter()
                .position(|t| *t == b)
                .ok_or_else(|| garbage("a tool input for a block that is not a tool block"))?;
            let piece = delta
                .get("partial_json")
                .and_then(Value::as_str)
                .ok_or_else(|| garbage("an `input_json_delta` without `partial_json`"))?;
            if piece.is_empty() {
                return Ok(None);
            }
            state.wrote[index] = true;
            Ok(json_piece(state, index, piece))
        }
        // Text around a JSON answer would spoil it: held, in case no JSON comes.
        _ if state.structured => {
            if let Some(t) = delta.get("text").and_then(Value::as_str) {
                let room = MAX_HELD_TEXT.saturating_sub(state.held.len());
                let mut cut = t.len().min(room);
                while !t.is_char_boundary(cut) {
                    cut -= 1;
                }
                state.held.push_str(&t[..cut]);
            }
            Ok(None)
        }
        _ => Ok(match delta.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Some(Delta::Text {
                choice: 0,
                text: t.to_string(),
            }),
            _ => None,
        }),
    }
}

#[cfg(test)]
mod tests;
