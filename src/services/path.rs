//! The client's path under a service's `base_url`, or a refusal (SPEC §2.7).
//!
//! The path is checked as the client sent it, still percent-encoded: decoding first would turn
//! `%2f` into a separator and hide it. What passes is plain URI path characters, with no `..`
//! or `.` segment, no empty segment (`//host` would read as a new authority), no `@`, no
//! backslash, no control character, no absolute URL, and no escape that decodes to any of
//! these (or to `%`, which a second decode upstream would expand). The joined URL is then
//! compared with the string it was built from, so nothing the URL parser normalises can move
//! it out from under `base_url`.

use url::Url;

use crate::error::{Error, Result};

/// Longest path and query accepted, in bytes.
pub const MAX_PATH: usize = 2048;
pub const MAX_QUERY: usize = 4096;

/// Decoded characters that look like `/`, `\` or `.` to servers that normalise Unicode.
const CONFUSABLES: [char; 8] = [
    '\u{2215}', '\u{2044}', '\u{ff0f}', '\u{ff3c}', '\u{fe68}', '\u{29f5}', '\u{ff0e}', '\u{2024}',
];

fn refuse(why: &str) -> Error {
    Error::BadRequest(format!("the service path is refused: {why}"))
}

/// Checks a raw (percent-encoded) path relative to the service, without its leading `/`.
pub fn check(raw: &str) -> Result<()> {
    if raw.is_empty() {
        return Err(refuse("it is empty"));
    }
    if raw.len() > MAX_PATH {
        return Err(refuse("it is too long"));
    }
    let segments: Vec<&str> = raw.split('/').collect();
    if segments.first().is_some_and(|s| s.contains(':')) || raw.contains("://") {
        return Err(refuse("it looks like an absolute URL"));
    }
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i != last {
            return Err(refuse("it has an empty segment (`//`)"));
        }
        if let Some(b) = seg.bytes().find(|b| !is_path_char(*b)) {
            return Err(refuse(match b {
                b'@' => "it contains `@`",
                b'\\' => "it contains a backslash",
                b if b.is_ascii_control() => "it contains a control character",
                _ => "it contains a character that is not allowed in a path",
            }));
        }
        let decoded = decode(seg)?;
        if decoded == "." || decoded == ".." {
            return Err(refuse("it has a `.` or `..` segment"));
        }
        if decoded.chars().any(|c| CONFUSABLES.contains(&c)) {
            return Err(refuse(
                "it contains a character that looks like a separator",
            ));
        }
    }
    Ok(())
}

/// RFC 3986 `pchar` without `@`, plus the `%` of escapes (checked by [`decode`]).
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%".contains(&b)
}

/// Decodes one segment's escapes, refusing those that could change the path's structure and
/// anything that is not UTF-8 (which also refuses overlong forms of `/` such as `%c0%af`).
fn decode(seg: &str) -> Result<String> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| refuse("it has a malformed percent escape"))?;
        match hex {
            b'/' | b'\\' => return Err(refuse("it has an encoded slash or backslash")),
            b'.' => return Err(refuse("it has an encoded dot")),
            b'%' => return Err(refuse("it is encoded twice")),
            b'@' => return Err(refuse("it contains `@`")),
            b if b.is_ascii_control() => return Err(refuse("it contains a control character")),
            b => out.push(b),
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| refuse("it does not decode to UTF-8"))
}

/// Checks a raw query string (forwarded as it is).
pub fn check_query(raw: &str) -> Result<()> {
    if raw.len() > MAX_QUERY {
        return Err(Error::BadRequest("the query string is too long".into()));
    }
    if raw.bytes().any(|b| b.is_ascii_control() || b == b'#') {
        return Err(Error::BadRequest(
            "the query string contains a character that is not allowed".into(),
        ));
    }
    Ok(())
}

/// `{base_url}{prefix}/{raw}?{query}`, proven to stay under `base_url`. `prefix` is the
/// credential's path part (already validated), or empty. The error never names the URL: it
/// may hold that credential.
pub fn join(base: &Url, prefix: &str, raw: &str, query: Option<&str>) -> Result<Url> {
    check(raw)?;
    if let Some(q) = query {
        check_query(q)?;
    }
    let base_path = base.path().trim_end_matches('/');
    let path = format!("{base_path}{prefix}/{raw}");
    let mut url = base.clone();
    url.set_path(&path);
    url.set_query(query.filter(|q| !q.is_empty()));
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin || url.path() != path || !url.path().starts_with(&format!("{base_path}/")) {
        return Err(refuse("it does not stay under the service's base URL"));
    }
    Ok(url)
}

/// The audit `action`'s path: words kept, anything that looks like an id or a name (digits,
/// dots, mixed case, escapes, long segments) replaced by `{id}`. Never a query.
pub fn template(raw: &str) -> String {
    let mut out = String::new();
    for seg in raw.split('/').take(16) {
        out.push('/');
        if is_word(seg) {
            out.push_str(seg);
        } else if !seg.is_empty() {
            out.push_str("{id}");
        }
    }
    out
}

/// `me`, `player`, `turn_on`, `v1`: lowercase letters, `_` or `-`, then at most two digits.
fn is_word(seg: &str) -> bool {
    let letters = seg.trim_end_matches(|c: char| c.is_ascii_digit());
    seg.len() <= 32
        && seg.len() - letters.len() <= 2
        && letters
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
        && letters
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8123/v1").unwrap()
    }

    #[test]
    fn joins_plain_paths() {
        let u = join(&base(), "", "me/player", Some("market=DE&q=a%20b")).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8123/v1/me/player?market=DE&q=a%20b"
        );
        let u = join(&base(), "/api/user1", "lights/1/state", None).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8123/v1/api/user1/lights/1/state"
        );
        let u = join(&base(), "", "K%C3%BCche/play/", None).unwrap();
        assert_eq!(u.path(), "/v1/K%C3%BCche/play/");
        let root = Url::parse("http://h/").unwrap();
        assert_eq!(join(&root, "", "a", None).unwrap().as_str(), "http://h/a");
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "",
            "..",
            "../x",
            "a/../../b",
            "a/./b",
            "%2e%2e/x",
            "%2E%2E/x",
            ".%2e/x",
            "a%2fb",
            "a%2F..%2Fb",
            "a%5cb",
            "a\\b",
            "..\\x",
            "a@b",
            "a%40b",
            "http://evil.example/x",
            "http:/evil",
            "//evil.example/x",
            "a//b",
            "a%00b",
            "a%0d%0aSet-Cookie:x",
            "a%252fb",
            "a%c0%afb",
            "a%zz",
            "a%2",
            "a\u{7f}b",
            "a b",
            "a%e2%88%95b",
            "a%ef%bc%8fb",
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        assert!(check(&"a/".repeat(2000)).is_err());
        assert!(check_query("a=1#frag").is_err());
        assert!(check_query(&"a".repeat(MAX_QUERY + 1)).is_err());
    }

    #[test]
    fn templates_hide_ids() {
        assert_eq!(template("me/player/play"), "/me/player/play");
        assert_eq!(template("lights/3/state"), "/lights/{id}/state");
        assert_eq!(template("states/light.kitchen"), "/states/{id}");
        assert_eq!(template("tracks/4iV5W9uYEdYUVa79Axb7Rh"), "/tracks/{id}");
        assert_eq!(
            template("v1/services/light/turn_on"),
            "/v1/services/light/turn_on"
        );
        assert_eq!(template("a/"), "/a/");
    }
}
