//! A whole Messages API answer, read into a [`Completion`]: text blocks become the content,
//! `tool_use` blocks the function calls (their `input` written back as the JSON text OpenAI's
//! `arguments` are), or, when the request asked for JSON, the forced tool's input the content.

use serde_json::Value;

use super::super::chat::{ChatRequest, Choice, Completion, ToolCall, Usage};
use super::{finish_reason, garbage, num, structured};
use crate::error::Result;

pub fn parse_completion(v: &Value, req: &ChatRequest) -> Result<Completion> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| garbage("no `content`"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(tool_call(b)?),
            // Other blocks (thinking, for one) are not asked for and carry no answer.
            _ => {}
        }
    }
    let structured = structured(req).is_some();
    let (content, tool_calls) = match (structured, calls.first()) {
        // The forced tool's input is the JSON answer; text around it would spoil the JSON.
        (true, Some(call)) => (call.arguments.clone(), Vec::new()),
        _ => (text, calls),
    };
    Ok(Completion {
        choices: vec![Choice {
            content,
            tool_calls,
            finish_reason: finish_reason(v.get("stop_reason").and_then(Value::as_str), structured),
            ..Choice::default()
        }],
        usage: Usage {
            prompt_tokens: num(v, "/usage/input_tokens"),
            completion_tokens: num(v, "/usage/output_tokens"),
        },
    })
}

fn tool_call(b: &Value) -> Result<ToolCall> {
    let field = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| garbage(&format!("a `tool_use` block without `{k}`")))
    };
    let input = b
        .get("input")
        .filter(|i| i.is_object())
        .ok_or_else(|| garbage("a `tool_use` block whose `input` is not an object"))?;
    Ok(ToolCall {
        id: field("id")?,
        name: field("name")?,
        arguments: input.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::chat::{ChatMessage, ResponseFormat};
    use super::*;
    use crate::error::Error;

    fn req() -> ChatRequest {
        ChatRequest::new("claude-x", vec![ChatMessage::text("user", "hi")])
    }

    #[test]
    fn text_blocks_are_the_content() {
        let c = parse_completion(
            &json!({
                "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 5, "output_tokens": 7}
            }),
            &req(),
        )
        .unwrap();
        assert_eq!(c.text(), "hello");
        assert_eq!(c.choices[0].finish_reason, "length");
        assert!(c.choices[0].tool_calls.is_empty());
        assert_eq!(c.usage.total(), 12);
    }

    #[test]
    fn tool_use_blocks_are_function_calls() {
        let c = parse_completion(
            &json!({
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                     "input": {"city": "Oslo", "unit": "celsius"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 5, "output_tokens": 7}
            }),
            &req(),
        )
        .unwrap();
        let choice = &c.choices[0];
        assert_eq!(choice.content, "Let me check.");
        assert_eq!(choice.finish_reason, "tool_calls");
        assert_eq!(choice.tool_calls.len(), 2);
        assert_eq!(choice.tool_calls[0].id, "toolu_01");
        assert_eq!(choice.tool_calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&choice.tool_calls[0].arguments).unwrap();
        assert_eq!(args, json!({"city": "Oslo", "unit": "celsius"}));
        assert_eq!(choice.tool_calls[1].arguments, "{}");
        assert_eq!(c.called_functions(), ["get_weather", "get_time"]);

        let c = parse_completion(
            &json!({"content": [{"type": "text", "text": "no"}], "stop_reason": "refusal"}),
            &req(),
        )
        .unwrap();
        assert_eq!(c.choices[0].finish_reason, "content_filter");
    }

    #[test]
    fn a_forced_json_tool_call_is_the_text_answer() {
        let mut r = req();
        r.response_format = Some(ResponseFormat::JsonObject);
        let c = parse_completion(
            &json!({
                "content": [{"type": "tool_use", "id": "toolu_01", "name": "json_answer",
                             "input": {"city": "Oslo"}}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 5, "output_tokens": 7}
            }),
            &r,
        )
        .unwrap();
        assert_eq!(c.text(), r#"{"city":"Oslo"}"#);
        assert_eq!(c.choices[0].finish_reason, "stop");
        assert!(c.choices[0].tool_calls.is_empty());
        assert!(c.called_functions().is_empty());
    }

    #[test]
    fn a_malformed_tool_use_is_an_upstream_error() {
        for block in [
            json!({"type": "tool_use", "name": "f", "input": {}}),
            json!({"type": "tool_use", "id": "", "name": "f", "input": {}}),
            json!({"type": "tool_use", "id": "t", "input": {}}),
            json!({"type": "tool_use", "id": "t", "name": 5, "input": {}}),
            json!({"type": "tool_use", "id": "t", "name": "f"}),
            json!({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}),
            json!({"type": "tool_use", "id": "t", "name": "f", "input": [1]}),
        ] {
            let r = parse_completion(&json!({"content": [block]}), &req());
            assert!(matches!(r, Err(Error::Upstream(_))), "{block}: {r:?}");
        }
        assert!(matches!(
            parse_completion(&json!({"content": "text"}), &req()),
            Err(Error::Upstream(_))
        ));
    }
}
