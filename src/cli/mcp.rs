//! `maestra mcp`: the MCP server over stdin and stdout, for clients that launch a command
//! (Claude Desktop's `mcpServers`, Goose, Cursor). It holds the home like `maestra serve`, so
//! with a server running it refuses and points at that server's `/mcp`.
//!
//! `maestra mcp list` and `maestra mcp approve SERVER TOOL` show and approve the tool servers'
//! tools against their pins (`mcp::pins`); they start each program to ask it, as a server
//! would, and need no server running (a running one sees an approval on its next check).
//! `maestra mcp approve CALL` and `maestra mcp deny CALL` decide a call of an `ask` tool that
//! waits in a running server (or a `maestra mcp`), through the store they share.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use rmcp::model::Tool;

use crate::app::App;
use crate::conversations::model::now_millis;
use crate::egress::{Egress, EgressOptions};
use crate::error::{Error, Result};
use crate::mcp::pins::fingerprint;
use crate::mcp::{Upstreams, approvals, names};
use crate::privsec::audit::{AuditLog, Category, Event, Outcome};
use crate::privsec::guard::Catalog;
use crate::store::Decision;

/// The most waiting calls `mcp list` shows.
const MAX_WAITING_LISTED: u32 = 100;

/// Bound only to have a listener like `serve` (no connection is accepted on it): loopback,
/// any free port, whatever `bind` says.
const UNUSED_BIND: &str = "127.0.0.1:0";

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every tool server's tools, whether each is as pinned, and the calls waiting for approval.
    List,
    /// Approve a tool call that waits for you (`approve CALL_ID`, an `ask` tool's call), or
    /// enable a tool whose description or schema changed, as it is defined now (`approve
    /// SERVER TOOL`).
    Approve {
        /// The waiting call's id, or the tool server's name.
        target: String,
        /// The tool, when enabling a changed tool.
        tool: Option<String>,
        /// The fingerprint `mcp list` showed (its first 16 characters or more): the approval is
        /// refused if the server now says something else.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Refuse a tool call that waits for you (an `ask` tool's call).
    Deny { call: String },
}

pub async fn run(config_file: Option<&Path>, command: Option<McpCommand>) -> Result<ExitCode> {
    match command {
        None => stdio(config_file).await,
        Some(McpCommand::List) => list(config_file).await,
        Some(McpCommand::Approve {
            target,
            tool: Some(tool),
            fingerprint,
        }) => approve(config_file, &target, &tool, fingerprint.as_deref()).await,
        Some(McpCommand::Approve {
            target,
            tool: None,
            fingerprint: None,
        }) => decide(config_file, &target, Decision::Approved).await,
        Some(McpCommand::Approve { .. }) => Err(Error::BadRequest(
            "--fingerprint is for `approve SERVER TOOL` (a changed tool), not for a waiting call"
                .into(),
        )),
        Some(McpCommand::Deny { call }) => decide(config_file, &call, Decision::Denied).await,
    }
}

async fn stdio(config_file: Option<&Path>) -> Result<ExitCode> {
    let mut ctx = Context::load(config_file, false)?;
    ctx.config.bind = UNUSED_BIND.into();
    // Logs go to stderr, as always: stdout carries the protocol.
    super::serve::init_logging(&ctx.config.log);
    let app = App::build_for(ctx.config, "mcp").await?;
    app.serve_mcp_stdio().await?;
    Ok(ExitCode::SUCCESS)
}

/// The tool servers as a server would reach them: a `url` one through the guarded client,
/// under local-only mode as it is now (a program then in its sandbox, whose proxy's decisions
/// go to `audit`).
fn upstreams(ctx: &Context, local_only: bool, audit: &AuditLog) -> Result<Upstreams> {
    let egress = Egress::new(
        Catalog::new(&ctx.config.guard),
        EgressOptions {
            local_only,
            ..EgressOptions::default()
        },
    )?;
    Upstreams::new(
        &ctx.config.mcp,
        ctx.config.services.keys(),
        &ctx.home.root,
        egress,
        audit.clone(),
    )
}

/// Runs `command` with the audit log open, and closes the log after it (and after every
/// sandbox `command` started, which holds the log, is gone).
async fn with_audit_log<F, Fut>(ctx: &Context, command: F) -> Result<ExitCode>
where
    F: FnOnce(AuditLog) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let audit = ctx.audit_log()?;
    let result = command(audit.clone()).await;
    audit.close().await;
    result
}

/// Local-only mode as a running server has it (a lockdown or the page's switch included):
/// these commands start the programs too, and must not start one a server would not.
async fn local_only(ctx: &Context) -> Result<bool> {
    Ok(super::guard::runtime_state(ctx).await?.local_only())
}

async fn list(config_file: Option<&Path>) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    with_audit_log(&ctx, |audit| list_with(&ctx, audit)).await
}

async fn list_with(ctx: &Context, audit: AuditLog) -> Result<ExitCode> {
    let vault = ctx.vault().await?;
    let local_only = local_only(ctx).await?;
    let servers = upstreams(ctx, local_only, &audit)?;
    if servers.names().next().is_none() {
        println!("no tool servers: add one as [mcp.servers.NAME] in maestra.toml");
    }
    for server in servers.names() {
        match servers.tools(server, &vault, local_only).await {
            Ok(listed) => {
                for t in &listed.tools {
                    let own = names::split(&t.name).map_or("", |(_, tool)| tool);
                    let state = if listed.pinned.iter().any(|p| p == own) {
                        "new: pinned now"
                    } else {
                        "as pinned"
                    };
                    println!("{}  {state}", t.name);
                }
                for tool in &listed.changed {
                    let def = servers.definition_listed(server, tool);
                    let fingerprint = def.as_ref().map(fingerprint).unwrap_or_default();
                    println!(
                        "{}  CHANGED since pinned: disabled until `maestra mcp approve {server} \
                         {tool} --fingerprint {}`",
                        names::join(server, tool),
                        fingerprint.get(..16).unwrap_or_default()
                    );
                    if let Some(d) = def {
                        show(&d);
                    }
                }
            }
            Err(e) => println!("{server}  not listed: {}", e.plain()),
        }
    }
    let waiting = ctx
        .store()
        .await?
        .approval_pending(now_millis(), MAX_WAITING_LISTED)
        .await?;
    for w in waiting {
        println!(
            "waiting for approval: call {}  {} asked by {} ({} bytes of arguments): \
             `maestra mcp approve {}` or `maestra mcp deny {}`",
            w.id,
            names::join(&w.server, &w.tool),
            w.asked_by,
            w.arguments_bytes,
            w.id,
            w.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The person's decision on a waiting call; the waiting server sees it within a second.
async fn decide(config_file: Option<&Path>, call: &str, decision: Decision) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    let by = "`maestra mcp` on the server's machine";
    let record = approvals::decide(store.as_ref(), call, decision, by).await?;
    ctx.audit(
        Event::new(
            Category::Admin,
            "maestra",
            format!("mcp.{}", decision.as_str()),
            Outcome::Success,
        )
        .detail("call", record.id.as_str())
        .detail("server", record.server.as_str())
        .detail("tool", record.tool.as_str()),
    )
    .await?;
    println!(
        "{} the call of {} asked by {}",
        decision.as_str(),
        names::join(&record.server, &record.tool),
        record.asked_by
    );
    Ok(ExitCode::SUCCESS)
}

async fn approve(
    config_file: Option<&Path>,
    server: &str,
    tool: &str,
    expected: Option<&str>,
) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    with_audit_log(&ctx, |audit| {
        approve_with(&ctx, audit, server, tool, expected)
    })
    .await
}

async fn approve_with(
    ctx: &Context,
    audit: AuditLog,
    server: &str,
    tool: &str,
    expected: Option<&str>,
) -> Result<ExitCode> {
    let vault = ctx.vault().await?;
    let local_only = local_only(ctx).await?;
    let servers = upstreams(ctx, local_only, &audit)?;
    let def = servers.definition(server, tool, &vault, local_only).await?;
    let fingerprint = fingerprint(&def);
    // The program is asked again here: what it says now is what is approved, so a caller
    // who read `mcp list` can insist it is what they read.
    if let Some(want) = expected
        && (want.len() < 16 || !fingerprint.starts_with(want))
    {
        return Err(Error::BadRequest(format!(
            "{} is now defined with fingerprint {}, not {want:?}: run `maestra mcp list` again",
            names::join(server, tool),
            &fingerprint[..16]
        )));
    }
    servers.pins().approve(server, &def)?;
    audit
        .record(
            Event::new(Category::Admin, "maestra", "mcp.approve", Outcome::Success)
                .detail("server", server)
                .detail("tool", tool)
                .detail("fingerprint", fingerprint.as_str()),
        )
        .await?;
    println!(
        "approved {} as it is defined now (fingerprint {}):",
        names::join(server, tool),
        &fingerprint[..16]
    );
    show(&def);
    Ok(ExitCode::SUCCESS)
}

/// What the model will read of a tool: its description and input schema, indented.
fn show(t: &Tool) {
    let description = t.description.as_deref().unwrap_or("(no description)");
    for line in description.lines() {
        println!("    {line}");
    }
    println!(
        "    input: {}",
        serde_json::to_string(&*t.input_schema).unwrap_or_default()
    );
}
