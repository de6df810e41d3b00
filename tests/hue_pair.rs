//! `maestra services pair hue` (SPEC §2.7, issue 28) against a mock Hue bridge on 127.0.0.1
//! that answers as the bridge's v1 API does: "link button not pressed" (error 101) until its
//! button is pressed, then a username. The username lands in the vault, is never printed, and
//! the services proxy then reaches the bridge's lights with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use common::Home;
use common::server::Server;
use serde_json::{Value, json};

const USERNAME: &str = "1028d66426293e821ecfd9ef1a0731df";

/// The bridge: `presses_after` requests to `POST /api` answer 101 before the button counts as
/// pressed (`usize::MAX`: never).
#[derive(Clone)]
struct Bridge {
    asked: Arc<AtomicUsize>,
    presses_after: usize,
    devicetypes: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn create_user(State(b): State<Bridge>, Json(body): Json<Value>) -> Json<Value> {
    b.devicetypes
        .lock()
        .unwrap()
        .push(body["devicetype"].as_str().unwrap_or_default().to_string());
    if b.asked.fetch_add(1, Ordering::SeqCst) < b.presses_after {
        Json(
            json!([{"error": {"type": 101, "address": "", "description": "link button not pressed"}}]),
        )
    } else {
        Json(json!([{"success": {"username": USERNAME}}]))
    }
}

async fn lights(Path(user): Path<String>) -> Json<Value> {
    if user == USERNAME {
        Json(json!({"1": {"name": "Desk", "state": {"on": true}}}))
    } else {
        Json(
            json!([{"error": {"type": 1, "address": "/lights", "description": "unauthorized user"}}]),
        )
    }
}

async fn bridge(presses_after: usize) -> (SocketAddr, Bridge) {
    let b = Bridge {
        asked: Arc::default(),
        presses_after,
        devicetypes: Arc::default(),
    };
    let app = Router::new()
        .route("/api", post(create_user))
        .route("/api/{user}/lights", get(lights))
        .with_state(b.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, b)
}

fn home_for(addr: SocketAddr) -> Home {
    Home::new().with_toml(&format!(
        "local_only = true\n\n[services.hue]\nbase_url = \"http://{addr}\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn pairs_when_the_button_is_pressed_and_keeps_the_username_in_the_vault() {
    let (addr, b) = bridge(2).await;
    let home = home_for(addr);
    let h = Arc::new(home);
    let h2 = h.clone();
    let out = tokio::task::spawn_blocking(move || {
        h2.run(&["services", "pair", "hue", "--timeout", "60s"], b"")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("press the link button"), "{stdout}");
    assert!(stdout.contains("in the vault as \"hue\""), "{stdout}");
    assert!(!stdout.contains(USERNAME) && !stderr.contains(USERNAME));
    assert_eq!(b.asked.load(Ordering::SeqCst), 3);
    assert!(
        b.devicetypes
            .lock()
            .unwrap()
            .iter()
            .all(|d| d == "maestra#maestra")
    );
    assert_eq!(
        h.ok(&["vault", "get", "hue", "--reveal"], b"").trim(),
        USERNAME
    );
    for (path, bytes) in common::all_file_bytes(&h.root()) {
        assert!(
            !common::contains(&bytes, USERNAME),
            "{} holds the username",
            path.display()
        );
    }

    // The services proxy now reaches the bridge's lights with it.
    let server = Server::start(&h);
    let (status, body) = common::http::get(&server.url("/api/services/hue/lights")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["1"]["name"], "Desk");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpressed_button_ends_with_one_line_and_nothing_stored() {
    let (addr, b) = bridge(usize::MAX).await;
    let home = Arc::new(home_for(addr));
    let h = home.clone();
    let line = tokio::task::spawn_blocking(move || {
        h.fails(&["services", "pair", "hue", "--timeout", "3s"], b"")
    })
    .await
    .unwrap();
    assert!(
        line.contains("link button was not pressed within 3s"),
        "{line}"
    );
    assert!(b.asked.load(Ordering::SeqCst) >= 1);
    let err = home.fails(&["vault", "get", "hue"], b"");
    assert!(err.contains("no secret named"), "{err}");
    let audit = home.ok(&["audit", "query", "--service", "hue", "--json"], b"");
    assert!(
        audit.contains("\"pair\"") && audit.contains("\"failed\""),
        "{audit}"
    );
}
