//! A mock model upstream on 127.0.0.1 port 0, speaking OpenAI's chat completions and
//! Anthropic's Messages API, plain and streamed. The last user message picks a behaviour:
//! `mode:slow` never answers in time, `mode:garbage` answers non-JSON, `mode:500` fails,
//! `mode:broken` closes a stream mid-answer, `mode:stall` stops sending mid-stream, and
//! `mode:delay` (0.8 s) / `mode:linger` (1.5 s) answer late.
//!
//! The `mode:echo-key-*` behaviours quote the key the request carried (`Authorization` or
//! `x-api-key`) back, as a careless or hostile upstream does: `-401` and `-429` in an error
//! object (with `/` JSON-escaped and the key also percent-encoded in a URL; the 429 puts it
//! past the 200th character), `-stream` in an error event after some text, `-text` in the
//! answer itself (streamed 7 characters a delta, so it is split across deltas).
//! [`start_redirecting`] is an upstream that answers every request with a redirect.
//!
//! The OpenAI side also answers function calls, several choices, JSON mode and log
//! probabilities the way OpenAI does (see `openai`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

// By path, so the benchmark that includes this file by path finds it too.
#[path = "mock_openai.rs"]
mod openai;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Mock {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts the mock; returns its address and its record of requests.
pub async fn start() -> (SocketAddr, Mock) {
    let mock = Mock::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/messages", post(anthropic))
        .route("/v1/embeddings", post(super::mock_embeddings::embeddings))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, mock)
}

/// The last user message's text (a string, or its text parts joined).
fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| openai::content_text(&m["content"]))
        .unwrap_or_default()
}

fn record(mock: &Mock, path: &str, headers: &HeaderMap, body: &Value) {
    mock.seen.lock().unwrap().push(Seen {
        path: path.into(),
        headers: headers.clone(),
        body: body.clone(),
    });
}

/// A body that sends `parts` with a pause before each, then optionally hangs.
fn paced(parts: Vec<String>, hang: bool) -> Body {
    let stream =
        futures_util::stream::unfold((parts.into_iter(), hang), |(mut it, hang)| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            match it.next() {
                Some(p) => Some((Ok::<_, Infallible>(Bytes::from(p)), (it, hang))),
                None if hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    None
                }
                None => None,
            }
        });
    Body::from_stream(stream)
}

fn sse(parts: Vec<String>, hang: bool) -> Response {
    ([("content-type", "text/event-stream")], paced(parts, hang)).into_response()
}

async fn misbehave(text: &str) -> Option<Response> {
    if text.contains("mode:delay") {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // Past a 1 s request timeout, within the tests' 2 s upstream timeout.
    if text.contains("mode:linger") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if text.contains("mode:slow") {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if text.contains("mode:garbage") {
        return Some((StatusCode::OK, "<html>this is not json").into_response());
    }
    if text.contains("mode:500") {
        return Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"message": "the model crashed"}})),
            )
                .into_response(),
        );
    }
    None
}

/// The key a request carried, as the upstream saw it.
fn presented_key(headers: &HeaderMap) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    h("x-api-key")
        .or_else(|| h("authorization").map(|a| a.trim_start_matches("Bearer ").to_string()))
        .unwrap_or_default()
}

/// The `mode:echo-key-401` / `-429` answers: the key quoted in an error object.
fn echo_key_error(text: &str, key: &str, anthropic: bool) -> Option<Response> {
    let (status, message) = if text.contains("mode:echo-key-401") {
        let pct: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        (
            StatusCode::UNAUTHORIZED,
            format!("Incorrect API key provided: {key}. Check it at https://keys.example/?k={pct}"),
        )
    } else if text.contains("mode:echo-key-429") {
        (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} rate limited for key {key}", "r".repeat(185)),
        )
    } else {
        return None;
    };
    let body = if anthropic {
        json!({"type": "error", "error": {"type": "authentication_error", "message": message}})
    } else {
        json!({"error": {"message": message, "type": "invalid_request_error"}})
    };
    // Some servers escape `/` in JSON strings.
    let body = body.to_string().replace('/', "\\/");
    Some((status, [("content-type", "application/json")], body).into_response())
}

/// Splits an answer into deltas: by words, or 7 characters at a time for `mode:echo-key-text`
/// (3 for `mode:chars3`, which splits placeholders between deltas).
fn pieces(reply: &str, text: &str) -> Vec<String> {
    if text.contains("mode:echo-key-text") || text.contains("mode:chars3") {
        let size = if text.contains("mode:chars3") { 3 } else { 7 };
        let chars: Vec<char> = reply.chars().collect();
        chars.chunks(size).map(|c| c.iter().collect()).collect()
    } else {
        reply.split_inclusive(' ').map(String::from).collect()
    }
}

fn reply_for(text: &str, key: &str, default: String) -> String {
    if text.contains("mode:echo-key-text") {
        format!("the key you sent is {key}, keep it safe")
    } else if text.contains("mode:lower") {
        // A model that echoes placeholders in another case.
        default.to_lowercase()
    } else {
        default
    }
}

/// An upstream that answers every request with `status`, pointing at the same path on `to`.
pub async fn start_redirecting(to: SocketAddr, status: u16) -> SocketAddr {
    let app = Router::new().fallback(move |uri: axum::http::Uri| async move {
        let location = format!(
            "http://{to}{}",
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        (
            StatusCode::from_u16(status).unwrap(),
            [("location", location)],
        )
            .into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn anthropic(
    State(mock): State<Mock>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let body = body.0;
    record(&mock, "/v1/messages", &headers, &body);
    if headers.get("anthropic-version").is_none() || headers.get("x-api-key").is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "missing key"}})),
        )
            .into_response();
    }
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    if let Some(r) = super::mock_anthropic::respond(&body, beta) {
        return r;
    }
    let text = last_user(&body);
    if let Some(r) = misbehave(&text).await {
        return r;
    }
    let key = presented_key(&headers);
    if let Some(r) = echo_key_error(&text, &key, true) {
        return r;
    }
    let reply = reply_for(&text, &key, format!("claude says: {text}"));
    if body["stream"] == true {
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut parts = vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        for w in pieces(&reply, &text) {
            parts.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
        }
        if text.contains("mode:echo-key-stream") {
            parts.truncate(4);
            parts.push(ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error",
                    "message": format!("overloaded while serving key {key}")}}),
            ));
            return sse(parts, false);
        }
        if text.contains("mode:broken") {
            parts.truncate(3);
            return sse(parts, false);
        }
        parts.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        parts.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}})));
        parts.push(ev("message_stop", json!({"type": "message_stop"})));
        return sse(parts, false);
    }
    axum::Json(json!({
        "id": "m1", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 6}
    }))
    .into_response()
}
