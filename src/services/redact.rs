//! Keeps the injected credential out of what goes back to the client (SPEC §2.7): a service
//! that echoes its token (in an error body, a debug endpoint, Hue's user list) must not hand it
//! to the assistant, which Maestra exists to keep tokens from. The providers use the same
//! scrubbing for their keys (an upstream answering `Incorrect API key provided: <key>`).
//!
//! Bodies are scrubbed as they stream, holding back only a chunk's tail that could be the
//! start of a credential split across two chunks, so a stream's pace is kept. Whole texts and
//! error messages are scrubbed in one go ([`Redactor::scrub_text`], [`Redactor::scrub_error`]).
//!
//! Each secret is looked for as sent and in its percent-encoded form, the way it comes back
//! inside a `Location` or a URL an upstream quotes.

use bytes::{Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// What replaces a credential in a response.
pub const MARK: &[u8] = b"[REDACTED]";

/// Shorter values are not scrubbed: they would match ordinary text and corrupt bodies, and a
/// credential that short is no secret anyway.
pub const MIN_SECRET: usize = 6;

pub struct Redactor {
    needles: Vec<Vec<u8>>,
    held: Vec<u8>,
    /// Credentials replaced so far in what was pushed through it.
    replaced: usize,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Redactor {
        let mut needles: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.expose_secret().trim())
            .filter(|s| s.len() >= MIN_SECRET)
            .flat_map(forms)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor {
            needles,
            held: Vec::new(),
            replaced: 0,
        }
    }

    /// A redactor for the same secrets holding nothing yet: one per text of a stream that
    /// interleaves several (a stream's choices and function calls).
    pub fn fresh(&self) -> Redactor {
        Redactor {
            needles: self.needles.clone(),
            held: Vec::new(),
            replaced: 0,
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

    /// Whether `e` or any cause in its chain names a secret.
    pub fn names_secret(&self, e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(c) = cur {
            if self.contains(c.to_string().as_bytes()) {
                return true;
            }
            cur = c.source();
        }
        false
    }

    /// Whether it holds back bytes that may be a credential's start (what a stream must not
    /// overtake: the log probabilities spelling the same text).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// How many credentials it has replaced in what was pushed through it.
    pub fn replaced(&self) -> usize {
        self.replaced
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

    /// A whole text scrubbed at once (an error message, a complete answer).
    pub fn scrub_text(&self, text: &str) -> String {
        if self.needles.is_empty() {
            return text.to_string();
        }
        let (out, _, _) = scrub(&self.needles, text.as_bytes(), true);
        // Marks replace whole UTF-8 needles, so the text stays UTF-8; lossy is only a guard.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// An error whose message may quote an upstream, with every secret scrubbed from it. The
    /// variant, and so the status and code, stays; a variant whose text is not a plain
    /// message is replaced by a generic upstream error when it names a secret.
    pub fn scrub_error(&self, e: Error) -> Error {
        if self.needles.is_empty() {
            return e;
        }
        if let Error::Caused { error, source } = e {
            // A kept cause may quote the upstream too, and its text cannot be scrubbed in
            // place: when it or the message names a secret, the cause is dropped.
            let named =
                self.contains(error.to_string().as_bytes()) || self.names_secret(source.as_ref());
            return match named {
                true => self.scrub_error((*error).into_plain()),
                false => Error::Caused { error, source },
            };
        }
        if !self.contains(e.to_string().as_bytes()) {
            return e;
        }
        let s = |m: String| self.scrub_text(&m);
        match e {
            Error::Upstream(m) => Error::Upstream(s(m)),
            Error::UpstreamTimeout(m) => Error::UpstreamTimeout(s(m)),
            Error::UpstreamUnavailable(m) => Error::UpstreamUnavailable(s(m)),
            Error::BadRequest(m) => Error::BadRequest(s(m)),
            Error::Config(m) => Error::Config(s(m)),
            Error::Vault(m) => Error::Vault(s(m)),
            Error::Store(m) => Error::Store(s(m)),
            Error::NotFound(m) => Error::NotFound(s(m)),
            Error::TooLarge(m) => Error::TooLarge(s(m)),
            Error::Forbidden(m) => Error::Forbidden(s(m)),
            Error::Unauthorized(m) => Error::Unauthorized(s(m)),
            Error::RequestTimeout(m) => Error::RequestTimeout(s(m)),
            _ => Error::Upstream(
                "the upstream call failed (details withheld: they named the credential)".into(),
            ),
        }
    }

    fn scrub(&mut self, last: bool) -> Bytes {
        let buf = std::mem::take(&mut self.held);
        let (out, held, replaced) = scrub(&self.needles, &buf, last);
        self.held = buf[held..].to_vec();
        self.replaced += replaced;
        out
    }
}

/// The forms a secret comes back in from an honest upstream: as sent, percent-encoded (in a
/// URL it quotes), and JSON-escaped (in an error object; `/` may be escaped or not).
fn forms(secret: &str) -> [Vec<u8>; 4] {
    let percent: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or_default()
        .to_string();
    let json_slash = json.replace('/', "\\/");
    [
        secret.as_bytes().to_vec(),
        percent.into_bytes(),
        json.into_bytes(),
        json_slash.into_bytes(),
    ]
}

/// `buf` with every needle replaced by [`MARK`], where the held-back tail starts (a possible
/// start of a needle, unless this is the `last` of the body), and how many were replaced.
fn scrub(needles: &[Vec<u8>], buf: &[u8], last: bool) -> (Bytes, usize, usize) {
    let mut out = BytesMut::with_capacity(buf.len());
    let (mut i, mut plain, mut replaced) = (0, 0, 0);
    while i < buf.len() {
        let rest = &buf[i..];
        if let Some(n) = needles.iter().find(|n| rest.starts_with(n)) {
            out.extend_from_slice(&buf[plain..i]);
            out.extend_from_slice(MARK);
            replaced += 1;
            i += n.len();
            plain = i;
            continue;
        }
        // The tail may be a credential that continues in the next chunk: hold it back.
        if !last && needles.iter().any(|n| n.starts_with(rest)) {
            break;
        }
        i += 1;
    }
    out.extend_from_slice(&buf[plain..i]);
    (out.freeze(), i, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_cause_that_names_the_secret_is_dropped() {
        let key = SecretString::from("sk-cause-secret-1234".to_string());
        let r = Redactor::new([&key]);
        let quoted = std::io::Error::other("the server said sk-cause-secret-1234");
        let e = r.scrub_error(Error::Upstream("svc: failed".into()).because(quoted));
        assert!(
            matches!(e, Error::Upstream(ref m) if m == "svc: failed"),
            "{e:?}"
        );
        assert!(std::error::Error::source(&e).is_none());

        let harmless = std::io::Error::other("connection reset");
        let e = r.scrub_error(Error::Upstream("svc: failed".into()).because(harmless));
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");

        let both = std::io::Error::other("sk-cause-secret-1234");
        let e = r.scrub_error(Error::Upstream("svc: sk-cause-secret-1234".into()).because(both));
        assert_eq!(
            e.to_string(),
            r.scrub_error(Error::Upstream("svc: sk-cause-secret-1234".into()))
                .to_string()
        );
        assert!(!format!("{e:?}").contains("sk-cause"), "{e:?}");
    }

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
        assert!(!r.holding());
        assert_eq!(r.push(b"CANARY-12").len(), 0);
        assert!(r.holding());
        assert_eq!(r.replaced(), 0);
        assert_eq!(&r.push(b"3456")[..], b"[REDACTED]");
        assert_eq!((r.holding(), r.replaced()), (false, 1));
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

    #[test]
    fn texts_errors_and_encoded_forms() {
        let k = SecretString::from("key+with/odd=chars");
        let r = Redactor::new([&k]);
        assert_eq!(
            r.scrub_text("bad key key+with/odd=chars; see ?k=key%2Bwith%2Fodd%3Dchars"),
            "bad key [REDACTED]; see ?k=[REDACTED]"
        );
        assert_eq!(
            r.scrub_text(r#"{"message":"key+with\/odd=chars"}"#),
            r#"{"message":"[REDACTED]"}"#
        );
        let e = r.scrub_error(Error::UpstreamUnavailable(
            "openai answered 429: key key+with/odd=chars".into(),
        ));
        assert_eq!(e.status(), 503);
        assert!(!e.to_string().contains("odd=chars"), "{e}");
        let e = r.scrub_error(Error::io("key+with/odd=chars", std::io::Error::other("x")));
        assert_eq!(e.code(), "upstream_error");
        assert!(!e.to_string().contains("odd=chars"), "{e}");
        let untouched = r.scrub_error(Error::Upstream("fine".into()));
        assert_eq!(untouched.to_string(), "upstream error: fine");
    }
}
