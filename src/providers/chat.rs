//! The provider-neutral chat shapes: what the gateway hands a provider and gets back.
//!
//! Requests arrive in OpenAI's chat format (the lingua franca of local servers too); each wire
//! module translates from these types, so the gateway never sees a provider's dialect.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Sampling options passed on to the provider; anything else in a request is ignored, so a
/// client cannot smuggle provider-specific switches (tools, logit bias, ...) past Maestra.
const PASSED_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
];

/// Longest single message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most messages accepted in one request.
pub const MAX_MESSAGES: usize = 1_000;
/// The largest `max_tokens` accepted: above any model's output window, and small enough that
/// the worst case of a request is plain integer arithmetic. A larger value is a 400 naming the
/// field, not a cap applied silently.
pub const MAX_TOKENS: u64 = 1_000_000;
/// Tokens an upstream may report for one call, at most. A larger (or negative, fractional,
/// non-numeric) count is not a usage report anyone can bill from: the call is charged its
/// reservation instead (see [`Usage::reported`]).
pub const MAX_REPORTED_TOKENS: u64 = 100_000_000;

/// Numeric sampling options and the range each must be in (OpenAI's documented ranges).
const OPTION_RANGES: &[(&str, f64, f64)] = &[
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
];
/// Most `stop` sequences, and longest one in bytes.
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u64>,
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// A count from an upstream's usage report, or `None` when the field is present but is
    /// not a whole number in `0..=MAX_REPORTED_TOKENS` (a missing field counts as 0).
    pub fn reported_count(v: Option<&Value>) -> Option<u64> {
        match v {
            None | Some(Value::Null) => Some(0),
            Some(v) => v.as_u64().filter(|n| *n <= MAX_REPORTED_TOKENS),
        }
    }
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    Finish(String),
    Usage(Usage),
}

impl ChatRequest {
    /// Reads an OpenAI-format request body, naming the first field that is wrong.
    pub fn from_openai(body: &Map<String, Value>) -> Result<ChatRequest> {
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
        let max_tokens =
            max_tokens(body, "max_completion_tokens")?.or(max_tokens(body, "max_tokens")?);
        let options: Map<String, Value> = PASSED_OPTIONS
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        check_options(&options)?;
        Ok(ChatRequest {
            model,
            messages,
            max_tokens,
            options,
        })
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
fn check_options(options: &Map<String, Value>) -> Result<()> {
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
    Ok(())
}

fn message(i: usize, m: &Value) -> Result<ChatMessage> {
    let obj = m
        .as_object()
        .ok_or_else(|| bad(&format!("`messages[{i}]` must be an object")))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("system" | "developer" | "user" | "assistant")) => r.to_string(),
        Some(other) => {
            return Err(bad(&format!(
                "`messages[{i}].role` {other:?} is not one of system, developer, user, assistant"
            )));
        }
        None => return Err(bad(&format!("`messages[{i}].role` is required"))),
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        // Content parts: the text ones are joined; images and audio are not relayed.
        Some(Value::Array(parts)) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(bad(&format!(
                        "`messages[{i}].content` parts must be text parts"
                    ))),
                },
            )
            .collect::<Result<Vec<_>>>()?
            .join("\n"),
        Some(Value::Null) | None if role == "assistant" => String::new(),
        _ => {
            return Err(bad(&format!("`messages[{i}].content` must be a string")));
        }
    };
    if content.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge(format!(
            "`messages[{i}].content` is over {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(ChatMessage { role, content })
}

fn bad(msg: &str) -> Error {
    Error::BadRequest(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ChatRequest> {
        ChatRequest::from_openai(v.as_object().unwrap())
    }

    #[test]
    fn reads_a_request_and_keeps_only_known_options() {
        let r = parse(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}
            ],
            "max_tokens": 50, "temperature": 0.2, "tools": [{"x": 1}], "logit_bias": {}
        }))
        .unwrap();
        assert_eq!(r.messages[1].content, "hi");
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(r.options.keys().collect::<Vec<_>>(), vec!["temperature"]);
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        for (body, field) in [
            (json!({"messages": []}), "model"),
            (json!({"model": 3, "messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": "hi"}), "messages"),
            (
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 18446744073709551615u64}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1.5}),
                "max_completion_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1e300}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": "1"}),
                "top_p",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1e30}),
                "seed",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}),
                "stop",
            ),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
