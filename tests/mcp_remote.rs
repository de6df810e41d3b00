//! Tool servers over streamable HTTP (`[mcp.servers.NAME] url = "..."`, issue 27 item 2, SPEC
//! §2.11): the official MCP Python SDK serves them (`tests/mcp/http_server.py`, `mcp` 2.3.0 on
//! uvicorn, 127.0.0.1 port 0), Maestra dials them through its egress client with a header
//! from its vault, and the SDK's client (`tests/mcp/client.py`) calls their tools through
//! Maestra's `/mcp`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mcp::{assert_entry, audit, text, tool_names};
use common::server::Server;
use common::{Home, all_file_bytes, contains};
use serde_json::{Value, json};

/// The token the echo server requires, stored in Maestra's vault; the server quotes it back.
const TOKEN: &str = "remote-CANARY-7f3a9c51e2";
/// A token the server refuses, for the server configured with the wrong secret; its 401 body
/// quotes it back.
const WRONG_TOKEN: &str = "wrong-CANARY-0b8d44f1a6";

/// One of `tests/mcp/http_server.py`'s upstreams, stopped when dropped.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    /// `mode` is `serve` (the SDK's server, requiring `Authorization: Bearer TOKEN`),
    /// `redirect`, `garbage` or `flood`.
    fn start(mode: &str) -> Upstream {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/http_server.py");
        let mut child = Command::new(common::python())
            .arg(script)
            .arg(mode)
            .env("MCP_TEST_AUTHORIZATION", format!("Bearer {TOKEN}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let buf = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        // A hang guard only: the SDK takes a second or two to import.
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            panic!(
                "http_server.py {mode} did not start: {}",
                stderr.lock().unwrap()
            );
        };
        Upstream { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[mcp.servers.NAME]` for a `url` server, with `extra` lines.
fn url_server(name: &str, url: &str, kind: &str, extra: &str) -> String {
    format!("[mcp.servers.{name}]\nurl = \"{url}\"\nkind = \"{kind}\"\n{extra}\n")
}

const HEADERS: &str = "headers = { Authorization = \"vault:remote_token\" }";

/// A home with `toml` as its configuration and both tokens in its vault.
fn home(env: &[(&str, &str)], toml: &str) -> Home {
    let mut home = Home::new();
    for (k, v) in env {
        home = home.with(k, v);
    }
    home.ok(&["init"], b"");
    let home = home.with_toml(toml);
    home.ok(
        &["vault", "put", "remote_token"],
        format!("Bearer {TOKEN}").as_bytes(),
    );
    home.ok(
        &["vault", "put", "wrong_token"],
        format!("Bearer {WRONG_TOKEN}").as_bytes(),
    );
    home
}

// The helpers below are tests/mcp.rs's.

/// Runs the SDK client against Maestra's `/mcp` with `steps`; its JSON document.
fn sdk(url: &str, steps: Value) -> Value {
    common::mcp::sdk(&["--http", url], steps)
}

/// The message of step `r`'s JSON-RPC error (the step must have failed with one).
fn rpc_message(r: &Value) -> String {
    let e = &r["rpc_error"];
    assert!(e.is_object(), "not a JSON-RPC error: {r}");
    e["message"].as_str().unwrap().to_string()
}

/// No canary in the client's output, the server's log, or any file of the home.
fn assert_no_canary(doc: &Value, log: &str, home: &Home) {
    let shown = doc.to_string();
    for canary in [TOKEN, WRONG_TOKEN] {
        assert!(!shown.contains(canary), "{shown}");
        assert!(!log.contains(canary), "{log}");
        for (path, bytes) in all_file_bytes(&home.root()) {
            assert!(
                !contains(&bytes, canary),
                "{} holds a credential",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_server_gets_its_vault_header_through_egress_and_its_echo_is_scrubbed() {
    let up = Upstream::start("serve");
    let toml = url_server("remote", &up.url(), "local", HEADERS)
        + &url_server(
            "wrongkey",
            &up.url(),
            "local",
            "headers = { Authorization = \"vault:wrong_token\" }",
        );
    let home = home(&[], &toml);
    let mut server = Server::start(&home);
    let doc = sdk(
        &server.url("/mcp"),
        json!([
            {"op": "list"},
            {"op": "call", "name": "remote__echo", "arguments": {"text": "hello"}},
            {"op": "call", "name": "wrongkey__echo", "arguments": {"text": "hello"}},
            {"op": "call", "name": "remote__echo", "arguments": {"text": "again"}},
        ]),
    );
    let r = doc["results"].as_array().unwrap();
    let names = tool_names(&r[0]);
    assert!(names.contains(&"remote__echo".to_string()), "{names:?}");
    // The server refused the wrong credential: it has nothing to list.
    assert!(
        !names.iter().any(|n| n.starts_with("wrongkey__")),
        "{names:?}"
    );

    // The server got the vault's header (it answered at all) and quoted it, whole and as the
    // bare token: both reach the client scrubbed.
    assert_eq!(r[1]["is_error"], false, "{}", r[1]);
    let said = text(&r[1]);
    assert!(said.starts_with("echo: hello; "), "{said}");
    assert_eq!(
        said, "echo: hello; authorization: [REDACTED]; token: [REDACTED]",
        "{}",
        r[1]
    );
    assert_eq!(text(&r[3]), said.replace("hello", "again"), "{}", r[3]);
    // The refusal names the status and what to check, never the body that quoted the token.
    let refused = rpc_message(&r[2]);
    assert!(
        refused.contains("401") && refused.contains("vault secret"),
        "{refused}"
    );

    let entries = audit(&server, "category=tool").await;
    let call = entries
        .iter()
        .find(|e| {
            e["service"] == "remote" && e["action"] == "tools/call echo" && e["result"] == "success"
        })
        .unwrap_or_else(|| panic!("{entries:#?}"));
    let d = &call["details"];
    assert_eq!(d["tool"], "echo", "{call}");
    // What egress counted for this call's POST, on the host it dialled.
    assert_eq!(d["host"], "127.0.0.1", "{call}");
    let sent = d["bytes_sent"].as_u64().unwrap();
    assert!(sent > d["bytes_in"].as_u64().unwrap(), "{call}");
    assert!(d["bytes_received"].as_u64().unwrap() > 0, "{call}");
    assert!(d["bytes_out"].as_u64().unwrap() > 0, "{call}");
    assert_entry(&entries, "wrongkey", "error");

    let log = server.stop();
    assert_no_canary(&doc, &log, &home);
    drop(up);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_only_mode_refuses_a_cloud_url_server_and_egress_a_non_local_address() {
    let up = Upstream::start("serve");
    // TEST-NET-3: egress refuses the address before any connection, so nothing is dialled.
    let toml = url_server("remote", &up.url(), "local", HEADERS)
        + &url_server("cloudy", &up.url(), "cloud", HEADERS)
        + &url_server("faraway", "http://203.0.113.7:9/mcp", "local", HEADERS);
    let home = home(&[("MAESTRA_LOCAL_ONLY", "true")], &toml);
    let mut server = Server::start(&home);
    let doc = sdk(
        &server.url("/mcp"),
        json!([
            {"op": "list"},
            {"op": "call", "name": "cloudy__echo", "arguments": {"text": "out"}},
            {"op": "call", "name": "remote__echo", "arguments": {"text": "in"}},
            {"op": "call", "name": "faraway__echo", "arguments": {"text": "out"}},
            {"op": "call", "name": "faraway__echo", "arguments": {"text": "out again"}},
        ]),
    );
    let r = doc["results"].as_array().unwrap();
    let names = tool_names(&r[0]);
    assert!(names.contains(&"remote__echo".to_string()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("cloudy__") || n.starts_with("faraway__")),
        "{names:?}"
    );
    let cloudy = rpc_message(&r[1]);
    assert!(cloudy.contains("local-only"), "{cloudy}");
    assert!(
        r[1].to_string().contains("kind = \\\"cloud\\\""),
        "{}",
        r[1]
    );
    assert_eq!(r[2]["is_error"], false, "{}", r[2]);
    assert!(text(&r[2]).starts_with("echo: in; "), "{}", r[2]);
    // Declared local, but its address is not: egress's guard refuses it, every time (a block
    // is decided again at each call, not waited out as a failure).
    for i in [3, 4] {
        let m = rpc_message(&r[i]);
        assert!(m.contains("local-only"), "{m}");
        assert!(r[i].to_string().contains("203.0.113.7"), "{}", r[i]);
    }

    let blocks = audit(&server, "category=local_only_block").await;
    for who in ["cloudy", "faraway"] {
        assert_entry(&blocks, who, "blocked");
    }
    assert!(
        !blocks.iter().any(|e| e["service"] == "remote"),
        "{blocks:#?}"
    );
    let tools = audit(&server, "category=tool").await;
    assert_entry(&tools, "remote", "success");
    let log = server.stop();
    assert_no_canary(&doc, &log, &home);
    drop(up);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_redirects_or_answers_garbage_is_a_clear_error_and_the_others_go_on() {
    let good = Upstream::start("serve");
    let redirect = Upstream::start("redirect");
    let garbage = Upstream::start("garbage");
    let flood = Upstream::start("flood");
    let toml = url_server("remote", &good.url(), "local", HEADERS)
        + &url_server("moved", &redirect.url(), "local", HEADERS)
        + &url_server("garbage", &garbage.url(), "local", HEADERS)
        + &url_server("flood", &flood.url(), "local", HEADERS)
        + "[mcp]\ncall_timeout = 3\n";
    let home = home(&[], &toml);
    let mut server = Server::start(&home);
    let doc = sdk(
        &server.url("/mcp"),
        json!([
            {"op": "call", "name": "moved__echo", "arguments": {"text": "x"}},
            {"op": "call", "name": "garbage__echo", "arguments": {"text": "x"}},
            {"op": "call", "name": "flood__echo", "arguments": {"text": "x"}},
            {"op": "call", "name": "remote__echo", "arguments": {"text": "still here"}},
            {"op": "list"},
            // A server that hangs: the call's deadline answers, and the session goes on.
            {"op": "call", "name": "remote__sleep", "arguments": {"seconds": 600}},
            {"op": "call", "name": "remote__echo", "arguments": {"text": "after"}},
        ]),
    );
    let r = doc["results"].as_array().unwrap();
    let moved = rpc_message(&r[0]);
    assert!(
        moved.contains("302") && moved.contains("never follows redirects"),
        "{moved}"
    );
    // Not the place it pointed to: a `Location` may hold a credential.
    assert!(!moved.contains("198.51.100.7"), "{moved}");
    let garbled = rpc_message(&r[1]);
    assert!(garbled.contains("not a JSON-RPC message"), "{garbled}");
    // An event that never ends is read up to the limit, then the server is given up.
    let flooded = rpc_message(&r[2]);
    assert!(flooded.contains("handshake"), "{flooded}");
    assert_eq!(r[3]["is_error"], false, "{}", r[3]);
    assert!(text(&r[3]).starts_with("echo: still here; "), "{}", r[3]);
    let names = tool_names(&r[4]);
    assert!(names.contains(&"remote__echo".to_string()), "{names:?}");
    for broken in ["moved__", "garbage__", "flood__"] {
        assert!(!names.iter().any(|n| n.starts_with(broken)), "{names:?}");
    }

    let hung = rpc_message(&r[5]);
    assert!(hung.contains("did not answer within 3 s"), "{hung}");
    assert!(text(&r[6]).starts_with("echo: after; "), "{}", r[6]);

    let entries = audit(&server, "category=tool").await;
    assert!(
        entries.iter().any(|e| e["service"] == "remote"
            && e["action"] == "tools/call sleep"
            && e["details"]["error"] == "upstream_timeout"),
        "{entries:#?}"
    );
    for who in ["moved", "garbage", "flood"] {
        assert_entry(&entries, who, "error");
    }
    assert_entry(&entries, "remote", "success");
    let log = server.stop();
    // The flood was cut at the stated limit, and said so.
    assert!(log.contains("sent an event over 8388608 bytes"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_no_canary(&doc, &log, &home);
    drop((good, redirect, garbage, flood));
}
