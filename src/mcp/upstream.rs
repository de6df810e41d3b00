//! The tool servers the person added (`[mcp.servers.NAME]`), spoken to as an MCP client: a
//! program (`command`) started on first use with only the environment it is given, or a
//! streamable-HTTP endpoint (`url`) dialled on first use through egress with its `headers`
//! (`remote`); their tools listed under the server's name, each call bounded in time and size.
//! The caller (`gateway::mcp`) decides who may call and writes the audit entry; this module
//! reports what happened.
//!
//! A program is a process that can do anything its user can, whatever its configuration says,
//! so local-only mode cannot trust a server's `kind` alone: a cloud server is refused, and a
//! local program is started inside its network sandbox (`mcp::sandbox`: a network namespace
//! whose only way out is Maestra's proxy under the egress guard; SPEC §2.11). A program started
//! before local-only mode came on was started without one, so it is stopped then
//! ([`Upstreams::stop_all`]) and the next call starts it sandboxed. One started in its sandbox
//! runs on there when local-only mode is turned off (its proxy then allowing what egress
//! allows outside local-only mode) until it stops; it starts again without one. A `url` server's traffic is Maestra's own, so a local
//! one is dialled, and egress's guard decides each address it reaches.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    ClientRequest, GetExtensions, Implementation, JsonObject, ProtocolVersion, ResultType,
    ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::limits::MAX_RESULT_BYTES;
use super::pins::{Pins, Seen, Verdict};
use super::sandbox::{Sandbox, Sandboxes};
use super::{names, program, remote};
use crate::config::mcp::{McpConfig, Reach, Rule, ToolServer, Transport};
use crate::egress::Egress;
use crate::error::{Error, LocalOnlyBlock, Result, ToolRpcError};
use crate::privsec::audit::AuditLog;
use crate::privsec::vault::Vault;
use crate::services::redact::Redactor;

/// How long a program has to start and answer the handshake.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A crashed program is started again no sooner than this after its last start, doubling up
/// to [`MAX_BACKOFF`], so a program that dies at once is not restarted in a loop.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A program that ran this long before it died starts again at once, its backoff forgotten.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a listing may take; past it the program is stopped (a server that hangs on
/// `tools/list` would otherwise hold every client's listing).
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most tools one server may offer (the rest are left out, and said so in the log):
/// they are kept in memory and pinned on disk.
pub const MAX_TOOLS: usize = 256;
/// A call of a tool the last listing did not have lists again at most this often.
const RELIST_AFTER: Duration = Duration::from_secs(10);

type Client = RunningService<RoleClient, ClientConfig>;

/// Every configured tool server.
pub struct Upstreams {
    servers: BTreeMap<String, Upstream>,
    timeout: Duration,
    pins: Pins,
    /// The only way out: a `url` server is dialled through it, and a sandboxed program's
    /// proxy decides with it.
    egress: Egress,
    /// Where a program started under local-only mode gets its proxy.
    sandboxes: Sandboxes,
    /// Changed definitions already reported (server, tool, fingerprint): at most
    /// servers × [`MAX_TOOLS`], since only listed tools are reported.
    reported: std::sync::Mutex<std::collections::HashSet<(String, String, String)>>,
}

struct Upstream {
    config: ToolServer,
    state: Mutex<State>,
    /// Its tools as last listed, by their own names, with their fingerprints: what a call is
    /// checked against.
    listed: std::sync::Mutex<BTreeMap<String, (Tool, Seen)>>,
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
    /// The running program's network sandbox: its proxy is served while this is kept.
    sandbox: Option<Sandbox>,
    /// When the running program was started.
    started: Option<Instant>,
    /// Whether a program ever ran: a start after that is a restart.
    ran: bool,
    /// The wait before the next start, doubled by each failure or early death.
    backoff: Option<Duration>,
    /// No start before this; with the reason the last one failed (our own message).
    retry: Option<(Instant, String)>,
    /// The credentials the server was given (a program's `env`, a URL's `headers`): scrubbed
    /// from everything it sends back.
    secrets: Vec<SecretString>,
    /// When its tools were last listed (a call of a tool not listed lists again, at most
    /// once per [`RELIST_AFTER`]).
    listed_at: Option<Instant>,
}

/// A tool found callable by [`Upstreams::check`], and its rule (`Allow`, or `Ask`: the
/// caller gets the person's approval, then checks again, since the wait may have been long).
/// Only `check` makes one.
pub struct Admitted {
    server: String,
    tool: String,
    pub rule: Rule,
}

/// A call's outcome as the audit entry needs it.
pub struct Called {
    pub result: CallToolResult,
    /// The result as JSON, as measured against [`MAX_RESULT_BYTES`] (the audit entry's size
    /// and digest are taken from it).
    pub answer: Vec<u8>,
    /// The program had died and was started again for this call.
    pub restarted: bool,
}

impl Upstreams {
    /// The configured servers; none may share a configured service's name, or a tool's
    /// prefix would not say where its call goes. The audit log records the destinations a
    /// sandboxed program's proxy decides.
    pub fn new<'a>(
        config: &McpConfig,
        services: impl IntoIterator<Item = &'a String>,
        home: &std::path::Path,
        egress: Egress,
        audit: AuditLog,
    ) -> Result<Upstreams> {
        let services: Vec<&String> = services.into_iter().collect();
        if let Some(clash) = config
            .servers
            .keys()
            .find(|n| services.contains(n) || crate::services::is_builtin(n))
        {
            return Err(Error::Config(format!(
                "[mcp.servers.{clash}] has the name of the service {clash:?}; rename it (a \
                 tool's prefix must say where its call goes, and a key's --services list \
                 names one of them)"
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
            sandboxes: Sandboxes::new(home, audit),
            egress,
            reported: std::sync::Mutex::new(std::collections::HashSet::new()),
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
        let (client, _) = u.client(self.dial(vault), local_only).await?;
        let answer = match tokio::time::timeout(LIST_TIMEOUT, client.list_all_tools()).await {
            Ok(a) => a.map_err(|e| failed(server, e))?,
            Err(_) => {
                u.stop().await;
                return Err(timed_out(server, LIST_TIMEOUT));
            }
        };
        if answer.len() > MAX_TOOLS {
            tracing::warn!(
                server,
                tools = answer.len(),
                "tool server lists too many tools; the first {MAX_TOOLS} are offered"
            );
        }
        let listed: Vec<Tool> = answer
            .into_iter()
            .take(MAX_TOOLS)
            .filter(|t| names::valid_tool(&names::join(server, &t.name)))
            // A denied tool is not offered at all: its description never reaches the model.
            .filter(|t| u.config.policy.rule(&t.name) != Rule::Deny)
            // Only what the pin covers goes on: icons and `_meta` could change unseen.
            .map(|mut t| {
                t.icons = None;
                t.meta = None;
                t
            })
            .collect();
        let seen: Vec<Seen> = listed.iter().map(Seen::of).collect();
        let verdicts = self.pins.check(server, &seen)?;
        *u.listed.lock().unwrap_or_else(|p| p.into_inner()) = listed
            .iter()
            .zip(seen)
            .map(|(t, seen)| (seen.name.clone(), (t.clone(), seen)))
            .collect();
        u.state.lock().await.listed_at = Some(Instant::now());
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

    /// Stops every program running outside a sandbox: local-only mode is on, and a program
    /// it would not start so must not keep running either (the next call starts it
    /// sandboxed, or refuses it). Sandboxed ones run on. A program still starting is stopped
    /// on the next call of this (the lock is not waited for).
    pub fn stop_all(&self) {
        for u in self.servers.values() {
            if let Ok(mut state) = u.state.try_lock()
                && state.client.is_some()
                && state.sandbox.is_none()
            {
                state.stop();
                tracing::warn!(server = %u.config.name, "tool server stopped: local-only mode is on");
            }
        }
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

    /// A tool's definition as the last listing had it (see [`Upstreams::tools`]).
    pub fn definition_listed(&self, server: &str, tool: &str) -> Option<Tool> {
        self.listed(server, tool).ok().flatten()
    }

    /// Whether a changed `tool` of `server`, as last listed, is reported for the first time.
    pub fn first_report(&self, server: &str, tool: &str) -> bool {
        let Ok(Some(seen)) = self.seen(server, tool) else {
            return false;
        };
        let key = (server.to_string(), tool.to_string(), seen.fingerprint);
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    fn listed(&self, server: &str, tool: &str) -> Result<Option<Tool>> {
        let u = self.get(server)?;
        let listed = u.listed.lock().unwrap_or_else(|p| p.into_inner());
        Ok(listed.get(tool).map(|(t, _)| t.clone()))
    }

    /// A listed tool's name and fingerprint, without copying its definition.
    fn seen(&self, server: &str, tool: &str) -> Result<Option<Seen>> {
        let u = self.get(server)?;
        let listed = u.listed.lock().unwrap_or_else(|p| p.into_inner());
        Ok(listed.get(tool).map(|(_, seen)| seen.clone()))
    }

    /// Whether `tool` of `server` may be called now: not denied, listed, and as pinned (or
    /// approved since). Only a listed tool may be called: its definition is what the assistant
    /// was shown. [`Upstreams::call`] takes the admission this returns, so no call skips it.
    pub async fn check(
        &self,
        server: &str,
        tool: &str,
        vault: &Vault,
        local_only: bool,
    ) -> Result<Admitted> {
        let u = self.get(server)?;
        let rule = u.config.policy.rule(tool);
        if rule == Rule::Deny {
            return Err(Error::Forbidden(format!(
                "the tool {tool:?} of {server:?} is denied by [mcp.servers.{server}] tools"
            )));
        }
        let mut seen = self.seen(server, tool)?;
        if seen.is_none() {
            let recent = u
                .state
                .lock()
                .await
                .listed_at
                .is_some_and(|t| t.elapsed() < RELIST_AFTER);
            if !recent {
                self.tools(server, vault, local_only).await?;
                seen = self.seen(server, tool)?;
            }
        }
        let seen = seen.ok_or_else(|| {
            Error::BadRequest(format!("the tool server {server:?} lists no tool {tool:?}"))
        })?;
        if self.pins.check(server, std::slice::from_ref(&seen))? == [Verdict::Changed] {
            return Err(Error::Forbidden(format!(
                "the tool {tool:?} of {server:?} changed its description or schema since it was \
                 pinned, so it is disabled: if the change is expected, approve it with \
                 `maestra mcp approve {server} {tool}`"
            )));
        }
        Ok(Admitted {
            server: server.to_string(),
            tool: tool.to_string(),
            rule,
        })
    }

    /// One `tools/call` of an admitted tool, bounded by `mcp.call_timeout` and
    /// [`MAX_RESULT_BYTES`].
    pub async fn call(
        &self,
        admitted: Admitted,
        arguments: Option<JsonObject>,
        vault: &Vault,
        local_only: bool,
    ) -> Result<Called> {
        let (server, tool) = (admitted.server.as_str(), admitted.tool.as_str());
        let u = self.get(server)?;
        let (client, restarted) = u.client(self.dial(vault), local_only).await?;
        let redactor = Redactor::new(u.state.lock().await.secrets.iter());
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Some(a) = arguments {
            params = params.with_arguments(a);
        }
        let mut request = CallToolRequest::new(params);
        // A `url` server's client sends from a task of its own: the call takes its request's
        // tally there, so the audit entry gets the bytes it moved.
        if let Some(tally) = crate::egress::tally::carry() {
            request.extensions_mut().insert(tally);
        }
        let request = ClientRequest::CallToolRequest(request);
        // At the deadline rmcp sends the server `notifications/cancelled`; the outer deadline
        // only bounds handing the request to the client.
        let handle = tokio::time::timeout(
            self.timeout,
            client
                .send_request_with_option(request, PeerRequestOptions::with_timeout(self.timeout)),
        )
        .await
        .map_err(|_| timed_out(server, self.timeout))?
        .map_err(|e| scrubbed(failed(server, e), &redactor))?;
        let result = match handle.await_response().await {
            Ok(ServerResult::CallToolResult(r)) => r,
            // What a server of an early revision may answer for a tool that returns nothing.
            Ok(ServerResult::EmptyResult(_)) => CallToolResult::default(),
            Ok(_) => {
                return Err(Error::Upstream(format!(
                    "the tool server {server:?} answered tools/call with something other than \
                     a tool result"
                )));
            }
            Err(ServiceError::Timeout { .. }) => return Err(timed_out(server, self.timeout)),
            Err(e) => return Err(scrubbed(failed(server, e), &redactor)),
        };
        // The program may quote the credentials it was given: they never reach the client.
        let mut result = scrub_result(result, &redactor)?;
        // A server of an earlier revision sends no `resultType`, which a 2026-07-28 client
        // requires: a whole answer is what it is.
        result.result_type.get_or_insert(ResultType::COMPLETE);
        let answer = serde_json::to_vec(&result).map_err(|e| {
            Error::Upstream(format!(
                "the tool server {server:?} answered a result that cannot be passed on"
            ))
            .because(e)
        })?;
        let size = answer.len();
        if size > MAX_RESULT_BYTES {
            return Err(Error::Upstream(format!(
                "the tool server {server:?} answered {size} bytes; at most {MAX_RESULT_BYTES} \
                 are passed on"
            )));
        }
        Ok(Called {
            result,
            answer,
            restarted,
        })
    }

    /// What starting a server needs beside its configuration.
    fn dial<'a>(&'a self, vault: &'a Vault) -> Dial<'a> {
        Dial {
            vault,
            egress: &self.egress,
            sandboxes: &self.sandboxes,
            timeout: self.timeout,
        }
    }

    fn get(&self, server: &str) -> Result<&Upstream> {
        self.servers
            .get(server)
            .ok_or_else(|| Error::NotFound(format!("no tool server named {server:?}")))
    }
}

/// What a server is started or dialled with.
#[derive(Clone, Copy)]
struct Dial<'a> {
    vault: &'a Vault,
    egress: &'a Egress,
    sandboxes: &'a Sandboxes,
    /// The call timeout, which bounds each POST to a `url` server too.
    timeout: Duration,
}

impl Upstream {
    /// The running client, started (or restarted after a crash) if need be, and whether it
    /// was restarted for this call. The lock is held only while starting: calls run at once.
    async fn client(
        &self,
        dial: Dial<'_>,
        local_only: bool,
    ) -> Result<(rmcp::Peer<RoleClient>, bool)> {
        self.admit(local_only)?;
        let sandboxed = local_only && matches!(self.config.transport, Transport::Stdio { .. });
        let mut state = self.state.lock().await;
        if sandboxed && state.client.is_some() && state.sandbox.is_none() {
            // Started before local-only mode came on (and not yet stopped by `stop_all`).
            state.stop();
            tracing::warn!(server = %self.config.name, "tool server restarted in its sandbox: local-only mode is on");
        }
        if let Some(c) = &state.client {
            if !c.is_transport_closed() {
                return Ok((c.peer().clone(), false));
            }
            // It died: at once again after a healthy run, else after a growing wait.
            let healthy = state.started.is_some_and(|t| t.elapsed() >= HEALTHY_RUN);
            state.stop();
            if healthy {
                state.backoff = None;
            } else {
                let wait = next_backoff(state.backoff);
                state.backoff = Some(wait);
                state.retry = Some((
                    Instant::now() + wait,
                    "it stopped soon after it started".into(),
                ));
            }
        }
        if let Some((at, why)) = &state.retry
            && Instant::now() < *at
        {
            return Err(Error::UpstreamUnavailable(format!(
                "the tool server {:?} could not be used ({why}); it is tried again in {} s",
                self.config.name,
                at.saturating_duration_since(Instant::now()).as_secs() + 1
            )));
        }
        match self.start(dial, sandboxed).await {
            Ok((client, secrets, sandbox)) => {
                let restarted = state.ran;
                let peer = client.peer().clone();
                state.client = Some(client);
                state.sandbox = sandbox;
                state.started = Some(Instant::now());
                state.ran = true;
                state.retry = None;
                state.secrets = secrets;
                Ok((peer, restarted))
            }
            // Local-only mode's refusal (egress's, of an address a `url` server resolves to)
            // is no failure of the server: it is decided again at each call, never waited out.
            Err(e) if matches!(e.plain(), Error::LocalOnly(_)) => Err(e),
            Err(e) => {
                let wait = next_backoff(state.backoff);
                state.backoff = Some(wait);
                state.retry = Some((Instant::now() + wait, e.plain().to_string()));
                Err(e)
            }
        }
    }

    /// Stops the program (dropping the client kills it) or ends the session with a URL.
    async fn stop(&self) {
        self.state.lock().await.stop();
    }

    /// Local-only mode's rule for this server (see the module doc).
    fn admit(&self, local_only: bool) -> Result<()> {
        // A local server is let through: a program is started in its network sandbox (or
        // refused there, with the kernel's reason), a URL is dialled through the guard.
        if !local_only || self.config.kind == Reach::Local {
            return Ok(());
        }
        let name = &self.config.name;
        Err(Error::LocalOnly(Box::new(LocalOnlyBlock {
            service: name.clone(),
            reason: format!(
                "the tool server {name:?} is declared kind = \"cloud\"; local-only mode \
                 (MAESTRA_LOCAL_ONLY) reaches only this machine and the local network"
            ),
            suggested_alternatives: Vec::new(),
        })))
    }

    /// The server started or dialled, and its handshake done; with the credentials it was
    /// given and, for a program started in its sandbox (`sandboxed`, its proxy deciding with
    /// egress), the sandbox to keep while it runs.
    async fn start(
        &self,
        dial: Dial<'_>,
        sandboxed: bool,
    ) -> Result<(Client, Vec<SecretString>, Option<Sandbox>)> {
        let name = &self.config.name;
        match &self.config.transport {
            Transport::Stdio { program, args } => {
                let sandbox = sandboxed
                    .then(|| dial.sandboxes.open(name, dial.egress))
                    .transpose()?;
                let (transport, secrets) = program::spawn(
                    &self.config,
                    program,
                    args,
                    dial.vault,
                    sandbox.as_ref(),
                    START_TIMEOUT,
                )
                .await?;
                Ok((
                    handshake(name, transport, &secrets).await?,
                    secrets,
                    sandbox,
                ))
            }
            Transport::Http { url } => {
                let (transport, secrets) =
                    remote::dial(&self.config, url, dial.egress, dial.timeout, dial.vault).await?;
                Ok((handshake(name, transport, &secrets).await?, secrets, None))
            }
        }
    }
}

/// The MCP handshake over a started transport, as a client of the newest revision that still
/// begins with `initialize` (what servers of every earlier revision answer).
/// A failure this client told in its own words (a `url` server's status, a limit, egress's
/// refusal) is named; a local-only block stays one, for its audit entry.
async fn handshake<T, E, A>(name: &str, transport: T, secrets: &[SecretString]) -> Result<Client>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let me = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("maestra", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let e = match tokio::time::timeout(START_TIMEOUT, me.serve(transport)).await {
        Err(_) => return Err(timed_out(name, START_TIMEOUT)),
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(e)) => e,
    };
    let failed = match remote::own_failure(&e).map(Error::plain) {
        Some(Error::LocalOnly(block)) => return Err(Error::LocalOnly(block.clone())),
        Some(own) => Error::UpstreamUnavailable(format!(
            "the tool server {name:?} did not complete the MCP handshake: {}",
            said(own)
        )),
        None => Error::UpstreamUnavailable(format!(
            "the tool server {name:?} did not complete the MCP handshake"
        )),
    };
    // The server's own words (an error it answered) may quote what it was given.
    if Redactor::new(secrets).names_secret(&e) {
        return Err(failed);
    }
    Err(failed.because(e))
}

impl State {
    /// Drops the program (which kills it) and then its sandbox's proxy.
    fn stop(&mut self) {
        self.client = None;
        self.sandbox = None;
    }
}

fn next_backoff(last: Option<Duration>) -> Duration {
    last.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF))
}

/// The result with every credential the program was given replaced, in its plain,
/// percent-encoded and JSON-escaped forms (the services proxy's redactor, on the result as
/// JSON text).
fn scrub_result(result: CallToolResult, redactor: &Redactor) -> Result<CallToolResult> {
    if redactor.is_empty() {
        return Ok(result);
    }
    let text = serde_json::to_string(&result).unwrap_or_default();
    if !redactor.contains(text.as_bytes()) {
        return Ok(result);
    }
    serde_json::from_str(&redactor.scrub_text(&text)).map_err(|e| {
        Error::Upstream("a tool result that named its credential could not be scrubbed".into())
            .because(e)
    })
}

/// `e` with the credentials the server was given scrubbed from its message, and without its
/// causes if one of them names a credential.
fn scrubbed(e: Error, redactor: &Redactor) -> Error {
    let e = if e.causes().any(|c| redactor.names_secret(c)) {
        e.into_plain()
    } else {
        e
    };
    match e {
        Error::ToolError(mut t) => {
            t.message = redactor.scrub_text(&t.message);
            Error::ToolError(t)
        }
        other => other,
    }
}

fn timed_out(server: &str, after: Duration) -> Error {
    Error::UpstreamTimeout(format!(
        "the tool server {server:?} did not answer within {} s",
        after.as_secs()
    ))
}

/// A JSON-RPC error from the server is its answer to the call (passed on as such); a closed
/// transport means the program died (started again on the next call); a failure a `url`
/// server's client told in its own words is named (a local-only block stays one).
fn failed(server: &str, e: ServiceError) -> Error {
    match e {
        ServiceError::McpError(data) => Error::ToolError(Box::new(ToolRpcError {
            code: data.code.0,
            message: data.message.chars().take(1024).collect(),
        })),
        ServiceError::TransportClosed => Error::Upstream(format!(
            "the tool server {server:?} stopped; it is started again on the next call"
        )),
        other => {
            let plain = match remote::own_failure(&other).map(Error::plain) {
                Some(Error::LocalOnly(block)) => return Error::LocalOnly(block.clone()),
                Some(own) => {
                    Error::Upstream(format!("the tool server {server:?} failed: {}", said(own)))
                }
                None => Error::Upstream(format!("the tool server {server:?} failed")),
            };
            plain.because(other)
        }
    }
}

/// What an upstream failure says, without its kind's prefix (it is told inside another).
fn said(e: &Error) -> String {
    match e {
        Error::Upstream(m) | Error::UpstreamTimeout(m) | Error::UpstreamUnavailable(m) => m.clone(),
        other => other.to_string(),
    }
}
