//! The vault's key check value: how a process tells that its key is the vault's key.
//!
//! Instances that share a PostgreSQL database share one vault. An instance started with another
//! `MAESTRA_ENCRYPTION_KEY` could otherwise re-encrypt a shared secret under its own key (its
//! start-up import of `MAESTRA_OPENAI_KEY` did), and every other instance would then fail to
//! read it. So the vault keeps, in the store's `meta` table, a Fernet token of a fixed,
//! non-secret text made with the primary key. A keyring that opens it is the vault's keyring;
//! one that does not must write nothing. The token reveals nothing about the key (it is what
//! every stored secret already is: AES-CBC under a random IV, authenticated with HMAC).

use super::keyring::{KeySource, Keyring};
use crate::error::Error;

/// The `meta` key holding the check value.
pub const META_KEY: &str = "vault.key_check";

/// The fixed text the check value encrypts; not secret, only recognisable.
const PLAINTEXT: &[u8] = b"maestra vault key check v1";

/// Where a vault stands with a given keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// The stored check value opens with these keys.
    Matches,
    /// No check value yet, and every encrypted secret (there may be none) opens with these
    /// keys: the first write stores one.
    Unset,
    /// The check value, or (with none yet) some stored secret, does not open with these keys.
    Mismatch,
}

/// A fresh check value under the primary key.
pub fn make(keys: &Keyring) -> String {
    keys.encrypt(PLAINTEXT)
}

/// Whether `token` is a check value that one of `keys` opens.
pub fn opens(keys: &Keyring, token: &str) -> bool {
    keys.decrypt(token.trim(), None)
        .is_ok_and(|plain| plain.as_slice() == PLAINTEXT)
}

/// The one-line refusal for a key that is not the vault's. It names where the key came from,
/// never the key.
pub fn mismatch(keys: &Keyring) -> Error {
    let source = match &keys.source {
        KeySource::Environment => "MAESTRA_ENCRYPTION_KEY".to_string(),
        KeySource::File(p) => p.display().to_string(),
    };
    Error::Vault(format!(
        "the vault key in {source} is not this vault's key (it cannot open the key check \
         stored with the vault, whose secrets were encrypted with another key); nothing was \
         written: use the vault's key, the same one on every instance sharing this database"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privsec::vault::Vault;
    use crate::store::{SqliteStore, Store};
    use secrecy::{ExposeSecret, SecretString};
    use std::sync::Arc;

    fn env_vault(store: &Arc<dyn Store>, keys: &[String]) -> Vault {
        Vault::new(ring(keys), store.clone())
    }

    fn file_vault(store: &Arc<dyn Store>, key_file: &std::path::Path) -> Vault {
        Keyring::create_file_if_missing(key_file).unwrap();
        Vault::new(Keyring::load(None, key_file).unwrap(), store.clone())
    }

    async fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.join("db")).await.unwrap())
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    /// Two instances on one store with different keys: the second writes nothing, the first
    /// keeps reading its secret.
    #[tokio::test]
    async fn a_foreign_key_is_refused_before_it_writes() {
        let t = tempfile::tempdir().unwrap();
        let store = sqlite(t.path()).await;
        let (a, b) = (
            fernet::Fernet::generate_key(),
            fernet::Fernet::generate_key(),
        );
        let first = env_vault(&store, std::slice::from_ref(&a));
        first.verify_key().await.unwrap();
        assert_eq!(first.key_status().await.unwrap(), KeyStatus::Matches);
        first
            .put("openai_api_key", &secret("sk-one"))
            .await
            .unwrap();

        let second = env_vault(&store, std::slice::from_ref(&b));
        assert_eq!(second.key_status().await.unwrap(), KeyStatus::Mismatch);
        for err in [
            second.verify_key().await.unwrap_err(),
            second
                .put("openai_api_key", &secret("sk-two"))
                .await
                .unwrap_err(),
            second.put("other", &secret("x")).await.unwrap_err(),
            second.delete("openai_api_key").await.unwrap_err(),
            second.get("openai_api_key").await.unwrap_err(),
            second.migrate(&mut |_, _| Ok(())).await.unwrap_err(),
        ] {
            assert!(err.to_string().contains("not this vault's key"), "{err}");
        }
        assert_eq!(store.secret_list().await.unwrap().len(), 1);
        assert_eq!(
            first.get("openai_api_key").await.unwrap().expose_secret(),
            "sk-one"
        );
    }

    /// A vault from before check values gets one when every secret opens, and refuses (writing
    /// none) when some secret does not.
    #[tokio::test]
    async fn an_upgraded_vault_is_checked_by_its_secrets() {
        let t = tempfile::tempdir().unwrap();
        let store = sqlite(t.path()).await;
        let (a, b) = (
            fernet::Fernet::generate_key(),
            fernet::Fernet::generate_key(),
        );
        let old = env_vault(&store, std::slice::from_ref(&a));
        old.put("s1", &secret("v1")).await.unwrap();
        old.put_legacy_plaintext("plain", &secret("p"))
            .await
            .unwrap();
        store.meta_delete(META_KEY).await.unwrap();

        let foreign = env_vault(&store, std::slice::from_ref(&b));
        assert_eq!(foreign.key_status().await.unwrap(), KeyStatus::Mismatch);
        assert!(foreign.verify_key().await.is_err());
        assert_eq!(
            store.meta_get(META_KEY).await.unwrap(),
            None,
            "nothing written"
        );

        assert_eq!(old.key_status().await.unwrap(), KeyStatus::Unset);
        old.verify_key().await.unwrap();
        let check = store.meta_get(META_KEY).await.unwrap().unwrap();
        assert!(opens(&ring(&[a]), &check));
        assert_eq!(old.key_status().await.unwrap(), KeyStatus::Matches);
    }

    /// Rotation moves the check value with the secrets; an interrupted one leaves a vault the
    /// key file still opens, and the finished one a vault that only the new key opens.
    #[tokio::test]
    async fn rotation_carries_the_check_value_even_when_interrupted() {
        let t = tempfile::tempdir().unwrap();
        let store = sqlite(t.path()).await;
        let key_file = t.path().join("vault.key");
        let mut v = file_vault(&store, &key_file);
        for i in 0..6 {
            v.put(&format!("s{i}"), &secret("v")).await.unwrap();
        }
        let first = std::fs::read_to_string(&key_file).unwrap();
        // Interrupted after the last secret, before the check value and the key file follow.
        let mut crash = |done: usize, total: usize| {
            if done == total {
                Err(crate::error::Error::Vault("simulated crash".into()))
            } else {
                Ok(())
            }
        };
        assert!(v.rotate_key(&mut crash).await.is_err());
        let v = file_vault(&store, &key_file);
        assert_eq!(v.keys().len(), 2);
        assert_eq!(v.key_status().await.unwrap(), KeyStatus::Matches);
        let mut v = v;
        v.rotate_key(&mut |_, _| Ok(())).await.unwrap();
        assert_eq!(v.keys().len(), 1);

        let fresh = file_vault(&store, &key_file);
        assert_eq!(fresh.key_status().await.unwrap(), KeyStatus::Matches);
        fresh.verify_key().await.unwrap();
        let retired = Vault::new(
            Keyring::parse(&SecretString::from(first), KeySource::Environment).unwrap(),
            store.clone(),
        );
        assert_eq!(retired.key_status().await.unwrap(), KeyStatus::Mismatch);

        // With keys from the environment: the new key first, then rotate, then the old alone
        // is refused.
        let current = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_string();
        let next = fernet::Fernet::generate_key();
        let mut env = env_vault(&store, &[next.clone(), current.clone()]);
        env.rotate_key(&mut |_, _| Ok(())).await.unwrap();
        assert_eq!(
            env_vault(&store, &[next]).key_status().await.unwrap(),
            KeyStatus::Matches
        );
        assert_eq!(
            env_vault(&store, &[current]).key_status().await.unwrap(),
            KeyStatus::Mismatch
        );
    }

    fn ring(keys: &[String]) -> Keyring {
        Keyring::parse(&SecretString::from(keys.join(",")), KeySource::Environment).unwrap()
    }

    #[test]
    fn a_check_value_opens_only_with_its_keys_and_reveals_none() {
        let a = fernet::Fernet::generate_key();
        let b = fernet::Fernet::generate_key();
        let check = make(&ring(std::slice::from_ref(&a)));
        assert!(opens(&ring(std::slice::from_ref(&a)), &check));
        assert!(
            opens(&ring(&[b.clone(), a.clone()]), &check),
            "a rotation's keyring"
        );
        assert!(!opens(&ring(std::slice::from_ref(&b)), &check));
        assert!(!check.contains(&a));
        assert!(!opens(&ring(std::slice::from_ref(&a)), "not a token"));
        // Another token made with the key is not a check value.
        let other = ring(std::slice::from_ref(&a)).encrypt(b"something else");
        assert!(!opens(&ring(&[a]), &other));
        let msg = mismatch(&ring(std::slice::from_ref(&b))).to_string();
        assert!(
            msg.contains("MAESTRA_ENCRYPTION_KEY") && !msg.contains(&b),
            "{msg}"
        );
    }
}
