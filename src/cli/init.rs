//! `maestra init`: create the home, its keys, database and logs, and say where they are.

use std::path::Path;
use std::process::ExitCode;

use super::Context;
use crate::error::Result;
use crate::privsec::audit::{Category, Event, Outcome};

pub async fn run(config_file: Option<&Path>, fix: bool) -> Result<ExitCode> {
    let ctx = Context::load(config_file, fix)?;
    let created_key = ctx.ensure_vault_key()?;
    ctx.keyring()?; // the keys must parse, wherever they come from
    ctx.store().await?;
    ctx.audit_key()?;
    ctx.audit(
        Event::new(Category::Admin, "maestra", "init", Outcome::Success)
            .detail("vault_key_created", created_key),
    )
    .await?;
    ctx.home.check_permissions(false)?;

    let c = &ctx.config;
    println!("Maestra home   {}", ctx.home.root.display());
    println!("  database     {}", ctx.home.db().display());
    match &c.encryption_keys {
        Some(_) => println!("  vault keys   from MAESTRA_ENCRYPTION_KEY"),
        None => println!("  vault key    {}", ctx.home.vault_key().display()),
    }
    println!("  audit key    {}", ctx.home.audit_key().display());
    println!("  audit log    {}", c.audit.path.display());
    println!("  config       {}", c.config_file.display());
    println!("Everything is private to this user (directories 0700, files 0600).");
    Ok(ExitCode::SUCCESS)
}
