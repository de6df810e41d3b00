//! The OpenAI chat request body, read field by field. A field Maestra understands is checked
//! against its documented type and range and carried into a [`ChatRequest`]; every other field
//! is a 400 naming it. Stripping unknown switches silently would break a client without a word
//! (its function calls would just never happen), and passing them blind would let a client send
//! an unpriced provider option past the cost guard.
//!
//! - `messages` — the history: roles, text and image parts, function calls and their answers
//! - `tools`    — `tools`, `tool_choice`, `response_format`, and the name and schema rules

mod messages;
mod tools;

use serde_json::{Map, Value};

use super::{ChatMessage, ChatRequest, MAX_MESSAGES, MAX_TOKENS};
use crate::error::{Error, Result};
pub(crate) use messages::image;
use messages::message;
pub(crate) use tools::{choice_against, function, optional_string, schema, tool_list, valid_name};
use tools::{response_format, tool_choice, tools};

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

fn bad(msg: &str) -> Error {
    Error::BadRequest(msg.to_string())
}

#[cfg(test)]
mod tests;
