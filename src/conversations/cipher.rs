//! One stored value encrypted under its owner's data key: `mx1:` + base64(nonce ‖ ciphertext).
//!
//! XChaCha20-Poly1305 with a fresh random 192-bit nonce per value (random nonces of that size
//! never repeat in practice). The associated data is the value's place: its owner, its
//! conversation, its message (if any) and its column, so a ciphertext copied to another row,
//! another column or another user's conversation does not open. The prefix versions the
//! format and tells a sealed value from plaintext written before encryption existed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use rand::RngCore;

use crate::error::{Error, Result};
use crate::privsec::datakeys::DataKey;

/// What every sealed value starts with.
pub const PREFIX: &str = "mx1:";
const NONCE_LEN: usize = 24;

/// The encrypted columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Topic,
    Tags,
    Artifacts,
    Content,
    Meta,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Topic => "topic",
            Column::Tags => "tags",
            Column::Artifacts => "artifacts",
            Column::Content => "content",
            Column::Meta => "meta",
        }
    }
}

/// Where a value is stored: bound to its ciphertext as associated data.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub owner: &'a str,
    pub conversation: &'a str,
    /// The message's id; empty for a conversation's own columns.
    pub message: &'a str,
    pub column: Column,
}

impl Place<'_> {
    /// Each part length-prefixed, so no two places encode alike.
    fn associated_data(&self) -> Vec<u8> {
        let parts = [
            self.owner,
            self.conversation,
            self.message,
            self.column.name(),
        ];
        let size = PREFIX.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
        let mut ad = Vec::with_capacity(size);
        ad.extend_from_slice(PREFIX.as_bytes());
        for part in parts {
            ad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            ad.extend_from_slice(part.as_bytes());
        }
        ad
    }

    /// The error for a value that does not open under its owner's key: altered, or copied
    /// from another place. Names the place, never the value.
    fn unreadable(&self) -> Error {
        Error::Store(format!(
            "the {} of conversation {:?} cannot be decrypted: it was altered or does not \
             belong here",
            self.column.name(),
            self.conversation
        ))
    }

    /// The error for a value whose owner has no key any more: they were forgotten, and this
    /// row came back from a copy (a restored backup). As gone as a deleted conversation.
    fn forgotten(&self) -> Error {
        Error::NotFound(format!(
            "conversation {:?}: its owner was forgotten (their data key is destroyed), so it \
             cannot be decrypted",
            self.conversation
        ))
    }
}

/// Whether `text` is a sealed value (else it is plaintext from before encryption).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// Encrypts `plain` for `place`.
pub fn seal(key: &DataKey, place: &Place<'_>, plain: &str) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    // A CSPRNG seeded from the OS; cheaper per call than a system call, as good for nonces.
    rand::thread_rng().fill_bytes(&mut nonce);
    let ad = place.associated_data();
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: &ad,
            },
        )
        // aead's error is opaque by design: there is no cause to keep.
        .map_err(|_| Error::Store("cannot encrypt conversation content".into()))?;
    let mut out = String::with_capacity(PREFIX.len() + (NONCE_LEN + sealed.len()).div_ceil(3) * 4);
    out.push_str(PREFIX);
    STANDARD.encode_string([nonce.as_slice(), &sealed].concat(), &mut out);
    Ok(out)
}

/// Decrypts a sealed value stored at `place`.
pub fn open(key: &DataKey, place: &Place<'_>, text: &str) -> Result<String> {
    let raw = text
        .strip_prefix(PREFIX)
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or_else(|| place.unreadable())?;
    let (nonce, sealed) = raw
        .split_at_checked(NONCE_LEN)
        .ok_or_else(|| place.unreadable())?;
    let ad = place.associated_data();
    let plain = key
        .cipher()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &ad,
            },
        )
        // A failed decryption must not say why (aead's error is opaque anyway): no cause kept.
        .map_err(|_| place.unreadable())?;
    String::from_utf8(plain).map_err(|_| place.unreadable())
}

/// A stored value as the reader sees it: opened under `key` when sealed, as it is when it is
/// plaintext from before encryption (the start-up migration seals those). A sealed value
/// with no key (its owner's was destroyed) is unreadable.
pub fn open_stored(key: Option<&DataKey>, place: &Place<'_>, text: String) -> Result<String> {
    match (is_sealed(&text), key) {
        (false, _) => Ok(text),
        (true, Some(key)) => open(key, place, &text),
        (true, None) => Err(place.forgotten()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place<'a>(conversation: &'a str, message: &'a str, column: Column) -> Place<'a> {
        Place {
            owner: "alice",
            conversation,
            message,
            column,
        }
    }

    #[test]
    fn a_value_opens_only_in_its_place_and_under_its_key() {
        let key = DataKey::generate();
        let here = place("c1", "m1", Column::Content);
        let text = seal(&key, &here, "CANARY hello").unwrap();
        assert!(is_sealed(&text) && !text.contains("CANARY"));
        assert_eq!(open(&key, &here, &text).unwrap(), "CANARY hello");
        // Fresh nonce per value.
        assert_ne!(seal(&key, &here, "CANARY hello").unwrap(), text);
        for elsewhere in [
            place("c2", "m1", Column::Content),
            place("c1", "m2", Column::Content),
            place("c1", "m1", Column::Meta),
            Place {
                owner: "bob",
                ..here
            },
        ] {
            let err = open(&key, &elsewhere, &text).unwrap_err().to_string();
            assert!(err.contains("cannot be decrypted") && !err.contains("CANARY"));
        }
        assert!(open(&DataKey::generate(), &here, &text).is_err());
        assert!(open(&key, &here, &text[..text.len() - 4]).is_err());
        assert!(open(&key, &here, "mx1:!!").is_err());
    }
}
