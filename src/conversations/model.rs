//! A conversation in the seed's JSON format (SPEC §2.5), which is also the export format.
//!
//! Timestamps are RFC 3339 UTC strings in JSON and Unix milliseconds in the store, so ordering
//! and retention are integer comparisons in both backends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The longest conversation id accepted; ids are names, never paths.
pub const MAX_ID_LEN: usize = 128;

/// Checks that an id (conversation, message or user) is a plain token: ASCII letters, digits,
/// `_`, `-`, `.`, `@`, not starting with a dot, at most [`MAX_ID_LEN`] bytes. So an id can
/// never name a path (`/`, `\`, `..`), a hidden file, or smuggle control characters into logs.
pub fn validate_id(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid {kind}: use 1-{MAX_ID_LEN} letters, digits, '_', '-', '.' or '@'"
        )))
    }
}

/// Longest `mode` a client may name (`mode_hint`).
pub const MAX_MODE_LEN: usize = 32;

/// A message's mode (`mode_hint`) is stored in the clear beside the sealed content, since
/// listing and export show it: so it must be a short name, never free text a client could use
/// to keep content outside the user's key.
pub fn validate_mode(mode: &str) -> Result<()> {
    let ok = !mode.is_empty()
        && mode.len() <= MAX_MODE_LEN
        && mode
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid mode_hint: use 1-{MAX_MODE_LEN} letters, digits, '_' or '-'"
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    #[serde(default)]
    pub topic: String,
    pub owner: String,
    #[serde(default)]
    pub surfaces: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub artifacts: Vec<Value>,
    pub meta: ConversationMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationMeta {
    #[serde(with = "rfc3339_millis")]
    pub created_at: i64,
    #[serde(with = "rfc3339_millis")]
    pub updated_at: i64,
    #[serde(default = "active")]
    pub status: String,
    #[serde(default)]
    pub message_count: u64,
}

fn active() -> String {
    "active".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: String,
    pub content: String,
    #[serde(default)]
    pub surface: String,
    #[serde(default)]
    pub mode: String,
    #[serde(with = "rfc3339_millis")]
    pub timestamp: i64,
    #[serde(default)]
    pub meta: Value,
}

/// One row of a listing: the conversation without its messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: String,
    pub topic: String,
    pub owner: String,
    pub surfaces: Vec<String>,
    #[serde(with = "rfc3339_millis")]
    pub created_at: i64,
    #[serde(with = "rfc3339_millis")]
    pub updated_at: i64,
    pub message_count: u64,
}

/// A new message's id: `msg_` and a random UUID.
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Unix milliseconds as RFC 3339 UTC text, e.g. `2025-12-28T10:00:00.123Z`.
pub fn format_millis(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// RFC 3339 text (any offset) as Unix milliseconds.
pub fn parse_millis(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        // The seed wrote naive local-less ISO times (`2025-12-28T10:00:00`); read them as UTC.
        .or_else(|| {
            let fmt = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            time::PrimitiveDateTime::parse(s, fmt)
                .ok()
                .map(|p| p.assume_utc())
        })?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

mod rfc3339_millis {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_millis(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_millis(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_name_paths() {
        for good in [
            "conv_2025-12-28_jh_abc12345",
            "a",
            "user@example.com",
            "v1.2",
        ] {
            validate_id("id", good).unwrap();
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "a..b",
            "x y",
            "é",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_id("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_round_trip_and_accept_naive_seed_times() {
        let ms = 1_766_916_000_123;
        assert_eq!(parse_millis(&format_millis(ms)), Some(ms));
        assert_eq!(
            parse_millis("2025-12-28T10:00:00"),
            parse_millis("2025-12-28T10:00:00Z")
        );
        assert!(parse_millis("yesterday").is_none());
    }
}
