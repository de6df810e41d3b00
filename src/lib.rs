//! Maestra: a local-first, privacy-first backend for personal AI assistants.
//!
//! Layout, roughly from the ground up (`error` at the bottom, `app` and `cli` on top):
//! - `error`    — the one error type, its HTTP status and SPEC §4 body; `error/payload` holds
//!   the 403 local-only and 402 cost-limit details it carries
//! - `web`      — the privacy center: the page at `/` and its embedded assets
//! - `home`     — `$MAESTRA_HOME`: layout, permissions, atomic private files, scratch space
//! - `config`   — `maestra.toml` + environment (+ the seeds' names), parsed and validated value
//!   by value, secrets masked; checks that need the service catalog run where it is used
//! - `home_lock` — one server per home: the lock a server (or a command) holds on it
//! - `cost`     — pricing, the ledger's amounts and limits, the reserve/settle budget, spend reports
//! - `store`    — storage traits by concern; `store/sqlite/` (embedded) and `store/postgres/`
//!   (shared), one file per concern in each
//! - `privsec`  — keyring and vault, data keys, tamper-evident audit log, local-only guard
//!   policy, lockdown's state
//! - `access`   — API keys, scopes, client addresses and rate limits (in process or through Redis)
//! - `egress`   — the only outbound HTTP client, where local-only mode is enforced; `egress/tally`
//!   counts each request's bytes per destination for its audit entry
//! - `services` — personal services (SPEC §2.7): definitions, credential injection, OAuth2, safe
//!   paths; `services/endpoint` checks names and URLs on their own; `services/discover` finds
//!   devices on the local network (mDNS, SSDP) and adds them to `maestra.toml`
//! - `conversations` — the seed's conversation format, id rules, redaction, export, retention,
//!   and encryption at rest under per-user data keys (`sealed`, `cipher`, `keys`, `migrate`)
//! - `minimise` — personal data found in a text (patterns with validators, the person's names,
//!   the vault's secrets), withheld behind per-call placeholders and restored, streamed too
//! - `context`  — what every command starts from: configuration (with its services checked),
//!   private home, store, vault
//! - `providers` — language models: routing by name, OpenAI and Anthropic wire formats, streaming
//! - `mcp`      — tools (SPEC §2.11): the services as tools, tool names, and the tool servers the
//!   person added, spoken to as a client; `mcp/sandbox` runs a tool program under local-only
//!   mode in a network namespace whose one way out is a proxy through egress
//! - `backup`   — encrypted backups: snapshot, seal, manifest, directory or S3, restore
//! - `metrics`  — Prometheus counters and histograms
//! - `gateway`  — `maestra serve`: the route table, the edge layers, `gateway/pipeline/`, a file
//!   per stage of a model call, and `gateway/mcp/`, the MCP server on `/mcp` and stdio
//! - `app`      — the assembled server: `App::build(config)`, `App::serve(shutdown)`
//! - `cli`      — one file per command group; `main.rs` only dispatches here

pub mod access;
pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod context;
pub mod conversations;
pub mod cost;
pub mod egress;
pub mod error;
pub mod gateway;
pub mod home;
pub mod home_lock;
pub mod mcp;
pub mod metrics;
pub mod minimise;
pub mod privsec;
pub mod providers;
pub mod services;
pub mod store;
pub mod web;

pub use error::{Error, Result};
