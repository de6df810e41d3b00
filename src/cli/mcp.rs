//! `maestra mcp`: the MCP server over stdin and stdout, for clients that launch a command
//! (Claude Desktop's `mcpServers`, Goose, Cursor). It holds the home like `maestra serve`, so
//! with a server running it refuses and points at that server's `/mcp`.
//!
//! `maestra mcp list` and `maestra mcp approve SERVER TOOL` show and approve the tool servers'
//! tools against their pins (`mcp::pins`); they start each program to ask it, as a server
//! would, and need no server running (a running one sees an approval on its next check).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::app::App;
use crate::error::Result;
use crate::mcp::{Upstreams, names};
use crate::privsec::audit::{Category, Event, Outcome};

/// Bound only to have a listener like `serve` (no connection is accepted on it): loopback,
/// any free port, whatever `bind` says.
const UNUSED_BIND: &str = "127.0.0.1:0";

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every tool server's tools, and whether each is as pinned.
    List,
    /// Enable a tool whose description or schema changed, as it is defined now.
    Approve { server: String, tool: String },
}

pub async fn run(config_file: Option<&Path>, command: Option<McpCommand>) -> Result<ExitCode> {
    match command {
        None => stdio(config_file).await,
        Some(McpCommand::List) => list(config_file).await,
        Some(McpCommand::Approve { server, tool }) => approve(config_file, &server, &tool).await,
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

fn upstreams(ctx: &Context) -> Result<Upstreams> {
    Upstreams::new(&ctx.config.mcp, ctx.config.services.keys(), &ctx.home.root)
}

async fn list(config_file: Option<&Path>) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let vault = ctx.vault().await?;
    let servers = upstreams(&ctx)?;
    if servers.names().next().is_none() {
        println!("no tool servers: add one as [mcp.servers.NAME] in maestra.toml");
    }
    for server in servers.names() {
        match servers.tools(server, &vault, ctx.config.local_only).await {
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
                    println!(
                        "{}  CHANGED since pinned: disabled until `maestra mcp approve {server} {tool}`",
                        names::join(server, tool)
                    );
                }
            }
            Err(e) => println!("{server}  not listed: {}", e.plain()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn approve(config_file: Option<&Path>, server: &str, tool: &str) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let vault = ctx.vault().await?;
    let servers = upstreams(&ctx)?;
    let def = servers
        .definition(server, tool, &vault, ctx.config.local_only)
        .await?;
    servers.pins().approve(server, &def)?;
    let fingerprint = crate::mcp::pins::fingerprint(&def);
    ctx.audit(
        Event::new(Category::Admin, "maestra", "mcp.approve", Outcome::Success)
            .detail("server", server)
            .detail("tool", tool)
            .detail("fingerprint", fingerprint.as_str()),
    )
    .await?;
    println!(
        "approved {} as it is defined now (fingerprint {})",
        names::join(server, tool),
        &fingerprint[..16]
    );
    Ok(ExitCode::SUCCESS)
}
