//! The model routes' own body limit (`server.max_model_body_bytes`): an image sent as a
//! `data:` URL is far larger than anything another route takes, so a chat request carrying a
//! photo is not a 413, while every other route keeps `server.max_body_bytes`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::Home;
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

/// A chat request with one PNG `data:` URL whose image is `bytes` long.
fn with_image(bytes: usize) -> Value {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(bytes, 0);
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    json!({"model": "llama3.2", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
}

/// The answer to a JSON POST's head declaring `length` bytes of body, none of them sent.
async fn declared(server: &Server, path: &str, length: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out));
    read.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_fits_the_model_routes_and_only_them() {
    let (addr, _mock) = mock::start().await;
    let limit = 4 * 1024 * 1024;
    let home =
        upstream_env(Home::new(), addr).with("MAESTRA_MAX_MODEL_BODY_BYTES", &limit.to_string());
    let server = Server::start(&home);
    let c = common::http::pooled();
    let post = |path: &str, body: &Value| c.post(server.url(path)).json(body).send();

    // A 1.2 MB image is a 1.6 MB body: past the 1 MiB of other routes, answered whole.
    let photo = with_image(1_200_000);
    assert!(photo.to_string().len() > 1024 * 1024);
    let r = post("/v1/chat/completions", &photo).await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    // A 2 MiB image passes Maestra too: it reaches the upstream (the mock's own 2 MiB limit
    // is what answers, as a 502 naming the upstream), not Maestra's 413.
    let r = post("/v1/chat/completions", &with_image(2 * 1024 * 1024))
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_ne!(status, 413, "{text}");
    assert!(text.contains("local_model answered"), "{text}");

    // Over the model limit: a 413 naming it, answered from the declared length before the
    // body is read (only the head is sent: a client still writing a body the server will not
    // read gets its connection closed under it).
    let (status, body) = declared(&server, "/v1/chat/completions", limit + 1).await;
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&limit.to_string()), "{body}");

    // Embeddings take the same limit: a 2 MiB body reaches the embeddings reader, whose own
    // 1 MiB input limit then answers (a 413 naming the input, not the body).
    let big = json!({"model": "llama3.2", "input": ["x".repeat(600_000), "y".repeat(600_000)]});
    let r = post("/v1/embeddings", &big).await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("input"), "{body}");

    // Every other route keeps `server.max_body_bytes` (1 MiB).
    let (status, body) = declared(&server, "/api/audit/events", photo.to_string().len()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.to_string().contains("1048576"), "{body}");
}
