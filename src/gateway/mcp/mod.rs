//! The MCP server (SPEC §2.11): `tools/list` and `tools/call` for the assistant, on `/mcp`
//! (streamable HTTP, behind every edge stage like any route) and over stdio (`maestra mcp`).
//!
//! - `http`        — the `/mcp` route: rmcp's streamable-HTTP service, stateless, its own
//!   transport refusals turned into SPEC §4 errors
//! - `tools`       — the handler: which tools a caller sees and where each call goes
//! - `service_tool` — a service tool's call, made through the services proxy (guard,
//!   credential, redaction, audit under the service's category)
//! - `server_tool` — a call to a tool server the person added, audited as `tool`
//!
//! What reaches a tool is decided here, once, for both transports: the caller's key may name
//! the services and servers it may use (`keys create --services`), local-only mode refuses
//! what it must, and every call, refused or not, leaves one audit entry.

mod http;
mod server_tool;
mod service_tool;
mod tools;

pub use http::{McpHttp, post};
pub use tools::Tools;
