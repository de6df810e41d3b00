//! Black-box tests of the HTTP edge against what an outsider sends: settings that must stop
//! the server before it listens, query parameters no route takes, oversized heads and
//! declared bodies, invented methods, and floods of refusals that must not grow the audit
//! log one line each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Home;
use common::http::{client, get};
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes and returns what came back before the server closed or went quiet.
async fn raw(server: &Server, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// (maestra.toml, environment, the setting the error must name)
type BadSetting = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn invalid_settings_stop_the_server_before_it_listens() {
    let cases: &[BadSetting] = &[
        ("cors_origins = [\"*\"]\n", &[], "cors_origins"),
        ("", &[("MAESTRA_CORS_ORIGINS", "*")], "MAESTRA_CORS_ORIGINS"),
        ("daily_cost_limit = 1e12\n", &[], "daily_cost_limit"),
        ("[cost]\nmax_output_tokens = 0\n", &[], "max_output_tokens"),
        (
            "[pricing.m]\ninput_per_million = inf\noutput_per_million = 1.0\n",
            &[],
            "input_per_million",
        ),
        (
            "[audit]\nqueue_capacity = 4611686018427387904\n",
            &[],
            "queue_capacity",
        ),
        ("", &[("MAESTRA_LOG", "maestra=loud")], "MAESTRA_LOG"),
        (
            "",
            &[("MAESTRA_MAX_CONNECTIONS", "0")],
            "MAESTRA_MAX_CONNECTIONS",
        ),
        (
            "[server]\nmax_connections = 70000\n",
            &[],
            "max_connections",
        ),
        (
            "",
            &[("MAESTRA_OPENAI_BASE_URL", "not a url")],
            "MAESTRA_OPENAI_BASE_URL",
        ),
    ];
    for (toml, env, name) in cases {
        let mut home = Home::new().with_toml(toml);
        for (k, v) in *env {
            home = home.with(k, v);
        }
        let out = home.run(&["serve", "--bind", "127.0.0.1:0"], b"");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: started");
        assert_ne!(out.status.code(), Some(101), "{name}: panicked: {stderr}");
        assert!(!stdout.contains("listening"), "{name}: {stdout}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_refused_on_every_route() {
    let (addr, _mock) = mock::start().await;
    // Every route is called from the host's own network: discovery stays off (no multicast),
    // should a request ever get past the query check.
    let home = upstream_env(Home::new(), addr).with("MAESTRA_DISCOVERY", "false");
    let server = Server::start(&home);
    let c = client();
    let doc: Value = c
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let forwards = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "query" && p["schema"]["type"] == "object");
            if forwards {
                continue; // the services proxy passes its query on to the service
            }
            let concrete = path.replace("{id}", "nope").replace("{user_id}", "nobody");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for query in ["not_a_param=x", "user_id_=x&limit=1", "%6Eot_a_param=1"] {
                let url = server.url(&format!("{concrete}?{query}"));
                let resp = c
                    .request(m.clone(), &url)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 400, "{method} {url}: {v}");
                assert_eq!(v["error"]["code"], "bad_request", "{method} {url}: {v}");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains("unknown query parameter"), "{msg}");
            }
            walked += 1;
        }
    }
    assert!(walked >= 14, "{walked} operations walked");
    let (status, v) = get(&server.url("/api/conversations?user=x")).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("\"user\""));
    let (status, v) = get(&server.url("/api/conversations?user_id=a&limit=5")).await;
    assert_eq!(status, 200, "documented parameters still work: {v}");
    let (status, v) = get(&server.url("/api/audit?limit=5&category=auth")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_and_declared_bodies_over_the_limits_get_json() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let server = Server::start(&home);

    // A head over the edge's 16 KiB: the JSON 431.
    let big = format!(
        "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let resp = raw(&server, big.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert_eq!(
        json_body(&resp)["error"]["code"],
        "headers_too_large",
        "{resp}"
    );

    // Too many header fields: the same.
    let mut many = String::from("GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for i in 0..80 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw(&server, many.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert_eq!(json_body(&resp)["error"]["code"], "headers_too_large");

    // A declared body over the limit is refused before it is sent: only the head goes out,
    // and the answer comes anyway, closing the connection.
    let head = "POST /api/maestra/core HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                content-type: application/json\r\ncontent-length: 10000000000\r\n\r\n";
    let resp = raw(&server, head.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert_eq!(
        json_body(&resp)["error"]["code"],
        "payload_too_large",
        "{resp}"
    );
    // The same on the services proxy.
    let head = "PUT /api/services/hue/lights HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                content-type: application/json\r\ncontent-length: 2000000\r\n\r\n";
    let resp = raw(&server, head.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    // The server is still there.
    let resp = raw(
        &server,
        b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_content_type_is_the_documented_one_and_labels_stay_bounded() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let server = Server::start(&home);
    let c = client();
    for i in 0..5 {
        let m = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let resp = c
            .request(m, server.url(&format!("/health/x{i}")))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }
    let doc: Value = c
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: Vec<&String> = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let resp = c.get(server.url("/metrics")).send().await.unwrap();
    let served = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(documented, vec![&served]);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("INVENTED"), "{text}");
    assert!(!text.contains("/health/x"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_keys_is_throttled_and_audited_within_a_budget() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_API_KEY", "static-edge-key-0123456789")
        .with("MAESTRA_RATE_LIMIT_REQUESTS", "20")
        .with("MAESTRA_RATE_LIMIT_WINDOW", "60");
    let mut server = Server::start(&home);
    let c = client();
    let mut statuses = Vec::new();
    let start = std::time::Instant::now();
    for i in 0..200 {
        let resp = c
            .get(server.url("/v1/models"))
            .header("x-api-key", format!("mae_{i:012x}_guess"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // The allowance refills one request every 3 s: on a loaded machine the loop takes longer
    // and earns more, so what it earned is measured, not assumed.
    let refilled = (start.elapsed().as_secs_f64() / 3.0).ceil() as usize;
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert!(
        (20..=21 + refilled).contains(&count(401)),
        "failed keys spend the address's allowance: {statuses:?}"
    );
    assert_eq!(count(401) + count(429), 200, "{statuses:?}");
    server.stop();
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let refusals = audit
        .lines()
        .filter(|l| l.contains("\"category\":\"auth\""))
        .count();
    assert!(
        refusals <= maestra::access::refusals::REFUSAL_BURST as usize + 2,
        "{refusals} audit lines for 200 anonymous refusals"
    );
    assert!(refusals >= 20, "{refusals}");
}

/// The privacy center's files pass the first stages as the API does: each answer has a request
/// id and is counted in `/metrics` under its own path; they keep their own CSP (the page loads
/// its script and style from this server), while the API's stays `default-src 'none'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_has_request_ids_metrics_and_its_own_headers() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let server = Server::start(&home);
    let c = client();
    for path in ["/", "/assets/app.js"] {
        let resp = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h["x-request-id"].len(), 32, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let resp = c.get(server.url("/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let text = resp.text().await.unwrap();
    for label in ["route=\"/\"", "route=\"/assets/app.js\""] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("maestra_http_requests") && l.contains(label)),
            "{label}: {text}"
        );
    }
}
