//! A stdio tool server's program, started with only the environment it is given: a few
//! variables it needs to find its interpreter and home, and its own credentials from the
//! vault. Never Maestra's own environment, which holds Maestra's keys. Under local-only mode
//! it is started inside its network sandbox, through the launcher (`mcp::sandbox`).

use std::process::Stdio;
use std::time::Duration;

use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::transport::TokioChildProcess;
use secrecy::{ExposeSecret, SecretString};

use super::credentials;
use super::sandbox::{self, Sandbox};
use crate::config::mcp::ToolServer;
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;

/// The environment a tool program inherits from Maestra's.
const INHERITED_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TZ",
];

/// The running program as an MCP transport (its stdin and stdout), and the credentials it
/// was given, which are scrubbed from everything it sends back. With a `sandbox`, the program
/// is started by the launcher inside it, and this returns once the launcher said the sandbox
/// stands (within `start_timeout`) or with its refusal.
pub async fn spawn(
    server: &ToolServer,
    program: &str,
    args: &[String],
    vault: &Vault,
    sandbox: Option<&Sandbox>,
    start_timeout: Duration,
) -> Result<(TokioChildProcess, Vec<SecretString>)> {
    let name = &server.name;
    let mut cmd = match sandbox {
        None => tokio::process::Command::new(program),
        Some(s) => {
            let mut launcher = launcher(s)?;
            launcher.arg("--").arg(program);
            launcher
        }
    };
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
    let cannot_start =
        |e| Error::UpstreamUnavailable(format!("cannot start the tool server {name:?}")).because(e);
    let secrets = given.into_iter().map(|(_, v)| v).collect();
    if sandbox.is_none() {
        // Its stderr is its own: it may print the very tokens it was given.
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .map_err(cannot_start)?;
        return Ok((transport, secrets));
    }
    // One process group: stopping the launcher stops the program it started.
    let mut wrapped = CommandWrap::from(cmd);
    wrapped.wrap(ProcessGroup::leader());
    // The launcher's stderr carries its status line; the program's is discarded inside.
    let (transport, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot_start)?;
    let stderr = stderr.ok_or_else(|| {
        Error::UpstreamUnavailable(format!(
            "the launcher of the tool server {name:?} has no standard error to report on"
        ))
    })?;
    // A refusal drops the transport, which stops the launcher.
    sandbox::started(stderr, name, start_timeout).await?;
    Ok((transport, secrets))
}

/// `maestra sandbox-exec --proxy-socket PATH`: this very binary, as the launcher.
fn launcher(sandbox: &Sandbox) -> Result<tokio::process::Command> {
    let me = std::env::current_exe().map_err(|e| {
        Error::io(
            "cannot find the maestra binary to start the sandbox with",
            e,
        )
    })?;
    let mut cmd = tokio::process::Command::new(me);
    cmd.arg(sandbox::SUBCOMMAND)
        .arg("--proxy-socket")
        .arg(sandbox.socket());
    Ok(cmd)
}
