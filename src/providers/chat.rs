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
        self.prompt_tokens + self.completion_tokens
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
        let max_tokens = match body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("`max_tokens` must be a positive integer"))?,
            ),
        };
        let options = PASSED_OPTIONS
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        Ok(ChatRequest {
            model,
            messages,
            max_tokens,
            options,
        })
    }
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
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
