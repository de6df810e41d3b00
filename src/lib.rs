//! Maestra: a local-first, privacy-first backend for personal AI assistants.
//!
//! Layout:
//! - `app`      — the assembled server: `App::build(config)`, `App::serve(shutdown)`
//! - `context`  — what every command starts from: configuration, private home, store, vault
//! - `config`   — `maestra.toml` + environment (+ the seeds' names), validated, secrets masked
//! - `home`     — `$MAESTRA_HOME`: layout, permissions, atomic private files
//! - `home_lock` — one server per home: the lock a server (or a command) holds on it
//! - `error`    — the one error type; its HTTP status and SPEC §4 body
//! - `store`    — storage traits by concern; `store/sqlite/` (embedded) and `store/postgres/`
//!   (shared), one file per concern in each
//! - `conversations` — the seed's conversation format, id rules, redaction, export, retention,
//!   and encryption at rest under per-user data keys (`sealed`, `cipher`, `keys`, `migrate`)
//! - `privsec`  — keyring and vault, tamper-evident audit log, local-only guard policy
//! - `egress`   — the only outbound HTTP client, where local-only mode is enforced
//! - `providers` — language models: routing by name, OpenAI and Anthropic wire formats, streaming
//! - `access`   — API keys and rate limits (in process or shared through Redis)
//! - `cost`     — pricing (and, with issue 4, the reserve/settle ledger)
//! - `services` — personal services (SPEC §2.7): definitions, credential injection, OAuth2, safe paths
//! - `metrics`  — Prometheus counters and histograms
//! - `gateway`  — `maestra serve`: the route table, the edge layers, and `gateway/pipeline/`, a
//!   file per stage of a model call (guard, reserve, call, settle, store, audit)
//! - `backup`   — encrypted backups: snapshot, seal, manifest, directory or S3, restore
//! - `web`      — the privacy center: the page at `/` and its embedded assets
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
pub mod metrics;
pub mod privsec;
pub mod providers;
pub mod services;
pub mod store;
pub mod web;

pub use error::{Error, Result};
