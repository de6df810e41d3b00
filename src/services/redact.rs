//! Keeps the injected credential out of what goes back to the client (SPEC §2.7): a service
//! that echoes its token (in an error body, a debug endpoint, Hue's user list) must not hand it
//! to the assistant, which Maestra exists to keep tokens from.
//!
//! Bodies are scrubbed as they stream, holding back only a chunk's tail that could be the
//! start of a credential split across two chunks, so a stream's pace is kept.

use bytes::{Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};

/// What replaces a credential in a response.
pub const MARK: &[u8] = b"[REDACTED]";

/// Shorter values are not scrubbed: they would match ordinary text and corrupt bodies, and a
/// credential that short is no secret anyway.
pub const MIN_SECRET: usize = 6;

pub struct Redactor {
    needles: Vec<Vec<u8>>,
    held: Vec<u8>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Redactor {
        let mut needles: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.expose_secret().trim().as_bytes().to_vec())
            .filter(|n| n.len() >= MIN_SECRET)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor {
            needles,
            held: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Whether `value` holds a credential (for header values).
    pub fn contains(&self, value: &[u8]) -> bool {
        self.needles
            .iter()
            .any(|n| value.windows(n.len()).any(|w| w == n.as_slice()))
    }

    /// The scrubbed bytes that are safe to send now.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.needles.is_empty() {
            return Bytes::copy_from_slice(chunk);
        }
        self.held.extend_from_slice(chunk);
        self.scrub(false)
    }

    /// Everything still held, at the end of the body.
    pub fn finish(&mut self) -> Bytes {
        self.scrub(true)
    }

    fn scrub(&mut self, last: bool) -> Bytes {
        let buf = std::mem::take(&mut self.held);
        let mut out = BytesMut::with_capacity(buf.len());
        let (mut i, mut plain) = (0, 0);
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(n) = self.needles.iter().find(|n| rest.starts_with(n)) {
                out.extend_from_slice(&buf[plain..i]);
                out.extend_from_slice(MARK);
                i += n.len();
                plain = i;
                continue;
            }
            // The tail may be a credential that continues in the next chunk: hold it back.
            if !last && self.needles.iter().any(|n| n.starts_with(rest)) {
                break;
            }
            i += 1;
        }
        out.extend_from_slice(&buf[plain..i]);
        self.held = buf[i..].to_vec();
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub_in_chunks(secret: &str, body: &str, size: usize) -> String {
        let s = SecretString::from(secret.to_string());
        let mut r = Redactor::new([&s]);
        let mut out = Vec::new();
        for c in body.as_bytes().chunks(size) {
            out.extend_from_slice(&r.push(c));
        }
        out.extend_from_slice(&r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scrubs_across_chunk_boundaries() {
        let body = r#"{"error":"bad token CANARY-123456 given","again":"CANARY-123456"}"#;
        let want = r#"{"error":"bad token [REDACTED] given","again":"[REDACTED]"}"#;
        for size in 1..body.len() + 1 {
            assert_eq!(scrub_in_chunks("CANARY-123456", body, size), want, "{size}");
        }
        assert_eq!(
            scrub_in_chunks("CANARY-123456", "CANARY-12345", 3),
            "CANARY-12345"
        );
        assert_eq!(scrub_in_chunks("abc", "abc abc", 2), "abc abc", "too short");
        let s = SecretString::from("CANARY-123456");
        let mut r = Redactor::new([&s]);
        assert_eq!(&r.push(b"event 0\n")[..], b"event 0\n", "nothing held");
        assert_eq!(&r.push(b"x CANA")[..], b"x ", "a possible start held");
        assert_eq!(&r.push(b"DA")[..], b"CANADA");
    }

    #[test]
    fn several_secrets_and_headers() {
        let a = SecretString::from("token-aaaaaa");
        let b = SecretString::from("token-aaaaaa-longer");
        let mut r = Redactor::new([&a, &b]);
        let mut out = r.push(b"x token-aaaaaa-longer y token-aaaaaa z").to_vec();
        out.extend_from_slice(&r.finish());
        assert_eq!(out, b"x [REDACTED] y [REDACTED] z");
        assert!(r.contains(b"Bearer token-aaaaaa"));
        assert!(!r.contains(b"nothing"));
    }
}
