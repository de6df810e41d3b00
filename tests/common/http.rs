//! One HTTP client for the black-box tests, and the JSON reads they all make.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

/// No proxy from the environment (the tests talk to 127.0.0.1 only) and no idle pool, so
/// each request opens its own connection: a test that kills or restarts a server never meets
/// a stale pooled one.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
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
