//! The vault: named secrets encrypted at rest with the keyring (SPEC §2.2).
//!
//! Values go in and come out as [`SecretString`]; the store only ever sees Fernet tokens
//! (or, for rows written by older systems, legacy plaintext that `migrate` encrypts).

use std::sync::{Arc, PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};

use super::keycheck::{self, KeyStatus};
use super::keyring::{KeySource, Keyring, inspect};
use crate::error::{Error, Result};
use crate::store::{SecretInfo, SecretRecord, Store, now_unix};

/// Meta key recording the fingerprint of the key an unfinished rotation re-encrypts to.
const ROTATION_MARKER: &str = "vault.rotation";

pub struct Vault {
    /// Swappable because another process (`maestra vault rotate-key`, `maestra lockdown`) may
    /// rotate the key file under a running server. The server re-reads the file when a token
    /// does not open and before every write, so it keeps reading the re-encrypted secrets and
    /// never writes one under a key the rotation has retired.
    keys: RwLock<Arc<Keyring>>,
    store: Arc<dyn Store>,
}

/// What a rotation or migration did, for the command's report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rewritten: usize,
    pub already_done: usize,
    pub plaintext_left: usize,
    pub resumed: bool,
    pub retired_keys: usize,
    /// Users' data keys re-wrapped under the new primary (their content is not touched).
    pub data_keys_rewrapped: usize,
}

/// Called after each secret with (done, total); an error stops the run where it is, which is
/// also how tests simulate a crash half-way.
pub type Progress<'a> = &'a mut (dyn FnMut(usize, usize) -> Result<()> + Send);

/// Secret names are identifiers, never paths or free text.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "a secret name is 1-128 characters of letters, digits, `_`, `-`, `.` or `:`".into(),
        ))
    }
}

impl Vault {
    pub fn new(keys: Keyring, store: Arc<dyn Store>) -> Self {
        Vault {
            keys: RwLock::new(Arc::new(keys)),
            store,
        }
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys as the key file holds them now (the keys in use when they come from the
    /// environment, which cannot change under a running process).
    fn reread_keys(&self) -> Result<Arc<Keyring>> {
        let current = self.keys();
        let KeySource::File(path) = &current.source else {
            return Ok(current);
        };
        let fresh = Keyring::load(None, path)?;
        if fresh.file_text() == current.file_text() {
            return Ok(current);
        }
        tracing::info!(
            primary = %fresh.primary_id(),
            "the vault key file changed (a rotation): using its keys"
        );
        let fresh = Arc::new(fresh);
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }

    /// The keys as the key file holds them now: what a new data key is wrapped under, so a
    /// running server follows a rotation made by another process.
    pub fn current_keys(&self) -> Result<Arc<Keyring>> {
        self.reread_keys()
    }

    fn set_keys(&mut self, keys: Keyring) {
        *self.keys.get_mut().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Where this vault stands with the keys in use now. Reads only: `doctor` reports it.
    pub async fn key_status(&self) -> Result<KeyStatus> {
        let keys = self.reread_keys()?;
        self.status_with(&keys).await
    }

    async fn status_with(&self, keys: &Keyring) -> Result<KeyStatus> {
        if let Some(check) = self.store.meta_get(keycheck::META_KEY).await? {
            return Ok(if keycheck::opens(keys, &check) {
                KeyStatus::Matches
            } else {
                KeyStatus::Mismatch
            });
        }
        // A vault from before check values: its secrets are the evidence.
        for info in self.store.secret_list().await? {
            if !info.encrypted {
                continue;
            }
            if let Some(rec) = self.store.secret_get(&info.name).await?
                && rec.encrypted
                && keys.decrypt(rec.value.expose_secret(), None).is_err()
            {
                return Ok(KeyStatus::Mismatch);
            }
        }
        Ok(KeyStatus::Unset)
    }

    /// Refuses, writing nothing, when the keys in use are not the vault's (another instance
    /// sharing the database with another key); stores the check value on first use. Called by
    /// `serve` at start and before every write, so no path writes under a foreign key.
    pub async fn verify_key(&self) -> Result<()> {
        let keys = self.reread_keys()?;
        match self.status_with(&keys).await? {
            KeyStatus::Matches => Ok(()),
            KeyStatus::Mismatch => Err(keycheck::mismatch(&keys)),
            KeyStatus::Unset => {
                // Two first starts at once both found no check value: the insert is atomic,
                // so exactly one value stands, and the process whose key it is not refuses.
                self.store
                    .meta_set_if_absent(keycheck::META_KEY, &keycheck::make(&keys))
                    .await?;
                match self.store.meta_get(keycheck::META_KEY).await? {
                    Some(check) if keycheck::opens(&keys, &check) => Ok(()),
                    _ => Err(keycheck::mismatch(&keys)),
                }
            }
        }
    }

    pub async fn put(&self, name: &str, value: &SecretString) -> Result<()> {
        validate_name(name)?;
        self.verify_key().await?;
        let now = now_unix();
        let created_at = match self.store.secret_get(name).await? {
            Some(old) => old.created_at,
            None => now,
        };
        let token = self
            .reread_keys()?
            .encrypt(value.expose_secret().as_bytes());
        self.store
            .secret_put(&SecretRecord {
                name: name.into(),
                value: SecretString::from(token),
                encrypted: true,
                created_at,
                updated_at: now,
            })
            .await
    }

    /// The decrypted value; legacy plaintext rows are returned as they are.
    pub async fn get(&self, name: &str) -> Result<SecretString> {
        validate_name(name)?;
        let rec = self
            .store
            .secret_get(name)
            .await?
            .ok_or_else(|| Error::SecretNotFound(name.into()))?;
        if !rec.encrypted {
            tracing::warn!(
                secret = name,
                "vault holds a legacy plaintext value; run `maestra vault migrate`"
            );
            return Ok(rec.value);
        }
        let token = rec.value.expose_secret();
        let plain = match self.keys().decrypt(token, None) {
            Ok(plain) => plain,
            // Perhaps re-encrypted by a rotation this process has not seen yet.
            Err(first) => match self.reread_keys().map(|k| (k.decrypt(token, None), k)) {
                Ok((Ok(plain), _)) => plain,
                Ok((Err(e), keys)) => {
                    // Say so when the whole vault is under another key, not just this secret.
                    if self.status_with(&keys).await? == KeyStatus::Mismatch {
                        return Err(keycheck::mismatch(&keys));
                    }
                    return Err(Error::Vault(format!(
                        "secret {name:?} cannot be decrypted: {e}"
                    )));
                }
                Err(_) => {
                    return Err(Error::Vault(format!(
                        "secret {name:?} cannot be decrypted: {first}"
                    )));
                }
            },
        };
        let text = String::from_utf8(plain.to_vec())
            // Dropped on purpose: a `FromUtf8Error` holds the secret's bytes.
            .map_err(|_| Error::Vault(format!("secret {name:?} is not UTF-8")))?;
        Ok(SecretString::from(text))
    }

    pub async fn list(&self) -> Result<Vec<SecretInfo>> {
        self.store.secret_list().await
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.verify_key().await?;
        if self.store.secret_delete(name).await? {
            Ok(())
        } else {
            Err(Error::SecretNotFound(name.into()))
        }
    }

    /// Stores a value as legacy plaintext, exactly as the seed system left its tokens; used by
    /// `import` for rows it cannot encrypt on the way in, and by tests.
    pub async fn put_legacy_plaintext(&self, name: &str, value: &SecretString) -> Result<()> {
        validate_name(name)?;
        self.verify_key().await?;
        let now = now_unix();
        self.store
            .secret_put(&SecretRecord {
                name: name.into(),
                value: value.clone(),
                encrypted: false,
                created_at: now,
                updated_at: now,
            })
            .await
    }

    /// Encrypts every legacy plaintext value in place.
    pub async fn migrate(&self, progress: Progress<'_>) -> Result<Rewrite> {
        self.verify_key().await?;
        let list = self.store.secret_list().await?;
        let total = list.len();
        let mut report = Rewrite::default();
        let keys = self.reread_keys()?;
        for (i, info) in list.iter().enumerate() {
            if info.encrypted {
                report.already_done += 1;
            } else if let Some(rec) = self.store.secret_get(&info.name).await?
                && !rec.encrypted
            {
                let token = SecretString::from(keys.encrypt(rec.value.expose_secret().as_bytes()));
                if self
                    .store
                    .secret_swap(&rec.name, &rec.value, &token, true)
                    .await?
                {
                    report.rewritten += 1;
                }
            }
            progress(i + 1, total)?;
        }
        Ok(report)
    }

    /// Makes a new primary key (for a key file) and re-encrypts every secret under it, keeping
    /// each token's timestamp. Old keys are retired only after every secret is re-encrypted, so
    /// a crash at any point leaves all secrets readable, and a rerun finishes the same rotation.
    ///
    /// With keys from the environment the new key cannot be written for the user: they put it
    /// first in `MAESTRA_ENCRYPTION_KEY`, and this re-encrypts everything to it.
    ///
    /// Users' data keys are re-wrapped under the new primary after the secrets (issue 18); the
    /// content they lock is not re-encrypted.
    ///
    /// The key check value follows the secrets: it is rewritten under the new primary once
    /// every secret and data key is, and before the old keys leave the key file. At every point
    /// a crash can stop at, the key file's keys open the secrets, the data keys and the check
    /// value.
    pub async fn rotate_key(&mut self, progress: Progress<'_>) -> Result<Rewrite> {
        self.verify_key().await?;
        let marker = self.store.meta_get(ROTATION_MARKER).await?;
        let keys = self.reread_keys()?;
        let resumed = marker.as_deref() == Some(keys.primary_id().as_str());
        if let (KeySource::File(path), false) = (keys.source.clone(), resumed) {
            let next = keys.with_new_primary()?;
            crate::home::write_private_atomic(&path, next.file_text().as_bytes())?;
            self.set_keys(next);
        }
        let keys = self.keys();
        self.store
            .meta_set(ROTATION_MARKER, &keys.primary_id())
            .await?;
        let mut report = self.reencrypt_all(&keys, progress).await?;
        report.resumed = resumed;
        // The data keys too, before the old keys can leave the key file: wrapped under a
        // retired key, a user's whole history would be lost.
        report.data_keys_rewrapped = super::datakeys::rewrap_all(self.store.as_ref(), &keys)
            .await?
            .rewrapped;
        self.store
            .meta_set(keycheck::META_KEY, &keycheck::make(&keys))
            .await?;
        if let KeySource::File(path) = keys.source.clone() {
            let kept = keys.primary_only()?;
            report.retired_keys = keys.len() - kept.len();
            crate::home::write_private_atomic(&path, kept.file_text().as_bytes())?;
            self.set_keys(kept);
        }
        self.store.meta_delete(ROTATION_MARKER).await?;
        Ok(report)
    }

    async fn reencrypt_all(&self, keys: &Keyring, progress: Progress<'_>) -> Result<Rewrite> {
        let list = self.store.secret_list().await?;
        let total = list.len();
        let mut report = Rewrite::default();
        for (i, info) in list.iter().enumerate() {
            match self.store.secret_get(&info.name).await? {
                Some(rec) if !rec.encrypted => report.plaintext_left += 1,
                Some(rec) if keys.is_under_primary(rec.value.expose_secret()) => {
                    report.already_done += 1
                }
                Some(rec) => {
                    let token = rec.value.expose_secret();
                    let stamp = inspect(token)?.timestamp;
                    let plain = keys.decrypt(token, None).map_err(|e| {
                        Error::Vault(format!("secret {:?} cannot be decrypted: {e}", rec.name))
                            .because(e)
                    })?;
                    let fresh = SecretString::from(keys.encrypt_at(&plain, stamp));
                    if self
                        .store
                        .secret_swap(&rec.name, &rec.value, &fresh, true)
                        .await?
                    {
                        report.rewritten += 1;
                    }
                }
                None => {}
            }
            progress(i + 1, total)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn vault(dir: &std::path::Path) -> Vault {
        let key_file = dir.join("vault.key");
        Keyring::create_file_if_missing(&key_file).unwrap();
        let keys = Keyring::load(None, &key_file).unwrap();
        let store = SqliteStore::open(&dir.join("db")).await.unwrap();
        Vault::new(keys, Arc::new(store))
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let t = tempfile::tempdir().unwrap();
        let v = vault(t.path()).await;
        v.put("spotify", &secret("tok-1")).await.unwrap();
        assert_eq!(v.get("spotify").await.unwrap().expose_secret(), "tok-1");
        assert_eq!(v.list().await.unwrap().len(), 1);
        v.delete("spotify").await.unwrap();
        assert!(matches!(
            v.get("spotify").await,
            Err(Error::SecretNotFound(_))
        ));
        assert!(v.put("../etc", &secret("x")).await.is_err());
    }

    /// A server holds its vault open while `maestra lockdown` rotates the key file from
    /// another process: it must keep reading the secrets, and what it writes afterwards must be
    /// readable with the new key alone.
    #[tokio::test]
    async fn a_running_vault_follows_a_rotation_made_by_another_process() {
        let t = tempfile::tempdir().unwrap();
        let server = vault(t.path()).await;
        server.put("spotify", &secret("tok-1")).await.unwrap();
        let before = server.keys().primary_id();

        let mut cli = vault(t.path()).await;
        cli.rotate_key(&mut |_, _| Ok(())).await.unwrap();
        assert_ne!(cli.keys().primary_id(), before);
        assert_eq!(cli.keys().len(), 1, "the old key is retired");

        assert_eq!(
            server.get("spotify").await.unwrap().expose_secret(),
            "tok-1"
        );
        assert_eq!(server.keys().primary_id(), cli.keys().primary_id());
        server.put("hue", &secret("tok-2")).await.unwrap();
        let fresh = vault(t.path()).await;
        assert_eq!(fresh.get("hue").await.unwrap().expose_secret(), "tok-2");
        assert_eq!(fresh.get("spotify").await.unwrap().expose_secret(), "tok-1");
    }

    #[tokio::test]
    async fn rotation_keeps_timestamps_and_resumes_after_interruption() {
        let t = tempfile::tempdir().unwrap();
        let mut v = vault(t.path()).await;
        for i in 0..10 {
            v.put(&format!("s{i}"), &secret(&format!("value-{i}")))
                .await
                .unwrap();
        }
        let stamps: Vec<u64> = futures_stamps(&v).await;
        let first_primary = v.keys().primary_id();

        // Crash after 4 secrets.
        let mut stop = |done: usize, _: usize| {
            if done == 4 {
                Err(Error::Vault("simulated crash".into()))
            } else {
                Ok(())
            }
        };
        assert!(v.rotate_key(&mut stop).await.is_err());

        // A new process: reload keys from the file; everything is still readable.
        let mut v = vault(t.path()).await;
        assert_eq!(v.keys().len(), 2);
        let mid_primary = v.keys().primary_id();
        assert_ne!(mid_primary, first_primary);
        for i in 0..10 {
            assert_eq!(
                v.get(&format!("s{i}")).await.unwrap().expose_secret(),
                format!("value-{i}")
            );
        }
        let report = v.rotate_key(&mut |_, _| Ok(())).await.unwrap();
        assert!(report.resumed);
        assert_eq!(report.rewritten + report.already_done, 10);
        assert!(report.already_done >= 3);
        assert_eq!(
            v.keys().primary_id(),
            mid_primary,
            "the rerun finished the same rotation"
        );
        assert_eq!(v.keys().len(), 1);

        let v = vault(t.path()).await;
        assert_eq!(futures_stamps(&v).await, stamps);
        for i in 0..10 {
            assert_eq!(
                v.get(&format!("s{i}")).await.unwrap().expose_secret(),
                format!("value-{i}")
            );
        }
    }

    async fn futures_stamps(v: &Vault) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..10 {
            let rec = v.store.secret_get(&format!("s{i}")).await.unwrap().unwrap();
            out.push(inspect(rec.value.expose_secret()).unwrap().timestamp);
        }
        out
    }

    #[tokio::test]
    async fn legacy_plaintext_is_readable_then_migrated() {
        let t = tempfile::tempdir().unwrap();
        let v = vault(t.path()).await;
        v.put_legacy_plaintext("hue", &secret("bridge-user"))
            .await
            .unwrap();
        assert_eq!(v.get("hue").await.unwrap().expose_secret(), "bridge-user");
        let report = v.migrate(&mut |_, _| Ok(())).await.unwrap();
        assert_eq!(report.rewritten, 1);
        let rec = v.store.secret_get("hue").await.unwrap().unwrap();
        assert!(rec.encrypted);
        assert!(!rec.value.expose_secret().contains("bridge-user"));
        assert_eq!(v.get("hue").await.unwrap().expose_secret(), "bridge-user");
    }
}
