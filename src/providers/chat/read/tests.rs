use super::super::{ResponseFormat, ToolChoice};
use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<ChatRequest> {
    ChatRequest::from_openai(v.as_object().unwrap())
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn reads_every_documented_field() {
    let r = parse(json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ],
        "max_tokens": 50, "temperature": 0.2, "logit_bias": {"50256": -100}, "seed": 7,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                   "parameters": {"type": "object"}, "strict": true}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
        "logprobs": true, "top_logprobs": 2, "n": 3, "user": "ann", "store": false,
        "stream": true, "stream_options": {"include_usage": true}
    }))
    .unwrap();
    assert_eq!(r.messages[1].content, "what is this");
    assert_eq!(r.messages[1].images().count(), 2);
    assert_eq!(r.remote_image_hosts(), vec!["example.org".to_string()]);
    assert_eq!(r.messages[2].tool_calls[0].name, "get_weather");
    assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(r.tools[0].strict, Some(true));
    assert_eq!(
        r.tool_choice,
        Some(ToolChoice::Function("get_weather".into()))
    );
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert!(matches!(
        r.response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    assert_eq!((r.logprobs, r.top_logprobs, r.n), (true, Some(2), 3));
    let mut options: Vec<_> = r.options.keys().collect();
    options.sort();
    assert_eq!(options, vec!["logit_bias", "seed", "temperature"]);
}

#[test]
fn an_assistant_refusal_in_the_history_is_kept_as_its_text() {
    let r = parse(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": null, "refusal": "I can't help with that."},
        {"role": "user", "content": "why?"}]}))
    .unwrap();
    assert_eq!(r.messages[1].content, "I can't help with that.");
    let err = parse(json!({"model": "m", "messages": [
        {"role": "assistant", "content": "a", "refusal": 3}]}))
    .unwrap_err();
    assert!(err.to_string().contains("messages[0].refusal"), "{err}");
}

#[test]
fn text_only_parts_read_as_a_string() {
    let r = parse(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
    )
    .unwrap();
    assert_eq!(r.messages[0].content, "a\nb");
    assert!(r.messages[0].parts.is_empty());
}

#[test]
fn unknown_and_refused_fields_are_named() {
    for (field, value) in [
        ("frobnicate", json!(1)),
        ("functions", json!([])),
        ("service_tier", json!("priority")),
        ("web_search_options", json!({})),
        ("store", json!(true)),
        ("metadata", json!({"a": "b"})),
        ("audio", json!({})),
    ] {
        let mut body = json!({"model": "m", "messages": user("x")});
        body[field] = value;
        let err = parse(body).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{field}: {err}");
        assert!(
            err.to_string().contains(&format!("`{field}`")),
            "{field}: {err}"
        );
    }
}

#[test]
fn wrong_shapes_name_the_field() {
    let m = |extra: Value| {
        let mut body = json!({"model": "m", "messages": user("x")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
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
            json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}),
            "role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "content",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]}),
            "name",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "type",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/html;base64,AAAA"}}]}]}),
            "image_url.url",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}),
            "image_url.url",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]}),
            "arguments",
        ),
        (m(json!({"max_tokens": -1})), "max_tokens"),
        (
            m(json!({"max_tokens": 18446744073709551615u64})),
            "max_tokens",
        ),
        (
            m(json!({"max_completion_tokens": 1.5})),
            "max_completion_tokens",
        ),
        (m(json!({"temperature": 1e300})), "temperature"),
        (m(json!({"top_p": "1"})), "top_p"),
        (m(json!({"seed": 1e30})), "seed"),
        (m(json!({"stop": ["a", "b", "c", "d", "e"]})), "stop"),
        (m(json!({"n": 0})), "n"),
        (m(json!({"n": 9})), "n"),
        (m(json!({"top_logprobs": 3})), "top_logprobs"),
        (m(json!({"logit_bias": {"x": 1}})), "logit_bias"),
        (m(json!({"reasoning_effort": "max"})), "reasoning_effort"),
        (
            m(json!({"tools": [{"type": "web_search"}]})),
            "tools[0].type",
        ),
        (
            m(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]})),
            "tools[0].function.name",
        ),
        (
            m(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
            ),
            "parameters",
        ),
        (m(json!({"tool_choice": "required"})), "tool_choice"),
        (
            m(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            ),
            "tool_choice",
        ),
        (
            m(json!({"response_format": {"type": "xml"}})),
            "response_format.type",
        ),
        (
            m(json!({"response_format": {"type": "json_schema"}})),
            "response_format.json_schema",
        ),
        (
            m(json!({"stream_options": {"include_obfuscation": false}})),
            "stream_options.include_obfuscation",
        ),
    ] {
        let err = parse(body).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
