//! The OpenAI chat request body, read field by field. A field Maestra understands is checked
//! against its documented type and range and carried into a [`ChatRequest`]; every other field
//! is a 400 naming it. Stripping unknown switches silently would break a client without a word
//! (its function calls would just never happen), and passing them blind would let a client send
//! an unpriced provider option past the cost guard.

use serde_json::{Map, Value};

use super::{
    ChatMessage, ChatRequest, Image, ImageSource, MAX_MESSAGE_BYTES, MAX_MESSAGES, MAX_TOKENS,
    Part, ResponseFormat, Tool, ToolCall, ToolChoice,
};
use crate::error::{Error, Result};

/// Every top-level field a chat request may carry. Anything else is refused by name.
pub const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "store",
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "reasoning_effort",
];

/// Documented fields Maestra does not carry, and why: the reason is the 400's message.
const REFUSED: &[(&str, &str)] = &[
    (
        "functions",
        "is the deprecated form of `tools`; send `tools`",
    ),
    (
        "function_call",
        "is the deprecated form of `tool_choice`; send `tool_choice`",
    ),
    (
        "metadata",
        "is kept by the provider with stored completions, which Maestra does not ask for",
    ),
    (
        "service_tier",
        "changes the price in ways the cost guard cannot bound",
    ),
    (
        "modalities",
        "asks for audio output, which Maestra does not relay",
    ),
    (
        "audio",
        "asks for audio output, which Maestra does not relay",
    ),
    (
        "prediction",
        "(predicted outputs) is not supported through Maestra",
    ),
    (
        "web_search_options",
        "would have the provider search the web on the person's behalf, outside Maestra's guard",
    ),
];

/// Most choices (`n`) one request may ask for.
pub const MAX_CHOICES: u32 = 8;
/// Most tools one request may declare (OpenAI's own limit).
pub(crate) const MAX_TOOLS: usize = 128;
/// Most images one request may carry.
pub(crate) const MAX_IMAGES: usize = 20;
/// Longest function name (OpenAI's rule: letters, digits, `_` and `-`, at most 64).
const MAX_NAME: usize = 64;
/// Image types the providers accept inline.
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
/// Most `stop` sequences, and longest one in bytes.
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;
/// Most `logit_bias` entries.
const MAX_LOGIT_BIAS: usize = 300;
/// Numeric sampling options and the range each must be in (OpenAI's documented ranges).
const OPTION_RANGES: &[(&str, f64, f64)] = &[
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
];
/// Options passed on as they are once checked.
const PASSED_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "reasoning_effort",
];

impl ChatRequest {
    /// Reads an OpenAI-format request body, naming the first field that is wrong or unknown.
    pub fn from_openai(body: &Map<String, Value>) -> Result<ChatRequest> {
        for key in body.keys() {
            if let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == key) {
                return Err(bad(&format!("`{key}` {why}")));
            }
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                return Err(bad(&format!(
                    "`{key}` is not a chat completions field Maestra understands; nothing was sent"
                )));
            }
        }
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Some(_) => return Err(bad("`model` must be a non-empty string")),
            None => return Err(bad("`model` is required")),
        };
        let raw = match body.get("messages") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(Value::Array(_)) => return Err(bad("`messages` must not be empty")),
            Some(_) => return Err(bad("`messages` must be an array")),
            None => return Err(bad("`messages` is required")),
        };
        if raw.len() > MAX_MESSAGES {
            return Err(Error::TooLarge(format!(
                "at most {MAX_MESSAGES} messages per request"
            )));
        }
        let messages = raw
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>>>()?;
        let images = messages.iter().flat_map(ChatMessage::images).count();
        if images > MAX_IMAGES {
            return Err(Error::TooLarge(format!(
                "at most {MAX_IMAGES} images per request"
            )));
        }
        let max_tokens =
            max_tokens(body, "max_completion_tokens")?.or(max_tokens(body, "max_tokens")?);
        let options: Map<String, Value> = PASSED_OPTIONS
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        check_options(&options)?;
        match body.get("store") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(bad(
                    "`store` may only be false: Maestra does not ask a provider to keep what \
                     an assistant sends",
                ));
            }
        }
        if let Some(o) = body.get("stream_options").filter(|o| !o.is_null()) {
            let o = o
                .as_object()
                .ok_or_else(|| bad("`stream_options` must be an object"))?;
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("include_usage", Value::Bool(_) | Value::Null) => {}
                    ("include_usage", _) => {
                        return Err(bad("`stream_options.include_usage` must be true or false"));
                    }
                    (other, _) => {
                        return Err(bad(&format!(
                            "`stream_options.{other}` is not an option Maestra understands"
                        )));
                    }
                }
            }
        }
        let tools = tools(body.get("tools"))?;
        let tool_choice = tool_choice(body.get("tool_choice"), &tools)?;
        let parallel_tool_calls = optional_bool(body, "parallel_tool_calls")?;
        let logprobs = optional_bool(body, "logprobs")?.unwrap_or(false);
        let top_logprobs = match body.get("top_logprobs") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n <= 20)
                    .map(|n| n as u8)
                    .ok_or_else(|| bad("`top_logprobs` must be an integer from 0 to 20"))?,
            ),
        };
        if top_logprobs.is_some() && !logprobs {
            return Err(bad("`top_logprobs` needs `logprobs: true`"));
        }
        let n = match body.get("n") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_CHOICES)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| bad(&format!("`n` must be an integer from 1 to {MAX_CHOICES}")))?,
        };
        Ok(ChatRequest {
            model,
            messages,
            max_tokens,
            options,
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format: response_format(body.get("response_format"))?,
            logprobs,
            top_logprobs,
            n,
        })
    }
}

fn optional_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(&format!("`{field}` must be true or false"))),
    }
}

/// An output cap, range-checked where it enters: a value the worst-case arithmetic could not
/// take is refused naming the field the client sent.
fn max_tokens(body: &Map<String, Value>, field: &str) -> Result<Option<u64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_TOKENS).contains(n))
            .map(Some)
            .ok_or_else(|| {
                bad(&format!(
                    "`{field}` must be an integer from 1 to {MAX_TOKENS}"
                ))
            }),
    }
}

/// The passed-on sampling options, each of the type and in the range the providers document,
/// so a value no provider would accept is a 400 here rather than a paid round trip.
pub(crate) fn check_options(options: &Map<String, Value>) -> Result<()> {
    for (name, lo, hi) in OPTION_RANGES {
        if let Some(v) = options.get(*name)
            && !v.as_f64().is_some_and(|x| (*lo..=*hi).contains(&x))
        {
            return Err(bad(&format!("`{name}` must be a number from {lo} to {hi}")));
        }
    }
    if let Some(v) = options.get("seed")
        && v.as_i64().is_none()
    {
        return Err(bad("`seed` must be an integer in the signed 64-bit range"));
    }
    if let Some(v) = options.get("stop") {
        let ok = |s: &Value| s.as_str().is_some_and(|s| s.len() <= MAX_STOP_BYTES);
        let valid = match v {
            Value::String(_) => ok(v),
            Value::Array(a) => a.len() <= MAX_STOPS && a.iter().all(ok),
            _ => false,
        };
        if !valid {
            return Err(bad(&format!(
                "`stop` must be a string or at most {MAX_STOPS} strings of at most {MAX_STOP_BYTES} bytes"
            )));
        }
    }
    if let Some(v) = options.get("logit_bias") {
        let valid = v.as_object().is_some_and(|m| {
            m.len() <= MAX_LOGIT_BIAS
                && m.iter().all(|(k, b)| {
                    k.parse::<u32>().is_ok()
                        && b.as_f64().is_some_and(|b| (-100.0..=100.0).contains(&b))
                })
        });
        if !valid {
            return Err(bad(&format!(
                "`logit_bias` must map at most {MAX_LOGIT_BIAS} token ids to numbers from -100 to 100"
            )));
        }
    }
    if let Some(v) = options.get("reasoning_effort")
        && !matches!(v.as_str(), Some("minimal" | "low" | "medium" | "high"))
    {
        return Err(bad(
            "`reasoning_effort` must be one of minimal, low, medium, high",
        ));
    }
    Ok(())
}

/// A function or schema name: 1 to 64 letters, digits, `_` or `-`.
pub(crate) fn valid_name(field: &str, v: Option<&Value>) -> Result<String> {
    match v.and_then(Value::as_str) {
        Some(n)
            if !n.is_empty()
                && n.len() <= MAX_NAME
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(n.to_string())
        }
        _ => Err(bad(&format!(
            "`{field}` must be 1 to {MAX_NAME} letters, digits, `_` or `-`"
        ))),
    }
}

pub(crate) fn optional_string(field: &str, v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("`{field}` must be a string"))),
    }
}

/// A JSON Schema, where one is expected: an object (its content is the provider's to judge).
pub(crate) fn schema(field: &str, v: Option<&Value>) -> Result<Option<Value>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(bad(&format!("`{field}` must be a JSON Schema object"))),
    }
}

fn tools(v: Option<&Value>) -> Result<Vec<Tool>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("`tools` must be an array")),
    };
    if list.len() > MAX_TOOLS {
        return Err(bad(&format!(
            "`tools` may declare at most {MAX_TOOLS} functions"
        )));
    }
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(bad(&format!(
                    "`tools[{i}].type` {other:?} is not supported: only function tools are"
                )));
            }
            None => return Err(bad(&format!("`tools[{i}].type` must be \"function\""))),
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(&format!("`tools[{i}].function` must be an object")))?;
        let name = valid_name(&format!("tools[{i}].function.name"), f.get("name"))?;
        if out.iter().any(|t| t.name == name) {
            return Err(bad(&format!(
                "`tools[{i}].function.name` {name:?} is declared twice"
            )));
        }
        let strict = match f.get("strict") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(bad(&format!(
                    "`tools[{i}].function.strict` must be true or false"
                )));
            }
        };
        out.push(Tool {
            name,
            description: optional_string(
                &format!("tools[{i}].function.description"),
                f.get("description"),
            )?,
            parameters: schema(
                &format!("tools[{i}].function.parameters"),
                f.get("parameters"),
            )?,
            strict,
        });
    }
    Ok(out)
}

fn tool_choice(v: Option<&Value>, tools: &[Tool]) -> Result<Option<ToolChoice>> {
    let choice = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "`tool_choice` must be auto, none, required or a function",
                ));
            }
        },
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            ToolChoice::Function(valid_name(
                "tool_choice.function.name",
                o.get("function").and_then(|f| f.get("name")),
            )?)
        }
        Some(_) => {
            return Err(bad(
                "`tool_choice` must be auto, none, required or a function",
            ));
        }
    };
    match &choice {
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => Err(bad(&format!(
            "`tool_choice` names {name:?}, which `tools` does not declare"
        ))),
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => Err(bad(
            "`tool_choice` asks for a call but `tools` declares none",
        )),
        _ => Ok(Some(choice)),
    }
}

fn response_format(v: Option<&Value>) -> Result<Option<ResponseFormat>> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("`response_format` must be an object")),
    };
    Ok(Some(match o.get("type").and_then(Value::as_str) {
        Some("text") => ResponseFormat::Text,
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let s = o
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("`response_format.json_schema` must be an object"))?;
            ResponseFormat::JsonSchema {
                name: valid_name("response_format.json_schema.name", s.get("name"))?,
                description: optional_string(
                    "response_format.json_schema.description",
                    s.get("description"),
                )?,
                schema: schema("response_format.json_schema.schema", s.get("schema"))?,
                strict: match s.get("strict") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => {
                        return Err(bad(
                            "`response_format.json_schema.strict` must be true or false",
                        ));
                    }
                },
            }
        }
        _ => {
            return Err(bad(
                "`response_format.type` must be text, json_object or json_schema",
            ));
        }
    }))
}

fn message(i: usize, m: &Value) -> Result<ChatMessage> {
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

fn bad(msg: &str) -> Error {
    Error::BadRequest(msg.to_string())
}

#[cfg(test)]
mod tests;
