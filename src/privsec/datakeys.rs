//! Per-user data keys (issue 18): random 256-bit keys that encrypt one user's conversation
//! content, stored wrapped under a key-encryption key (KEK) derived from the vault key.
//!
//! The vault key (`MAESTRA_ENCRYPTION_KEY` or the key file) stays the one root secret: each of
//! its Fernet keys gives a KEK by HKDF-SHA256, so a data key opens only with the vault key, and
//! rotating the vault key means re-wrapping the data keys ([`rewrap_all`]), not re-encrypting
//! content. Destroying a user's wrapped key (forget) makes every copy of their content, in
//! backups included, unreadable: the data keys live in their own table, which data backups
//! leave out.
//!
//! Wrapping is XChaCha20-Poly1305 with a random nonce; the associated data names the user, so
//! a wrapped key copied to another user's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keyring::Keyring;
use crate::error::{Error, Result};
use crate::store::{DataKeyRecord, Store, now_unix};

/// HKDF salt and info: a KEK is good for wrapping data keys and nothing else.
const KEK_SALT: &[u8] = b"maestra/data-keys";
const KEK_INFO: &[u8] = b"maestra data-key wrapping v1";
/// Associated data of a wrapped key, followed by the user's id.
const WRAP_AD: &[u8] = b"maestra data key v1\0";
const NONCE_LEN: usize = 24;

/// A user's data key in the clear: only ever in memory, zeroed when dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> DataKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        DataKey(key)
    }

    /// The AEAD under this key.
    pub fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }
}

/// A key-encryption key derived from one of the vault's keys, named by that key's public
/// fingerprint.
struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

/// The KEKs of every key in `keys`, primary first.
fn keks(keys: &Keyring) -> Result<Vec<Kek>> {
    keys.raw_keys()?
        .into_iter()
        .map(|(id, raw)| {
            let mut key = Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(Some(KEK_SALT), &raw)
                .expand(KEK_INFO, key.as_mut())
                // hkdf's error (an output length) says nothing more: no cause to keep.
                .map_err(|_| Error::Vault("cannot derive the data-key wrapping key".into()))?;
            Ok(Kek { id, key })
        })
        .collect()
}

fn wrap_ad(user: &str) -> Vec<u8> {
    [WRAP_AD, user.as_bytes()].concat()
}

fn wrap_with(kek: &Kek, user: &str, key: &DataKey) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ad = wrap_ad(user);
    let sealed = XChaCha20Poly1305::new(kek.key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key.0.as_ref(),
                aad: &ad,
            },
        )
        // aead's error is opaque by design: there is no cause to keep.
        .map_err(|_| Error::Vault("cannot wrap a data key".into()))?;
    Ok(STANDARD.encode([nonce.as_slice(), &sealed].concat()))
}

fn unwrap_with(kek: &Kek, user: &str, wrapped: &[u8]) -> Option<DataKey> {
    let (nonce, sealed) = wrapped.split_at_checked(NONCE_LEN)?;
    let ad = wrap_ad(user);
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(kek.key.as_ref().into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &ad,
                },
            )
            .ok()?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != key.len() {
        return None;
    }
    key.copy_from_slice(&plain);
    Some(DataKey(key))
}

/// `key` wrapped for `user` under the primary key's KEK, as a record ready to store.
pub fn wrap(keys: &Keyring, user: &str, key: &DataKey) -> Result<DataKeyRecord> {
    let keks = keks(keys)?;
    let primary = keks
        .first()
        .ok_or_else(|| Error::Vault("the keyring holds no key".into()))?;
    Ok(DataKeyRecord {
        user: user.to_owned(),
        wrapped: wrap_with(primary, user, key)?,
        kek: primary.id.clone(),
        created_at: now_unix(),
    })
}

/// Opens a stored data key with whichever of `keys` wraps it (the one its record names
/// first). The error names the user, never key material.
pub fn unwrap(keys: &Keyring, record: &DataKeyRecord) -> Result<DataKey> {
    let wrapped = STANDARD
        .decode(record.wrapped.as_bytes())
        // Dropped on purpose: a base64 error names a byte of the wrapped key.
        .map_err(|_| Error::Vault(format!("the data key of user {:?} is damaged", record.user)))?;
    let mut keks = keks(keys)?;
    // The named KEK first; the others only for a record written mid-rotation.
    keks.sort_by_key(|k| k.id != record.kek);
    keks.iter()
        .find_map(|kek| unwrap_with(kek, &record.user, &wrapped))
        .ok_or_else(|| {
            Error::Vault(format!(
                "the data key of user {:?} does not open with the vault key in use \
                 (another key, or the record was altered)",
                record.user
            ))
        })
}

/// Whether `record` is wrapped under the primary key and opens with it.
fn under_primary(keys: &Keyring, record: &DataKeyRecord) -> bool {
    record.kek == keys.primary_id()
        && STANDARD
            .decode(record.wrapped.as_bytes())
            .ok()
            .zip(keks(keys).ok())
            .and_then(|(w, keks)| {
                let primary = keks.into_iter().next()?;
                unwrap_with(&primary, &record.user, &w)
            })
            .is_some()
}

/// What a re-wrap did, for the rotation's report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    pub rewrapped: usize,
    pub already_done: usize,
}

/// Re-wraps every data key not yet under the primary key (rotation). Each swap is
/// compare-and-swap, so a key forgotten meanwhile stays forgotten; a rerun after a crash
/// finds the keys already re-wrapped and skips them. Content is not touched: the data keys
/// themselves do not change.
pub async fn rewrap_all(store: &dyn Store, keys: &Keyring) -> Result<Rewrapped> {
    let mut report = Rewrapped::default();
    for record in store.data_key_list().await? {
        if under_primary(keys, &record) {
            report.already_done += 1;
            continue;
        }
        let key = unwrap(keys, &record)?;
        let fresh = wrap(keys, &record.user, &key)?;
        if store
            .data_key_swap(&record.user, &record.wrapped, &fresh.wrapped, &fresh.kek)
            .await?
        {
            report.rewrapped += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privsec::keyring::KeySource;
    use secrecy::SecretString;

    fn ring() -> Keyring {
        let text = SecretString::from(fernet::Fernet::generate_key());
        Keyring::parse(&text, KeySource::Environment).unwrap()
    }

    #[test]
    fn a_wrapped_key_opens_for_its_user_only_and_with_its_vault_key_only() {
        let keys = ring();
        let key = DataKey::generate();
        let record = wrap(&keys, "alice", &key).unwrap();
        assert_eq!(*unwrap(&keys, &record).unwrap().0, *key.0);
        let moved = DataKeyRecord {
            user: "bob".into(),
            ..record.clone()
        };
        assert!(unwrap(&keys, &moved).is_err());
        assert!(unwrap(&ring(), &record).is_err());
        let rotated = keys.with_new_primary().unwrap();
        assert_eq!(*unwrap(&rotated, &record).unwrap().0, *key.0);
        assert!(!under_primary(&rotated, &record));
        assert!(under_primary(&keys, &record));
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
