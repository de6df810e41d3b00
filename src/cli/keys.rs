//! `maestra keys create|list|revoke`: API keys for cloud mode. A key is shown once, at
//! creation; the store keeps only its hash.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;

use super::Context;
use crate::access::keys;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::store::now_unix;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and never again.
    Create { name: String },
    /// List keys: id, name, created, last used, revoked. Never the secret.
    List,
    /// Revoke a key by name or id.
    Revoke { name: String },
}

pub async fn run(config_file: Option<&Path>, cmd: KeysCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    match cmd {
        KeysCommand::Create { name } => {
            crate::conversations::model::validate_id("key name", &name)?;
            let (record, key) = keys::generate(&name, now_unix());
            store.api_key_insert(&record).await?;
            ctx.audit(
                Event::new(Category::Admin, "maestra", "keys.create", Outcome::Success)
                    .detail("key_id", record.id.as_str())
                    .detail("name", name.as_str()),
            )
            .await?;
            println!("{}", key.expose_secret());
            eprintln!(
                "created API key {name} (id {}); it is shown only this once, store it now",
                record.id
            );
        }
        KeysCommand::List => {
            let fmt = |t: Option<i64>| {
                t.map(|t| crate::conversations::model::format_millis(t * 1000))
                    .unwrap_or_else(|| "-".into())
            };
            for k in store.api_key_list().await? {
                println!(
                    "{}  {:<20} created {}  last used {}  {}",
                    k.id,
                    k.name,
                    fmt(Some(k.created_at)),
                    fmt(k.last_used_at),
                    match k.revoked_at {
                        Some(t) => format!("REVOKED {}", fmt(Some(t))),
                        None => "active".into(),
                    }
                );
            }
        }
        KeysCommand::Revoke { name } => {
            if !store.api_key_revoke(&name, now_unix()).await? {
                return Err(Error::NotFound(format!("no active API key named {name:?}")));
            }
            ctx.audit(
                Event::new(Category::Admin, "maestra", "keys.revoke", Outcome::Success)
                    .detail("name", name.as_str()),
            )
            .await?;
            eprintln!("revoked API key {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
