//! MCP (SPEC §2.11): the parts of Maestra's tools that know nothing of HTTP or of who asks.
//!
//! - `names`         — `SERVER__tool`: one namespace for every server's tools
//! - `service_tools` — the configured personal services as tools, each one services-proxy call
//! - `upstream`      — the tool servers the person added, spoken to as an MCP client
//! - `program`       — a stdio server's program, started with only what it is given
//! - `sandbox`       — under local-only mode, its network namespace whose one way out is
//!   Maestra's HTTP proxy under the egress guard; `sandbox/inside` is the launcher
//! - `remote`        — a streamable-HTTP server, dialled through egress with its `headers`;
//!   `remote/events` reads its event streams one bounded event at a time
//! - `limits`        — the size every tool's answer is held to
//! - `credentials`   — the vault secrets a server's `env` or `headers` name
//! - `pins`          — their tools' definitions pinned when first seen; a changed one is
//!   disabled until the person approves it
//! - `approvals`     — calls of `ask` tools, waiting for the person's decision
//!
//! The MCP server itself (what answers `tools/list` and `tools/call` on `/mcp` and over
//! stdio, with the access checks and the audit entry) is `gateway::mcp`.

pub mod approvals;
pub mod credentials;
pub mod limits;
pub mod names;
pub mod pins;
pub mod program;
pub mod remote;
pub mod sandbox;
pub mod service_tools;
pub mod upstream;

pub use upstream::Upstreams;
