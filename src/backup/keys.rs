//! Whether a database opens with the vault keys it is about to be used with.
//!
//! The vault key file keeps only the newest key once a rotation (`maestra vault rotate-key`,
//! `maestra lockdown`) finishes. A database copied before the rotation holds its key check
//! value, its vault secrets and its data keys under the old key; put together with the new key
//! file, the vault and `doctor` would fail although the restore "succeeded". So a restore looks
//! before it commits anything, and a backup made `--with-keys` checks that the key file it
//! copied opens the snapshot it took (a rotation may have run in between).

use secrecy::ExposeSecret;

use crate::error::{Error, Result};
use crate::privsec::keycheck;
use crate::privsec::keyring::Keyring;
pub use crate::store::KeyUse;

/// Why `keys` do not open a database, or `None` when they do: the check value opens, every
/// secret decrypts and every data key's KEK is one of the keys. Names no secret value.
pub fn mismatch(keys: &Keyring, uses: &KeyUse) -> Result<Option<String>> {
    if let Some(check) = &uses.check
        && !keycheck::opens(keys, check)
    {
        return Ok(Some("its vault key check value does not open".into()));
    }
    if let Some((name, _)) = uses
        .secrets
        .iter()
        .find(|(_, token)| keys.decrypt(token.expose_secret(), None).is_err())
    {
        return Ok(Some(format!("its vault secret {name:?} does not decrypt")));
    }
    let ids: Vec<String> = keys.raw_keys()?.into_iter().map(|(id, _)| id).collect();
    let foreign = uses.keks.iter().filter(|k| !ids.contains(k)).count();
    if foreign > 0 {
        return Ok(Some(format!(
            "{foreign} of its data-key wrapping keys are not among them"
        )));
    }
    Ok(None)
}

/// The refusal of a restore whose database does not open with the keys it would get.
pub fn refuse_restore(keys_label: &str, why: &str, with_keys_backup: bool) -> Error {
    let advice = if with_keys_backup {
        "the backup's key files do not match its own database; it cannot be restored as is"
    } else {
        "the vault key was most likely rotated since the backup (`maestra vault rotate-key` \
         or `maestra lockdown` keep only the new key), so today's keys cannot open it; restore \
         from a backup made `--with-keys` instead (or with the vault key file as it was when \
         this backup was made)"
    };
    Error::BadRequest(format!(
        "restore: the vault key from {keys_label} does not open this backup's database ({why}): \
         {advice}. Nothing was restored."
    ))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::privsec::datakeys::{DataKey, wrap};
    use crate::privsec::keyring::KeySource;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(
            &SecretString::from(text.to_string()),
            KeySource::Environment,
        )
        .unwrap()
    }

    #[test]
    fn a_rotated_away_key_is_named_and_todays_keys_pass() {
        let old = ring(&fernet::Fernet::generate_key());
        let rotated = old.with_new_primary().unwrap();
        let new_only = rotated.primary_only().unwrap();
        let uses = KeyUse {
            check: Some(keycheck::make(&old)),
            secrets: vec![("s".into(), SecretString::from(old.encrypt(b"v")))],
            keks: vec![wrap(&old, "ann", &DataKey::generate()).unwrap().kek],
        };
        assert!(mismatch(&old, &uses).unwrap().is_none());
        assert!(mismatch(&rotated, &uses).unwrap().is_none(), "mid-rotation");
        let why = mismatch(&new_only, &uses).unwrap().unwrap();
        assert!(why.contains("check value"), "{why}");
        let no_check = KeyUse {
            check: None,
            ..uses
        };
        let why = mismatch(&new_only, &no_check).unwrap().unwrap();
        assert!(why.contains("\"s\""), "{why}");
        let keks_only = KeyUse {
            keks: no_check.keks.clone(),
            ..KeyUse::default()
        };
        let why = mismatch(&new_only, &keks_only).unwrap().unwrap();
        assert!(why.contains("wrapping keys"), "{why}");
        assert!(KeyUse::default().is_empty());
        assert!(mismatch(&new_only, &KeyUse::default()).unwrap().is_none());
    }
}
