//! MCP from the client's side, for the tests that drive Maestra's `/mcp` (or `maestra mcp`):
//! the official Python SDK through `tests/mcp/client.py`, and the reference tool server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

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

/// `[mcp.servers.time]`: the reference server of `kind`, in UTC.
pub fn time_toml(kind: &str) -> String {
    format!(
        "[mcp.servers.time]\ncommand = [\"{}\", \"--local-timezone\", \"UTC\"]\nkind = \"{kind}\"\n",
        time_server().display()
    )
}

/// Runs the SDK client with `target` args (`--http URL ...` or `--stdio CMD ...`) and
/// `steps`; its JSON document.
pub fn sdk(target: &[&str], steps: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let mut child = Command::new(super::python())
        .arg(script)
        .args(["--timeout", "60"])
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
