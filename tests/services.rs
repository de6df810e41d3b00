//! Black-box tests of the services proxy and the audit API (SPEC §2.7, §2.3): the real
//! `maestra serve` against mock Spotify, Hue and Home Assistant servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::{self, client};
use common::server::Server;
use common::services_mock::{self as mock, Recorder, Spotify};
use common::{Home, all_file_bytes, contains};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SPOTIFY_INITIAL: &str = "CANARY-spotify-access-initial-0123456789";

struct Env {
    server: Server,
    home: Home,
    spotify: Spotify,
    hue: Recorder,
    ha: Recorder,
}

/// Mocks, a home whose `maestra.toml` points the services at them, credentials in the vault
/// (through the CLI, as a user would), and the server. `spotify_expires_at` is the stored
/// token's expiry (Unix seconds).
async fn setup(env: &[(&str, &str)], spotify_expires_at: i64, extra_toml: &str) -> Env {
    let (sp, spotify) = mock::spotify().await;
    let (hue_addr, hue) = mock::hue().await;
    let (ha_addr, ha) = mock::home_assistant().await;
    let mut home = Home::new();
    for (k, v) in env {
        home = home.with(k, v);
    }
    home.ok(&["init"], b"");
    let toml = format!(
        r#"
[services.spotify]
base_url = "http://{sp}/v1"
token_url = "http://{sp}/api/token"
credential = "spotify"

[services.hue]
base_url = "http://{hue_addr}"

[services.home_assistant]
base_url = "http://{ha_addr}"
credential = "ha_token"
{extra_toml}
"#
    );
    let file = home.root().join("maestra.toml");
    std::fs::write(&file, toml).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let oauth = json!({"access_token": SPOTIFY_INITIAL, "refresh_token": mock::SPOTIFY_REFRESH,
        "expires_at": spotify_expires_at, "client_id": mock::SPOTIFY_CLIENT_ID,
        "client_secret": mock::SPOTIFY_CLIENT_SECRET});
    home.ok(&["vault", "put", "spotify"], oauth.to_string().as_bytes());
    home.ok(&["vault", "put", "hue"], mock::HUE_USERNAME.as_bytes());
    home.ok(&["vault", "put", "ha_token"], mock::HA_TOKEN.as_bytes());
    if spotify_expires_at > now() {
        spotify.accept(SPOTIFY_INITIAL);
    }
    let server = Server::start(&home);
    Env {
        server,
        home,
        spotify,
        hue,
        ha,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A response as the client saw it: status, headers as text, body.
struct Seen {
    status: u16,
    headers: String,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(req: reqwest::RequestBuilder) -> Seen {
    seen(req.send().await.unwrap()).await
}

async fn seen(resp: reqwest::Response) -> Seen {
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap();
    Seen {
        status,
        headers,
        body,
    }
}

async fn get(server: &Server, path: &str) -> Seen {
    send(client().get(server.url(path))).await
}

/// Every secret the tests use: none may reach a client, a log line or a file in plain text.
fn canaries() -> Vec<String> {
    let mut c = vec![
        SPOTIFY_INITIAL.to_string(),
        mock::SPOTIFY_REFRESH.to_string(),
        mock::SPOTIFY_CLIENT_SECRET.to_string(),
        mock::HUE_USERNAME.to_string(),
        mock::HA_TOKEN.to_string(),
    ];
    c.extend((1..=5).map(mock::spotify_access));
    c
}

fn assert_no_canary(what: &str, hay: &str) {
    for c in canaries() {
        assert!(!hay.contains(&c), "{what} holds the secret {c}: {hay}");
    }
}

/// Stops the server, then greps its output and every file under its home for the canaries.
fn assert_nothing_leaked(env: &mut Env) {
    let output = env.server.stop();
    assert_no_canary("the server's output", &output);
    for (path, bytes) in all_file_bytes(&env.home.root()) {
        for c in canaries() {
            assert!(
                !contains(&bytes, &c),
                "{} holds the secret {c}",
                path.display()
            );
        }
    }
}

/// `GET /api/audit?QUERY`, retried briefly: entries reach the file through a queue.
async fn audit_query(server: &Server, query: &str, want: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    for _ in 0..50 {
        let r = get(server, &format!("/api/audit?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        entries = r.json()["entries"].as_array().unwrap().clone();
        if entries.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_arrive_upstream_and_never_reach_the_client() {
    let mut env = setup(&[], now() + 3600, "").await;
    let s = &env.server;

    // Spotify: the client's own credentials and cookies are replaced by the vault's token.
    let r = send(
        client()
            .get(s.url("/api/services/spotify/me/player?market=DE"))
            .header("authorization", "Bearer the-clients-own")
            .header("cookie", "session=client")
            .header("x-maestra-user", "jh"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["device"]["name"], "Kitchen");
    let up = env.spotify.api.requests();
    let last = up.last().unwrap();
    assert_eq!(last.path, "/v1/me/player");
    assert_eq!(last.query.as_deref(), Some("market=DE"));
    assert_eq!(
        last.headers["authorization"],
        format!("Bearer {SPOTIFY_INITIAL}").as_str()
    );
    assert!(last.headers.get("cookie").is_none());
    assert!(last.headers.get("x-maestra-user").is_none());
    assert_no_canary("a spotify answer", &format!("{}{}", r.headers, r.body));

    // An endpoint that echoes the token in its body, a header and a cookie: all scrubbed.
    let r = get(s, "/api/services/spotify/debug/echo").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("[REDACTED]"), "{}", r.body);
    assert!(!r.headers.contains("set-cookie"), "{}", r.headers);
    assert!(!r.headers.contains("x-echo-token"), "{}", r.headers);
    assert_no_canary("the echo answer", &format!("{}{}", r.headers, r.body));

    // Hue: the bridge username goes in the path; the body and its length go through.
    let r = send(
        client()
            .put(s.url("/api/services/hue/lights/1/state"))
            .json(&json!({"on": true, "bri": 200})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["success"]["/lights/1/state"]["bri"], 200);
    let up = env.hue.requests();
    let last = up.last().unwrap();
    assert_eq!(
        last.path,
        format!("/api/{}/lights/1/state", mock::HUE_USERNAME)
    );
    assert_eq!(last.method, "PUT");
    assert_eq!(last.headers["content-length"], "21");
    assert!(last.headers.get("authorization").is_none());
    // The bridge lists its users by name; the client gets the list without ours.
    let r = get(s, "/api/services/hue/config").await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["whitelist"]["[REDACTED]"].is_object(),
        "{}",
        r.body
    );
    assert_no_canary("a hue answer", &format!("{}{}", r.headers, r.body));

    // Home Assistant: the long-lived token as a bearer; its own error bodies pass through.
    let r = get(s, "/api/services/home_assistant/api/states").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["entity_id"], "light.kitchen");
    let up = env.ha.requests();
    assert_eq!(
        up.last().unwrap().headers["authorization"],
        format!("Bearer {}", mock::HA_TOKEN).as_str()
    );
    let r = get(s, "/api/services/home_assistant/api/error").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["message"],
        "Service light.turn_on failed: bulb offline"
    );

    // Bodies stream both ways, within the limit.
    let big = vec![b'x'; 600 * 1024];
    let sent = client()
        .post(s.url("/api/services/home_assistant/api/echo"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    let r = match sent {
        Ok(resp) => seen(resp).await,
        Err(e) => panic!(
            "the upload was cut off ({e}); the server said:\n{}",
            s.stderr.lock().unwrap()
        ),
    };
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["bytes"], 600 * 1024);
    let start = std::time::Instant::now();
    let mut resp = client()
        .get(s.url("/api/services/home_assistant/api/stream"))
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"event 0\n");
    let first_at = start.elapsed();
    let mut all = first.to_vec();
    while let Some(c) = resp.chunk().await.unwrap() {
        all.extend_from_slice(&c);
    }
    // The mock sends an event every 300 ms: streamed, the first arrives well before the end.
    assert!(
        start.elapsed() - first_at > Duration::from_millis(400),
        "not streamed"
    );
    assert_eq!(all, b"event 0\nevent 1\nevent 2\n");

    // Over the limit: 413 JSON, declared or streamed.
    let r = send(
        client()
            .post(s.url("/api/services/home_assistant/api/echo"))
            .header("content-type", "application/json")
            .body(vec![b'x'; 2 * 1024 * 1024]),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let chunks =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024])));
    let r = send(
        client()
            .post(s.url("/api/services/home_assistant/api/echo"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);

    // Unknown services and unconfigured built-ins are clear errors.
    let r = get(s, "/api/services/nope/x").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = get(s, "/api/services/sonos/zones").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("base_url"), "{}", r.body);

    // Audit: the right category, the action as a template, no query values, no secret.
    let entries = audit_query(s, "user=jh", 1).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["service"], "spotify");
    assert_eq!(entries[0]["category"], "media");
    assert_eq!(entries[0]["action"], "GET /me/player");
    assert_eq!(entries[0]["result"], "success");
    assert_eq!(entries[0]["details"]["status"], 200);
    assert!(entries[0]["details"]["latency_ms"].is_u64());
    let hue = audit_query(s, "service=hue", 2).await;
    assert_eq!(hue[1]["action"], "PUT /lights/{id}/state");
    assert!(hue.iter().all(|e| e["category"] == "smarthome"));
    let ha = audit_query(s, "service=home_assistant", 5).await;
    assert!(ha.iter().all(|e| e["category"] == "smarthome"));
    assert!(
        ha.iter()
            .any(|e| e["action"] == "GET /api/error" && e["result"] == "error")
    );
    assert_nothing_leaked(&mut env);
    let text = std::fs::read_to_string(env.home.root().join("logs/audit.log")).unwrap();
    assert!(!text.contains("market") && !text.contains("DE\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_for_50_concurrent_calls() {
    let mut env = setup(&[], 0, "").await;
    let url = env.server.url("/api/services/spotify/me/player");
    let calls = (0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { send(client().get(url)).await })
    });
    for call in futures_util::future::join_all(calls).await {
        let r = call.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_no_canary("an answer", &format!("{}{}", r.headers, r.body));
    }
    assert_eq!(env.spotify.token.requests().len(), 1, "one refresh");
    let first = mock::spotify_access(1);
    assert!(
        env.spotify
            .api
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {first}").as_str())
    );

    // Revoked upstream: 20 concurrent calls get 401, share one refresh, and retry once.
    env.spotify.revoke();
    let calls = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { send(client().get(url)).await })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.unwrap().status, 200);
    }
    assert_eq!(
        env.spotify
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // A failed refresh is a clear 502 and an audit entry, and leaks nothing.
    env.spotify.revoke();
    env.spotify
        .refuse_refresh
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = send(client().get(&url).header("x-maestra-user", "failer")).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "upstream_error");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("refreshing the OAuth2 token failed"), "{msg}");
    assert!(msg.contains("invalid_grant"), "{msg}");
    assert_no_canary("the 502", &r.body);

    let entries = audit_query(&env.server, "service=spotify&limit=1000", 71).await;
    let refreshed = entries
        .iter()
        .filter(|e| e["details"]["token_refreshed"] == true)
        .count();
    assert_eq!(refreshed, 2, "{entries:?}");
    let failed = audit_query(&env.server, "user=failer", 1).await;
    assert_eq!(failed[0]["result"], "error");
    assert_eq!(failed[0]["details"]["stage"], "credential");
    assert_eq!(failed[0]["category"], "media");

    // The refreshed credential was written back encrypted, refresh token and client kept.
    assert_nothing_leaked(&mut env);
    let stored: Value =
        serde_json::from_str(&env.home.ok(&["vault", "get", "spotify", "--reveal"], b"")).unwrap();
    assert_eq!(stored["access_token"], mock::spotify_access(2));
    assert_eq!(stored["refresh_token"], mock::SPOTIFY_REFRESH);
    assert_eq!(stored["client_secret"], mock::SPOTIFY_CLIENT_SECRET);
    assert!(stored["expires_at"].as_i64().unwrap() > now() + 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_blocks_spotify_and_lets_hue_and_home_assistant_through() {
    let extra = r#"
[services.weather_cloud]
base_url = "http://127.0.0.1:9"
category = "smarthome"
kind = "cloud"

[services.thermostat]
base_url = "http://93.184.216.34"
category = "smarthome"
"#;
    let mut env = setup(&[("MAESTRA_LOCAL_ONLY", "true")], 0, extra).await;
    let s = &env.server;
    let r = get(s, "/api/services/spotify/me/player").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let err = &r.json()["error"];
    assert_eq!(err["code"], "local_only_mode");
    assert_eq!(err["service"], "spotify");
    assert!(
        err["suggested_alternatives"]
            .as_array()
            .unwrap()
            .contains(&json!("sonos")),
        "{err}"
    );
    assert!(env.spotify.api.requests().is_empty());
    assert!(env.spotify.token.requests().is_empty(), "no refresh either");

    for (path, code) in [
        ("/api/services/weather_cloud/now", "local_only_mode"),
        ("/api/services/thermostat/now", "local_only_mode"),
    ] {
        let r = get(s, path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], code);
    }

    let r = get(s, "/api/services/hue/lights").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(s, "/api/services/home_assistant/api/states").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let blocks = audit_query(s, "category=local_only_block", 3).await;
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert!(blocks.iter().all(|e| e["result"] == "blocked"));
    assert!(blocks.iter().any(|e| e["service"] == "spotify"));
    let metrics = get(s, "/metrics").await.body;
    assert!(metrics.contains("spotify"), "{metrics}");
    assert_nothing_leaked(&mut env);
}

/// A request line sent as written: an HTTP client would normalise `..` away before sending.
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    raw(addr, "GET", target).await
}

async fn raw(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escape_attempts_are_refused() {
    let mut env = setup(&[], now() + 3600, "").await;
    let attacks = [
        "../../../etc/passwd",
        "lights/../../../config",
        "..%2f..%2fconfig",
        "lights%2F..%2F..%2Fconfig",
        "%2e%2e/%2e%2e/config",
        ".%2E/config",
        "a%5c..%5cconfig",
        "a%252f..%252fconfig",
        "http://evil.example/steal",
        "http:%2f%2fevil.example",
        "/evil.example/steal",
        "x@evil.example/steal",
        "%40evil.example",
        "lights%00",
        "lights%0d%0aX-Injected:%201",
        "lights/./1",
        "a%c0%afb",
        "a\\..\\config",
        "..\\..\\config",
        // Issue 14: what servlet containers, Windows or Unicode-normalising servers read as
        // `..` (matrix parameters, trailing spaces and dots, compatibility characters).
        "..;/..;/config",
        "lights/..;x/..;x/config",
        "..%3b/config",
        "..%20/config",
        ".../config",
        ";x/config",
        "%e2%80%a5/config",
        "%ef%bc%8e%ef%bc%8e/config",
    ];
    for attack in attacks {
        let (status, body) = raw_get(env.server.addr, &format!("/api/services/hue/{attack}")).await;
        assert_eq!(status, 400, "{attack}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "bad_request", "{attack}: {body}");
        assert_no_canary("a refusal", &body);
    }
    // Nor may the service name carry a path.
    for target in ["/api/services/../admin/x", "/api/services/h%2fue/x"] {
        let (status, _) = raw_get(env.server.addr, target).await;
        assert!(status == 400 || status == 404, "{target}: {status}");
    }
    // Only the methods REST services use are forwarded.
    for method in ["TRACE", "CONNECT", "FOOBAR"] {
        let (status, body) = raw(env.server.addr, method, "/api/services/hue/lights").await;
        assert_eq!(status, 405, "{method}: {body}");
    }
    assert!(env.hue.requests().is_empty(), "{:?}", env.hue.requests());

    let refused = audit_query(&env.server, "service=hue", attacks.len()).await;
    assert_eq!(refused.len(), attacks.len());
    assert!(
        refused
            .iter()
            .all(|e| e["result"] == "failed" && e["details"]["stage"] == "path")
    );
    assert!(
        refused
            .iter()
            .all(|e| !e["action"].as_str().unwrap().contains("evil"))
    );
    assert_nothing_leaked(&mut env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tools_report_validated_events() {
    let mut env = setup(&[], now() + 3600, "").await;
    let s = &env.server;
    let post = |body: Value| send(client().post(s.url("/api/audit/events")).json(&body));

    let ok = json!({"category": "creative", "service": "ffmpeg", "action": "transcode",
        "result": "success", "user_id": "jh", "surface_id": "cli",
        "details": {"input_ext": "mov", "output_ext": "mp4", "seconds": 12.5,
                    "note": "used key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX", "flags": ["-y", "-crf"]}});
    let r = post(ok.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recorded"], true);

    let long = "a".repeat(300);
    let nested = json!({"a": {"b": 1}});
    let many: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
    let mut bad = Vec::new();
    for (field, value) in [
        ("category", json!("music")),
        ("category", json!("auth")),
        ("category", json!("local_only_block")),
        ("service", json!("ff mpeg")),
        ("service", json!("")),
        ("service", json!("../x")),
        ("action", json!(long)),
        ("action", json!("transcode the file secret.mov")),
        ("result", json!("ok")),
        ("user_id", json!("jh\nforged")),
        ("details", nested),
        ("details", json!({"a": [[1]]})),
        ("details", json!({"s": long})),
        ("details", Value::Object(many)),
        ("details", json!({"reported": false})),
        ("details", json!({"bad key": 1})),
        ("details", json!([1, 2])),
        ("extra", json!(1)),
    ] {
        let mut body = ok.clone();
        body[field] = value;
        bad.push(body);
    }
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("action");
    bad.push(missing);
    for body in bad {
        let r = post(body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.body);
    }
    let r = send(
        client()
            .post(s.url("/api/audit/events"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = send(
        client()
            .post(s.url("/api/audit/events"))
            .header("content-type", "text/plain")
            .body(ok.to_string()),
    )
    .await;
    assert_eq!(r.status, 415);

    let entries = audit_query(s, "service=ffmpeg", 1).await;
    assert_eq!(entries.len(), 1, "only the valid one");
    let e = &entries[0];
    assert_eq!(e["category"], "creative");
    assert_eq!(e["action"], "transcode");
    assert_eq!(e["user_id"], "jh");
    assert_eq!(e["surface_id"], "cli");
    assert_eq!(e["details"]["reported"], true);
    assert_eq!(e["details"]["flags"], json!(["-y", "-crf"]));
    let note = e["details"]["note"].as_str().unwrap();
    assert!(note.contains("[REDACTED"), "{note}");
    assert!(e["ip_address"].as_str().unwrap().starts_with("127."));
    env.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_queried_with_filters_newest_first() {
    let mut env = setup(&[], now() + 3600, "").await;
    let s = &env.server;
    for (user, service, category) in [
        ("ana", "ffmpeg", "creative"),
        ("ben", "ffmpeg", "creative"),
        ("ana", "pandoc", "creative"),
        ("ana", "jellyfin", "media"),
    ] {
        let body = json!({"category": category, "service": service, "action": "run",
            "result": "success", "user_id": user});
        let r = send(client().post(s.url("/api/audit/events")).json(&body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = send(
        client()
            .get(s.url("/api/services/home_assistant/api/states"))
            .header("x-maestra-user", "ana"),
    )
    .await;
    assert_eq!(r.status, 200);

    let ana = audit_query(s, "user=ana", 4).await;
    assert_eq!(ana.len(), 4);
    let seqs: Vec<u64> = ana.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(ana[0]["service"], "home_assistant");
    assert_eq!(audit_query(s, "service=ffmpeg", 2).await.len(), 2);
    assert_eq!(audit_query(s, "category=creative", 3).await.len(), 3);
    assert_eq!(audit_query(s, "category=media&user=ana", 1).await.len(), 1);
    let one = audit_query(s, "user=ana&limit=1", 1).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["seq"], ana[0]["seq"]);
    assert!(audit_query(s, "since=2999-01-01", 0).await.is_empty());
    assert!(
        audit_query(s, "until=2000-01-01T00:00:00Z", 0)
            .await
            .is_empty()
    );
    let today = audit_query(s, "since=2000-01-01&until=2999-01-01&user=ben", 1).await;
    assert_eq!(today.len(), 1);

    for bad in [
        "limit=0",
        "limit=5000",
        "limit=x",
        "category=music",
        "since=yesterday",
        "since=2999-01-01&until=2000-01-01",
        "colour=red",
    ] {
        let r = get(s, &format!("/api/audit?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    env.server.stop();
}

/// Issue 14: writes through the proxy carry a JSON content type (SPEC §2.6), so a web page's
/// simple cross-site request (a form or `text/plain` post, or a bodiless POST) cannot be
/// turned into an authenticated call by the injected credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_json_content_type() {
    let mut env = setup(&[], now() + 3600, "").await;
    let s = &env.server;
    let url = s.url("/api/services/home_assistant/api/echo");
    let refused = [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("text/json"),
        Some("application/xjson"),
        Some("json"),
        None,
    ];
    let mut count = 0;
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for ct in refused {
            let mut req = client().request(m.clone(), &url).body("{\"a\":1}");
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let r = send(req).await;
            assert_eq!(r.status, 415, "{method} {ct:?}: {}", r.body);
            assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
            let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(msg.contains("Content-Type"), "{msg}");
            count += 1;
        }
    }
    // A POST without a body is a simple request too.
    let r = send(client().post(&url)).await;
    assert_eq!(r.status, 415, "{}", r.body);
    count += 1;
    assert!(env.ha.requests().is_empty(), "{:?}", env.ha.requests());

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let r = send(
                client()
                    .request(m.clone(), &url)
                    .header("content-type", ct)
                    .body("{\"a\":1}"),
            )
            .await;
            assert_eq!(r.status, 200, "{method} {ct}: {}", r.body);
        }
    }
    // Reads and a DELETE without a body need no type.
    assert_eq!(send(client().delete(&url)).await.status, 200);
    assert_eq!(send(client().get(&url)).await.status, 200);

    let entries = audit_query(s, "service=home_assistant", count).await;
    let failed: Vec<_> = entries
        .iter()
        .filter(|e| e["details"]["stage"] == "request")
        .collect();
    assert_eq!(failed.len(), count, "{entries:?}");
    assert!(
        failed
            .iter()
            .all(|e| e["result"] == "failed" && e["details"]["error"] == "unsupported_media_type")
    );
    assert_nothing_leaked(&mut env);
}

/// Issue 14: a credential never follows a redirect, whichever way it is injected (bearer, a
/// service's own header, a path segment, the OAuth2 refresh with its client secret); the
/// proxy relays the 3xx (without a `Location` that names the credential) or, for a token
/// refresh, fails clearly. Headers that quote the credential never reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_and_echoed_headers_are_dropped() {
    let (elsewhere, received) = mock::recorder().await;
    let redirector = common::mock::start_redirecting(elsewhere, 307).await;
    let extra = format!(
        r#"
[services.bear]
base_url = "http://{redirector}/b"
category = "smarthome"
credential = "ha_token"

[services.jelly]
base_url = "http://{redirector}/j"
category = "media"
auth = "header:X-Emby-Token"
credential = "ha_token"

[services.bridge]
base_url = "http://{redirector}"
category = "smarthome"
auth = "path_prefix:/api"
credential = "hue"

[services.tunes]
base_url = "http://{redirector}/v1"
token_url = "http://{redirector}/api/token"
auth = "oauth2"
category = "media"
credential = "spotify"
"#
    );
    // The Spotify credential is expired, so `tunes` must refresh it first.
    let mut env = setup(&[], now() - 10, &extra).await;
    let s = &env.server;
    // This test's own client must not follow the relayed redirects either.
    let client = || {
        http::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let get = |s: &Server, path: &str| send(client().get(s.url(path)));
    for service in ["bear", "jelly", "bridge"] {
        for method in ["GET", "PUT"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = send(
                client()
                    .request(m, s.url(&format!("/api/services/{service}/lights/1")))
                    .header("content-type", "application/json")
                    .body("{\"on\":true}"),
            )
            .await;
            assert_eq!(r.status, 307, "{service} {method}: {}", r.body);
            assert_no_canary(service, &format!("{}{}", r.headers, r.body));
        }
    }
    // The bridge's redirect names its username in the `Location`: that header is withheld.
    let r = get(s, "/api/services/bridge/config").await;
    assert!(!r.headers.contains("location"), "{}", r.headers);
    let r = get(s, "/api/services/tunes/me/player").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("307"), "{}", r.body);
    assert_no_canary("a failed refresh", &r.body);
    assert!(
        received.requests().is_empty(),
        "the redirect target received {:?}",
        received.requests()
    );

    // Home Assistant answering 401 with its token in every header and in the body.
    let r = get(s, "/api/services/home_assistant/api/echo-headers").await;
    assert_eq!(r.status, 401);
    for h in ["www-authenticate", "location", "set-cookie", "x-debug-auth"] {
        assert!(!r.headers.contains(h), "{h}: {}", r.headers);
    }
    assert!(r.body.contains("[REDACTED]"), "{}", r.body);
    assert_no_canary("an echoing 401", &format!("{}{}", r.headers, r.body));
    // A compressed answer could hide the token from the scrub: it is refused, not relayed.
    let r = get(s, "/api/services/home_assistant/api/gzip").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("compressed"), "{}", r.body);
    assert_nothing_leaked(&mut env);
}

/// A service that takes another body type declares it, and only that type is let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_content_type_is_let_through_and_no_other() {
    let mut env = setup(
        &[],
        now() + 3600,
        "content_types = [\"application/x-www-form-urlencoded\"]",
    )
    .await;
    let url = env.server.url("/api/services/home_assistant/api/echo");
    let form = send(
        client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=1"),
    )
    .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let json = send(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(json.status, 200, "{}", json.body);
    let text = send(
        client()
            .post(&url)
            .header("content-type", "text/plain")
            .body("a"),
    )
    .await;
    assert_eq!(text.status, 415, "{}", text.body);
    env.server.stop();
}

/// A body trickled to a service is cut off by the edge's minimum rate: the client gets the
/// same JSON 408 as on every other route, not a 502 blamed on the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_to_a_service_is_a_408_not_an_upstream_failure() {
    let env = setup(&[], now() + 3600, "").await;
    let mut s = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let head = "POST /api/services/home_assistant/api/services/light/turn_on HTTP/1.1\r\n\
                host: 127.0.0.1\r\ncontent-type: application/json\r\n\
                content-length: 2000\r\n\r\n{";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        assert!(std::time::Instant::now() < deadline, "no answer in 40 s");
        match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&out).contains("}}") {
                    break;
                }
            }
            // One more byte every 2 s: far below the minimum rate.
            Err(_) => {
                if s.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_body_timeout"), "{text}");
}
