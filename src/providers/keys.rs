//! Provider API keys as the calls use them: read from the vault, kept decrypted for a moment.
//!
//! Reading the vault on every call (a SQLite read through the store's worker thread and a
//! Fernet decryption) cost more CPU than the rest of a proxied call. A key is kept for
//! [`TTL`] after it was read, so a `maestra vault put` or `delete` from another process takes
//! effect within that time. Cached values stay `SecretString`s: masked in `Debug`, zeroed when
//! replaced or dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::error::Result;
use crate::privsec::vault::Vault;

/// How long a key read from the vault is used before it is read again.
pub const TTL: Duration = Duration::from_secs(1);

pub struct ProviderKeys {
    vault: Arc<Vault>,
    ttl: Duration,
    cache: Mutex<HashMap<&'static str, (SecretString, Instant)>>,
}

impl ProviderKeys {
    pub fn new(vault: Arc<Vault>, ttl: Duration) -> ProviderKeys {
        ProviderKeys {
            vault,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key stored under `name`; a missing one is never cached, so a key put after a
    /// failed call is used by the next.
    pub async fn get(&self, name: &'static str) -> Result<SecretString> {
        if let Some(key) = self.fresh(name) {
            return Ok(key);
        }
        let key = self.vault.get(name).await;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match &key {
            Ok(k) => {
                cache.insert(name, (k.clone(), Instant::now()));
            }
            Err(_) => {
                cache.remove(name);
            }
        }
        key
    }

    fn fresh(&self, name: &str) -> Option<SecretString> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(name)
            .filter(|(_, read)| read.elapsed() < self.ttl)
            .map(|(k, _)| k.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privsec::keyring::Keyring;
    use crate::store::SqliteStore;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn a_changed_or_deleted_key_takes_effect_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("vault.key");
        Keyring::create_file_if_missing(&key_file).unwrap();
        let keys = Keyring::load(None, &key_file).unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let vault = Arc::new(Vault::new(keys, Arc::new(store)));
        let ttl = Duration::from_millis(200);
        let cached = ProviderKeys::new(vault.clone(), ttl);

        assert!(cached.get("openai_api_key").await.is_err());
        vault
            .put("openai_api_key", &SecretString::from("sk-one".to_string()))
            .await
            .unwrap();
        // Absence is not cached: the key put a moment ago is used at once.
        assert_eq!(
            cached.get("openai_api_key").await.unwrap().expose_secret(),
            "sk-one"
        );
        vault
            .put("openai_api_key", &SecretString::from("sk-two".to_string()))
            .await
            .unwrap();
        assert_eq!(
            cached.get("openai_api_key").await.unwrap().expose_secret(),
            "sk-one"
        );
        tokio::time::sleep(ttl).await;
        assert_eq!(
            cached.get("openai_api_key").await.unwrap().expose_secret(),
            "sk-two"
        );
        vault.delete("openai_api_key").await.unwrap();
        tokio::time::sleep(ttl).await;
        assert!(cached.get("openai_api_key").await.is_err());
    }
}
