//! The privacy center (issue 17) in a real browser: headless Chromium, driven through its
//! WebDriver by `tests/privacy_center/drive.py` (Python `selenium` in the project venv),
//! against a real `maestra serve` whose models are the mock upstream.
//!
//! After seeded traffic (allowed calls, a 1.1 MB call, a failed call, a blocked call, spend,
//! conversations, a reported device action) the driver checks that the page loads with no
//! console error and no request to another origin, that every section shows the API's
//! figures in the page's formats (bytes as "1.1 MB", times in the viewer's zone, errors apart
//! from calls, requests and tokens beside dollars, the vault key's state in words), that delete and forget
//! through the page remove the data, that the local-only switch changes `GET /api/privacy`,
//! that a page on another origin can neither read nor write, and that bad input gets JSON
//! errors. This test then checks what the page did from outside: the local-only switch blocks
//! a cloud call, and the deleted content has left the database files. Screenshots of every
//! section are written to `target/privacy-center/`.
//!
//! The Tools section (issue 27) has a test of its own (`tests/privacy_center/tools.py`):
//! tool calls made with the official MCP SDK over `/mcp`, counted per server and tool.
//!
//! What minimisation withheld from cloud calls (issue 30) is checked in the Report section
//! by `tests/privacy_center/withheld.py`.
//!
//! The Devices section (issue 28) is driven in `tests/discover_server.rs`, where the browser,
//! the server and the devices it finds all sit in network namespaces of the test's own (a
//! search sends multicast, which must never reach a real network).
//!
//! Chromium, chromedriver and selenium are installed by `scripts/test`; missing is a failure,
//! never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{chat, client, core, post_json, with_key};
use common::mcp::{sdk, time_toml};
use common::server::{Server, upstream_env};
use common::{Home, mock, python, services_mock};
use serde_json::{Value, json};

const CANARY: &str = "CANARYpagedelete5521";
const FORGET_CANARY: &str = "CANARYpageforget7340";

async fn cloud_call(server: &Server) -> (u16, Value) {
    post_json(
        &server.url("/v1/chat/completions"),
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
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYcenter0123456789");
    // A price that makes the mock's 10 + 5 tokens cost $0.0020, so spend shows figures; a
    // body limit that lets a 1.1 MB call through.
    write_toml(
        &home,
        "[server]\nmax_body_bytes = 2000000\n\
         [pricing.\"gpt-4o-mini\"]\ninput_per_million = 100.0\noutput_per_million = 200.0\n",
    );
    let mut server = Server::start(&home);

    // Seeded traffic: local model calls from two surfaces, a device action an agent reports,
    // a paid cloud call, and a cloud call local-only mode blocks.
    let deleted = core(&server, "ann", "cli", None, &format!("remember {CANARY}")).await;
    core(&server, "ann", "phone", None, "what time is it").await;
    core(
        &server,
        "bob",
        "cli",
        None,
        &format!("note {FORGET_CANARY}"),
    )
    .await;
    core(&server, "bob", "cli", None, "second one").await;
    let (s, v) = post_json(
        &server.url("/api/audit/events"),
        json!({"category": "smarthome", "service": "hue", "action": "lights.on",
               "result": "success", "agent_id": "home-agent", "user_id": "ann"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = cloud_call(&server).await;
    assert_eq!(s, 200, "{v}");
    // A cloud call the upstream fails: an error, counted apart from the calls.
    let (s, v) = post_json(
        &server.url("/v1/chat/completions"),
        json!({"model": "gpt-4o-mini", "max_tokens": 5,
               "messages": [{"role": "user", "content": "mode:500"}]}),
    )
    .await;
    assert!(s >= 500, "{s} {v}");
    // A local model call of 1.1 MB (five messages of 220,000 bytes): the page says "1.1 MB".
    let long = "a".repeat(220_000);
    let messages: Vec<Value> = (0..5)
        .map(|_| json!({"role": "user", "content": long}))
        .collect();
    let (s, v) = post_json(
        &server.url("/v1/chat/completions"),
        json!({"model": "llama3.2", "messages": messages}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_json(&server.url("/api/controls/local-only"), json!({"on": true})).await;
    assert_eq!((s, &v["local_only"]), (200, &json!(true)), "{v}");
    let (s, v) = cloud_call(&server).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = post_json(
        &server.url("/api/controls/local-only"),
        json!({"on": false}),
    )
    .await;
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
    let out = browse(
        &server,
        "drive.py",
        args([
            server.url("/").as_ref(),
            shots.as_os_str(),
            foreign.as_ref(),
            deleted.as_ref(),
            "bob".as_ref(),
        ]),
    )
    .await;
    let report: Value = serde_json::from_slice(&out).unwrap();
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
    // The one paid call's requests and tokens (the mock reports 10 in, 5 out) beside it.
    assert_eq!(
        (
            &spend["total_requests"],
            &spend["total_tokens_in"],
            &spend["total_tokens_out"]
        ),
        (&json!(1), &json!(10), &json!(5)),
        "{spend}"
    );
    let model = &spend["by_model"][0];
    assert_eq!(
        (&model["key"], &model["requests"], &model["tokens_in"]),
        (&json!("gpt-4o-mini"), &json!(1), &json!(10)),
        "{spend}"
    );
    // The report counts the failed call apart.
    let report: Value = client()
        .get(server.url("/api/report?period=today"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["totals"]["errors"], json!(1), "{report}");
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

/// A `/v1` chat call made with `key`: `content` as the one message, at most 5 tokens out.
async fn keyed_call(server: &Server, key: &str, content: &str) -> (u16, Value) {
    chat(
        server,
        &[("x-api-key", key)],
        json!({"model": "gpt-4o-mini", "max_tokens": 5,
               "messages": [{"role": "user", "content": content}]}),
    )
    .await
}

async fn spend_as(server: &Server, key: &str) -> Value {
    with_key(client().get(server.url("/api/spend?days=30")), key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `by_key` row of `name` in a `/api/spend` answer.
fn key_row<'a>(spend: &'a Value, name: &str) -> &'a Value {
    spend["by_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {spend}"))
}

const PRICES: &str =
    "[pricing.\"gpt-4o-mini\"]\ninput_per_million = 100.0\noutput_per_million = 200.0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cloud_mode_the_page_asks_for_a_key_and_keeps_it_in_the_tab() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test`"
        );
    }
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYcloudcenter0123456789");
    home.ok(&["init"], b"");
    write_toml(&home, PRICES);
    let admin = home
        .ok(&["keys", "create", "center", "--scope", "admin"], b"")
        .trim()
        .to_string();
    let laptop = home
        .ok(&["keys", "create", "laptop", "--user", "ann"], b"")
        .trim()
        .to_string();
    let phone = home
        .ok(&["keys", "create", "phone", "--user", "bob"], b"")
        .trim()
        .to_string();
    let mut server = Server::start(&home);

    // Two keys spend: two paid calls from the laptop, one from the phone and one that fails.
    for (key, content) in [(&laptop, "hi"), (&laptop, "hello"), (&phone, "hi")] {
        let (s, v) = keyed_call(&server, key, content).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = keyed_call(&server, &phone, "mode:500").await;
    assert!(s >= 500, "{s} {v}");
    let spend = spend_as(&server, &admin).await;
    let (l, p) = (key_row(&spend, "laptop"), key_row(&spend, "phone"));
    assert_eq!(
        (&l["requests"], &l["calls"], &l["errors"]),
        (&json!(2), &json!(2), &json!(0)),
        "{spend}"
    );
    assert_eq!(
        (&p["requests"], &p["calls"], &p["errors"]),
        (&json!(1), &json!(2), &json!(1)),
        "{spend}"
    );
    assert_eq!(l["tokens_in"], json!(20), "{spend}");
    assert_eq!(key_row(&spend, "center")["requests"], json!(0));
    let laptop_usd = l["usd"].as_f64().unwrap();
    assert!(laptop_usd > 0.0, "{spend}");

    // Limits near and reached, from what was spent: the laptop's daily limit is 80 % used and
    // its monthly one reached; a day of imported spend reaches the global daily limit and
    // takes the monthly one past 80 %.
    server.stop();
    write_toml(
        &home,
        &format!(
            "daily_cost_limit = 1.0\nmonthly_cost_limit = 1.2\n[cost]\n\
             key_daily_limit = {}\nkey_monthly_limit = {laptop_usd}\n{PRICES}",
            laptop_usd / 0.85
        ),
    );
    let seed = tempfile::tempdir().unwrap();
    let today = time::OffsetDateTime::now_utc().date().to_string();
    std::fs::write(
        seed.path().join("maestra_cost_tracker.json"),
        json!({ today: 1.0 }).to_string(),
    )
    .unwrap();
    home.ok(&["import", "--from", seed.path().to_str().unwrap()], b"");
    let server = Server::start(&home);
    let spend = spend_as(&server, &admin).await;
    assert!(
        spend["limits"]["daily"]["spent_usd"].as_f64().unwrap() >= 1.0,
        "{spend}"
    );
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
    browse(
        &server,
        "cloud.py",
        args([server.url("/").as_ref(), admin.as_ref(), shots.as_os_str()]),
    )
    .await;

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
    assert_eq!(v["api_keys_revoked"], 3, "{v}");
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

/// Runs `tests/privacy_center/tools.py` against `server` expecting `rows` (server, tool,
/// calls, errors, blocked) in the Tools section; its JSON summary.
async fn tools_page(server: &Server, rows: Value) -> Value {
    let out = browse(
        server,
        "tools.py",
        args([
            server.url("/").as_ref(),
            screenshots().as_os_str(),
            rows.to_string().as_ref(),
        ]),
    )
    .await;
    serde_json::from_slice(&out).unwrap()
}

/// The newest `ts` of `entries`, to the second (what the report keeps), as RFC 3339 UTC.
fn newest_second(entries: &[&Value]) -> String {
    use time::format_description::well_known::Rfc3339;
    let newest = entries
        .iter()
        .map(|e| time::OffsetDateTime::parse(e["ts"].as_str().unwrap(), &Rfc3339).unwrap())
        .max()
        .unwrap();
    newest
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// The Tools section (issue 27): calls made with the official MCP SDK over `/mcp` to the
/// reference `mcp-server-time` (successful ones, one with a wrong argument, one of a tool the
/// configuration denies) and to a service tool are counted in the page per server and tool
/// (calls, errors, blocked, last use), as the audit log has them; listing tools (which pins
/// them, an audit entry too) is not a call; before any call the section says there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_section_counts_every_tool_call() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test`"
        );
    }
    let (hue_addr, _hue) = services_mock::hue().await;
    let home = Home::new();
    home.ok(&["init"], b"");
    let home = home.with_toml(&format!(
        "[services.hue]\nbase_url = \"http://{hue_addr}\"\n\n{}tools = {{ convert_time = \"deny\" }}\n",
        time_toml("local")
    ));
    home.ok(
        &["vault", "put", "hue"],
        services_mock::HUE_USERNAME.as_bytes(),
    );
    let mut server = Server::start(&home);
    let before = tools_page(&server, json!([])).await;
    assert_eq!(before["empty"], true, "{before}");

    let now = |zone: &str| json!({"op": "call", "name": "time__get_current_time", "arguments": {"timezone": zone}});
    let doc = sdk(
        &["--http", &server.url("/mcp")],
        json!([
            {"op": "list"},
            now("UTC"), now("Asia/Tokyo"), now("Europe/Paris"),
            now("Nowhere/Atlantis"),
            {"op": "call", "name": "time__convert_time",
             "arguments": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}},
            {"op": "call", "name": "hue__list_lights", "arguments": {}},
            {"op": "list"},
        ]),
    );
    let r = doc["results"].as_array().unwrap();
    for (i, step) in r.iter().enumerate().take(4).skip(1) {
        assert_eq!(step["is_error"], false, "{i}: {step}");
    }
    assert!(
        r[4]["is_error"] == true || r[4]["rpc_error"].is_object(),
        "{}",
        r[4]
    );
    assert!(r[5]["rpc_error"].to_string().contains("denied"), "{}", r[5]);
    assert_eq!(r[6]["is_error"], false, "{}", r[6]);

    // The API first: per server and tool, as the audit log has them (over the page's period,
    // 7 days, so a run across midnight UTC counts the same).
    let report: Value = client()
        .get(server.url("/api/report?period=7d"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = json!([
        ["time", "get_current_time", 4, 1, 0],
        ["hue", "list_lights", 1, 0, 0],
        ["time", "convert_time", 1, 0, 1],
    ]);
    let listed: Vec<Value> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            json!([
                t["server"],
                t["tool"],
                t["calls"],
                t["errors"],
                t["blocked"]
            ])
        })
        .collect();
    assert_eq!(Value::from(listed), expected, "{report}");
    // Pins are not calls: the report's calls are the six tool calls (the service tool's one
    // entry counted once), nothing else being called.
    assert_eq!(report["totals"]["calls"], 6, "{report}");
    let audit: Value = client()
        .get(server.url("/api/audit?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "tools/pin get_current_time"),
        "{audit}"
    );
    for t in report["tools"].as_array().unwrap() {
        let (server_name, tool) = (t["server"].as_str().unwrap(), t["tool"].as_str().unwrap());
        let calls: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                e["service"] == server_name
                    && (e["action"] == format!("tools/call {tool}")
                        || (e["details"]["tool"] == tool && e["category"] == "smarthome"))
            })
            .collect();
        assert_eq!(
            Some(calls.len() as u64),
            t["calls"].as_u64(),
            "{t} {calls:?}"
        );
        assert_eq!(t["last_used"], json!(newest_second(&calls)), "{t}");
    }

    // Then the page says the same.
    let after = tools_page(&server, expected.clone()).await;
    assert_eq!(after["rows"], expected, "{after}");
    assert!(screenshots().join("tools.png").exists());
    server.stop();
}

/// With discovery turned off (`MAESTRA_DISCOVERY=false`, as on a machine whose network must not
/// be searched) the Devices section says so and how it is set, its Find devices button is
/// disabled, and the configured services are still listed (`tests/privacy_center/devices_off.py`).
/// The search itself is driven in `tests/discover_server.rs`, inside network namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_section_says_when_discovery_is_off() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test`"
        );
    }
    let (hue_addr, _hue) = services_mock::hue().await;
    let home = Home::new().with("MAESTRA_DISCOVERY", "false");
    home.ok(&["init"], b"");
    let home = home.with_toml(&format!(
        "[services.hue]\nbase_url = \"http://{hue_addr}\"\n"
    ));
    let mut server = Server::start(&home);
    let out = browse(
        &server,
        "devices_off.py",
        args([server.url("/").as_ref(), screenshots().as_os_str()]),
    )
    .await;
    let summary: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["services"], json!(["hue"]), "{summary}");
    server.stop();
}

/// What minimisation withheld from cloud calls (issue 30): counted per day and provider by
/// `GET /api/report`, shown by the Report section (`tests/privacy_center/withheld.py`), never
/// the values themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_what_was_withheld_from_the_cloud() {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", "sk-test-openai")
        .with("MAESTRA_ANTHROPIC_KEY", "sk-ant-test-anthropic");
    let mut server = Server::start(&home);
    let values = ["ann@example.org", "+44 20 7946 0018", "bo@example.net"];
    let ask = |model: &str, text: &str| json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": text}]});
    for (model, text) in [
        (
            "gpt-4o-mini",
            "mail ann@example.org or call +44 20 7946 0018",
        ),
        (
            "gpt-4o-mini",
            "and ann@example.org again, twice: ann@example.org",
        ),
        ("claude-3-5-haiku-latest", "write to bo@example.net"),
        // A local model: nothing withheld, nothing counted.
        ("llama3.2", "mail ann@example.org"),
    ] {
        let (status, body) = chat(&server, &[], ask(model, text)).await;
        assert_eq!(status, 200, "{model}: {body}");
    }
    let sent: String = mock.requests().iter().map(|s| s.body.to_string()).collect();
    assert!(!sent.contains("bo@example.net"), "{sent}");
    let report = common::http::get_json(&server.url("/api/report?period=7d")).await;
    let today = report["until"].clone();
    assert_eq!(
        report["withheld"],
        json!([
            {"day": today, "service": "anthropic", "values": 1},
            {"day": today, "service": "openai", "values": 4},
        ]),
        "{report}"
    );
    assert_eq!(report["totals"]["withheld"], 5);
    let mut argv = args([server.url("/").as_ref(), screenshots().as_os_str()]);
    argv.extend(values.iter().map(OsString::from));
    let out = browse(&server, "withheld.py", argv).await;
    let rows: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[1]["shown"], "4", "{rows}");
    server.stop();
}

/// Runs the browser script `tests/privacy_center/NAME` with `args` off the runtime's threads
/// and checks that it succeeded (its output and the server's shown if not); its stdout.
async fn browse(server: &Server, name: &str, args: Vec<OsString>) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/privacy_center")
        .join(name);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser checks of {name} failed:\n{}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.output()
    );
    out.stdout
}

fn args<const N: usize>(parts: [&OsStr; N]) -> Vec<OsString> {
    parts.iter().map(|p| p.to_os_string()).collect()
}
