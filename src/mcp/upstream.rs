//! The tool servers the person added (`[mcp.servers.NAME]`), spoken to as an MCP client: each
//! program started on first use with only the environment it is given, its tools listed under
//! its name, each call bounded in time and size. The caller (`gateway::mcp`) decides who may
//! call and writes the audit entry; this module reports what happened.
//!
//! A program is a process that can do anything its user can, whatever its configuration says,
//! so local-only mode cannot trust a server's `kind` alone: a cloud server is refused, and a
//! local program runs only where its network can be confined (SPEC §2.11). This version has no
//! such confinement yet, so under local-only mode no program is started at all; the refusal
//! says so and how to proceed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, ProtocolVersion, ResultType, Tool,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::names;
use crate::config::mcp::{McpConfig, Reach, ToolServer, Transport};
use crate::error::{Error, LocalOnlyBlock, Result, ToolRpcError};
use crate::privsec::vault::Vault;

/// The environment a tool program inherits from Maestra's: what a program needs to find its
/// interpreter, home and locale. Never the rest, which holds Maestra's own keys.
const INHERITED_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TZ",
];
/// How long a program has to start and answer the handshake.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest result passed on to the assistant; a larger one is refused, not cut (a cut
/// JSON document would mislead more than it tells).
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// A crashed program is started again no sooner than this after its last start, doubling up
/// to [`MAX_BACKOFF`], so a program that dies at once is not restarted in a loop.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type Client = RunningService<RoleClient, ClientConfig>;

/// Every configured tool server.
pub struct Upstreams {
    servers: BTreeMap<String, Upstream>,
    timeout: Duration,
}

struct Upstream {
    config: ToolServer,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    client: Option<Client>,
    started: Option<Instant>,
    backoff: Option<Duration>,
}

/// A call's outcome as the audit entry needs it.
pub struct Called {
    pub result: CallToolResult,
    /// The program had died and was started again for this call.
    pub restarted: bool,
}

impl Upstreams {
    /// The configured servers; none may share a configured service's name, or a tool's
    /// prefix would not say where its call goes.
    pub fn new<'a>(
        config: &McpConfig,
        services: impl IntoIterator<Item = &'a String>,
    ) -> Result<Upstreams> {
        let services: Vec<&String> = services.into_iter().collect();
        if let Some(clash) = config.servers.keys().find(|n| services.contains(n)) {
            return Err(Error::Config(format!(
                "[mcp.servers.{clash}] has the name of the service [services.{clash}]; rename \
                 one of them (a tool's prefix must say where its call goes)"
            )));
        }
        let servers = config
            .servers
            .iter()
            .map(|(name, c)| {
                let u = Upstream {
                    config: c.clone(),
                    state: Mutex::new(State::default()),
                };
                (name.clone(), u)
            })
            .collect();
        Ok(Upstreams {
            servers,
            timeout: config.call_timeout,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    pub fn reach(&self, server: &str) -> Option<Reach> {
        self.servers.get(server).map(|u| u.config.kind)
    }

    /// The server's tools, named `SERVER__tool`; tools whose names MCP would not allow once
    /// prefixed are left out rather than renamed (a renamed tool could shadow another).
    pub async fn tools(&self, server: &str, vault: &Vault, local_only: bool) -> Result<Vec<Tool>> {
        let u = self.get(server)?;
        let (client, _) = u.client(vault, local_only).await?;
        let listed = tokio::time::timeout(self.timeout, client.list_all_tools())
            .await
            .map_err(|_| timed_out(server, self.timeout))?
            .map_err(|e| failed(server, e))?;
        Ok(listed
            .into_iter()
            .filter_map(|mut t| {
                let name = names::join(server, &t.name);
                names::valid_tool(&name).then(|| {
                    t.name = name.into();
                    t
                })
            })
            .collect())
    }

    /// One `tools/call`, bounded by `mcp.call_timeout` and [`MAX_RESULT_BYTES`].
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<JsonObject>,
        vault: &Vault,
        local_only: bool,
    ) -> Result<Called> {
        let u = self.get(server)?;
        let (client, restarted) = u.client(vault, local_only).await?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Some(a) = arguments {
            params = params.with_arguments(a);
        }
        // Dropping the call at the deadline sends the server `notifications/cancelled`.
        let mut result = tokio::time::timeout(self.timeout, client.call_tool(params))
            .await
            .map_err(|_| timed_out(server, self.timeout))?
            .map_err(|e| failed(server, e))?;
        // A server of an earlier revision sends no `resultType`, which a 2026-07-28 client
        // requires: a whole answer is what it is.
        result.result_type.get_or_insert(ResultType::COMPLETE);
        let size = serde_json::to_vec(&result).map_or(usize::MAX, |v| v.len());
        if size > MAX_RESULT_BYTES {
            return Err(Error::Upstream(format!(
                "the tool server {server:?} answered {size} bytes; at most {MAX_RESULT_BYTES} \
                 are passed on"
            )));
        }
        Ok(Called { result, restarted })
    }

    fn get(&self, server: &str) -> Result<&Upstream> {
        self.servers
            .get(server)
            .ok_or_else(|| Error::NotFound(format!("no tool server named {server:?}")))
    }
}

impl Upstream {
    /// The running client, started (or restarted after a crash) if need be, and whether it
    /// was restarted for this call. The lock is held only while starting: calls run at once.
    async fn client(
        &self,
        vault: &Vault,
        local_only: bool,
    ) -> Result<(rmcp::Peer<RoleClient>, bool)> {
        self.admit(local_only)?;
        let mut state = self.state.lock().await;
        if let Some(c) = &state.client
            && !c.is_transport_closed()
        {
            return Ok((c.peer().clone(), false));
        }
        let restarting = state.started.is_some();
        if restarting
            && let (Some(started), Some(backoff)) = (state.started, state.backoff)
            && started.elapsed() < backoff
        {
            return Err(Error::UpstreamUnavailable(format!(
                "the tool server {:?} stopped and is started again in at most {} s",
                self.config.name,
                backoff.saturating_sub(started.elapsed()).as_secs() + 1
            )));
        }
        state.client = None;
        state.started = Some(Instant::now());
        state.backoff = Some(match state.backoff {
            Some(b) if restarting => (b * 2).min(MAX_BACKOFF),
            _ => FIRST_BACKOFF,
        });
        let client = self.start(vault).await?;
        let peer = client.peer().clone();
        state.client = Some(client);
        Ok((peer, restarting))
    }

    /// Local-only mode's rule for this server (see the module doc).
    fn admit(&self, local_only: bool) -> Result<()> {
        if !local_only {
            return Ok(());
        }
        let name = &self.config.name;
        let reason = match (self.config.kind, &self.config.transport) {
            (Reach::Cloud, _) => format!(
                "the tool server {name:?} is declared kind = \"cloud\"; local-only mode \
                 (MAESTRA_LOCAL_ONLY) reaches only this machine and the local network"
            ),
            (Reach::Local, Transport::Stdio { .. }) => format!(
                "the tool program {name:?} could reach the internet whatever it is declared to \
                 do, and this version cannot confine a program's network yet, so local-only \
                 mode does not start it; turn local-only mode off to use it"
            ),
            (Reach::Local, Transport::Http { .. }) => return Ok(()),
        };
        Err(Error::LocalOnly(Box::new(LocalOnlyBlock {
            service: name.clone(),
            reason,
            suggested_alternatives: Vec::new(),
        })))
    }

    async fn start(&self, vault: &Vault) -> Result<Client> {
        let name = &self.config.name;
        let Transport::Stdio { program, args } = &self.config.transport else {
            return Err(Error::UpstreamUnavailable(format!(
                "the tool server {name:?} is a streamable-HTTP server, which this version does \
                 not dial yet; run it as a `command` server"
            )));
        };
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
        for (key, secret) in &self.config.env {
            let value = vault.get(secret).await.map_err(|e| match e.plain() {
                Error::SecretNotFound(_) => Error::UpstreamUnavailable(format!(
                    "the tool server {name:?} needs the vault secret {secret:?}: store it with \
                     `maestra vault put {secret}`"
                )),
                _ => e,
            })?;
            cmd.env(key, value.expose_secret());
        }
        // Its stderr is its own: it may print the very tokens it was given.
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::UpstreamUnavailable(format!("cannot start the tool server {name:?}"))
                    .because(e)
            })?;
        let me = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("maestra", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        tokio::time::timeout(START_TIMEOUT, me.serve(transport))
            .await
            .map_err(|_| timed_out(name, START_TIMEOUT))?
            .map_err(|e| {
                Error::UpstreamUnavailable(format!(
                    "the tool server {name:?} did not complete the MCP handshake"
                ))
                .because(e)
            })
    }
}

fn timed_out(server: &str, after: Duration) -> Error {
    Error::UpstreamTimeout(format!(
        "the tool server {server:?} did not answer within {} s",
        after.as_secs()
    ))
}

/// A JSON-RPC error from the server is its answer to the call (passed on as such); a closed
/// transport means the program died (started again on the next call).
fn failed(server: &str, e: ServiceError) -> Error {
    match e {
        ServiceError::McpError(data) => Error::ToolError(Box::new(ToolRpcError {
            code: data.code.0,
            message: data.message.chars().take(1024).collect(),
        })),
        ServiceError::TransportClosed => Error::Upstream(format!(
            "the tool server {server:?} stopped; it is started again on the next call"
        )),
        other => Error::Upstream(format!("the tool server {server:?} failed")).because(other),
    }
}
