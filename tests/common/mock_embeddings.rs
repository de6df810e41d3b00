//! The mock upstream's OpenAI-compatible `POST /v1/embeddings` (served by `mock::start`, for
//! the local server and OpenAI alike: the `Authorization` header tells them apart).
//!
//! Vectors are deterministic ([`vector`]): `dimensions` values (8 by default), each a multiple
//! of 1/64, exact in `float32`, so a test can compare what the client decoded with what was
//! sent. `encoding_format: "base64"` answers base64 of little-endian `float32`s, as OpenAI
//! does. Usage counts one token a whitespace-separated word ([`tokens`]), so a settlement on
//! the reported count differs from one on the counted input (four bytes a token).
//!
//! An input containing `mode:500` fails (500), `mode:garbage` answers vectors that are not
//! numbers, `mode:no-usage` reports no usage, `mode:linger` answers after 1.5 s, and
//! `mode:echo-key-401` quotes the key it was sent in a 401.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::mock::{Mock, Seen};

/// Dimensions when the request names none.
pub const DEFAULT_DIMENSIONS: usize = 8;

/// The mock's vector for `text`.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let sum: usize = text.bytes().map(usize::from).sum();
    (0..dimensions)
        .map(|j| ((sum + 7 * j) % 64) as f32 / 64.0 - 0.5)
        .collect()
}

/// The tokens the mock reports for `inputs`: one a whitespace-separated word.
pub fn tokens(inputs: &[&str]) -> u64 {
    inputs
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum()
}

fn inputs(body: &Value) -> Vec<String> {
    match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

pub async fn embeddings(
    State(mock): State<Mock>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let body = body.0;
    mock.seen.lock().unwrap().push(Seen {
        path: "/v1/embeddings".into(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let inputs = inputs(&body);
    let has = |mode: &str| inputs.iter().any(|t| t.contains(mode));
    if has("mode:linger") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if has("mode:500") {
        let e = json!({"error": {"message": "the model crashed"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(e)).into_response();
    }
    if has("mode:echo-key-401") {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ");
        let e = json!({"error": {"message": format!("Incorrect API key provided: {key}")}});
        return (StatusCode::UNAUTHORIZED, axum::Json(e)).into_response();
    }
    let dimensions = body["dimensions"]
        .as_u64()
        .map_or(DEFAULT_DIMENSIONS, |d| d as usize);
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector(text, dimensions);
            let embedding = if has("mode:garbage") {
                json!(["not", "numbers"])
            } else if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut answer = json!({"object": "list", "data": data, "model": body["model"]});
    if !has("mode:no-usage") {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let n = tokens(&refs);
        answer["usage"] = json!({"prompt_tokens": n, "total_tokens": n});
    }
    axum::Json(answer).into_response()
}
