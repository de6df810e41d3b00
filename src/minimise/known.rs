//! The values known in advance, read from the vault: its secrets, always withheld, and the
//! person's names (`maestra privacy names`), kept in the vault too as the entry
//! [`NAMES_ENTRY`] — encrypted at rest under the vault's keys, re-encrypted by a key rotation,
//! shared by the instances of one PostgreSQL and carried by backups like every secret.
//!
//! The finder built from them is cached, and rebuilt on the first call after the store says it
//! may have changed (`Store::changes`: every secret put or deleted announces itself, in this
//! process at once, from another process through the embedded store's marker, which each call
//! reads: `Store::catch_up_changes`). A call that finds no change reads no row. PostgreSQL's
//! store counts a change once a second: a secret another server put is withheld from calls
//! made a second later.

use std::sync::{Arc, Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use super::{Finder, Literals};
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;
use crate::store::Store;

/// The vault entry that holds the person's names: a JSON array of strings.
pub const NAMES_ENTRY: &str = "privacy.names";
/// Most names the list holds, and the longest name.
pub const MAX_NAMES: usize = 10_000;
pub const MAX_NAME_LEN: usize = 200;

pub struct Known {
    vault: Arc<Vault>,
    store: Arc<dyn Store>,
    /// The store's change counter (`Store::changes`).
    changes: Mutex<watch::Receiver<u64>>,
    cached: Mutex<Option<Finder>>,
}

impl Known {
    /// The vault's values, on the store the vault uses.
    pub fn new(vault: Arc<Vault>, store: Arc<dyn Store>) -> Known {
        Known {
            vault,
            changes: Mutex::new(store.changes()),
            store,
            cached: Mutex::new(None),
        }
    }

    /// The finder for the vault as it is now.
    pub async fn finder(&self) -> Result<Finder> {
        // A `vault put` that returned before this call is counted now, not at the kernel's
        // notice a moment later.
        self.store.catch_up_changes();
        {
            let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
            // Marked seen before the vault is read, so a change made while it is read is
            // noticed by the next call.
            let changed = changes.has_changed().unwrap_or(true);
            changes.borrow_and_update();
            let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            match (changed, &*cached) {
                (false, Some(finder)) => return Ok(finder.clone()),
                // Dropped, so that no call meanwhile takes the finder from before the change.
                (true, _) => *cached = None,
                (false, None) => {}
            }
        }
        let listed = self.vault.list().await?;
        let mut secrets = Vec::new();
        let mut names = Vec::new();
        for s in &listed {
            let name = &s.name;
            let value = match self.vault.get(name).await {
                Ok(v) => v,
                // Deleted since it was listed.
                Err(Error::SecretNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if name == NAMES_ENTRY {
                names = parse_names(&value)?;
            } else {
                secrets.push(SecretString::from(value.expose_secret().to_string()));
            }
        }
        let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        let finder = Finder::new(Literals::names(&names), Literals::secrets(&exposed));
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(finder.clone());
        Ok(finder)
    }

    /// The person's names, sorted.
    pub async fn names(&self) -> Result<Vec<String>> {
        match self.vault.get(NAMES_ENTRY).await {
            Ok(v) => parse_names(&v),
            Err(Error::SecretNotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the list (sorted, without duplicates); an empty list removes the entry.
    pub async fn set_names(&self, mut names: Vec<String>) -> Result<()> {
        for n in &mut names {
            *n = check_name(n)?;
        }
        names.sort();
        names.dedup();
        if names.len() > MAX_NAMES {
            return Err(Error::TooLarge(format!(
                "the names list holds at most {MAX_NAMES} names"
            )));
        }
        if names.is_empty() {
            return match self.vault.delete(NAMES_ENTRY).await {
                Ok(()) | Err(Error::SecretNotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let json =
            serde_json::to_string(&names).map_err(|e| Error::Vault(format!("names list: {e}")))?;
        self.vault.put(NAMES_ENTRY, &SecretString::from(json)).await
    }
}

/// A name as the list keeps it: trimmed, one line, not empty, not too long.
pub fn check_name(name: &str) -> Result<String> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.chars().count() < super::literals::MIN_NAME_LEN
        || name.chars().count() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(Error::BadRequest(format!(
            "a name is {}-{MAX_NAME_LEN} characters on one line",
            super::literals::MIN_NAME_LEN
        )));
    }
    Ok(name)
}

fn parse_names(value: &SecretString) -> Result<Vec<String>> {
    serde_json::from_str(value.expose_secret()).map_err(|_| {
        Error::Vault(format!(
            "the vault entry {NAMES_ENTRY:?} is not a list of names; \
             set it again with `maestra privacy names`"
        ))
    })
}
