//! `maestra lockdown` (seed 002 §8, incident response): local-only on, every API key revoked,
//! the static `MAESTRA_API_KEY` refused by running servers, the vault key rotated, one audit
//! entry. `--lift` (here only: the API cannot lift) turns local-only back off and lets the
//! static key in again; revoked keys stay revoked (create new ones) and the rotation stands.

use std::path::Path;
use std::process::ExitCode;

use super::Context;
use crate::error::Result;
use crate::privsec::audit::{Category, Event, Outcome};

use crate::privsec::lockdown::{engage_lockdown, lift_lockdown};

pub async fn run(config_file: Option<&Path>, lift: bool) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    if lift {
        lift_lockdown(store.as_ref()).await?;
        ctx.audit(Event::new(
            Category::Admin,
            "maestra",
            "lockdown.lift",
            Outcome::Success,
        ))
        .await?;
        eprintln!(
            "lockdown lifted: local-only mode follows the configuration again and the static \
             API key is accepted again (running servers follow within seconds)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let revoked = engage_lockdown(store.as_ref()).await?;
    // Local-only and the revocations stand even if the rotation cannot run (a key that is not
    // the vault's): in an incident, do every step that can be done, then say what could not.
    // Ok(false): keys from the environment, which this command cannot rewrite.
    let rotation: Result<bool> = if ctx.config.encryption_keys.is_some() {
        eprintln!(
            "warning: the vault key comes from MAESTRA_ENCRYPTION_KEY; put a new key first in \
             that variable and run `maestra vault rotate-key`"
        );
        Ok(false)
    } else {
        let mut progress = super::progress("re-encrypting");
        match ctx.vault().await {
            Ok(mut vault) => vault.rotate_key(&mut progress).await.map(|_| true),
            Err(e) => Err(e),
        }
    };
    let rotated = matches!(rotation, Ok(true));
    ctx.audit(
        Event::new(Category::Admin, "maestra", "lockdown", Outcome::Success)
            .detail("local_only", true)
            .detail("api_keys_revoked", revoked)
            .detail("vault_key_rotated", rotated),
    )
    .await?;
    println!(
        "lockdown: local-only mode on (running servers switch within seconds), {revoked} API key(s) revoked, vault key {}",
        if rotated {
            "rotated"
        } else {
            "NOT rotated (see warning)"
        }
    );
    if let Err(why) = rotation {
        eprintln!("warning: the vault key was not rotated: {why}");
        return Ok(ExitCode::from(4));
    }
    Ok(ExitCode::SUCCESS)
}
