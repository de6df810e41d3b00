//! Maestra: a local-first, privacy-first backend for personal AI assistants.
//!
//! Layout:
//! - `config`   — `maestra.toml` + environment (+ the seeds' names), validated, secrets masked
//! - `home`     — `$MAESTRA_HOME`: layout, permissions, atomic private files
//! - `error`    — the one error type; its HTTP status and SPEC §4 body
//! - `store`    — the storage trait and its embedded SQLite implementation
//! - `privsec`  — keyring and vault, tamper-evident audit log, local-only guard policy
//! - `egress`   — the only outbound HTTP client, where local-only mode is enforced
//! - `cli`      — one file per command group; `main.rs` only dispatches here

pub mod cli;
pub mod config;
pub mod egress;
pub mod error;
pub mod home;
pub mod privsec;
pub mod store;

pub use error::{Error, Result};
