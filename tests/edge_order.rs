//! Issue 23, class 7: the edge is the same for every path. The privacy center's files and
//! every `OPTIONS` request meet the address allow-list and the behind-proxy rule like the
//! API; a preflight is answered only for a configured origin; an `OPTIONS` that is not a
//! preflight needs the key in cloud mode like any route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::http::{client, with_headers};
use common::mock;
use common::server::{Server, upstream_env};
use reqwest::Method;
use serde_json::Value;

/// Sends `method path` with `headers`; returns the status, the headers and the JSON body.
async fn send(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let req = client().request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        server.url(path),
    );
    let resp = with_headers(req, headers).send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.json().await.unwrap_or(Value::Null))
}

const PREFLIGHT: &[(&str, &str)] = &[
    ("origin", "http://localhost:3000"),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "content-type"),
];

/// The page, its assets and `OPTIONS` (a preflight from a listed origin and a plain one)
/// from an address outside `allow_ips`, and from a direct client when only the proxy may
/// connect: each a JSON 403, like the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_options_meet_the_allow_list_and_the_proxy_rule() {
    let (addr, _mock) = mock::start().await;
    for setting in [
        &[("MAESTRA_ALLOW_IPS", "10.0.0.0/8")][..],
        &[
            ("MAESTRA_TLS", "behind-proxy"),
            ("MAESTRA_TRUSTED_PROXIES", "10.0.0.2"),
        ][..],
    ] {
        let mut home =
            upstream_env(Home::new(), addr).with("MAESTRA_CORS_ORIGINS", "http://localhost:3000");
        for (k, v) in setting {
            home = home.with(k, v);
        }
        let server = Server::start(&home);
        for (method, path, headers) in [
            ("GET", "/", &[][..]),
            ("GET", "/assets/app.js", &[][..]),
            ("HEAD", "/assets/app.css", &[][..]),
            ("OPTIONS", "/v1/chat/completions", PREFLIGHT),
            ("OPTIONS", "/api/conversations", &[][..]),
            ("OPTIONS", "/", &[][..]),
        ] {
            let (status, h, body) = send(&server, method, path, headers).await;
            assert_eq!(status, 403, "{setting:?} {method} {path}: {body}");
            assert!(h.get("access-control-allow-origin").is_none(), "{path}");
            if method != "HEAD" {
                assert_eq!(body["error"]["code"], "forbidden", "{method} {path}");
            }
        }
        // The API was already refused; it still is.
        let (status, ..) = send(&server, "GET", "/v1/models", &[]).await;
        assert_eq!(status, 403);
    }
}

/// A preflight from an origin that is not configured is refused with a JSON 403 and no CORS
/// grant; from a configured one it is answered with its grant; an `OPTIONS` that is not a
/// preflight is an ordinary request: it needs the key in cloud mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_only_for_listed_origins_and_plain_options_needs_the_key() {
    let (addr, _mock) = mock::start().await;
    let key = "static-edge-order-key-0123456789";
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_CORS_ORIGINS", "http://localhost:3000")
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_API_KEY", key);
    let server = Server::start(&home);

    let unlisted = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    for path in ["/v1/chat/completions", "/api/conversations", "/"] {
        let (status, h, body) = send(&server, "OPTIONS", path, &unlisted).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(h.get("access-control-allow-origin").is_none());
        assert!(h.get("access-control-allow-methods").is_none());
    }

    // A listed origin's preflight carries no key (browsers never send one) and is granted.
    let (status, h, _) = send(&server, "OPTIONS", "/v1/chat/completions", PREFLIGHT).await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.to_ascii_lowercase().contains("x-api-key"),
        "{allowed}"
    );
    // The actual request that follows gets its grant too, even when it is refused.
    let (status, h, _) = send(
        &server,
        "GET",
        "/v1/models",
        &[("origin", "http://localhost:3000")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");

    // Not a preflight: without a key 401, with one what the route says of OPTIONS.
    for headers in [&[][..], &[("origin", "http://localhost:3000")][..]] {
        let (status, h, body) = send(&server, "OPTIONS", "/api/conversations", headers).await;
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert!(h.contains_key("www-authenticate"));
    }
    let (status, h, body) = send(
        &server,
        "OPTIONS",
        "/api/conversations",
        &[("x-api-key", key)],
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert!(h.contains_key("allow"));
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // The page still loads without a key.
    let (status, ..) = send(&server, "GET", "/", &[]).await;
    assert_eq!(status, 200);
}
