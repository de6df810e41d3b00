//! A stdio tool server's program, started with only the environment it is given: a few
//! variables it needs to find its interpreter and home, and its own credentials from the
//! vault. Never Maestra's own environment, which holds Maestra's keys.

use std::process::Stdio;

use rmcp::transport::TokioChildProcess;
use secrecy::{ExposeSecret, SecretString};

use super::credentials;
use crate::config::mcp::ToolServer;
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;

/// The environment a tool program inherits from Maestra's.
const INHERITED_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TZ",
];

/// The running program as an MCP transport (its stdin and stdout), and the credentials it
/// was given, which are scrubbed from everything it sends back.
pub async fn spawn(
    server: &ToolServer,
    program: &str,
    args: &[String],
    vault: &Vault,
) -> Result<(TokioChildProcess, Vec<SecretString>)> {
    let name = &server.name;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let given = credentials::read(name, &server.env, vault).await?;
    for (key, value) in &given {
        cmd.env(key, value.expose_secret());
    }
    // Its stderr is its own: it may print the very tokens it was given.
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::UpstreamUnavailable(format!("cannot start the tool server {name:?}")).because(e)
        })?;
    Ok((transport, given.into_iter().map(|(_, v)| v).collect()))
}
