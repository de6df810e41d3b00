//! The egress client in local-only mode, against a real server on 127.0.0.1. Public names are
//! answered by a resolver override, so no test sends traffic off the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{any, get};
use maestra::Error;
use maestra::config::GuardConfig;
use maestra::egress::{Egress, EgressOptions};
use maestra::privsec::guard::Catalog;

async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "hello from the lan" }))
        .route(
            "/to-public-ip",
            get(|| async { Redirect::temporary("http://8.8.8.8/") }),
        )
        .route(
            "/to-public-name",
            get(|| async { Redirect::temporary("http://public.example/") }),
        )
        .route("/redirect/{code}/{*rest}", any(redirect));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `/redirect/{code}/...?to=URL` answers `code` with `Location: URL`.
async fn redirect(
    Path((code, _)): Path<(u16, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("location", q["to"].clone())],
    )
        .into_response()
}

/// What a redirect's target received: it must stay empty.
type Received = Arc<Mutex<Vec<(Uri, HeaderMap)>>>;

/// Another origin (another port), recording every request that reaches it.
async fn elsewhere() -> (SocketAddr, Received) {
    let seen = Received::default();
    let rec = seen.clone();
    let app = Router::new().fallback(any(move |uri: Uri, headers: HeaderMap| {
        let rec = rec.clone();
        async move {
            rec.lock().unwrap().push((uri, headers));
            "you should not be here"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn egress(local_only: bool) -> Egress {
    let public: IpAddr = "93.184.216.34".parse().unwrap();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let overrides = HashMap::from([
        ("public.example".to_string(), vec![public]),
        ("bridge.lan".to_string(), vec![local]),
        ("rebind.example".to_string(), vec![local, public]),
    ]);
    Egress::new(
        Catalog::new(&GuardConfig::default()),
        EgressOptions {
            local_only,
            resolve_overrides: overrides,
            ..EgressOptions::default()
        },
    )
    .unwrap()
}

async fn get_url(e: &Egress, service: &str, url: &str) -> Result<String, Error> {
    let req = e.request(reqwest::Method::GET, url.parse().unwrap());
    let resp = e.send(service, req).await?;
    Ok(resp.text().await.unwrap())
}

fn blocked(r: Result<String, Error>) -> maestra::privsec::guard::LocalOnlyBlock {
    match r {
        Err(Error::LocalOnly(b)) => *b,
        other => panic!("expected a local-only block, got {other:?}"),
    }
}

#[tokio::test]
async fn reaches_a_server_on_loopback_by_ip_and_by_local_name() {
    let addr = upstream().await;
    let e = egress(true);
    let body = get_url(&e, "hue", &format!("http://{addr}/ok"))
        .await
        .unwrap();
    assert_eq!(body, "hello from the lan");
    let body = get_url(&e, "hue", &format!("http://bridge.lan:{}/ok", addr.port()))
        .await
        .unwrap();
    assert_eq!(body, "hello from the lan");
    // An unknown service is fine when its address is local.
    get_url(&e, "my_nas", &format!("http://{addr}/ok"))
        .await
        .unwrap();
}

#[tokio::test]
async fn refuses_a_name_resolving_to_a_public_address() {
    let e = egress(true);
    let b = blocked(get_url(&e, "home_assistant", "http://public.example/api").await);
    assert_eq!(b.service, "home_assistant");
    assert!(b.reason.contains("93.184.216.34"), "{}", b.reason);
    assert!(b.suggested_alternatives.contains(&"hue".to_string()));
}

#[tokio::test]
async fn refuses_a_mixed_answer_as_rebinding() {
    let e = egress(true);
    blocked(get_url(&e, "my_nas", "http://rebind.example/").await);
}

#[tokio::test]
async fn refuses_ip_literals_v4_and_v6() {
    let e = egress(true);
    blocked(get_url(&e, "my_nas", "http://8.8.8.8/").await);
    blocked(get_url(&e, "my_nas", "http://[2001:4860:4860::8888]/").await);
    blocked(get_url(&e, "my_nas", "http://[::ffff:8.8.8.8]/").await);
}

#[tokio::test]
async fn refuses_known_cloud_services_by_name() {
    let addr = upstream().await;
    let e = egress(true);
    // Even pointed at a local address, the cloud service is refused by name.
    let b = blocked(get_url(&e, "spotify", &format!("http://{addr}/ok")).await);
    assert!(b.suggested_alternatives.contains(&"sonos".to_string()));
}

#[tokio::test]
async fn a_redirect_to_a_public_address_is_not_followed_in_local_only_mode() {
    let addr = upstream().await;
    let e = egress(true);
    for path in ["to-public-ip", "to-public-name"] {
        let err = get_url(&e, "hue", &format!("http://{addr}/{path}"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "upstream_error", "{path}: {err}");
        assert!(err.to_string().contains("307"), "{err}");
        assert!(!err.to_string().contains("public"), "no Location: {err}");
    }
}

const CANARY: &str = "CANARYxRedirect0123456789";

/// Issue 14: a credential must never follow a redirect to another origin. Each way Maestra
/// injects one (a bearer token, `x-api-key`, a service's own header, a credential in the path
/// as Hue's username, an OAuth2 refresh form with the client secret in HTTP Basic) is sent to
/// an upstream answering every redirect status; the other origin must receive nothing.
#[tokio::test]
async fn no_redirect_is_followed_whatever_carries_the_credential() {
    let addr = upstream().await;
    let (other, received) = elsewhere().await;
    for local_only in [false, true] {
        let e = egress(local_only);
        for code in [301u16, 302, 303, 307, 308] {
            let to = format!("http://{other}/api/{CANARY}/lights");
            let base = format!("http://{addr}/redirect/{code}");
            let styles: Vec<(&str, reqwest::RequestBuilder)> = vec![
                (
                    "bearer",
                    e.request(
                        reqwest::Method::POST,
                        format!("{base}/v1/chat/completions?to={to}")
                            .parse()
                            .unwrap(),
                    )
                    .bearer_auth(CANARY)
                    .body("{\"messages\":[]}"),
                ),
                (
                    "x-api-key",
                    e.request(
                        reqwest::Method::POST,
                        format!("{base}/v1/messages?to={to}").parse().unwrap(),
                    )
                    .header("x-api-key", CANARY)
                    .body("{\"messages\":[]}"),
                ),
                (
                    "header:NAME",
                    e.request(
                        reqwest::Method::PUT,
                        format!("{base}/x?to={to}").parse().unwrap(),
                    )
                    .header("x-emby-token", CANARY),
                ),
                (
                    "path",
                    e.request(
                        reqwest::Method::GET,
                        format!("{base}/api/{CANARY}/lights?to={to}")
                            .parse()
                            .unwrap(),
                    ),
                ),
                (
                    "oauth refresh",
                    e.request(
                        reqwest::Method::POST,
                        format!("{base}/api/token?to={to}").parse().unwrap(),
                    )
                    .basic_auth("client-id", Some(CANARY))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", CANARY)]),
                ),
            ];
            for (style, req) in styles {
                let cloned = req.try_clone().unwrap();
                let err = e.send("my_nas", req).await.unwrap_err();
                assert_eq!(err.status(), 502, "{style} {code}: {err}");
                assert!(err.to_string().contains("redirect"), "{err}");
                assert!(!err.to_string().contains(CANARY), "{err}");
                // The services proxy and the token refresh get the 3xx back, still not followed.
                let resp = e.send_relaying_redirects("my_nas", cloned).await.unwrap();
                assert_eq!(resp.status().as_u16(), code, "{style}");
            }
        }
    }
    assert!(
        received.lock().unwrap().is_empty(),
        "{:?}",
        received.lock().unwrap()
    );
}

#[tokio::test]
async fn local_only_can_be_switched_on_at_runtime() {
    let addr = upstream().await;
    let e = egress(false);
    get_url(&e, "spotify", &format!("http://{addr}/ok"))
        .await
        .unwrap();
    e.set_local_only(true);
    blocked(get_url(&e, "spotify", &format!("http://{addr}/ok")).await);
}

#[tokio::test]
async fn the_block_becomes_a_403_body() {
    let e = egress(true);
    let err = get_url(&e, "spotify", "http://public.example/")
        .await
        .unwrap_err();
    assert_eq!(err.status(), 403);
    let body = err.body();
    assert_eq!(body["error"]["code"], "local_only_mode");
    assert_eq!(body["error"]["service"], "spotify");
    assert!(body["error"]["reason"].is_string());
    assert!(body["error"]["suggested_alternatives"].is_array());
}
