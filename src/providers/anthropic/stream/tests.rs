use serde_json::json;

use super::super::super::chat::{ChatMessage, ResponseFormat};
use super::*;

/// Feeds events (`type` inside each) through one state; all deltas in order.
fn feed(state: &mut StreamState, events: &[Value]) -> Result<Vec<Delta>> {
    let mut out = Vec::new();
    for e in events {
        let kind = e["type"].as_str().unwrap_or("");
        out.extend(parse_event(state, kind, &e.to_string())?);
    }
    Ok(out)
}

fn start(index: u64, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

fn json_piece(index: u64, piece: &str) -> Value {
    json!({"type": "content_block_delta", "index": index,
           "delta": {"type": "input_json_delta", "partial_json": piece}})
}

fn tool_use(id: &str, name: &str) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": {}})
}

fn request() -> ChatRequest {
    ChatRequest::new("claude-x", vec![ChatMessage::text("user", "hi")])
}

/// The event sequence the Messages API streams for text followed by two function calls.
fn tool_events() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        start(0, json!({"type": "text", "text": ""})),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
        json!({"type": "content_block_stop", "index": 0}),
        start(1, tool_use("toolu_01", "get_weather")),
        json_piece(1, ""),
        json!({"type": "ping"}),
        json_piece(1, "{\"city\": "),
        json_piece(1, "\"Oslo\"}"),
        json!({"type": "content_block_stop", "index": 1}),
        start(2, tool_use("toolu_02", "get_time")),
        json_piece(2, "{}"),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 40}}),
    ]
}

#[test]
fn text_and_usage_stream() {
    let mut st = StreamState::new(&request());
    let d = feed(
        &mut st,
        &[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 9}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
        ],
    )
    .unwrap();
    assert_eq!(
        d,
        vec![
            Delta::Text {
                choice: 0,
                text: "x".into()
            },
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
    let err = parse_event(
        &mut st,
        "error",
        r#"{"type":"error","error":{"message":"overloaded"}}"#,
    );
    assert!(matches!(err, Err(Error::Upstream(_))));
}

#[test]
fn tool_use_blocks_stream_as_indexed_call_fragments() {
    let mut st = StreamState::new(&request());
    let d = feed(&mut st, &tool_events()).unwrap();
    let call =
        |index: u32, id: Option<&str>, name: Option<&str>, arguments: &str| Delta::ToolCall {
            choice: 0,
            index,
            id: id.map(String::from),
            name: name.map(String::from),
            arguments: arguments.into(),
        };
    assert_eq!(
        d,
        vec![
            Delta::Text {
                choice: 0,
                text: "Let me check.".into()
            },
            call(0, Some("toolu_01"), Some("get_weather"), ""),
            call(0, None, None, "{\"city\": "),
            call(0, None, None, "\"Oslo\"}"),
            call(1, Some("toolu_02"), Some("get_time"), ""),
            call(1, None, None, "{}"),
            Delta::Finish {
                choice: 0,
                reason: "tool_calls".into()
            },
            Delta::Usage(Usage {
                prompt_tokens: 9,
                completion_tokens: 40
            }),
        ]
    );
}

#[test]
fn a_forced_json_tool_streams_as_text() {
    let mut req = request();
    req.response_format = Some(ResponseFormat::JsonObject);
    let mut st = StreamState::new(&req);
    let d = feed(
        &mut st,
        &[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 9}}}),
            start(0, tool_use("toolu_01", "json_answer")),
            json_piece(0, ""),
            json_piece(0, "{\"city\": "),
            json_piece(0, "\"Oslo\"}"),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        ],
    )
    .unwrap();
    let text: String = d
        .iter()
        .filter_map(|d| match d {
            Delta::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "{\"city\": \"Oslo\"}");
    assert!(!d.iter().any(|d| matches!(d, Delta::ToolCall { .. })));
    assert!(d.contains(&Delta::Finish {
        choice: 0,
        reason: "stop".into()
    }));
}

#[test]
fn malformed_tool_events_are_upstream_errors() {
    let cases: Vec<Vec<Value>> = vec![
        // A piece for a block that never started, or started as text.
        vec![json_piece(3, "{}")],
        vec![
            start(0, json!({"type": "text", "text": ""})),
            json_piece(0, "{}"),
        ],
        // A tool block without an id or a name, or without an index.
        vec![start(
            0,
            json!({"type": "tool_use", "name": "f", "input": {}}),
        )],
        vec![start(
            0,
            json!({"type": "tool_use", "id": "t", "input": {}}),
        )],
        vec![json!({"type": "content_block_start", "content_block": tool_use("t", "f")})],
        // The same block started twice; a piece without its JSON.
        vec![start(0, tool_use("t", "f")), start(0, tool_use("u", "f"))],
        vec![
            start(0, tool_use("t", "f")),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta"}}),
        ],
    ];
    for events in cases {
        let r = feed(&mut StreamState::new(&request()), &events);
        assert!(matches!(r, Err(Error::Upstream(_))), "{events:?}: {r:?}");
    }
}

#[test]
fn the_tool_blocks_of_one_answer_are_bounded() {
    let mut st = StreamState::new(&request());
    let events: Vec<Value> = (0..MAX_TOOL_BLOCKS as u64)
        .map(|b| start(b, tool_use(&format!("t{b}"), "f")))
        .collect();
    assert_eq!(feed(&mut st, &events).unwrap().len(), MAX_TOOL_BLOCKS);
    let one_more = start(MAX_TOOL_BLOCKS as u64, tool_use("t-last", "f"));
    assert!(matches!(
        feed(&mut st, &[one_more]),
        Err(Error::Upstream(_))
    ));
}

fn stop(index: u64) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn text_piece(index: u64, text: &str) -> Value {
    json!({"type": "content_block_delta", "index": index,
           "delta": {"type": "text_delta", "text": text}})
}

/// The text deltas of `d`, joined.
fn text_of(d: &[Delta]) -> String {
    d.iter()
        .filter_map(|d| match d {
            Delta::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tool_without_input_streams_an_empty_object() {
    let mut st = StreamState::new(&request());
    let d = feed(
        &mut st,
        &[
            // One empty piece, as the API streams a tool that takes no input; then none at all.
            start(0, tool_use("toolu_01", "get_time")),
            json_piece(0, ""),
            stop(0),
            start(1, tool_use("toolu_02", "now")),
            stop(1),
            start(2, tool_use("toolu_03", "get_weather")),
            json_piece(2, "{\"city\": \"Oslo\"}"),
            stop(2),
        ],
    )
    .unwrap();
    let args: Vec<(u32, &str)> = d
        .iter()
        .filter_map(|d| match d {
            Delta::ToolCall {
                index, arguments, ..
            } if !arguments.is_empty() => Some((*index, arguments.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(args, [(0, "{}"), (1, "{}"), (2, "{\"city\": \"Oslo\"}")]);

    // The forced JSON tool with no input: the answer `{}`, as the whole answer gives.
    let mut req = request();
    req.response_format = Some(ResponseFormat::JsonObject);
    let mut st = StreamState::new(&req);
    let d = feed(
        &mut st,
        &[
            start(0, tool_use("toolu_01", "json_answer")),
            json_piece(0, ""),
            stop(0),
        ],
    )
    .unwrap();
    assert_eq!(text_of(&d), "{}");
}

#[test]
fn a_json_answer_without_its_tool_call_is_its_text() {
    let mut req = request();
    req.response_format = Some(ResponseFormat::JsonObject);
    let refusal = [
        start(0, json!({"type": "text", "text": ""})),
        text_piece(0, "I can't "),
        text_piece(0, "help with that."),
        stop(0),
        json!({"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 4}}),
    ];
    let d = feed(&mut StreamState::new(&req), &refusal).unwrap();
    // The text goes out once the message ends, before its finish.
    assert_eq!(
        d[..2],
        [
            Delta::Text {
                choice: 0,
                text: "I can't help with that.".into()
            },
            Delta::Finish {
                choice: 0,
                reason: "content_filter".into()
            }
        ]
    );
    // With the forced tool called, the text around it is left out.
    let d = feed(
        &mut StreamState::new(&req),
        &[
            start(0, json!({"type": "text", "text": ""})),
            text_piece(0, "Here:"),
            stop(0),
            start(1, tool_use("toolu_01", "json_answer")),
            json_piece(1, "{\"a\": 1}"),
            stop(1),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        ],
    )
    .unwrap();
    assert_eq!(text_of(&d), "{\"a\": 1}");
    // What is held is bounded.
    let mut st = StreamState::new(&req);
    let long = "é".repeat(MAX_HELD_TEXT);
    feed(&mut st, &[text_piece(0, &long), text_piece(0, "more")]).unwrap();
    assert!(st.held.len() <= MAX_HELD_TEXT && st.held.len() > MAX_HELD_TEXT - 2);
}
