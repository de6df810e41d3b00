//! The messages of a chat request: roles, text and image parts, an assistant's function
//! calls and the tool messages that answer them.

use serde_json::Value;

use super::super::{ChatMessage, Image, ImageSource, MAX_MESSAGE_BYTES, Part, ToolCall};
use super::bad;
use super::tools::valid_name;
use crate::error::{Error, Result};

/// Image types the providers accept inline.
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

pub(super) fn message(i: usize, m: &Value) -> Result<ChatMessage> {
    let obj = m
        .as_object()
        .ok_or_else(|| bad(&format!("`messages[{i}]` must be an object")))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("system" | "developer" | "user" | "assistant" | "tool")) => r.to_string(),
        Some("function") => {
            return Err(bad(&format!(
                "`messages[{i}].role` \"function\" is deprecated; send a \"tool\" message"
            )));
        }
        Some(other) => {
            return Err(bad(&format!(
                "`messages[{i}].role` {other:?} is not one of system, developer, user, assistant, tool"
            )));
        }
        None => return Err(bad(&format!("`messages[{i}].role` is required"))),
    };
    for key in obj.keys() {
        let known = match key.as_str() {
            "role" | "content" => true,
            "tool_calls" | "refusal" => role == "assistant",
            "tool_call_id" => role == "tool",
            _ => false,
        };
        if !known {
            return Err(bad(&format!(
                "`messages[{i}].{key}` is not a field of a {role} message Maestra understands"
            )));
        }
    }
    let parts = match obj.get("content") {
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part(i, j, &role, p))
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(_)) => parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Image(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None if role == "assistant" => String::new(),
        _ => {
            return Err(bad(&format!(
                "`messages[{i}].content` must be a string or an array of parts"
            )));
        }
    };
    // An assistant's refusal (structured output) in the history reads as its text, as a
    // `refusal` part does: the model said it, so it stays in the conversation.
    let content = match obj.get("refusal") {
        None | Some(Value::Null) => content,
        Some(Value::String(r)) if content.is_empty() => r.clone(),
        Some(Value::String(r)) => format!("{content}\n{r}"),
        Some(_) => return Err(bad(&format!("`messages[{i}].refusal` must be a string"))),
    };
    if content.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge(format!(
            "`messages[{i}].content` is over {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    // Parts that are only text carry nothing a string does not: one shape for the wire.
    let parts = if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        Vec::new()
    } else {
        parts
    };
    let tool_calls = match obj.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(j, c)| tool_call(i, j, c))
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(bad(&format!("`messages[{i}].tool_calls` must be an array"))),
    };
    let tool_call_id = match obj.get("tool_call_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => Some(id.clone()),
        None if role != "tool" => None,
        _ => {
            return Err(bad(&format!(
                "`messages[{i}].tool_call_id` must name the call this tool message answers"
            )));
        }
    };
    Ok(ChatMessage {
        role,
        content,
        parts,
        tool_calls,
        tool_call_id,
    })
}

fn part(i: usize, j: usize, role: &str, p: &Value) -> Result<Part> {
    let at = format!("messages[{i}].content[{j}]");
    match p.get("type").and_then(Value::as_str) {
        Some("text") => match p.get("text") {
            Some(Value::String(t)) => Ok(Part::Text(t.clone())),
            _ => Err(bad(&format!("`{at}.text` must be a string"))),
        },
        // An assistant's refusal in the history reads as its text.
        Some("refusal") if role == "assistant" => match p.get("refusal") {
            Some(Value::String(t)) => Ok(Part::Text(t.clone())),
            _ => Err(bad(&format!("`{at}.refusal` must be a string"))),
        },
        Some("image_url") if role == "user" => image(&at, p.get("image_url")),
        Some(other) => Err(bad(&format!(
            "`{at}.type` {other:?} is not a part a {role} message may carry through Maestra \
             (text{})",
            if role == "user" { " and image_url" } else { "" }
        ))),
        None => Err(bad(&format!("`{at}.type` is required"))),
    }
}

pub(crate) fn image(at: &str, v: Option<&Value>) -> Result<Part> {
    let o = v
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&format!("`{at}.image_url` must be an object with a `url`")))?;
    let url = o
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("`{at}.image_url.url` must be a string")))?;
    let detail = match o.get("detail") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if matches!(d.as_str(), "low" | "high" | "auto") => Some(d.clone()),
        Some(_) => {
            return Err(bad(&format!(
                "`{at}.image_url.detail` must be low, high or auto"
            )));
        }
    };
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, base64) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad(&format!("`{at}.image_url.url` must be a base64 data: URL")))?;
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(bad(&format!(
                "`{at}.image_url.url` is {media_type:?}; images must be PNG, JPEG, GIF or WebP"
            )));
        }
        if base64.is_empty()
            || !base64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return Err(bad(&format!("`{at}.image_url.url` is not valid base64")));
        }
        ImageSource::Inline {
            media_type: media_type.to_string(),
            base64: base64.to_string(),
        }
    } else {
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                ImageSource::Remote(u)
            }
            _ => {
                return Err(bad(&format!(
                    "`{at}.image_url.url` must be a data: URL or an http(s) URL"
                )));
            }
        }
    };
    Ok(Part::Image(Image { source, detail }))
}

fn tool_call(i: usize, j: usize, c: &Value) -> Result<ToolCall> {
    let at = format!("messages[{i}].tool_calls[{j}]");
    if c.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(&format!("`{at}.type` must be \"function\"")));
    }
    let id = match c.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => id.clone(),
        _ => return Err(bad(&format!("`{at}.id` must be a non-empty string"))),
    };
    let f = c
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&format!("`{at}.function` must be an object")))?;
    let arguments = match f.get("arguments") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(bad(&format!("`{at}.function.arguments` must be a string"))),
    };
    Ok(ToolCall {
        id,
        name: valid_name(&format!("{at}.function.name"), f.get("name"))?,
        arguments,
    })
}
