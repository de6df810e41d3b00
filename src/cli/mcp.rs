//! `maestra mcp`: the MCP server over stdin and stdout, for clients that launch a command
//! (Claude Desktop's `mcpServers`, Goose, Cursor). It holds the home like `maestra serve`, so
//! with a server running it refuses and points at that server's `/mcp`.

use std::path::Path;
use std::process::ExitCode;

use super::Context;
use crate::app::App;
use crate::error::Result;

/// Bound only to have a listener like `serve` (no connection is accepted on it): loopback,
/// any free port, whatever `bind` says.
const UNUSED_BIND: &str = "127.0.0.1:0";

pub async fn run(config_file: Option<&Path>) -> Result<ExitCode> {
    let mut ctx = Context::load(config_file, false)?;
    ctx.config.bind = UNUSED_BIND.into();
    // Logs go to stderr, as always: stdout carries the protocol.
    super::serve::init_logging(&ctx.config.log);
    let app = App::build_for(ctx.config, "mcp").await?;
    app.serve_mcp_stdio().await?;
    Ok(ExitCode::SUCCESS)
}
