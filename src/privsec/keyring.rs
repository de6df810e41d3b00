//! Fernet keys: where they come from, which one encrypts, and token inspection.
//!
//! The first key encrypts and every key decrypts (MultiFernet semantics, byte-compatible with
//! Python `cryptography`). Keys are never printed: errors name the key's position and source.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use fernet::Fernet;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Where the active keys were read from; rotation can rewrite only a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

pub struct Keyring {
    keys: Vec<(Fernet, SecretString)>,
    pub source: KeySource,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .field("primary", &self.primary_id())
            .field("source", &self.source)
            .finish()
    }
}

/// The parts of a token that are readable without a key (Fernet spec: version, timestamp).
#[derive(Debug, Clone, Copy)]
pub struct TokenHeader {
    pub timestamp: u64,
}

impl Keyring {
    /// Parses comma- or newline-separated keys; blank lines and `#` comments are ignored.
    pub fn parse(text: &SecretString, source: KeySource) -> Result<Keyring> {
        let origin = match &source {
            KeySource::Environment => "MAESTRA_ENCRYPTION_KEY".to_string(),
            KeySource::File(p) => p.display().to_string(),
        };
        let mut keys = Vec::new();
        for (i, raw) in text
            .expose_secret()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.starts_with('#'))
            .enumerate()
        {
            let fernet = Fernet::new(raw).ok_or_else(|| {
                Error::Vault(format!(
                    "key #{} in {origin} is not a Fernet key (32 url-safe base64-encoded bytes)",
                    i + 1
                ))
            })?;
            keys.push((fernet, SecretString::from(raw.to_string())));
        }
        if keys.is_empty() {
            return Err(Error::Vault(format!("{origin} holds no key")));
        }
        Ok(Keyring { keys, source })
    }

    /// Reads the keys from the environment value if given, else from the key file.
    pub fn load(env_keys: Option<&SecretString>, key_file: &Path) -> Result<Keyring> {
        match env_keys {
            Some(k) => Self::parse(k, KeySource::Environment),
            None => {
                let text = SecretString::from(crate::home::read_private(key_file)?);
                Self::parse(&text, KeySource::File(key_file.to_path_buf()))
            }
        }
    }

    /// Creates the key file with one fresh key if it does not exist yet.
    pub fn create_file_if_missing(key_file: &Path) -> Result<bool> {
        if key_file.exists() {
            return Ok(false);
        }
        let key = Zeroizing::new(Fernet::generate_key());
        crate::home::write_private_atomic(key_file, format!("{}\n", key.as_str()).as_bytes())?;
        Ok(true)
    }

    /// A new keyring with a freshly generated primary in front of the current keys.
    pub fn with_new_primary(&self) -> Result<Keyring> {
        let fresh = Zeroizing::new(Fernet::generate_key());
        let mut text = Zeroizing::new(format!("{}\n", fresh.as_str()));
        for (_, k) in &self.keys {
            text.push_str(k.expose_secret());
            text.push('\n');
        }
        Self::parse(&SecretString::from(text.to_string()), self.source.clone())
    }

    /// A keyring of the primary key alone: what remains once rotation is complete.
    pub fn primary_only(&self) -> Result<Keyring> {
        let text = SecretString::from(self.keys[0].1.expose_secret().to_string());
        Self::parse(&text, self.source.clone())
    }

    /// The file contents for these keys, primary first.
    pub fn file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for (_, k) in &self.keys {
            text.push_str(k.expose_secret());
            text.push('\n');
        }
        text
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A short public fingerprint of the primary key, safe to print and store.
    pub fn primary_id(&self) -> String {
        fingerprint(&self.keys[0].1)
    }

    pub fn encrypt(&self, data: &[u8]) -> String {
        self.keys[0].0.encrypt(data)
    }

    /// Encrypts with the primary key, stamping the token with `timestamp` (used by rotation so
    /// a re-encrypted token keeps its original age, as `MultiFernet.rotate` does).
    pub fn encrypt_at(&self, data: &[u8], timestamp: u64) -> String {
        self.keys[0].0.encrypt_at_time(data, timestamp)
    }

    /// Decrypts with any key; `ttl` rejects tokens older than that many seconds.
    pub fn decrypt(&self, token: &str, ttl: Option<u64>) -> Result<Zeroizing<Vec<u8>>> {
        let header = inspect(token)?;
        if let Some(ttl) = ttl {
            let now = crate::store::now_unix().max(0) as u64;
            if header.timestamp.saturating_add(ttl) < now {
                return Err(Error::InvalidToken(format!(
                    "token expired: it is {} s old and the ttl is {ttl} s",
                    now - header.timestamp
                )));
            }
        }
        for (fernet, _) in &self.keys {
            // Each key's failure is dropped on purpose: why a decryption failed (which key,
            // which check) must not be told, so the one error below names no cause.
            if let Ok(plain) = fernet.decrypt(token) {
                return Ok(Zeroizing::new(plain));
            }
        }
        Err(Error::InvalidToken(
            "the token was not made with any configured key, or it was altered".into(),
        ))
    }

    /// The raw 32 bytes of each key, primary first, with its public fingerprint: the input
    /// from which `datakeys` derives its key-encryption keys.
    pub fn raw_keys(&self) -> Result<Vec<(String, Zeroizing<Vec<u8>>)>> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, (_, k))| {
                let raw = URL_SAFE
                    .decode(k.expose_secret().trim().as_bytes())
                    // Dropped on purpose: a base64 error names a byte of the key.
                    .map_err(|_| Error::Vault(format!("key #{} is not base64", i + 1)))?;
                Ok((fingerprint(k), Zeroizing::new(raw)))
            })
            .collect()
    }

    /// Whether the primary key alone can open this token.
    pub fn is_under_primary(&self, token: &str) -> bool {
        self.keys[0].0.decrypt(token).is_ok()
    }
}

/// Reads a token's version and timestamp, rejecting what cannot be a Fernet token at all.
pub fn inspect(token: &str) -> Result<TokenHeader> {
    let raw = URL_SAFE
        .decode(token.trim().as_bytes())
        // Dropped on purpose: a base64 error names a byte of the token.
        .map_err(|_| Error::InvalidToken("not a Fernet token (bad base64)".into()))?;
    // version (1) + timestamp (8) + iv (16) + at least one block (16) + hmac (32)
    if raw.len() < 73 || (raw.len() - 57) % 16 != 0 {
        return Err(Error::InvalidToken(
            "not a Fernet token (truncated or wrong length)".into(),
        ));
    }
    if raw[0] != 0x80 {
        return Err(Error::InvalidToken(
            "not a Fernet token (unknown version)".into(),
        ));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[1..9]);
    Ok(TokenHeader {
        timestamp: u64::from_be_bytes(ts),
    })
}

fn fingerprint(key: &SecretString) -> String {
    let digest = Sha256::digest(key.expose_secret().as_bytes());
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Keyring {
        let text: Vec<String> = (0..n).map(|_| Fernet::generate_key()).collect();
        Keyring::parse(&SecretString::from(text.join(",")), KeySource::Environment).unwrap()
    }

    #[test]
    fn first_key_encrypts_all_decrypt() {
        let old = ring(1);
        let token = old.encrypt(b"hello");
        let rotated = old.with_new_primary().unwrap();
        assert_eq!(rotated.len(), 2);
        assert_eq!(&*rotated.decrypt(&token, None).unwrap(), b"hello");
        assert!(!rotated.is_under_primary(&token));
        let fresh = rotated.encrypt(b"x");
        assert!(rotated.is_under_primary(&fresh));
        assert!(old.decrypt(&fresh, None).is_err());
    }

    #[test]
    fn timestamp_is_kept_by_encrypt_at() {
        let r = ring(1);
        let t = r.encrypt_at(b"x", 1_000_000);
        assert_eq!(inspect(&t).unwrap().timestamp, 1_000_000);
    }

    #[test]
    fn bad_keys_are_named_not_echoed() {
        for bad in ["short", "CANARY-not-a-key-at-all-but-long-enough-to-look"] {
            let err = Keyring::parse(&SecretString::from(bad), KeySource::Environment)
                .unwrap_err()
                .to_string();
            assert!(err.contains("key #1"), "{err}");
            assert!(!err.contains(bad), "{err}");
        }
        let good = Fernet::generate_key();
        let err = Keyring::parse(
            &SecretString::from(format!("{good},nope")),
            KeySource::Environment,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key #2"), "{err}");
    }

    #[test]
    fn truncated_edited_and_foreign_tokens_fail_clearly() {
        let r = ring(1);
        let t = r.encrypt(b"secret value");
        assert!(r.decrypt(&t[..t.len() - 5], None).is_err());
        let mut edited = t.clone().into_bytes();
        edited[30] = if edited[30] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        assert!(matches!(
            r.decrypt(&edited, None),
            Err(Error::InvalidToken(_))
        ));
        assert!(ring(1).decrypt(&t, None).is_err());
        assert!(r.decrypt("not a token", None).is_err());
    }

    #[test]
    fn ttl_expires_old_tokens() {
        let r = ring(1);
        let old = r.encrypt_at(b"x", 1_000);
        let err = r.decrypt(&old, Some(60)).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        let fresh = r.encrypt(b"x");
        assert!(r.decrypt(&fresh, Some(60)).is_ok());
    }

    #[test]
    fn debug_hides_keys() {
        let r = ring(2);
        let dump = format!("{r:?}");
        for (_, k) in &r.keys {
            assert!(!dump.contains(k.expose_secret()));
        }
    }
}
