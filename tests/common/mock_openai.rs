//! The mock's OpenAI chat completions, answering like OpenAI does: text, or function calls
//! when the request declares tools, for `n` choices, with log probabilities when asked, whole
//! or streamed in OpenAI's chunk shapes (call fragments by index, choices interleaved).
//!
//! - `tools` declared, the last message not a `tool` answer and `tool_choice` not `none`: one
//!   call to the named (else first declared) function with `{"city":"Oslo","unit":"celsius"}`,
//!   and a second, parallel one (Bergen) when the last user text has `mode:two-calls`
//!   (`mode:call-echo`: the first call's arguments are `{"note": <last user text>}`);
//!   finish reason `tool_calls`. Streamed: a first chunk per call with its index, id, type,
//!   name and empty arguments, then the arguments in small pieces carrying only the index.
//! - The last message a `tool` answer: the text `tool said: <its content>`.
//! - `response_format` `json_object` or `json_schema`: the text `{"answer":"<last user text>"}`.
//! - Otherwise `echo(<messages>): <last user text>` (see the parent module for `mode:*`;
//!   `mode:lower` lower-cases it, `mode:chars3` streams it 3 characters a delta).
//! - `n` > 1: that many choices (choice k > 0 of an echo ends in ` #k`); streamed, their
//!   chunks interleaved, each with its `index`.
//! - `logprobs: true`: a logprobs object per choice, or per streamed text chunk.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Mock, echo_key_error, last_user, misbehave, pieces, presented_key, record, sse};

/// What one choice answers.
enum Answer {
    Text(String),
    /// (id, function name, arguments) of each call.
    Calls(Vec<(String, String, String)>),
}

/// Arguments of the second call of `mode:two-calls`.
const SECOND_CALL: &str = r#"{"city":"Bergen","unit":"celsius"}"#;
const FIRST_CALL: &str = r#"{"city":"Oslo","unit":"celsius"}"#;

pub(super) async fn chat(
    State(mock): State<Mock>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let body = body.0;
    record(&mock, "/v1/chat/completions", &headers, &body);
    let text = last_user(&body);
    if let Some(r) = misbehave(&text).await {
        return r;
    }
    let key = presented_key(&headers);
    if let Some(r) = echo_key_error(&text, &key, false) {
        return r;
    }
    let n = body["n"].as_u64().unwrap_or(1).max(1);
    let answers: Vec<Answer> = (0..n).map(|k| answer(&body, &text, &key, k)).collect();
    if body["stream"] == true {
        return stream(&body, &text, &key, &answers);
    }
    let logprobs = body["logprobs"] == true;
    let choices: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let (message, finish, lp) = match a {
                Answer::Text(t) => (
                    json!({"role": "assistant", "content": t, "refusal": null}),
                    "stop",
                    logprobs.then(|| logprobs_of(&body, &pieces(t, &text))),
                ),
                Answer::Calls(calls) => (
                    json!({"role": "assistant", "content": null, "refusal": null,
                           "tool_calls": calls.iter().map(|(id, name, args)| json!({
                               "id": id, "type": "function",
                               "function": {"name": name, "arguments": args}})).collect::<Vec<_>>()}),
                    "tool_calls",
                    logprobs.then(|| json!({"content": [], "refusal": null})),
                ),
            };
            json!({"index": k, "message": message, "logprobs": lp, "finish_reason": finish})
        })
        .collect();
    let mut answer = json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": choices,
        "usage": usage(n)
    });
    // An OpenAI-compatible server that reports no usage at all.
    if text.contains("mode:nousage") {
        answer.as_object_mut().unwrap().remove("usage");
    }
    axum::Json(answer).into_response()
}

fn usage(n: u64) -> Value {
    json!({"prompt_tokens": 10, "completion_tokens": 5 * n, "total_tokens": 10 + 5 * n})
}

/// Choice `k`'s answer to the request.
fn answer(body: &Value, text: &str, key: &str, k: u64) -> Answer {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    if !tools.is_empty() && last["role"] != "tool" && body["tool_choice"] != "none" {
        let name = body["tool_choice"]["function"]["name"]
            .as_str()
            .or_else(|| tools[0]["function"]["name"].as_str())
            .unwrap_or("")
            .to_string();
        let id = |j: u32| {
            if k == 0 {
                format!("call_{j}")
            } else {
                format!("call_c{k}_{j}")
            }
        };
        // `mode:call-echo`: the call's arguments quote the user's text (placeholders and all).
        let first = if text.contains("mode:call-echo") {
            json!({"note": text}).to_string()
        } else {
            FIRST_CALL.to_string()
        };
        let mut calls = vec![(id(1), name.clone(), first)];
        if text.contains("mode:two-calls") {
            calls.push((id(2), name, SECOND_CALL.to_string()));
        }
        return Answer::Calls(calls);
    }
    if last["role"] == "tool" {
        return Answer::Text(format!("tool said: {}", content_text(&last["content"])));
    }
    if matches!(
        body["response_format"]["type"].as_str(),
        Some("json_object" | "json_schema")
    ) {
        return Answer::Text(json!({"answer": text}).to_string());
    }
    let echo = super::reply_for(text, key, format!("echo({}): {text}", messages.len()));
    Answer::Text(if k == 0 { echo } else { format!("{echo} #{k}") })
}

/// A message's text: the string, or its text parts joined.
pub(super) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A logprobs object for `tokens`: each with a log probability, its bytes and `top_logprobs`
/// alternatives as many as asked.
fn logprobs_of(body: &Value, tokens: &[String]) -> Value {
    let top = body["top_logprobs"].as_u64().unwrap_or(0);
    let entry = |t: &str, lp: f64| json!({"token": t, "logprob": lp, "bytes": t.as_bytes()});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(t, -0.1);
            e["top_logprobs"] = (0..top)
                .map(|j| {
                    if j == 0 {
                        entry(t, -0.1)
                    } else {
                        entry(&format!("alt{j}"), -2.0 - j as f64)
                    }
                })
                .collect();
            e
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// The streamed answer: each choice's chunks, interleaved round-robin, then a finish chunk
/// per choice, the usage chunk when asked for, and `[DONE]`.
fn stream(body: &Value, text: &str, key: &str, answers: &[Answer]) -> Response {
    let logprobs = body["logprobs"] == true;
    let per_choice: Vec<Vec<Value>> = answers
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let choice = |delta: Value, lp: Option<Value>| {
                let mut c = json!({"index": k, "delta": delta, "finish_reason": null});
                if let Some(lp) = lp {
                    c["logprobs"] = lp;
                }
                c
            };
            match a {
                Answer::Text(t) => {
                    let mut out = vec![choice(json!({"role": "assistant"}), None)];
                    for p in pieces(t, text) {
                        let lp = logprobs.then(|| logprobs_of(body, std::slice::from_ref(&p)));
                        out.push(choice(json!({"content": p}), lp));
                    }
                    out
                }
                Answer::Calls(calls) => {
                    let mut out = vec![choice(
                        json!({"role": "assistant", "content": null, "refusal": null}),
                        None,
                    )];
                    for (i, (id, name, args)) in calls.iter().enumerate() {
                        out.push(choice(
                            json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
                            None,
                        ));
                        let chars: Vec<char> = args.chars().collect();
                        for piece in chars.chunks(5) {
                            let piece: String = piece.iter().collect();
                            out.push(choice(
                                json!({"tool_calls": [{"index": i,
                                       "function": {"arguments": piece}}]}),
                                None,
                            ));
                        }
                    }
                    out
                }
            }
        })
        .collect();
    let model = &body["model"];
    let chunk = |choice: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                   "model": model, "choices": [choice]})
        )
    };
    let longest = per_choice.iter().map(Vec::len).max().unwrap_or(0);
    let mut parts: Vec<String> = (0..longest)
        .flat_map(|i| per_choice.iter().filter_map(move |c| c.get(i).cloned()))
        .map(chunk)
        .collect();
    if text.contains("mode:echo-key-stream") {
        parts.truncate(3);
        let err = json!({"error": {"message": format!("stream failed for key {key}")}});
        parts.push(format!("data: {err}\n\n"));
        return sse(parts, false);
    }
    if text.contains("mode:broken") {
        parts.truncate(2);
        return sse(parts, false);
    }
    if text.contains("mode:stall") {
        parts.truncate(2);
        return sse(parts, true);
    }
    for (k, a) in answers.iter().enumerate() {
        let reason = match a {
            Answer::Text(_) => "stop",
            Answer::Calls(_) => "tool_calls",
        };
        parts.push(chunk(
            json!({"index": k, "delta": {}, "finish_reason": reason}),
        ));
    }
    if body["stream_options"]["include_usage"] == true {
        parts.push(format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [], "usage": usage(answers.len() as u64)})
        ));
    }
    parts.push("data: [DONE]\n\n".into());
    sse(parts, false)
}
