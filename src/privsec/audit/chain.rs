//! The keyed hash chain: each line's `hash` is HMAC-SHA256(audit key, the line without its
//! hash), and the line includes the previous line's hash. Without the key nobody can write a
//! line that verifies, so edits, insertions and removals all show.

use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The `prev_hash` of the very first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every sealed line ends with this, followed by 64 hex digits and `"}`.
const HASH_FIELD: &str = ",\"hash\":\"";

pub struct ChainKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey([REDACTED])")
    }
}

impl ChainKey {
    pub fn from_bytes(bytes: &[u8]) -> ChainKey {
        ChainKey(Zeroizing::new(bytes.to_vec()))
    }

    /// Reads `keys/audit.key` (hex), creating it on first use.
    pub fn load_or_create(path: &Path) -> Result<ChainKey> {
        if !path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut *key);
            let hex = Zeroizing::new(hex::encode(*key));
            crate::home::write_private_atomic(path, hex.as_bytes())?;
        }
        Self::load(path)
    }

    /// Reads an existing `keys/audit.key`.
    pub fn load(path: &Path) -> Result<ChainKey> {
        let text = Zeroizing::new(crate::home::read_private(path)?);
        let bytes = hex::decode(text.trim())
            // Dropped on purpose: a hex error names a character of the key.
            .map_err(|_| Error::Audit(format!("{} is not a hex audit key", path.display())))?;
        if bytes.len() < 32 {
            return Err(Error::Audit(format!(
                "{} holds a key shorter than 32 bytes",
                path.display()
            )));
        }
        Ok(ChainKey(Zeroizing::new(bytes)))
    }

    pub fn mac_hex(&self, parts: &[&[u8]]) -> String {
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC accepts keys of any length; this arm cannot be reached.
            Err(_) => return String::new(),
        };
        for p in parts {
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Appends the hash to a serialized entry `{...}`, giving `{...,"hash":"<hex>"}`.
    pub fn seal(&self, body: &mut Vec<u8>) -> String {
        let hash = self.mac_hex(&[body]);
        body.pop(); // the closing brace
        body.extend_from_slice(HASH_FIELD.as_bytes());
        body.extend_from_slice(hash.as_bytes());
        body.extend_from_slice(b"\"}");
        hash
    }

    /// Checks a sealed line's hash; returns the hash when it is authentic.
    pub fn open<'a>(&self, line: &'a [u8]) -> std::result::Result<&'a str, OpenError> {
        let (body_without_brace, hash) = split_sealed(line).ok_or(OpenError::Malformed)?;
        let expected = self.mac_hex(&[body_without_brace, b"}"]);
        if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), hash.as_bytes()).into() {
            Ok(hash)
        } else {
            Err(OpenError::BadHash)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Malformed,
    BadHash,
}

/// Splits `{...,"hash":"<64 hex>"}` into `{...` and the hash.
pub fn split_sealed(line: &[u8]) -> Option<(&[u8], &str)> {
    const TAIL: usize = 64 + 2; // hex + `"}`
    let n = line.len();
    if n < HASH_FIELD.len() + TAIL + 1 || !line.ends_with(b"\"}") {
        return None;
    }
    let field_at = n - TAIL - HASH_FIELD.len();
    if &line[field_at..n - TAIL] != HASH_FIELD.as_bytes() {
        return None;
    }
    let hash = std::str::from_utf8(&line[n - TAIL..n - 2]).ok()?;
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((&line[..field_at], hash))
}

/// A `(seq, hash)` position in the chain, stored authenticated outside the log: the head
/// (last entry written, to detect a cut tail) and the anchor (last entry pruned away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub hash: String,
}

impl Mark {
    pub fn genesis() -> Mark {
        Mark {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// Fixed-width text, so an in-place rewrite always replaces the whole record.
    pub fn encode(&self, key: &ChainKey, label: &str) -> String {
        let body = format!("v1 {label} {:020} {}", self.seq, self.hash);
        let mac = key.mac_hex(&[body.as_bytes()]);
        format!("{body} {mac}\n")
    }

    pub fn decode(text: &str, key: &ChainKey, label: &str) -> Option<Mark> {
        let text = text.trim_end();
        let (body, mac) = text.rsplit_once(' ')?;
        let expected = key.mac_hex(&[body.as_bytes()]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            mac.as_bytes(),
        )) {
            return None;
        }
        let mut parts = body.split(' ');
        if parts.next()? != "v1" || parts.next()? != label {
            return None;
        }
        let seq = parts.next()?.parse().ok()?;
        let hash = parts.next()?.to_string();
        Some(Mark { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let k = ChainKey::from_bytes(&[7; 32]);
        let mut line = br#"{"seq":1,"a":"b"}"#.to_vec();
        let hash = k.seal(&mut line);
        assert_eq!(k.open(&line).unwrap(), hash);
        let mut edited = line.clone();
        edited[3] = b'X';
        assert_eq!(k.open(&edited), Err(OpenError::BadHash));
        assert_eq!(
            ChainKey::from_bytes(&[8; 32]).open(&line),
            Err(OpenError::BadHash)
        );
        assert_eq!(k.open(b"{}"), Err(OpenError::Malformed));
    }

    #[test]
    fn mark_round_trip_and_forgery() {
        let k = ChainKey::from_bytes(&[1; 32]);
        let m = Mark {
            seq: 42,
            hash: "ab".repeat(32),
        };
        let text = m.encode(&k, "head");
        assert_eq!(Mark::decode(&text, &k, "head"), Some(m.clone()));
        assert_eq!(Mark::decode(&text, &k, "anchor"), None);
        let forged = text.replace("00042", "00041");
        assert_eq!(Mark::decode(&forged, &k, "head"), None);
    }
}
