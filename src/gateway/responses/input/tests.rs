use super::*;
use crate::providers::ImageSource;

fn read(v: Value) -> Result<Read> {
    Read::from_body(v.as_object().unwrap())
}

fn refusal(v: Value) -> String {
    match read(v) {
        Err(Error::BadRequest(m)) => m,
        Err(e) => panic!("not a 400: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn reads_a_history_into_chat_turns() {
    let r = read(json!({
        "model": "gpt-4o-mini",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "what is this"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                {"type": "input_image", "image_url": "https://example.org/cat.png"}
            ]},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "rain"}]}
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"},
                   "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false, "max_output_tokens": 40, "temperature": 0.2,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "stream": true, "user": "ann", "store": false, "include": [], "metadata": {},
        "truncation": "disabled", "previous_response_id": null
    }))
    .unwrap();
    assert!(r.stream);
    assert_eq!(r.user.as_deref(), Some("ann"));
    let m = &r.request.messages;
    let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
    // The text and the calls after it are one assistant turn; each output a tool message.
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    assert_eq!(m[0].content, "be brief");
    assert_eq!(m[1].content, "what is this");
    let images: Vec<&ImageSource> = m[1].images().map(|i| &i.source).collect();
    assert!(matches!(images[0], ImageSource::Inline { .. }));
    assert!(matches!(images[1], ImageSource::Remote(_)));
    assert_eq!(m[2].content, "let me look");
    let ids: Vec<&str> = m[2].tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(m[4].content, "rain");
    assert_eq!(r.request.max_tokens, Some(40));
    assert_eq!(r.request.parallel_tool_calls, Some(false));
    assert_eq!(
        r.request.tool_choice,
        Some(ToolChoice::Function("get_weather".into()))
    );
    assert_eq!(r.request.tools[0].strict, Some(true));
    assert!(matches!(
        r.request.response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    assert_eq!(r.request.options["temperature"], json!(0.2));
}

#[test]
fn a_call_without_text_before_it_opens_its_own_turn() {
    let r = read(json!({"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    ]}))
    .unwrap();
    let last = r.request.messages.last().unwrap();
    assert_eq!(
        (last.role.as_str(), last.content.as_str()),
        ("assistant", "")
    );
    assert_eq!(last.tool_calls.len(), 1);
}

#[test]
fn what_is_not_carried_is_refused_by_name() {
    let base = |k: &str, v: Value| {
        let mut b = json!({"model": "m", "input": "hi"});
        b[k] = v;
        b
    };
    for (body, name) in [
        (base("store", json!(true)), "`store`"),
        (
            base("previous_response_id", json!("resp_1")),
            "`previous_response_id`",
        ),
        (base("conversation", json!("conv_1")), "`conversation`"),
        (
            base("include", json!(["message.output_text.logprobs"])),
            "`include`",
        ),
        (base("truncation", json!("auto")), "`truncation`"),
        (base("background", json!(true)), "`background`"),
        (base("frobnicate", json!(1)), "`frobnicate`"),
        (
            base("tools", json!([{"type": "web_search"}])),
            "\"web_search\"",
        ),
        (
            base("tools", json!([{"type": "function", "name": "f", "x": 1}])),
            "`tools[0].x`",
        ),
        (
            base("tool_choice", json!({"type": "file_search"})),
            "\"file_search\"",
        ),
        (base("tool_choice", json!("required")), "`tool_choice`"),
        (
            base("text", json!({"format": {"type": "text", "name": "n"}})),
            "`text.format.name`",
        ),
        (
            base("stream_options", json!({"include_obfuscation": true})),
            "include_obfuscation",
        ),
        (
            base("input", json!([{"type": "reasoning", "summary": []}])),
            "\"reasoning\"",
        ),
        (
            base(
                "input",
                json!([{"role": "user", "content": "x", "name": "n"}]),
            ),
            "`input[0].name`",
        ),
        (
            base(
                "input",
                json!([{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]),
            ),
            "\"input_text\"",
        ),
        (
            base(
                "input",
                json!([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]),
            ),
            "`input[0].content[0].file_id`",
        ),
    ] {
        let m = refusal(body.clone());
        assert!(m.contains(name), "{body} -> {m}");
    }
}

#[test]
fn sizes_are_bounded() {
    let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    for body in [
        json!({"model": "m", "input": big}),
        json!({"model": "m", "input": "x", "instructions": big}),
        json!({"model": "m", "input": vec![json!({"role": "user", "content": "x"}); MAX_MESSAGES + 1]}),
    ] {
        assert!(matches!(read(body), Err(Error::TooLarge(_))));
    }
}

#[test]
fn a_chat_field_in_a_refusal_is_named_as_the_responses_body_names_it() {
    let named = |m: &str| match responses_names(Error::BadRequest(m.into())) {
        Error::BadRequest(m) => m,
        e => panic!("{e}"),
    };
    assert_eq!(
        named("`tools[12].function.strict` is not supported by anthropic models: x"),
        "`tools[12].strict` is not supported by anthropic models: x"
    );
    assert_eq!(
        named("`tools[0].function.parameters` no; `response_format.json_schema.strict` no"),
        "`tools[0].parameters` no; `text.format.strict` no"
    );
    assert_eq!(named("`response_format` is"), "`text.format` is");
    // Anything else is left as it is.
    for m in [
        "`tools[x].function.a`",
        "`tools[0]` bad",
        "`n` no",
        "`tools[",
        "tools[1].function.y",
    ] {
        assert_eq!(named(m), m);
    }
    assert!(matches!(
        responses_names(Error::Upstream("`tools[0].function.strict`".into())),
        Error::Upstream(m) if m.contains(".function.")
    ));
}
