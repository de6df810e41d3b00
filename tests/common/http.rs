//! One HTTP client for the black-box tests, and the requests they all make.
//!
//! Every client starts from [`builder`]; a test that needs more (a timeout, no redirects, its
//! own root certificate) adds it there and says why. The helpers take a full URL
//! (`server.url(path)`), so they serve the mocks as well as `maestra serve`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Client, ClientBuilder, RequestBuilder, Response};
use serde_json::{Value, json};

use super::server::Server;

/// The one client builder: no proxy from the environment (the tests talk to 127.0.0.1 only).
pub fn builder() -> ClientBuilder {
    Client::builder().no_proxy()
}

/// [`builder`] with no idle pool, so each request opens its own connection: a test that kills
/// or restarts a server never meets a stale pooled one.
pub fn client() -> Client {
    builder().pool_max_idle_per_host(0).build().unwrap()
}

/// [`builder`] keeping idle connections, for a test that sends many requests in a row to one
/// server that stays up (a flood, a rate limit, a poll): their connections are reused.
pub fn pooled() -> Client {
    builder().build().unwrap()
}

/// The status and the body as JSON (`Null` when the body is not JSON).
pub async fn status_json(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends `req`: the status and the body as JSON (`Null` when the body is not JSON).
pub async fn send_json(req: RequestBuilder) -> (u16, Value) {
    status_json(req.send().await.unwrap()).await
}

/// `GET url` and its body as JSON, whatever the status.
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET url`: the status and the body as JSON (`Null` when the body is not JSON).
pub async fn get(url: &str) -> (u16, Value) {
    send_json(client().get(url)).await
}

/// `POST url` with `body` as JSON: the status and the answer as JSON (`Null` when not JSON).
pub async fn post_json(url: &str, body: Value) -> (u16, Value) {
    send_json(client().post(url).json(&body)).await
}

/// `req` presenting `key` in the `x-api-key` header.
pub fn with_key(req: RequestBuilder, key: &str) -> RequestBuilder {
    req.header("x-api-key", key)
}

/// `req` with each of `headers` added.
pub fn with_headers(mut req: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}

/// `POST /v1/chat/completions` with `headers`: the status and the answer as JSON.
pub async fn chat(server: &Server, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let req = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body);
    send_json(with_headers(req, headers)).await
}

/// One turn of `POST /api/maestra/core` for `user` on `surface` (a new conversation, or `conv`),
/// which must succeed; returns the conversation's id.
pub async fn core(
    server: &Server,
    user: &str,
    surface: &str,
    conv: Option<&str>,
    message: &str,
) -> String {
    let mut body = json!({"user_id": user, "surface_id": surface, "message": message});
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
    let (s, v) = post_json(&server.url("/api/maestra/core"), body).await;
    assert_eq!(s, 200, "{v}");
    v["conversation_id"].as_str().unwrap().to_string()
}

/// `GET /api/jobs/ID` until the job is no longer running (every 25 ms, at most 200 times);
/// its last state (`Null` if it never finished).
pub async fn poll_job(server: &Server, id: &str) -> Value {
    let c = pooled();
    let url = server.url(&format!("/api/jobs/{id}"));
    for _ in 0..200 {
        let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        if v["state"] != "running" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Value::Null
}
