//! Issue 14, providers: a provider key never follows a redirect, and never comes back to the
//! client, a log line or a file when the upstream quotes it. The real `maestra serve` against
//! the mock upstream (tests/common/mock.rs); the keys are canaries that do not look like
//! `sk-…`, so only the exact-secret scrub can catch them, and they hold `/` and `+` so their
//! JSON-escaped and percent-encoded forms differ from the raw one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http::client;
use common::mock;
use common::server::{Server, upstream_env};
use common::{Home, all_file_bytes, contains};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "CANARY/openai+key=0123456789abcdef";
const ANTHROPIC_KEY: &str = "CANARY-anthropic/key+0123456789";

/// Each key as sent, percent-encoded and JSON-escaped: none may appear anywhere.
fn forms() -> Vec<String> {
    let mut out = Vec::new();
    for k in [OPENAI_KEY, ANTHROPIC_KEY] {
        let pct: String = url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
        out.extend([k.to_string(), pct, k.replace('/', "\\/")]);
        // Half a key is a leak too (a message cut short in the middle of one).
        out.push(k[..k.len() / 2 + 2].to_string());
    }
    out
}

fn assert_clean(what: &str, hay: &str) {
    for f in forms() {
        assert!(!hay.contains(&f), "{what} holds {f:?}: {hay}");
    }
}

/// Sends a chat completion; returns the status and everything the client saw (its headers
/// and raw text, not the JSON `http::chat` reads: a key could hide in either).
async fn chat(server: &Server, model: &str, message: &str, stream: bool) -> (u16, String) {
    let body = json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": message}]});
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    let text = resp.text().await.unwrap_or_default();
    (status, format!("{headers}\n{text}"))
}

const MODELS: [&str; 2] = ["gpt-4o-mini", "claude-3-5-haiku-latest"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_never_follows_a_redirect() {
    let (target, target_mock) = mock::start().await;
    for status in [302u16, 307, 308] {
        let redirector = mock::start_redirecting(target, status).await;
        let home = upstream_env(Home::new(), redirector)
            .with("MAESTRA_OPENAI_KEY", OPENAI_KEY)
            .with("MAESTRA_ANTHROPIC_KEY", ANTHROPIC_KEY);
        let server = Server::start(&home);
        for model in ["gpt-4o-mini", "claude-3-5-haiku-latest", "llama3.2"] {
            for stream in [false, true] {
                let (code, seen) = chat(&server, model, "the secret prompt", stream).await;
                assert_eq!(code, 502, "{model} {status} {stream}: {seen}");
                assert!(seen.contains("upstream_error"), "{seen}");
                assert!(seen.contains("redirect"), "{seen}");
                assert!(!seen.contains(&target.to_string()), "no Location: {seen}");
                assert_clean("a redirect refusal", &seen);
            }
        }
    }
    // The other host received neither key nor prompt: nothing at all.
    assert!(
        target_mock.requests().is_empty(),
        "{:?}",
        target_mock.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_quoted_by_the_upstream_is_scrubbed_everywhere() {
    let (addr, upstream) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", OPENAI_KEY)
        .with("MAESTRA_ANTHROPIC_KEY", ANTHROPIC_KEY)
        .with("MAESTRA_LOG", "debug");
    let mut server = Server::start(&home);
    for model in MODELS {
        for stream in [false, true] {
            // An error object quoting the key: 401 → 502, 429 → 503, message kept, key not.
            let (code, seen) = chat(&server, model, "mode:echo-key-401", stream).await;
            assert_eq!(code, 502, "{model} {stream}: {seen}");
            assert!(seen.contains("[REDACTED]"), "{model} {stream}: {seen}");
            assert_clean("a 401 relayed", &seen);
            let (code, seen) = chat(&server, model, "mode:echo-key-429", stream).await;
            assert_eq!(code, 503, "{model} {stream}: {seen}");
            assert_clean("a 429 relayed", &seen);
            // The key inside the answer's text, split across deltas when streamed.
            let (code, seen) = chat(&server, model, "mode:echo-key-text", stream).await;
            assert_eq!(code, 200, "{model} {stream}: {seen}");
            assert_clean("an answer", &seen);
            let text = if stream {
                seen.lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|v| {
                        v["choices"][0]["delta"]["content"]
                            .as_str()
                            .map(String::from)
                    })
                    .collect::<String>()
            } else {
                let body = seen.split_once('\n').unwrap().1;
                let v: Value = serde_json::from_str(body).unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(text, "the key you sent is [REDACTED], keep it safe");
        }
        // An error event mid-stream quoting the key.
        let (code, seen) = chat(&server, model, "mode:echo-key-stream", true).await;
        assert_eq!(code, 200, "{model}: {seen}");
        assert!(seen.contains("upstream_error"), "{model}: {seen}");
        assert_clean("a stream's error event", &seen);
    }
    // The keys did reach the upstream (so there was something to leak).
    let sent = upstream.requests();
    assert!(sent.iter().any(|r| r.headers.get("x-api-key").is_some()));
    assert!(
        sent.iter()
            .any(|r| r.headers.get("authorization").is_some())
    );

    let output = server.stop();
    assert_clean("the server's output", &output);
    for (path, bytes) in all_file_bytes(&home.root()) {
        for f in forms() {
            assert!(!contains(&bytes, &f), "{} holds {f:?}", path.display());
        }
    }
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(audit.contains("upstream_error"), "{audit}");
}
