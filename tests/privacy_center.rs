//! The privacy center (issue 17) in a real browser: headless Chromium, driven through its
//! WebDriver by `tests/privacy_center/drive.py` (Python `selenium` in the project venv),
//! against a real `maestra serve` whose models are the mock upstream.
//!
//! After seeded traffic (allowed calls, a blocked call, spend, conversations, a reported
//! device action) the driver checks that the page loads with no console error and no request
//! to another origin, that every section shows the API's figures, that delete and forget
//! through the page remove the data, that the local-only switch changes `GET /api/privacy`,
//! that a page on another origin can neither read nor write, and that bad input gets JSON
//! errors. This test then checks what the page did from outside: the local-only switch blocks
//! a cloud call, and the deleted content has left the database files. Screenshots of every
//! section are written to `target/privacy-center/`.
//!
//! Chromium, chromedriver and selenium are installed by `scripts/test`; missing is a failure,
//! never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{Server, upstream_env};
use common::{Home, mock, python};
use serde_json::{Value, json};

const CANARY: &str = "CANARYpagedelete5521";
const FORGET_CANARY: &str = "CANARYpageforget7340";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn core(server: &Server, user: &str, surface: &str, message: &str) -> String {
    let (s, v) = post(
        server,
        "/api/maestra/core",
        json!({"user_id": user, "surface_id": surface, "message": message}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["conversation_id"].as_str().unwrap().to_string()
}

async fn cloud_call(server: &Server) -> (u16, Value) {
    post(
        server,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "user": "ann",
               "messages": [{"role": "user", "content": "what is on my calendar"}]}),
    )
    .await
}

/// A page on another origin (another port) that tries to read the conversations and to turn
/// local-only mode around, as any web page open in the same browser could.
async fn foreign_site(target: String) -> String {
    let page = format!(
        r#"<!doctype html><html><body><p id="out">running</p><script>
window.outcome = {{}};
(async () => {{
  try {{
    const r = await fetch("{target}/api/conversations");
    window.outcome.read = "read " + r.status + " " + (await r.text()).slice(0, 80);
  }} catch (e) {{ window.outcome.read = "blocked: " + e; }}
  try {{
    const r = await fetch("{target}/api/controls/local-only", {{method: "POST",
      headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{on: false}})}});
    window.outcome.write = "wrote " + r.status;
  }} catch (e) {{ window.outcome.write = "blocked: " + e; }}
  // A simple request needs no preflight: it reaches the server, which must refuse it.
  try {{
    await fetch("{target}/api/controls/local-only", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{on: false}})}});
  }} catch (e) {{}}
  document.getElementById("out").textContent = JSON.stringify(window.outcome);
  window.done = true;
}})();
</script></body></html>"#
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

fn write_toml(home: &Home, toml: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home.root()).unwrap();
    std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = home.root().join("maestra.toml");
    std::fs::write(&file, toml).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `maestra cost report`'s amount for `name` (a group or `total`), as printed.
fn cli_amount(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split('$').nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/privacy-center");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_center_works_in_a_real_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test` (it installs chromium and chromium-driver)"
        );
    }
    let py = python();
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYcenter0123456789");
    // A price that makes the mock's 10 + 5 tokens cost $0.0020, so spend shows figures.
    write_toml(
        &home,
        "[pricing.\"gpt-4o-mini\"]\ninput_per_million = 100.0\noutput_per_million = 200.0\n",
    );
    let mut server = Server::start(&home);

    // Seeded traffic: local model calls from two surfaces, a device action an agent reports,
    // a paid cloud call, and a cloud call local-only mode blocks.
    let deleted = core(&server, "ann", "cli", &format!("remember {CANARY}")).await;
    core(&server, "ann", "phone", "what time is it").await;
    core(&server, "bob", "cli", &format!("note {FORGET_CANARY}")).await;
    core(&server, "bob", "cli", "second one").await;
    let (s, v) = post(
        &server,
        "/api/audit/events",
        json!({"category": "smarthome", "service": "hue", "action": "lights.on",
               "result": "success", "agent_id": "home-agent", "user_id": "ann"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = cloud_call(&server).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(&server, "/api/controls/local-only", json!({"on": true})).await;
    assert_eq!((s, &v["local_only"]), (200, &json!(true)), "{v}");
    let (s, v) = cloud_call(&server).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = post(&server, "/api/controls/local-only", json!({"on": false})).await;
    assert_eq!((s, &v["local_only"]), (200, &json!(false)), "{v}");

    // The audit entries of calls carry their bytes and host; /metrics counts them too.
    let audit: Value = client()
        .get(server.url("/api/audit?category=llm&limit=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paid = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == "openai")
        .unwrap();
    assert_eq!(paid["details"]["host"], "127.0.0.1");
    assert!(
        paid["details"]["bytes_sent"].as_u64().unwrap() > 100,
        "{paid}"
    );
    assert!(
        paid["details"]["bytes_received"].as_u64().unwrap() > 100,
        "{paid}"
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "maestra_egress_bytes_total{service=\"openai\",host=\"127.0.0.1\",direction=\"sent\"}"
        ),
        "{metrics}"
    );

    let foreign = foreign_site(server.url("")).await;
    let shots = screenshots();
    let drive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/privacy_center/drive.py");
    let out = tokio::task::spawn_blocking({
        let (base, shots) = (server.url("/"), shots.clone());
        move || {
            Command::new(py)
                .arg(drive)
                .arg(base)
                .arg(shots)
                .arg(foreign)
                .arg(&deleted)
                .arg("bob")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser checks failed:\n{}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.output()
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["sections"]["report"].as_u64().unwrap() >= 4,
        "{report}"
    );
    for name in [
        "report",
        "spend",
        "conversations",
        "vault",
        "audit",
        "controls",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}");
    }

    // Spend: the API (and so the page) says what `maestra cost report` prints.
    let spend: Value = client()
        .get(server.url("/api/spend?days=30"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spend["total_usd"], json!(0.002), "{spend}");
    for (by, key) in [
        ("model", "by_model"),
        ("user", "by_user"),
        ("day", "by_day"),
    ] {
        let cli = home.ok(&["cost", "report", "--days", "30", "--by", by], b"");
        for row in spend[key].as_array().unwrap() {
            let name = row["key"].as_str().unwrap();
            let usd = row["usd"].as_f64().unwrap();
            assert_eq!(cli_amount(&cli, name), format!("{usd:.4}"), "{by}: {cli}");
        }
        assert_eq!(
            cli_amount(&cli, "total"),
            format!("{:.4}", spend["total_usd"].as_f64().unwrap())
        );
    }

    // The page turned local-only on: a cloud call is now blocked.
    let (s, v) = cloud_call(&server).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "local_only_mode", "{v}");

    server.stop();
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("maestra.db") {
            assert!(
                !common::contains(&bytes, CANARY),
                "deleted content in {name}"
            );
            assert!(
                !common::contains(&bytes, FORGET_CANARY),
                "forgotten content in {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cloud_mode_the_page_asks_for_a_key_and_keeps_it_in_the_tab() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test`"
        );
    }
    let py = python();
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr).with("MAESTRA_MODE", "cloud");
    home.ok(&["init"], b"");
    let admin = home
        .ok(&["keys", "create", "center", "--scope", "admin"], b"")
        .trim()
        .to_string();
    let server = Server::start(&home);
    // The page itself holds no data and needs no key; the API does.
    let page = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let report = client()
        .get(server.url("/api/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 401);

    let shots = screenshots();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/privacy_center/cloud.py");
    let out = tokio::task::spawn_blocking({
        let (base, key) = (server.url("/"), admin.clone());
        move || {
            Command::new(py)
                .arg(script)
                .arg(base)
                .arg(key)
                .arg(shots)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Lockdown from the center: local-only on, every key revoked (this one too), the vault
    // key rotated as a job.
    let resp = client()
        .post(server.url("/api/controls/lockdown"))
        .header("x-api-key", &admin)
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["local_only"], true, "{v}");
    assert_eq!(v["api_keys_revoked"], 1, "{v}");
    assert_eq!(v["vault_rotation"]["kind"], "vault_rotate", "{v}");
    let after = client()
        .get(server.url("/api/privacy"))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let listed = home.ok(&["keys", "list"], b"");
    assert!(listed.contains("REVOKED"), "{listed}");
}
