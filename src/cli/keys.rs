//! `maestra keys create|list|revoke`: API keys for cloud mode. A key is shown once, at
//! creation; the store keeps only its hash.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;

use super::Context;
use crate::access::keys;
use crate::access::scope::KeyScope;
use crate::conversations::model::validate_id;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::store::now_unix;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and never again.
    Create {
        name: String,
        /// The user the key acts for: every request it makes is that user's.
        #[arg(long)]
        user: Option<String>,
        /// What it may do: `read` (the user's data and spend), `assistant` (chat, the user's
        /// conversations, services), `admin` (everything, every user).
        #[arg(long, value_enum, default_value_t = KeyScope::Assistant)]
        scope: KeyScope,
        /// Personal services an assistant key may call (comma-separated; default: all).
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
        /// Lifetime, e.g. `90d`, `12h`, `1y` (1 minute to 10 years; default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys: id, name, user, scope, expiry, last use, state. Never the secret.
    List,
    /// Revoke a key by name or id.
    Revoke { name: String },
}

/// The longest lifetime `--expires` takes.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 86_400);

/// Checks what `keys create` was asked for, naming the flag that is wrong.
fn new_key(
    name: String,
    user: Option<String>,
    scope: KeyScope,
    services: Option<Vec<String>>,
    expires: Option<String>,
    now: i64,
) -> Result<keys::NewKey> {
    validate_id("key name", &name)?;
    if let Some(u) = &user {
        validate_id("--user", u)?;
    } else if scope != KeyScope::Admin {
        return Err(Error::BadRequest(
            "a key without --user can only be --scope admin; give the user it acts for".into(),
        ));
    }
    if let Some(list) = &services {
        if scope != KeyScope::Assistant {
            return Err(Error::BadRequest(
                "--services applies to --scope assistant keys only".into(),
            ));
        }
        for s in list {
            crate::services::validate_name(s)?;
        }
    }
    let expires_at = match expires {
        None => None,
        Some(text) => {
            let life = humantime::parse_duration(text.trim()).map_err(|e| {
                Error::BadRequest(format!(
                    "--expires {text:?} is not a duration such as 90d, 12h or 1y"
                ))
                .because(e)
            })?;
            if life < std::time::Duration::from_secs(60) || life > MAX_LIFETIME {
                return Err(Error::BadRequest(
                    "--expires must be between 1 minute and 10 years".into(),
                ));
            }
            // In range, so it fits an i64 of seconds.
            Some(now.saturating_add(i64::try_from(life.as_secs()).unwrap_or(i64::MAX)))
        }
    };
    Ok(keys::NewKey {
        name,
        user_id: user,
        scope,
        services,
        expires_at,
    })
}

pub async fn run(config_file: Option<&Path>, cmd: KeysCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    match cmd {
        KeysCommand::Create {
            name,
            user,
            scope,
            services,
            expires,
        } => {
            let now = now_unix();
            let new = new_key(name, user, scope, services, expires, now)?;
            let (record, key) = keys::generate(new, now);
            store.api_key_insert(&record).await?;
            let mut event = Event::new(Category::Admin, "maestra", "keys.create", Outcome::Success)
                .detail("key_id", record.id.as_str())
                .detail("name", record.name.as_str())
                .detail("scope", record.scope.as_str());
            if let Some(u) = &record.user_id {
                event = event.detail("key_user", u.as_str());
            }
            ctx.audit(event).await?;
            println!("{}", key.expose_secret());
            eprintln!(
                "created {} API key {} (id {}{}); it is shown only this once, store it now",
                record.scope,
                record.name,
                record.id,
                record
                    .user_id
                    .as_deref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default()
            );
        }
        KeysCommand::List => {
            let fmt = |t: Option<i64>| {
                t.map(|t| crate::conversations::model::format_millis(t.saturating_mul(1000)))
                    .unwrap_or_else(|| "-".into())
            };
            let now = now_unix();
            for k in store.api_key_list().await? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("REVOKED {}", fmt(Some(t))),
                    (None, Some(t)) if t <= now => format!("EXPIRED {}", fmt(Some(t))),
                    _ => "active".into(),
                };
                println!(
                    "{}  {:<20} user {:<16} scope {:<9} expires {}  last used {}  {}{}",
                    k.id,
                    k.name,
                    k.user_id.as_deref().unwrap_or("-"),
                    k.scope,
                    fmt(k.expires_at),
                    fmt(k.last_used_at),
                    state,
                    k.services
                        .map(|s| format!("  services {}", s.join(",")))
                        .unwrap_or_default()
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
