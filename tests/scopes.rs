//! Keys that belong to someone (issue 15): every route of the served document, called with
//! each scope's key and with another user's key, answers exactly as the README's scope table
//! says. The routes come from `/openapi.json`, which the router's own table generates (and a
//! route missing from it needs admin), not from a list kept here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::http::{client, with_key};
use common::server::{Server, upstream_env};
use common::{Home, mock};
use serde_json::{Value, json};

const RANK: [&str; 4] = ["none", "read", "assistant", "admin"];

fn rank(scope: &str) -> usize {
    RANK.iter().position(|s| *s == scope).unwrap()
}

struct Keys {
    read: String,
    assistant: String,
    admin: String,
    bob: String,
    ann_hue_only: String,
}

fn key(home: &Home, args: &[&str]) -> String {
    home.ok(&[&["keys", "create"], args].concat(), b"")
        .trim()
        .to_string()
}

/// A request a key of enough scope would get past the edge with: valid ids and bodies.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    user: &str,
    conv: &str,
) -> reqwest::RequestBuilder {
    let url = server.url(
        &path
            .replace("{id}", conv)
            .replace("{user_id}", user)
            .replace("{service}", "hue")
            .replace("{path}", "api/lights"),
    );
    let body = match path {
        "/api/maestra/core" => Some(json!({"user_id": user, "surface_id": "cli", "message": "hi"})),
        "/api/maestra/advisor/ask" => Some(json!({"question": "hi", "user_id": user})),
        "/v1/chat/completions" => Some(json!({"model": "llama3.2", "user": user,
            "messages": [{"role": "user", "content": "hi"}]})),
        "/api/audit/events" => Some(json!({"category": "smarthome", "service": "hue",
            "action": "lights.on", "result": "success", "user_id": user})),
        p if p.starts_with("/api/services/") && method != "get" && method != "delete" => {
            Some(json!({}))
        }
        _ => None,
    };
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut r = client().request(m, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r
}

async fn status(r: reqwest::RequestBuilder, key: &str) -> (u16, String) {
    let resp = with_key(r, key).send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.text().await.unwrap_or_default())
}

/// (method, path, scope) of every operation in the served document.
async fn operations(server: &Server, admin: &str) -> Vec<(String, String, String)> {
    let doc: Value = with_key(client().get(server.url("/openapi.json")), admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let scope = op["x-maestra-scope"].as_str().unwrap_or_else(|| {
                panic!("{method} {path} has no x-maestra-scope");
            });
            out.push((method.clone(), path.clone(), scope.to_string()));
        }
    }
    out
}

/// The README's table: `| METHOD path | scope |` rows.
fn readme_table() -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let (route, scope) = (cells.get(1)?, cells.get(2)?);
            let route = route.strip_prefix('`')?.strip_suffix('`')?;
            let (method, path) = route.split_once(' ')?;
            RANK.contains(scope)
                .then(|| ((method.to_lowercase(), path.to_string()), scope.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_scope_as_the_table_says() {
    let (addr, _mock) = mock::start().await;
    // Every route is called from the host's own network: discovery stays off (no multicast).
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_RATE_LIMIT_REQUESTS", "100000")
        .with("MAESTRA_DISCOVERY", "false");
    home.ok(&["init"], b"");
    let keys = Keys {
        read: key(&home, &["r", "--user", "ann", "--scope", "read"]),
        assistant: key(&home, &["a", "--user", "ann"]),
        admin: key(&home, &["adm", "--scope", "admin"]),
        bob: key(&home, &["b", "--user", "bob"]),
        ann_hue_only: key(&home, &["h", "--user", "ann", "--services", "hue"]),
    };
    let server = Server::start(&home);
    let seed = |user: &'static str| {
        let r = request(&server, "post", "/api/maestra/core", user, "");
        let admin = keys.admin.clone();
        async move {
            let resp = r.header("x-api-key", admin).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()["conversation_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let ops = operations(&server, &keys.admin).await;
    let table = readme_table();
    assert_eq!(ops.len(), table.len(), "README table: {table:?}");

    for (method, path, scope) in &ops {
        assert_eq!(
            table.get(&(method.clone(), path.clone())),
            Some(scope),
            "README scope of {method} {path}"
        );
        for (key, key_scope) in [
            (&keys.read, "read"),
            (&keys.assistant, "assistant"),
            (&keys.admin, "admin"),
        ] {
            let conv = seed("ann").await;
            let (got, body) = status(request(&server, method, path, "ann", &conv), key).await;
            if path == "/api/services/discover" && key_scope == "admin" {
                assert_eq!(got, 409, "discovery is off: {body}");
                assert!(body.contains("\"discovery_off\""), "{body}");
            }
            if rank(key_scope) >= rank(scope) {
                assert!(
                    got != 401 && got != 403,
                    "{key_scope} key, {method} {path}: {got} {body}"
                );
            } else {
                assert_eq!(got, 403, "{key_scope} key, {method} {path}: {body}");
            }
        }
        // Bob's assistant key on Ann's data: refused (403), or not found for her ids.
        let conv = seed("ann").await;
        let (got, body) = status(request(&server, method, path, "ann", &conv), &keys.bob).await;
        let names_ann = path.contains("{user_id}")
            || path.contains("{id}")
            || matches!(
                path.as_str(),
                "/api/maestra/core"
                    | "/api/maestra/advisor/ask"
                    | "/v1/chat/completions"
                    | "/api/audit/events"
            );
        if rank(scope) > rank("assistant") {
            assert_eq!(got, 403, "bob, {method} {path}: {body}");
        } else if names_ann && path.contains("{id}") {
            assert_eq!(got, 404, "bob, {method} {path}: {body}");
        } else if names_ann {
            assert_eq!(got, 403, "bob, {method} {path}: {body}");
        } else {
            assert!(
                got != 401 && got != 403,
                "bob, {method} {path}: {got} {body}"
            );
        }
    }

    // A user's key lists only its user's conversations, whatever it asks for.
    seed("bob").await;
    let (got, body) = status(
        client().get(server.url("/api/conversations")),
        &keys.assistant,
    )
    .await;
    assert_eq!(got, 200);
    let listed: Value = serde_json::from_str(&body).unwrap();
    let owners: Vec<&str> = listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["owner"].as_str().unwrap())
        .collect();
    assert!(
        !owners.is_empty() && owners.iter().all(|o| *o == "ann"),
        "{owners:?}"
    );
    let (got, _) = status(
        client().get(server.url("/api/conversations?user_id=bob")),
        &keys.assistant,
    )
    .await;
    assert_eq!(got, 403);
    // A user's key may leave the user out of a core request: the turn is its user's.
    let (got, body) = status(
        client()
            .post(server.url("/api/maestra/core"))
            .json(&json!({"surface_id": "cli", "message": "whose?"})),
        &keys.assistant,
    )
    .await;
    assert_eq!(got, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (got, body) = status(
        client().get(server.url(&format!("/api/conversations/{id}"))),
        &keys.admin,
    )
    .await;
    assert_eq!(got, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["owner"],
        "ann"
    );
    // A key made for some services calls only those.
    let (got, body) = status(
        client().get(server.url("/api/services/spotify/v1/me")),
        &keys.ann_hue_only,
    )
    .await;
    assert_eq!(got, 403, "{body}");
    let (got, body) = status(
        client().get(server.url("/api/services/hue/api/lights")),
        &keys.ann_hue_only,
    )
    .await;
    assert!(got != 401 && got != 403, "{got} {body}");
    // Spend: a user's key sees its own user's, an admin key everyone's.
    let (_, body) = status(client().get(server.url("/api/privacy")), &keys.read).await;
    let own: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(own["cost"]["user_id"], "ann", "{own}");
    let (_, body) = status(client().get(server.url("/api/privacy")), &keys.admin).await;
    let all: Value = serde_json::from_str(&body).unwrap();
    assert!(all["cost"]["daily"]["limit_usd"].is_number() && all["cost"]["user_id"].is_null());
    // Refusals are audited under the key's user.
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(audit.contains("\"action\":\"other_user\"") && audit.contains("\"action\":\"scope\""));
}

/// An expired key opens nothing, shows as expired, and does not count as the key cloud mode
/// needs to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_opens_nothing_and_does_not_count_at_start() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr).with("MAESTRA_MODE", "cloud");
    home.ok(&["init"], b"");
    let old = key(&home, &["old", "--user", "ann", "--expires", "1h"]);
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        home.root().join("maestra.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = 1")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    assert!(home.ok(&["keys", "list"], b"").contains("EXPIRED"));
    let out = home.run_within(
        &["serve", "--bind", "127.0.0.1:0"],
        b"",
        std::time::Duration::from_secs(10),
    );
    assert!(
        !out.status.success(),
        "cloud mode started with only an expired key"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));
    // With a live key beside it, the server starts and the expired one is refused.
    key(&home, &["live", "--user", "ann"]);
    let server = Server::start(&home);
    let (got, _) = status(client().get(server.url("/v1/models")), &old).await;
    assert_eq!(got, 401);
}
