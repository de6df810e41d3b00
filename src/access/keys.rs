//! API keys (SPEC §2.6): `mae_<id>_<secret>`. The id is public (it names the key in lists,
//! audit entries and limits); only a SHA-256 of the secret is stored, and the check compares
//! hashes in constant time. Secrets are 256 random bits, so a fast hash is the right one.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scope::KeyScope;
use crate::error::Result;
use crate::store::{ApiKeyRecord, ApiKeys};

const PREFIX: &str = "mae_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What a new key is for: whose it is, what it may do, until when.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub user_id: Option<String>,
    pub scope: KeyScope,
    pub services: Option<Vec<String>>,
    pub expires_at: Option<i64>,
}

impl NewKey {
    /// An admin key of no user that never expires (the seed's single static key is one too).
    pub fn admin(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            user_id: None,
            scope: KeyScope::Admin,
            services: None,
            expires_at: None,
        }
    }
}

/// A new key: the record to store and the full key, shown once.
pub fn generate(new: NewKey, now: i64) -> (ApiKeyRecord, SecretString) {
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; ID_BYTES];
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rng.fill_bytes(&mut id);
    rng.fill_bytes(secret.as_mut());
    // Hex ids: no `_` inside, so the key splits unambiguously.
    let id = hex::encode(id);
    let secret = zeroize::Zeroizing::new(b64(secret.as_ref()));
    let record = ApiKeyRecord {
        id: id.clone(),
        name: new.name,
        hash: hash(&secret),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        user_id: new.user_id,
        scope: new.scope,
        services: new.services,
        expires_at: new.expires_at,
    };
    (
        record,
        SecretString::from(format!("{PREFIX}{id}_{}", secret.as_str())),
    )
}

/// The id of a well-formed key, without checking it.
pub fn id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == ID_BYTES * 2
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret.len() <= 64;
    ok.then_some(id)
}

/// Checks a presented key against the store; returns its record when it is valid, not revoked
/// and not expired at `now` (Unix seconds).
pub async fn verify(
    store: &dyn ApiKeys,
    presented: &SecretString,
    now: i64,
) -> Result<Option<ApiKeyRecord>> {
    let presented = presented.expose_secret();
    let Some(id) = id_of(presented) else {
        return Ok(None);
    };
    let secret = presented
        .get(PREFIX.len() + id.len() + 1..)
        .unwrap_or_default();
    let Some(record) = store.api_key_get(id).await? else {
        return Ok(None);
    };
    let matches: bool = hash(secret).as_bytes().ct_eq(record.hash.as_bytes()).into();
    let live = record.revoked_at.is_none() && record.expires_at.is_none_or(|t| now < t);
    Ok((matches && live).then_some(record))
}

/// Compares a presented key with the static `MAESTRA_API_KEY`, in constant time.
pub fn matches_static(presented: &SecretString, configured: &SecretString) -> bool {
    // Hash both so the comparison does not leak the configured key's length either.
    let a = Sha256::digest(presented.expose_secret().as_bytes());
    let b = Sha256::digest(configured.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_and_never_store_the_secret() {
        let (rec, key) = generate(NewKey::admin("laptop"), 1);
        let k = key.expose_secret();
        assert_eq!(id_of(k), Some(rec.id.as_str()));
        assert!(!rec.hash.contains(k.rsplit('_').next().unwrap()));
        assert!(!format!("{key:?}").contains(k));
        for bad in [
            "",
            "mae_",
            "mae_zz_x",
            "sk-123",
            "mae_0123456789ab_",
            "mae_0123456789ab",
        ] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
        assert!(matches_static(
            &SecretString::from("a"),
            &SecretString::from("a")
        ));
        assert!(!matches_static(
            &SecretString::from("a"),
            &SecretString::from("ab")
        ));
    }
}
