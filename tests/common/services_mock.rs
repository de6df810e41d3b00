//! Mock personal services on 127.0.0.1 port 0, each recording what it received: Spotify (an
//! OAuth2 token endpoint and a Web API under `/v1`), a Hue bridge (`/api/{username}/...`) and
//! Home Assistant (`/api/...` with a long-lived bearer token). Each answers only with the
//! right credential, and some deliberately echo it, so tests can see Maestra scrub it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

pub const SPOTIFY_CLIENT_ID: &str = "spotify-client-id";
pub const SPOTIFY_CLIENT_SECRET: &str = "CANARY-spotify-client-secret-77";
pub const SPOTIFY_REFRESH: &str = "CANARY-spotify-refresh-token-55";
pub const HUE_USERNAME: &str = "CANARYhueUser0123456789abcdefABCDEF";
pub const HA_TOKEN: &str = "CANARY-ha-long-lived-token-0123456789";

/// One request a mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// What Home Assistant's `api/hold` waits for before it answers.
    pub release: Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        self.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: uri.path().to_string(),
            query: uri.query().map(String::from),
            headers: headers.clone(),
            body: body.clone(),
        });
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(String::from)
}

/// A server that records every request and answers 200: what a redirect's target would
/// receive, which must stay nothing.
pub async fn recorder() -> (SocketAddr, Recorder) {
    let r = Recorder::default();
    let app = Router::new()
        .fallback(any(
            |State(r): State<Recorder>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                r.record(&method, &uri, &headers, &body);
                "you should not be here"
            },
        ))
        .with_state(r.clone());
    (serve(app).await, r)
}

// --- Spotify --------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct Spotify {
    pub api: Recorder,
    pub token: Recorder,
    /// Refresh grants answered.
    pub refreshes: Arc<AtomicUsize>,
    /// The access token the API accepts now (`None`: none until a refresh).
    pub valid: Arc<Mutex<Option<String>>>,
    /// Makes the token endpoint refuse (`invalid_grant`).
    pub refuse_refresh: Arc<AtomicBool>,
}

impl Spotify {
    pub fn accept(&self, token: &str) {
        *self.valid.lock().unwrap() = Some(token.to_string());
    }

    /// Invalidates the current token server-side, as a revocation would.
    pub fn revoke(&self) {
        *self.valid.lock().unwrap() = None;
    }

    pub fn current(&self) -> Option<String> {
        self.valid.lock().unwrap().clone()
    }
}

/// The access token the `n`th refresh hands out.
pub fn spotify_access(n: usize) -> String {
    format!("CANARY-spotify-access-{n:04}-abcdefghijklmnop")
}

pub async fn spotify() -> (SocketAddr, Spotify) {
    let s = Spotify::default();
    let app = Router::new()
        .route("/api/token", post(spotify_token))
        .route("/v1/{*rest}", any(spotify_api))
        .with_state(s.clone());
    (serve(app).await, s)
}

async fn spotify_token(
    State(s): State<Spotify>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.token.record(&method, &uri, &headers, &body);
    // Widen the window in which concurrent requests would refresh again if not single-flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{SPOTIFY_CLIENT_ID}:{SPOTIFY_CLIENT_SECRET}"))
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&basic);
    if s.refuse_refresh.load(Ordering::SeqCst)
        || !authorized
        || !has("grant_type", "refresh_token")
        || !has("refresh_token", SPOTIFY_REFRESH)
    {
        let body = json!({"error": "invalid_grant",
            "error_description": format!("Refresh token revoked {SPOTIFY_REFRESH}")});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let n = s.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    let token = spotify_access(n);
    s.accept(&token);
    axum::Json(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
        "scope": "user-read-playback-state"}),
    )
    .into_response()
}

async fn spotify_api(
    State(s): State<Spotify>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.api.record(&method, &uri, &headers, &body);
    let presented = bearer(&headers);
    if presented.is_none() || presented != s.current() {
        let body = json!({"error": {"status": 401, "message": "The access token expired"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let token = presented.unwrap_or_default();
    match rest.as_str() {
        // A careless endpoint that hands the caller's token back, in the body and headers.
        "debug/echo" => Response::builder()
            .header("x-echo-token", format!("Bearer {token}"))
            .header("set-cookie", format!("sp_session={token}; HttpOnly"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"you_sent": format!("Bearer {token}"), "again": token}).to_string(),
            ))
            .unwrap(),
        _ => axum::Json(json!({"is_playing": true, "path": uri.path(),
            "device": {"name": "Kitchen", "volume_percent": 40}}))
        .into_response(),
    }
}

// --- Hue ------------------------------------------------------------------------------------

pub async fn hue() -> (SocketAddr, Recorder) {
    let r = Recorder::default();
    let app = Router::new()
        .route("/api/{user}/{*rest}", any(hue_api))
        .fallback(any(hue_other))
        .with_state(r.clone());
    (serve(app).await, r)
}

async fn hue_api(
    State(r): State<Recorder>,
    Path((user, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.record(&method, &uri, &headers, &body);
    if user != HUE_USERNAME {
        return axum::Json(json!([{"error": {"type": 1, "address": "/",
            "description": "unauthorized user"}}]))
        .into_response();
    }
    match (method, rest.as_str()) {
        // The bridge lists its users by name: the injected username comes back in the body.
        (Method::GET, "config") => axum::Json(json!({"name": "Hue Bridge",
            "whitelist": {HUE_USERNAME: {"name": "maestra#server"}}}))
        .into_response(),
        (Method::PUT, _) => {
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            axum::Json(json!([{"success": {format!("/{rest}"): sent}}])).into_response()
        }
        _ => axum::Json(json!({"1": {"name": "Desk", "state": {"on": false}}})).into_response(),
    }
}

async fn hue_other(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.record(&method, &uri, &headers, &body);
    StatusCode::NOT_FOUND
}

// --- Home Assistant -------------------------------------------------------------------------

pub async fn home_assistant() -> (SocketAddr, Recorder) {
    let r = Recorder::default();
    let app = Router::new()
        .route("/api/{*rest}", any(ha_api))
        .with_state(r.clone());
    (serve(app).await, r)
}

async fn ha_api(
    State(r): State<Recorder>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.record(&method, &uri, &headers, &body);
    if bearer(&headers).as_deref() != Some(HA_TOKEN) {
        return (StatusCode::UNAUTHORIZED, "401: Unauthorized").into_response();
    }
    match rest.as_str() {
        // A careless error that quotes the token in every header it can, and in the body.
        "echo-headers" => {
            let pct: String = url::form_urlencoded::byte_serialize(HA_TOKEN.as_bytes()).collect();
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    "www-authenticate",
                    format!("Bearer realm=\"ha\", error=\"invalid_token\", token=\"{HA_TOKEN}\""),
                )
                .header("location", format!("http://elsewhere.example/login?t={pct}"))
                .header("set-cookie", format!("ha={HA_TOKEN}"))
                .header("x-debug-auth", format!("bearer {HA_TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"message": format!("token {HA_TOKEN} rejected"), "retry": format!("/auth?t={pct}")})
                        .to_string(),
                ))
                .unwrap()
        }
        // A body compressed although nobody asked for it, quoting the token inside.
        "gzip" => {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(format!("{{\"token\":\"{HA_TOKEN}\"}}").as_bytes())
                .unwrap();
            Response::builder()
                .header("content-encoding", "gzip")
                .header("content-type", "application/json")
                .body(Body::from(z.finish().unwrap()))
                .unwrap()
        }
        // An answer held until the test releases it: the call is in flight meanwhile.
        "hold" => {
            r.release.notified().await;
            axum::Json(json!({"held": true})).into_response()
        }
        // The service's own error body passes through as it is.
        "error" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"message": "Service light.turn_on failed: bulb offline"})),
        )
            .into_response(),
        "echo" => axum::Json(json!({"bytes": body.len(),
            "content_length": headers.get("content-length").and_then(|v| v.to_str().ok())}))
        .into_response(),
        // A slow stream of events, to see the answer arrive before it is complete.
        "stream" => {
            let parts = futures_util::stream::unfold(0u32, |i| async move {
                if i == 3 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(format!("event {i}\n"))),
                    i + 1,
                ))
            });
            Body::from_stream(parts).into_response()
        }
        _ => axum::Json(json!([{"entity_id": "light.kitchen", "state": "on"}])).into_response(),
    }
}
