//! How a service's credential goes upstream: the `auth` setting, and the headers a client may
//! not send through (its own credentials would otherwise reach the service, or shadow ours).
//!
//! Injected header values are marked sensitive, so hyper and any debug output keep them out
//! of logs.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use super::redact::Redactor;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Error, Result};

/// Longest credential accepted for injection (a header value or a path segment).
const MAX_CREDENTIAL: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credential (e.g. a Sonos HTTP API on the LAN).
    None,
    /// `Authorization: Bearer <credential>` (Home Assistant's long-lived token).
    Bearer,
    /// `<NAME>: <credential>`.
    Header(HeaderName),
    /// `{base_url}{before}/{credential}/{path}`: the Hue bridge username (`before` = `/api`).
    PathPrefix { before: String },
    /// Bearer with an access token refreshed at `token_url` (Spotify).
    OAuth2 { token_url: Url },
}

/// Headers that belong to one hop, never forwarded either way (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Request headers that carry the client's own credentials, identity or origin.
const CLIENT_ONLY: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "host",
    "origin",
    "referer",
    "forwarded",
    "x-real-ip",
];

/// Request headers Maestra sets itself: the body's length as it is sent, and no
/// `accept-encoding`, since a compressed answer could not be scrubbed of the credential.
const SET_BY_MAESTRA: [&str; 2] = ["content-length", "accept-encoding"];

impl Auth {
    /// `bearer`, `header:NAME`, `path_prefix[:/BEFORE]`, `oauth2` (with `token_url`), `none`.
    pub fn parse(text: &str, token_url: Option<Url>) -> Result<Auth, String> {
        let text = text.trim();
        let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
        match (kind, arg) {
            ("none", "") => Ok(Auth::None),
            ("bearer", "") => Ok(Auth::Bearer),
            ("oauth2", "") => token_url
                .map(|token_url| Auth::OAuth2 { token_url })
                .ok_or_else(|| "oauth2 needs a token_url".to_string()),
            ("header", name) => {
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("header:{name} is not a valid header name"))?;
                let n = name.as_str();
                // `header:authorization` (a raw token, no `Bearer`) is fine; framing is not.
                if is_hop_by_hop(n) || SET_BY_MAESTRA.contains(&n) || CLIENT_ONLY[4..].contains(&n)
                {
                    return Err(format!("header:{name} cannot carry a credential"));
                }
                Ok(Auth::Header(name))
            }
            ("path_prefix", before) => {
                let before = before.trim_end_matches('/');
                let ok = before.is_empty()
                    || (before.starts_with('/')
                        && before[1..].split('/').all(|s| {
                            !s.is_empty()
                                && s != "."
                                && s != ".."
                                && s.bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                        }));
                if ok {
                    Ok(Auth::PathPrefix {
                        before: before.to_string(),
                    })
                } else {
                    Err("path_prefix:PATH needs a plain path such as /api".into())
                }
            }
            _ => Err(format!(
                "{kind:?} is not one of bearer, header:NAME, path_prefix, oauth2, none"
            )),
        }
    }

    pub fn needs_credential(&self) -> bool {
        !matches!(self, Auth::None)
    }

    /// Puts the credential in `headers` (bearer, header, oauth2); path prefixes go in the URL.
    pub fn inject(&self, secret: &SecretString, headers: &mut HeaderMap) -> Result<()> {
        let (name, value) = match self {
            Auth::Bearer | Auth::OAuth2 { .. } => (
                header::AUTHORIZATION,
                format!("Bearer {}", secret.expose_secret().trim()),
            ),
            Auth::Header(name) => (name.clone(), secret.expose_secret().trim().to_string()),
            Auth::None | Auth::PathPrefix { .. } => return Ok(()),
        };
        if value.len() > MAX_CREDENTIAL {
            return Err(Error::Config("the credential is too long to send".into()));
        }
        let mut value = HeaderValue::from_str(&value)
            // Dropped on purpose: the cause is about the credential's value, which is never told.
            .map_err(|_| Error::Config("the credential cannot be sent in a header".into()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
        Ok(())
    }

    /// The path segments to insert before the client's path, holding the credential.
    pub fn path_prefix(&self, secret: Option<&SecretString>) -> Result<String> {
        let (Auth::PathPrefix { before }, Some(secret)) = (self, secret) else {
            return Ok(String::new());
        };
        let s = secret.expose_secret().trim();
        // A credential that is a path segment must be one plain segment: it must not be able
        // to add segments, a query, or climb out of `before`.
        let ok = !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(format!("{before}/{s}"))
        } else {
            Err(Error::Config(
                "the credential is not a plain path segment (letters, digits, `_`, `-`)".into(),
            ))
        }
    }
}

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// The client's request headers as they may go upstream: no hop-by-hop headers (nor those the
/// `Connection` header names), no client credentials, cookies or origin, none of Maestra's own
/// `x-maestra-*` or forwarding headers, and not the header this service's credential uses.
pub fn forward_request_headers(incoming: &HeaderMap, auth: &Auth) -> HeaderMap {
    let named_by_connection: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        let drop = is_hop_by_hop(n)
            || CLIENT_ONLY.contains(&n)
            || SET_BY_MAESTRA.contains(&n)
            || n.starts_with("x-maestra-")
            || n.starts_with("x-forwarded-")
            || named_by_connection.iter().any(|c| c == n)
            || matches!(auth, Auth::Header(h) if h == name);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The service's headers as the client may see them: no hop-by-hop headers, no cookies (the
/// service's session stays with Maestra), no header holding the credential, and no length
/// when the body may be rewritten by scrubbing.
pub fn response_headers(from: &HeaderMap, redactor: &Redactor) -> HeaderMap {
    let named_by_connection: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        let drop = is_hop_by_hop(n)
            || named_by_connection.contains(name)
            || matches!(
                n,
                "set-cookie"
                    | "set-cookie2"
                    | "authorization"
                    | "proxy-authorization"
                    | "alt-svc"
                    | "strict-transport-security"
            )
            || (n == "content-length" && !redactor.is_empty())
            || redactor.contains(value.as_bytes());
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_settings() {
        assert_eq!(Auth::parse("bearer", None).unwrap(), Auth::Bearer);
        assert_eq!(Auth::parse("none", None).unwrap(), Auth::None);
        assert!(matches!(
            Auth::parse("header:X-Token", None).unwrap(),
            Auth::Header(h) if h == "x-token"
        ));
        assert_eq!(
            Auth::parse("path_prefix:/api/", None).unwrap(),
            Auth::PathPrefix {
                before: "/api".into()
            }
        );
        for bad in [
            "oauth2",
            "header:",
            "header:bad name",
            "header:host",
            "header:connection",
            "path_prefix:/../x",
            "path_prefix:api",
            "basic",
        ] {
            assert!(Auth::parse(bad, None).is_err(), "{bad}");
        }
        let t = Url::parse("http://127.0.0.1/token").unwrap();
        assert!(matches!(
            Auth::parse("oauth2", Some(t)).unwrap(),
            Auth::OAuth2 { .. }
        ));
    }

    #[test]
    fn injection_and_prefix() {
        let secret = SecretString::from("tok-123");
        let mut h = HeaderMap::new();
        Auth::Bearer.inject(&secret, &mut h).unwrap();
        assert_eq!(h["authorization"], "Bearer tok-123");
        assert!(h["authorization"].is_sensitive());
        let p = Auth::PathPrefix {
            before: "/api".into(),
        };
        assert_eq!(p.path_prefix(Some(&secret)).unwrap(), "/api/tok-123");
        let evil = SecretString::from("a/../../b");
        let e = p.path_prefix(Some(&evil)).unwrap_err();
        assert!(!e.to_string().contains("a/.."));
        let newline = SecretString::from("a\nb");
        assert!(Auth::Bearer.inject(&newline, &mut h).is_err());
    }

    #[test]
    fn strips_client_credentials_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer client"),
            ("cookie", "a=b"),
            ("x-api-key", "k"),
            ("connection", "close, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("x-maestra-user", "jh"),
            ("x-token", "client's own"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forward_request_headers(&h, &Auth::Header(HeaderName::from_static("x-token")));
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "content-type"]);
    }
}
