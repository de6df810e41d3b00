//! Anthropic's Messages API, translated to and from the chat format.
//!
//! System (and developer) messages become the top-level `system`; consecutive messages of the
//! same role are merged, since the Messages API wants user and assistant turns to alternate.

use serde_json::{Map, Value, json};

use super::chat::{ChatRequest, Choice, Completion, Delta, MAX_REPORTED_TOKENS, Usage};
use crate::error::{Error, Result};

/// The API version every request names.
pub const VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the Messages API; used when the client gave none.
const DEFAULT_MAX_TOKENS: u64 = 1024;

/// What the Messages API has no counterpart for, refused by name.
pub fn check(req: &ChatRequest) -> Result<()> {
    let refuse = |field: &str, why: &str| {
        Err(Error::BadRequest(format!(
            "`{field}` is not supported by anthropic models: {why}"
        )))
    };
    if req.n > 1 {
        return refuse("n", "the Messages API returns one answer per call");
    }
    if req.logprobs {
        return refuse("logprobs", "the Messages API does not report them");
    }
    for field in [
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "logit_bias",
        "reasoning_effort",
    ] {
        if req.options.contains_key(field) {
            return refuse(field, "the Messages API has no such option");
        }
    }
    Ok(())
}

pub fn request_body(req: &ChatRequest, model: &str, stream: bool) -> Value {
    let mut system = Vec::new();
    let mut turns: Vec<(String, String)> = Vec::new();
    for m in &req.messages {
        if m.role == "system" || m.role == "developer" {
            system.push(m.content.clone());
            continue;
        }
        match turns.last_mut() {
            Some((role, text)) if *role == m.role => {
                text.push_str("\n\n");
                text.push_str(&m.content);
            }
            _ => turns.push((m.role.clone(), m.content.clone())),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        json!(
            turns
                .iter()
                .map(|(r, c)| json!({"role": r, "content": c}))
                .collect::<Vec<_>>()
        ),
    );
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
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
            _ => {}
        }
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

pub fn parse_completion(v: &Value) -> Result<Completion> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| garbage("no `content`"))?;
    let content = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<String>();
    Ok(Completion {
        choices: vec![Choice {
            content,
            finish_reason: finish_reason(v.get("stop_reason").and_then(Value::as_str)),
            ..Choice::default()
        }],
        usage: Usage {
            prompt_tokens: num(v, "/usage/input_tokens"),
            completion_tokens: num(v, "/usage/output_tokens"),
        },
    })
}

/// Input tokens arrive at the start of a stream, output tokens at its end.
#[derive(Debug, Default)]
pub struct StreamState {
    input_tokens: u64,
}

/// The deltas in one streamed event.
pub fn parse_event(state: &mut StreamState, event: &str, data: &str) -> Result<Vec<Delta>> {
    let v: Value = serde_json::from_str(data).map_err(|_| garbage("a stream event is not JSON"))?;
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
        "content_block_delta" => match v.pointer("/delta/text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => vec![Delta::Text {
                choice: 0,
                text: t.to_string(),
            }],
            _ => Vec::new(),
        },
        "message_delta" => {
            let mut out = Vec::new();
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                out.push(Delta::Finish {
                    choice: 0,
                    reason: finish_reason(Some(r)),
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
                super::upstream_message(v.get("error").unwrap_or(&v))
            )));
        }
        // ping, content_block_start/stop, message_stop: nothing to relay.
        _ => Vec::new(),
    })
}

fn finish_reason(stop_reason: Option<&str>) -> String {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
    .to_string()
}

/// A token count; one that is not a whole number in range becomes [`MAX_REPORTED_TOKENS`], so
/// the ledger charges the call its whole reservation rather than nothing.
fn num(v: &Value, pointer: &str) -> u64 {
    Usage::reported_count(v.pointer(pointer)).unwrap_or(MAX_REPORTED_TOKENS)
}

fn garbage(what: &str) -> Error {
    Error::Upstream(format!("anthropic sent an invalid answer: {what}"))
}

#[cfg(test)]
mod tests {
    use super::super::chat::ChatMessage;
    use super::*;

    #[test]
    fn system_is_lifted_and_roles_alternate() {
        let mut req = ChatRequest::new(
            "claude-x",
            vec![
                ChatMessage::text("system", "be brief"),
                ChatMessage::text("user", "a"),
                ChatMessage::text("user", "b"),
            ],
        );
        req.options = [("stop".to_string(), json!("END"))].into_iter().collect();
        let body = request_body(&req, "claude-x", false);
        assert_eq!(body["system"], "be brief");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "a\n\nb"}])
        );
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["stop_sequences"], json!(["END"]));
    }

    #[test]
    fn answers_and_events_translate() {
        let c = parse_completion(&json!({
            "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 5, "output_tokens": 7}
        }))
        .unwrap();
        assert_eq!(c.text(), "hello");
        assert_eq!(c.choices[0].finish_reason, "length");
        assert_eq!(c.usage.total(), 12);

        let mut st = StreamState::default();
        parse_event(
            &mut st,
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":9}}}"#,
        )
        .unwrap();
        let d = parse_event(
            &mut st,
            "content_block_delta",
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            vec![Delta::Text {
                choice: 0,
                text: "x".into()
            }]
        );
        let d = parse_event(
            &mut st,
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            vec![
                Delta::Finish {
                    choice: 0,
                    reason: "stop".into()
                },
                Delta::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 4
                })
            ]
        );
        assert!(
            parse_event(
                &mut st,
                "error",
                r#"{"type":"error","error":{"message":"overloaded"}}"#
            )
            .is_err()
        );
    }
}
