//! Lockdown locks every door (issue 23, class 3): while it is on, no credential lockdown cannot
//! revoke is accepted — `MAESTRA_API_KEY` from the environment or `api_key` in maestra.toml —
//! whether it was engaged from the command line or from the page; table keys are revoked; the
//! API cannot turn local-only off (nor lift lockdown); `maestra lockdown --lift`, a local
//! command, restores the static key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Home;
use common::http::{client, send_json, with_key};
use common::server::Server;
use serde_json::{Value, json};

const STATIC_KEY: &str = "static-lockdown-key-0123456789abcdef";

/// A cloud-mode home on loopback, with a rate limit the polling below never reaches.
fn cloud_home() -> Home {
    Home::new()
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_RATE_LIMIT_REQUESTS", "100000")
}

/// The doors a leaked admin credential opens: an admin route, another user's data, and the
/// switch that would turn local-only off again. Each answer's status and `error` member.
async fn doors(server: &Server, key: &str) -> Vec<(u16, Value)> {
    let c = client();
    let reqs = [
        c.get(server.url("/api/audit")),
        c.get(server.url("/api/users/bob/export")),
        c.post(server.url("/api/controls/local-only"))
            .json(&json!({"on": false})),
    ];
    let mut out = Vec::new();
    for r in reqs {
        let (status, body) = send_json(with_key(r, key)).await;
        out.push((status, body["error"].clone()));
    }
    out
}

/// Waits (the server follows the store's flag within a second) until every door answers
/// `status` with `code`; returns the last answers either way.
async fn until_doors(server: &Server, key: &str, status: u16, code: &str) -> Vec<(u16, Value)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = doors(server, key).await;
        let all = got
            .iter()
            .all(|(s, e)| *s == status && (code.is_empty() || e["code"] == code));
        if all || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lockdown_cli(home: &Home) {
    let out = home.run(&["lockdown"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn lockdown_page(server: &Server, key: &str) {
    let resp = client()
        .post(server.url("/api/controls/lockdown"))
        .header("x-api-key", key)
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

fn audit_has_lockdown_refusal(home: &Home) -> bool {
    let log = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    log.lines().any(|l| {
        l.contains("\"category\":\"auth\"")
            && l.contains("\"action\":\"lockdown\"")
            && l.contains("\"result\":\"blocked\"")
    })
}

/// A static key: refused at every door after a lockdown from the command line and from the
/// page (engaged with that very key), with a `lockdown` error saying how to lift; audited;
/// accepted again after `maestra lockdown --lift`.
async fn static_key_is_locked_out(home: Home) {
    let server = Server::start(&home);
    let open = until_doors(&server, STATIC_KEY, 200, "").await;
    assert!(open.iter().all(|(s, _)| *s == 200), "{open:?}");
    for engage in ["cli", "page"] {
        match engage {
            "cli" => lockdown_cli(&home),
            _ => lockdown_page(&server, STATIC_KEY).await,
        }
        let locked = until_doors(&server, STATIC_KEY, 403, "lockdown").await;
        for (s, e) in &locked {
            assert_eq!(*s, 403, "{engage}: {locked:?}");
            assert_eq!(e["code"], "lockdown", "{engage}: {e}");
            let msg = e["message"].as_str().unwrap_or("");
            assert!(msg.contains("maestra lockdown --lift"), "{engage}: {msg}");
        }
        home.ok(&["lockdown", "--lift"], b"");
        let open = until_doors(&server, STATIC_KEY, 200, "").await;
        assert!(
            open.iter().all(|(s, _)| *s == 200),
            "{engage}: lifted, the static key works again: {open:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(audit_has_lockdown_refusal(&home), "refusals audited (auth)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_api_key_is_refused_during_lockdown() {
    static_key_is_locked_out(cloud_home().with("MAESTRA_API_KEY", STATIC_KEY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_api_key_is_refused_during_lockdown() {
    let home = cloud_home();
    home.ok(&["init"], b"");
    let toml = home.root().join("maestra.toml");
    std::fs::write(&toml, format!("api_key = \"{STATIC_KEY}\"\n")).unwrap();
    std::fs::set_permissions(&toml, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    static_key_is_locked_out(home).await;
}

/// Table keys are revoked by either lockdown; a key made during the lockdown (a local command)
/// works, but no API call can turn local-only off or lift the lockdown: only the command can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_keys_are_revoked_and_the_api_cannot_lift_a_lockdown() {
    let home = cloud_home();
    let create = |name: &str| {
        home.ok(&["keys", "create", name, "--scope", "admin"], b"")
            .trim()
            .to_string()
    };
    let first = create("first");
    let server = Server::start(&home);
    for engage in ["cli", "page"] {
        let key = if engage == "cli" {
            first.clone()
        } else {
            create("second")
        };
        let open = until_doors(&server, &key, 200, "").await;
        assert!(open.iter().all(|(s, _)| *s == 200), "{engage}: {open:?}");
        match engage {
            "cli" => lockdown_cli(&home),
            _ => lockdown_page(&server, &key).await,
        }
        let locked = until_doors(&server, &key, 401, "unauthorized").await;
        assert!(
            locked.iter().all(|(s, _)| *s == 401),
            "{engage}: {locked:?}"
        );

        // A key made while locked down opens the admin routes, not the way out.
        let fresh = create(&format!("during-{engage}"));
        let c = client();
        let audit = c
            .get(server.url("/api/audit"))
            .header("x-api-key", &fresh)
            .send()
            .await
            .unwrap();
        assert_eq!(audit.status(), 200);
        let off = c
            .post(server.url("/api/controls/local-only"))
            .header("x-api-key", &fresh)
            .json(&json!({"on": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(off.status(), 403, "{engage}");
        let v: Value = off.json().await.unwrap();
        assert_eq!(v["error"]["code"], "lockdown", "{v}");
        // The server follows the store's flag within a second.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let privacy: Value = c
                .get(server.url("/api/privacy"))
                .header("x-api-key", &fresh)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if privacy["local_only"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{engage}: {}",
                privacy["local_only"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        home.ok(&["lockdown", "--lift"], b"");
    }
}
