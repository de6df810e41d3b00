use serde_json::json;

use super::super::super::chat::{Image, ResponseFormat, Tool, ToolCall};
use super::*;

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::text(role, content)
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn assistant_calling(calls: Vec<ToolCall>) -> ChatMessage {
    ChatMessage {
        tool_calls: calls,
        ..msg("assistant", "")
    }
}

fn tool_answer(id: &str, content: &str) -> ChatMessage {
    ChatMessage {
        tool_call_id: Some(id.into()),
        ..msg("tool", content)
    }
}

fn weather() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("The weather in a city".into()),
        parameters: Some(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
        strict: None,
    }
}

fn body(req: &ChatRequest) -> Value {
    request_body(req, "claude-x", false).unwrap()
}

fn bad_request(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[test]
fn system_is_lifted_and_text_turns_merge() {
    let mut req = ChatRequest::new(
        "claude-x",
        vec![
            msg("system", "be brief"),
            msg("user", "a"),
            msg("developer", "be kind"),
            msg("user", "b"),
        ],
    );
    req.options = [("stop".to_string(), json!("END"))].into_iter().collect();
    let b = body(&req);
    assert_eq!(b["system"], "be brief\n\nbe kind");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "a\n\nb"}])
    );
    assert_eq!(b["max_tokens"], 1024);
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert!(b.get("tools").is_none() && b.get("tool_choice").is_none());
}

#[test]
fn images_become_image_blocks_in_order() {
    let user = ChatMessage {
        parts: vec![
            Part::Text("what is this?".into()),
            Part::Image(Image {
                source: ImageSource::Inline {
                    media_type: "image/png".into(),
                    base64: "iVBORw0KGgo=".into(),
                },
                detail: Some("low".into()),
            }),
            Part::Image(Image {
                source: ImageSource::Remote(
                    url::Url::parse("https://img.example/cat.jpg").unwrap(),
                ),
                detail: None,
            }),
        ],
        ..msg("user", "what is this?")
    };
    let b = body(&ChatRequest::new("claude-x", vec![user]));
    assert_eq!(
        b["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.jpg"}}
        ])
    );
}

#[test]
fn calls_and_results_become_tool_use_and_one_merged_tool_result_turn() {
    let mut req = ChatRequest::new(
        "claude-x",
        vec![
            msg("user", "weather in Oslo and Bergen?"),
            ChatMessage {
                tool_calls: vec![
                    call("call_1", "get_weather", r#"{"city":"Oslo"}"#),
                    call("call_2", "get_weather", r#"{"city":"Bergen"}"#),
                ],
                ..msg("assistant", "Checking.")
            },
            tool_answer("call_1", "sunny"),
            tool_answer("call_2", "rain"),
            msg("user", "and tomorrow?"),
        ],
    );
    req.tools = vec![weather()];
    req.tool_choice = Some(ToolChoice::Required);
    req.parallel_tool_calls = Some(false);
    assert!(check_history(&req).is_ok());
    let b = body(&req);
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": "weather in Oslo and Bergen?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Bergen"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
                {"type": "text", "text": "and tomorrow?"}
            ]}
        ])
    );
    assert_eq!(
        b["tools"],
        json!([{"name": "get_weather", "description": "The weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_translates() {
    let choice = |c: Option<ToolChoice>, parallel: Option<bool>| {
        let mut req = ChatRequest::new("claude-x", vec![msg("user", "x")]);
        req.tools = vec![Tool {
            parameters: None,
            description: None,
            ..weather()
        }];
        req.tool_choice = c;
        req.parallel_tool_calls = parallel;
        let b = body(&req);
        assert_eq!(
            b["tools"][0],
            json!({"name": "get_weather", "input_schema": {"type": "object", "properties": {}}})
        );
        b.get("tool_choice").cloned()
    };
    assert_eq!(choice(None, None), None);
    assert_eq!(
        choice(Some(ToolChoice::Auto), None),
        Some(json!({"type": "auto"}))
    );
    assert_eq!(
        choice(Some(ToolChoice::None), None),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        choice(Some(ToolChoice::Function("get_weather".into())), None),
        Some(json!({"type": "tool", "name": "get_weather"}))
    );
    assert_eq!(
        choice(None, Some(false)),
        Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        choice(Some(ToolChoice::None), Some(false)),
        Some(json!({"type": "none"}))
    );
    assert_eq!(choice(None, Some(true)), None);
}

#[test]
fn json_output_is_one_forced_tool() {
    let mut req = ChatRequest::new("claude-x", vec![msg("user", "x")]);
    req.response_format = Some(ResponseFormat::JsonObject);
    let b = body(&req);
    assert_eq!(b["tools"].as_array().unwrap().len(), 1);
    assert_eq!(b["tools"][0]["name"], "json_answer");
    assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        b["tool_choice"],
        json!({"type": "tool", "name": "json_answer", "disable_parallel_tool_use": true})
    );

    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"]});
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "place".into(),
        description: None,
        schema: Some(schema.clone()),
        strict: None,
    });
    let b = body(&req);
    assert_eq!(b["tools"][0]["name"], "place");
    assert_eq!(b["tools"][0]["input_schema"], schema);
    assert_eq!(b["tool_choice"]["name"], "place");
}

#[test]
fn functions_the_history_calls_are_declared_when_tools_are_not() {
    let req = ChatRequest::new(
        "claude-x",
        vec![
            msg("user", "x"),
            assistant_calling(vec![call("c1", "lookup", "")]),
            tool_answer("c1", ""),
        ],
    );
    let b = body(&req);
    assert_eq!(
        b["tools"],
        json!([{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}])
    );
    assert_eq!(b["tool_choice"], json!({"type": "none"}));
    // Empty arguments are no arguments; an empty result has no content.
    assert_eq!(b["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(
        b["messages"][2]["content"],
        json!([{"type": "tool_result", "tool_use_id": "c1"}])
    );
}

#[test]
fn a_history_the_api_would_refuse_is_refused_by_name() {
    let history = |msgs: Vec<ChatMessage>| {
        let mut all = vec![msg("user", "x")];
        all.extend(msgs);
        ChatRequest::new("claude-x", all)
    };
    let args = history(vec![
        assistant_calling(vec![call("c1", "f", "{}"), call("c2", "f", "[1, 2]")]),
        tool_answer("c1", "a"),
        tool_answer("c2", "b"),
    ]);
    let m = bad_request(check_history(&args));
    assert!(
        m.starts_with("`messages[1].tool_calls[1].function.arguments`"),
        "{m}"
    );
    let m = bad_request(request_body(&args, "claude-x", false));
    assert!(
        m.starts_with("`messages[1].tool_calls[1].function.arguments`"),
        "{m}"
    );

    let unknown = history(vec![
        assistant_calling(vec![call("c1", "f", "{}")]),
        tool_answer("c9", "a"),
    ]);
    let m = bad_request(check_history(&unknown));
    assert!(m.starts_with("`messages[2].tool_call_id`"), "{m}");

    let unanswered = history(vec![
        assistant_calling(vec![call("c1", "f", "{}"), call("c2", "f", "{}")]),
        tool_answer("c1", "a"),
        msg("user", "go on"),
    ]);
    let m = bad_request(check_history(&unanswered));
    assert!(m.starts_with("`messages[1].tool_calls[1]`"), "{m}");

    let reused = history(vec![
        assistant_calling(vec![call("c1", "f", "{}")]),
        tool_answer("c1", "a"),
        assistant_calling(vec![call("c1", "f", "{}")]),
        tool_answer("c1", "b"),
    ]);
    let m = bad_request(check_history(&reused));
    assert!(m.starts_with("`messages[3].tool_calls[0].id`"), "{m}");

    let only_system = ChatRequest::new("claude-x", vec![msg("system", "s"), msg("user", "")]);
    bad_request(request_body(&only_system, "claude-x", false));
}
