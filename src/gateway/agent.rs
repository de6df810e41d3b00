//! Who made a `/v1` call, named in its audit entry so the privacy center's Report lists the
//! call under an agent rather than "(no agent or surface)" (SPEC §2.13).
//!
//! An OpenAI client sends no surface id of its own, so the name comes from what the request
//! already carries: in cloud mode the name of the API key it presented (`maestra keys create
//! NAME`); otherwise the `X-Maestra-Surface` header, for a client that wants to say who it is;
//! otherwise the product token of the `User-Agent` every SDK sends (`OpenAI/Python 1.99.0` →
//! `OpenAI`). The headers are read once, at the edge, into a [`Claim`] on the request's
//! [`RequestInfo`], so a handler needs nothing but the `RequestInfo` it already has.

use axum::http::{HeaderMap, header};

use crate::access::scope::Principal;
use crate::conversations::model::validate_id;
use crate::error::{Error, Result};

/// The header a client names itself with (header names are case-insensitive).
pub const SURFACE_HEADER: &str = "x-maestra-surface";
/// The longest name taken from a `User-Agent`: a product, not the whole line.
pub const MAX_PRODUCT: usize = 64;

/// What a request says about who sent it, read from its headers at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Claim {
    /// Neither header says anything usable.
    #[default]
    Nothing,
    /// `X-Maestra-Surface`, a valid id.
    Surface(String),
    /// The `User-Agent`'s product, reduced to an id.
    Product(String),
    /// An `X-Maestra-Surface` that is not an id: the 400's message. A misspelt name is refused
    /// where it would be recorded, not dropped, or the client's calls would land under its
    /// User-Agent without a word.
    Invalid(String),
}

impl Claim {
    pub fn read(headers: &HeaderMap) -> Claim {
        let mut given = headers.get_all(SURFACE_HEADER).iter();
        if let Some(value) = given.next() {
            if given.next().is_some() {
                return Claim::Invalid("X-Maestra-Surface may be given only once".into());
            }
            // A value that is not visible ASCII cannot be an id either.
            let value = value.to_str().unwrap_or("\u{0}");
            return match validate_id("X-Maestra-Surface header", value) {
                Ok(()) => Claim::Surface(value.to_string()),
                Err(Error::BadRequest(message)) => Claim::Invalid(message),
                Err(other) => Claim::Invalid(other.to_string()),
            };
        }
        headers
            .get(header::USER_AGENT)
            .and_then(|v| product(v.as_bytes()))
            .map_or(Claim::Nothing, Claim::Product)
    }

    /// What the request itself claims: `X-Maestra-Surface`, else the `User-Agent`'s product.
    /// An invalid `X-Maestra-Surface` is a 400 naming it.
    pub fn claimed(&self) -> Result<Option<String>> {
        match self {
            Claim::Nothing => Ok(None),
            Claim::Surface(s) | Claim::Product(s) => Ok(Some(s.clone())),
            Claim::Invalid(message) => Err(Error::BadRequest(message.clone())),
        }
    }
}

/// The product of a `User-Agent` (RFC 9110 §10.1.5: `product/version comment...`): its first
/// token without the version, reduced to the characters an id may have and to
/// [`MAX_PRODUCT`] bytes; `None` when nothing is left. `python-httpx/0.27` → `python-httpx`.
pub fn product(user_agent: &[u8]) -> Option<String> {
    let first = user_agent
        .split(|b| b.is_ascii_whitespace())
        .find(|t| !t.is_empty())?;
    let name = first.split(|b| *b == b'/').next().unwrap_or_default();
    let mut out = String::with_capacity(name.len().min(MAX_PRODUCT));
    for &b in name {
        let allowed = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@');
        // An id starts with no dot and has no `..`: such dots go, the rest of the name stays.
        let stray_dot = b == b'.' && (out.is_empty() || out.ends_with('.'));
        if allowed && !stray_dot {
            out.push(char::from(b));
        }
        if out.len() == MAX_PRODUCT {
            break;
        }
    }
    validate_id("product", &out).ok().map(|()| out)
}

/// The agent a paid call is recorded under (the audit entry's `agent_id`, what the Report
/// groups by): in cloud mode the name of the API key it presented; `None` without one, where
/// the entry's surface ([`Claim::claimed`]) names the call.
///
/// Why the key's name wins over `X-Maestra-Surface`: the name is the authenticated fact, the
/// header a claim that whoever holds the key may set to anything, so letting it win would let
/// one app file its calls under another's name in the person's Report. Two apps sharing a key
/// are told apart by giving each its own key (each then also has its own limits and can be
/// revoked alone). The claim is kept beside it, as the entry's `surface_id`. The static
/// `MAESTRA_API_KEY` has no name, and local mode no key: there the claim names the call.
pub fn of_key(principal: &Principal) -> Option<&str> {
    principal
        .key_name
        .as_deref()
        .filter(|n| validate_id("key name", n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn key(name: Option<&str>) -> Principal {
        Principal {
            key_name: name.map(Into::into),
            ..Principal::local()
        }
    }

    #[test]
    fn the_product_is_the_first_token_without_its_version() {
        let p = |ua: &str| product(ua.as_bytes());
        assert_eq!(p("OpenAI/Python 1.99.0").as_deref(), Some("OpenAI"));
        assert_eq!(p("python-httpx/0.27").as_deref(), Some("python-httpx"));
        assert_eq!(p("  curl/8.5.0").as_deref(), Some("curl"));
        assert_eq!(
            p("Mozilla/5.0 (X11; Linux x86_64)").as_deref(),
            Some("Mozilla")
        );
        assert_eq!(p("my(app)+v2/1").as_deref(), Some("myappv2"));
        assert_eq!(p("..a..b./1").as_deref(), Some("a.b."));
        assert_eq!(p(&"x".repeat(300)).map(|s| s.len()), Some(MAX_PRODUCT));
        for nothing in ["", "   ", "/1.0", "(+)", "...", "é/1"] {
            assert_eq!(p(nothing), None, "{nothing:?}");
        }
        assert_eq!(product(b"\xff\xfeabc/1").as_deref(), Some("abc"));
    }

    #[test]
    fn the_header_wins_over_the_user_agent_and_is_checked() {
        let both = headers(&[
            ("x-maestra-surface", b"vscode"),
            ("user-agent", b"OpenAI/Python 1.99.0"),
        ]);
        assert_eq!(Claim::read(&both), Claim::Surface("vscode".into()));
        assert_eq!(
            Claim::read(&headers(&[("user-agent", b"OpenAI/Python 1.99.0")])),
            Claim::Product("OpenAI".into())
        );
        assert_eq!(Claim::read(&HeaderMap::new()), Claim::Nothing);
        assert_eq!(
            Claim::read(&headers(&[("user-agent", b"(+) x/1")])),
            Claim::Nothing
        );
        for bad in [
            &b""[..],
            b"../etc",
            b".hidden",
            b"two words",
            b"caf\xc3\xa9",
            &[b'a'; 129],
        ] {
            let c = Claim::read(&headers(&[
                ("x-maestra-surface", bad),
                ("user-agent", b"OpenAI/1"),
            ]));
            let Claim::Invalid(message) = &c else {
                panic!("{bad:?} was accepted as {c:?}");
            };
            assert!(message.contains("X-Maestra-Surface"), "{message}");
            assert!(matches!(c.claimed(), Err(Error::BadRequest(_))));
        }
        let twice = headers(&[("x-maestra-surface", b"a"), ("x-maestra-surface", b"b")]);
        assert!(matches!(Claim::read(&twice), Claim::Invalid(_)));
    }

    #[test]
    fn a_named_key_names_the_call_and_the_header_is_still_checked() {
        let surface = Claim::Surface("vscode".into());
        assert_eq!(of_key(&key(Some("laptop"))), Some("laptop"));
        assert_eq!(surface.claimed().unwrap(), Some("vscode".into()));
        assert_eq!(of_key(&key(None)), None);
        assert!(Claim::Invalid("x".into()).claimed().is_err());
        // A name that is not an id (never made by `keys create`) does not reach the Report.
        assert_eq!(of_key(&key(Some("a/b"))), None);
    }
}
