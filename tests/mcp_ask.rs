//! The `ask` policy (issue 27): a call of a tool declared `tools = { NAME = "ask" }` waits until
//! the person approves it in the privacy center (`/api/tools/approvals`) or denies it with
//! `maestra mcp deny`, or until `mcp.ask_timeout` refuses it; the call's audit entry says how
//! its wait ended, and each decision is an admin entry of its own. Driven by the official MCP
//! Python SDK against the reference `mcp-server-time`; the page's part in headless Chromium
//! (`tests/privacy_center/approve.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Home;
use common::http::{self, client};
use common::mcp::{audit, sdk, text, time_toml};
use common::server::Server;
use serde_json::{Value, json};

const TOOL: &str = "time__get_current_time";

fn home(extra: &str) -> Home {
    let home = Home::new();
    home.ok(&["init"], b"");
    home.with_toml(&format!(
        "{}tools = {{ get_current_time = \"ask\" }}\n{extra}",
        time_toml("local")
    ))
}

/// Calls the ask tool on its own thread (the SDK client blocks until the call is decided).
fn call_in_background(server: &Server) -> std::thread::JoinHandle<Value> {
    let url = server.url("/mcp");
    std::thread::spawn(move || {
        sdk(
            &["--http", &url],
            json!([{"op": "call", "name": TOOL, "arguments": {"timezone": "UTC"}}]),
        )
    })
}

/// The one call waiting in the privacy center's list, once it is there.
async fn waiting_call(server: &Server) -> Value {
    // A hang guard only: the call appears as soon as the SDK's request reaches the server.
    for _ in 0..600 {
        let (status, body) = http::get(&server.url("/api/tools/approvals")).await;
        assert_eq!(status, 200, "{body}");
        if let Some(w) = body["waiting"].as_array().and_then(|w| w.first()) {
            return w.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no call waited for approval");
}

fn call_entry(entries: &[Value]) -> Value {
    entries
        .iter()
        .find(|e| e["action"] == "tools/call get_current_time")
        .cloned()
        .unwrap_or_else(|| panic!("no entry of the call: {entries:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ask_tool_runs_once_the_privacy_center_approves_it() {
    let home = home("");
    let mut server = Server::start(&home);
    let caller = call_in_background(&server);
    let w = waiting_call(&server).await;
    assert_eq!(
        (w["server"].as_str(), w["tool"].as_str()),
        (Some("time"), Some("get_current_time"))
    );
    assert!(
        w["arguments_preview"].as_str().unwrap().contains("UTC"),
        "{w}"
    );
    assert!(w["arguments_bytes"].as_i64().unwrap() > 0, "{w}");
    // The arguments are shown on the page, never stored.
    for (file, bytes) in common::all_file_bytes(&home.root()) {
        assert!(
            !common::contains(&bytes, "\"timezone\""),
            "the arguments reached {}",
            file.display()
        );
    }
    let id = w["id"].as_str().unwrap();
    let (status, body) = http::post_json(
        &server.url(&format!("/api/tools/approvals/{id}")),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "approved");
    let doc = caller.join().unwrap();
    let result = &doc["results"][0];
    assert_eq!(result["is_error"], false, "{doc}");
    assert!(text(result).contains("UTC"), "{doc}");
    // Decided once: a second decision is refused, and the list is empty again.
    let (status, body) = http::post_json(
        &server.url(&format!("/api/tools/approvals/{id}")),
        json!({"decision": "deny"}),
    )
    .await;
    assert!(status == 400 || status == 404, "{status} {body}");
    let (_, listed) = http::get(&server.url("/api/tools/approvals")).await;
    assert_eq!(listed["waiting"], json!([]), "{listed}");
    let entries = audit(&server, "service=time").await;
    let call = call_entry(&entries);
    assert_eq!(call["result"], "success", "{call}");
    assert_eq!(call["details"]["approval"], "approved", "{call}");
    assert!(
        call["details"]["approved_by"]
            .as_str()
            .unwrap()
            .contains("privacy center"),
        "{call}"
    );
    let admin = audit(&server, "category=admin").await;
    assert!(
        admin
            .iter()
            .any(|e| e["action"] == "mcp.approved" && e["details"]["call"] == id),
        "{admin:#?}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_privacy_center_page_shows_a_waiting_call_and_approves_it_in_a_browser() {
    let home = home("");
    let mut server = Server::start(&home);
    let caller = call_in_background(&server);
    let w = waiting_call(&server).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/privacy-center");
    std::fs::create_dir_all(&shots).unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/privacy_center/approve.py");
    let out = Command::new(common::python())
        .arg(driver)
        .arg(server.url("/"))
        .arg(&shots)
        .arg(TOOL)
        .arg(w["asked_by"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser driver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = caller.join().unwrap();
    assert_eq!(doc["results"][0]["is_error"], false, "{doc}");
    let call = call_entry(&audit(&server, "service=time").await);
    assert_eq!(call["details"]["approval"], "approved", "{call}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ask_tool_denied_from_the_command_line_is_refused_and_audited() {
    let home = home("");
    let mut server = Server::start(&home);
    let caller = call_in_background(&server);
    let w = waiting_call(&server).await;
    let id = w["id"].as_str().unwrap();
    let out = home.ok(&["mcp", "list"], b"");
    assert!(out.contains(id) && out.contains(TOOL), "{out}");
    let out = home.ok(&["mcp", "deny", id], b"");
    assert!(out.contains("denied"), "{out}");
    let doc = caller.join().unwrap();
    let err = &doc["results"][0]["rpc_error"];
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("denied this tool call"),
        "{doc}"
    );
    let call = call_entry(&audit(&server, "service=time").await);
    assert_eq!(call["result"], "blocked", "{call}");
    assert_eq!(call["details"]["approval"], "denied", "{call}");
    // A decision on a call that no longer waits is refused with a clear message.
    let out = home.fails(&["mcp", "approve", id], b"");
    assert!(
        out.contains("no tool call waits") || out.contains("already"),
        "{out}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ask_tool_nobody_approves_is_refused_when_the_wait_ends() {
    let home = home("[mcp]\nask_timeout = 1\n");
    let mut server = Server::start(&home);
    let url = server.url("/mcp");
    let doc = sdk(
        &["--http", &url],
        json!([{"op": "call", "name": TOOL, "arguments": {"timezone": "UTC"}}]),
    );
    let err = &doc["results"][0]["rpc_error"];
    assert!(
        err["message"].as_str().unwrap().contains("nobody approved"),
        "{doc}"
    );
    let call = call_entry(&audit(&server, "service=time").await);
    assert_eq!(call["result"], "blocked", "{call}");
    assert_eq!(call["details"]["approval"], "timed_out", "{call}");
    let (_, listed) = http::send_json(client().get(server.url("/api/tools/approvals"))).await;
    assert_eq!(listed["waiting"], json!([]), "{listed}");
    server.stop();
}

/// A call whose request is cut off by its deadline while it waits (as a client that hangs up
/// cuts it) is refused at once as abandoned: an approval after that would run a call nobody
/// reads. Its entry says so and the waiting list is empty again.
#[tokio::test(flavor = "multi_thread")]
async fn an_ask_call_whose_request_is_cut_off_is_refused_as_abandoned() {
    let home = home("[server]\nrequest_timeout = 2\n");
    let mut server = Server::start(&home);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": TOOL, "arguments": {"timezone": "UTC"}}});
    let (status, body) = http::send_json(
        client()
            .post(server.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(call.to_string()),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (504, &json!("request_timeout")),
        "{body}"
    );
    // A hang guard only: the wait ends when the request does, long before `ask_timeout`.
    let mut entry = None;
    for _ in 0..600 {
        let entries = audit(&server, "service=time").await;
        if let Some(e) = entries
            .iter()
            .find(|e| e["action"] == "tools/call get_current_time")
        {
            entry = Some(e.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = entry.expect("no entry of the call");
    assert_eq!(call["result"], "blocked", "{call}");
    assert_eq!(call["details"]["approval"], "abandoned", "{call}");
    let (_, listed) = http::send_json(client().get(server.url("/api/tools/approvals"))).await;
    assert_eq!(listed["waiting"], json!([]), "{listed}");
    server.stop();
}
