//! The OpenAI chat-completions wire format, spoken by OpenAI and by local servers (Ollama,
//! llama.cpp, vLLM, LM Studio).

use serde_json::{Value, json};

use super::chat::{ChatRequest, Choice, Completion, Delta, MAX_REPORTED_TOKENS, Usage};
use crate::error::{Error, Result};

/// What a local OpenAI-compatible server cannot be trusted with, refused by name.
pub fn check_local(req: &ChatRequest) -> Result<()> {
    if req.n > 1 {
        return Err(Error::BadRequest(
            "`n` above 1 is not supported by local models: llama.cpp and Ollama return one \
             choice whatever `n` says"
                .into(),
        ));
    }
    if !req.remote_image_hosts().is_empty() {
        return Err(Error::BadRequest(
            "an http(s) `image_url` would have the local model server fetch it itself, \
             outside Maestra's guard; send the image as a data: URL"
                .into(),
        ));
    }
    Ok(())
}

pub fn request_body(req: &ChatRequest, model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "stream": stream,
    });
    if let Some(obj) = body.as_object_mut() {
        for (k, v) in &req.options {
            obj.insert(k.clone(), v.clone());
        }
        if let Some(n) = req.max_tokens {
            obj.insert("max_tokens".into(), json!(n));
        }
        if stream {
            // Usage arrives in a last chunk; it is what the cost ledger settles on.
            obj.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    body
}

pub fn parse_completion(v: &Value) -> Result<Completion> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| garbage("no `choices`"))?;
    let content = match choice.pointer("/message/content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err(garbage("`message.content` is not text")),
    };
    Ok(Completion {
        choices: vec![Choice {
            content,
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .unwrap_or("stop")
                .to_string(),
            ..Choice::default()
        }],
        usage: usage(v.get("usage")),
    })
}

/// The deltas in one streamed `data:` payload (`[DONE]` is handled by the caller).
pub fn parse_chunk(data: &str) -> Result<Vec<Delta>> {
    let v: Value = serde_json::from_str(data).map_err(|_| garbage("a stream chunk is not JSON"))?;
    if let Some(err) = v.get("error") {
        return Err(Error::Upstream(format!(
            "the stream reported an error: {}",
            super::upstream_message(err)
        )));
    }
    let mut out = Vec::new();
    if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
        if let Some(Value::String(t)) = choice.pointer("/delta/content")
            && !t.is_empty()
        {
            out.push(Delta::Text {
                choice: 0,
                text: t.clone(),
            });
        }
        if let Some(Value::String(r)) = choice.get("finish_reason") {
            out.push(Delta::Finish {
                choice: 0,
                reason: r.clone(),
            });
        }
    } else if v.get("choices").is_none() && v.get("usage").is_none() {
        return Err(garbage("a stream chunk has no `choices`"));
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out.push(Delta::Usage(usage(Some(u))));
    }
    Ok(out)
}

/// A count that is not a whole number in range becomes [`MAX_REPORTED_TOKENS`]: the ledger
/// then charges the call its whole reservation, never less than it may have cost.
fn usage(u: Option<&Value>) -> Usage {
    let n =
        |k: &str| Usage::reported_count(u.and_then(|u| u.get(k))).unwrap_or(MAX_REPORTED_TOKENS);
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    }
}

fn garbage(what: &str) -> Error {
    Error::Upstream(format!("the model server sent an invalid answer: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_and_chunks() {
        let c = parse_completion(&json!({
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        }))
        .unwrap();
        assert_eq!((c.text(), c.usage.total()), ("hi", 4));
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#).unwrap(),
            vec![Delta::Text {
                choice: 0,
                text: "a".into()
            }]
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)
                .unwrap(),
            vec![Delta::Usage(Usage {
                prompt_tokens: 1,
                completion_tokens: 2
            })]
        );
        assert!(parse_chunk("not json").is_err());
        assert!(parse_completion(&json!({"foo": 1})).is_err());
    }
}
