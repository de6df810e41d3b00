//! The MCP tests' shared parts: the official Python SDK client (`tests/mcp/client.py`), the
//! reference `mcp-server-time` from the project's `.venv`, and the audit entries a server wrote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::http::{self, client};
use super::server::Server;

/// The reference MCP server the gateway tests start, from the project's `.venv`.
pub fn time_server() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/mcp-server-time");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test once (it installs mcp-server-time)",
        p.display()
    );
    p
}

/// Runs the SDK client with `target` args (`--http URL ...` or `--stdio CMD ...`) and
/// `steps`; its JSON document.
pub fn sdk(target: &[&str], steps: Value) -> Value {
    sdk_in(&[], target, steps)
}

/// [`sdk`] run under `wrapper` (`["ip", "netns", "exec", NS]`: in a network namespace).
pub fn sdk_in(wrapper: &[&str], target: &[&str], steps: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(super::python());
            c
        }
        None => Command::new(super::python()),
    };
    let mut child = command
        .arg(script)
        .args(["--timeout", "120"])
        .args(target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(steps.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SDK client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn tool_names(listed: &Value) -> Vec<String> {
    listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn time_toml(kind: &str) -> String {
    format!(
        "[mcp.servers.time]\ncommand = [\"{}\", \"--local-timezone\", \"UTC\"]\nkind = \"{kind}\"\n",
        time_server().display()
    )
}

/// The audit entries the server has written, through the API (admin in local mode).
pub async fn audit(server: &Server, query: &str) -> Vec<Value> {
    let (status, body) =
        http::send_json(client().get(server.url(&format!("/api/audit?{query}")))).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// Some entry is of `service` with `result`.
pub fn assert_entry(entries: &[Value], service: &str, result: &str) {
    assert!(
        entries
            .iter()
            .any(|e| e["service"] == service && e["result"] == result),
        "no {result} entry of {service}: {entries:#?}"
    );
}
