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
use super::pins::{Pins, Verdict};
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
    pins: Pins,
}

struct Upstream {
    config: ToolServer,
    state: Mutex<State>,
    /// Its tools as last listed, by their own names: what a call is checked against.
    listed: std::sync::Mutex<BTreeMap<String, Tool>>,
}

/// A server's tools as the assistant may see them, and what the pins said.
pub struct Listed {
    /// Named `SERVER__tool`; a tool whose definition changed since it was pinned is not here.
    pub tools: Vec<Tool>,
    /// Seen for the first time, and pinned now.
    pub pinned: Vec<String>,
    /// Changed since pinned: left out until approved.
    pub changed: Vec<String>,
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
        home: &std::path::Path,
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
                    listed: std::sync::Mutex::new(BTreeMap::new()),
                };
                (name.clone(), u)
            })
            .collect();
        Ok(Upstreams {
            servers,
            timeout: config.call_timeout,
            pins: Pins::new(home),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    pub fn reach(&self, server: &str) -> Option<Reach> {
        self.servers.get(server).map(|u| u.config.kind)
    }

    /// The server's tools, named `SERVER__tool`, checked against their pins. Tools whose
    /// names MCP would not allow once prefixed are left out rather than renamed (a renamed
    /// tool could shadow another).
    pub async fn tools(&self, server: &str, vault: &Vault, local_only: bool) -> Result<Listed> {
        let u = self.get(server)?;
        let (client, _) = u.client(vault, local_only).await?;
        let listed: Vec<Tool> = tokio::time::timeout(self.timeout, client.list_all_tools())
            .await
            .map_err(|_| timed_out(server, self.timeout))?
            .map_err(|e| failed(server, e))?
            .into_iter()
            .filter(|t| names::valid_tool(&names::join(server, &t.name)))
            .collect();
        let verdicts = self.pins.check(server, &listed)?;
        *u.listed.lock().unwrap_or_else(|p| p.into_inner()) = listed
            .iter()
            .map(|t| (t.name.to_string(), t.clone()))
            .collect();
        let mut out = Listed {
            tools: Vec::new(),
            pinned: Vec::new(),
            changed: Vec::new(),
        };
        for (mut t, verdict) in listed.into_iter().zip(verdicts) {
            match verdict {
                Verdict::Changed => {
                    out.changed.push(t.name.to_string());
                    continue;
                }
                Verdict::Pinned => out.pinned.push(t.name.to_string()),
                Verdict::Same => {}
            }
            t.name = names::join(server, &t.name).into();
            out.tools.push(t);
        }
        Ok(out)
    }

    /// A tool's definition as the server lists it now (for `maestra mcp approve`).
    pub async fn definition(
        &self,
        server: &str,
        tool: &str,
        vault: &Vault,
        local_only: bool,
    ) -> Result<Tool> {
        self.tools(server, vault, local_only).await?;
        self.listed(server, tool)?.ok_or_else(|| {
            Error::NotFound(format!("the tool server {server:?} lists no tool {tool:?}"))
        })
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    fn listed(&self, server: &str, tool: &str) -> Result<Option<Tool>> {
        let u = self.get(server)?;
        let listed = u.listed.lock().unwrap_or_else(|p| p.into_inner());
        Ok(listed.get(tool).cloned())
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
        // Only a listed tool, as pinned (or approved since), may be called: its definition is
        // what the assistant was shown.
        if self.listed(server, tool)?.is_none() {
            self.tools(server, vault, local_only).await?;
        }
        let def = self.listed(server, tool)?.ok_or_else(|| {
            Error::BadRequest(format!("the tool server {server:?} lists no tool {tool:?}"))
        })?;
        if self.pins.check(server, std::slice::from_ref(&def))? == [Verdict::Changed] {
            return Err(Error::Forbidden(format!(
                "the tool {tool:?} of {server:?} changed its description or schema since it was \
                 pinned, so it is disabled: if the change is expected, approve it with \
                 `maestra mcp approve {server} {tool}`"
            )));
        }
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
