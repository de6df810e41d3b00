//! The values known in advance, read from the vault: its secrets, always withheld, and the
//! person's names (`maestra privacy names`), kept in the vault too as the entry
//! [`NAMES_ENTRY`] — encrypted at rest under the vault's keys, re-encrypted by a key rotation,
//! shared by the instances of one PostgreSQL and carried by backups like every secret.
//!
//! The finder built from them is cached and rebuilt when the vault's list of entries (names and
//! times of change) differs from the one it was built from: a `maestra vault put` made by
//! another process is seen by the next call, without a poll.

use std::sync::{Arc, Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};

use super::{Finder, Literals};
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;

/// The vault entry that holds the person's names: a JSON array of strings.
pub const NAMES_ENTRY: &str = "privacy.names";
/// Most names the list holds, and the longest name.
pub const MAX_NAMES: usize = 10_000;
pub const MAX_NAME_LEN: usize = 200;

/// The vault's entries as listed (name, time of change), sorted: what a finder was built from.
type Listed = Vec<(String, i64)>;

pub struct Known {
    vault: Arc<Vault>,
    cached: Mutex<Option<(Listed, Finder)>>,
}

impl Known {
    pub fn new(vault: Arc<Vault>) -> Known {
        Known {
            vault,
            cached: Mutex::new(None),
        }
    }

    /// The finder for the vault as it is now.
    pub async fn finder(&self) -> Result<Finder> {
        let mut listed: Listed = self
            .vault
            .list()
            .await?
            .into_iter()
            .map(|s| (s.name, s.updated_at))
            .collect();
        listed.sort();
        if let Some((seen, finder)) = &*self.cached.lock().unwrap_or_else(PoisonError::into_inner)
            && *seen == listed
        {
            return Ok(finder.clone());
        }
        let mut secrets = Vec::new();
        let mut names = Vec::new();
        for (name, _) in &listed {
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
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((listed, finder.clone()));
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
