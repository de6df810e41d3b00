//! The client's path under a service's `base_url`, or a refusal (SPEC §2.7).
//!
//! The path is checked as the client sent it, still percent-encoded: decoding first would turn
//! `%2f` into a separator and hide it. What passes is plain URI path characters, with no `..`
//! or `.` segment, no empty segment (`//host` would read as a new authority), no `@`, no
//! backslash, no control character, no absolute URL, and no escape that decodes to any of
//! these (or to `%`, which a second decode upstream would expand). The joined URL is then
//! compared with the string it was built from, so nothing the URL parser normalises can move
//! it out from under `base_url`.
//!
//! "No `..` segment" is judged the way the servers behind the proxy might see a segment, not
//! only byte for byte: servlet containers drop `;matrix` parameters (`..;x` is `..`), Windows
//! servers trim trailing spaces and dots (`..%20`, `...`), some servers apply Unicode
//! compatibility normalisation (NFKC: `%EF%BC%8E` is `.`, `%E2%80%A5` is `..`) or ignore
//! invisible characters. A segment is refused when any of those views of it is empty or made of
//! dots only; the property test in this module drives the check with generated paths.

use unicode_normalization::UnicodeNormalization;
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
        if decoded.chars().any(|c| CONFUSABLES.contains(&c)) {
            return Err(refuse(
                "it contains a character that looks like a separator",
            ));
        }
        let normalised: String = decoded.nfkc().collect();
        if normalised.contains(['/', '\\', '%', '@']) {
            return Err(refuse(
                "it contains a character that normalises to a separator, `%` or `@`",
            ));
        }
        if seg.is_empty() {
            continue;
        }
        for view in [*seg, decoded.as_str(), normalised.as_str()] {
            match dot_like(view) {
                Some(Dots::Empty) => return Err(refuse("it has an empty segment (`/;`)")),
                Some(Dots::Dots) => {
                    return Err(refuse(
                        "it has a segment a server could read as `.` or `..` (such as `..;x`, `..%20` or `...`)",
                    ));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// What a segment could become on some server: nothing, or a directory reference.
enum Dots {
    Empty,
    Dots,
}

/// The segment as a lenient server might read it: without `;` parameters, without invisible
/// characters, without surrounding white space. `None` when that is an ordinary name.
fn dot_like(view: &str) -> Option<Dots> {
    let core = view.split(';').next().unwrap_or_default();
    let core: String = core.chars().filter(|c| !is_invisible(*c)).collect();
    let core = core.trim_matches(|c: char| c.is_whitespace());
    if core.is_empty() {
        Some(Dots::Empty)
    } else if core.chars().all(|c| c == '.') {
        Some(Dots::Dots)
    } else {
        None
    }
}

/// Characters with no visible form that some servers and file systems drop: zero-width
/// spaces and joiners, directional marks, word joiners, the byte-order mark, soft hyphens.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{feff}')
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
            // Issue 14: what servlet containers, Windows or NFKC-normalising servers read as
            // `.` or `..`, or as an empty segment.
            "..;",
            "..;/x",
            "a/..;jsessionid=1/b",
            ".;x/b",
            "a/;x/b",
            ";x",
            "..%3b/x",
            "..%3Bx/y",
            "..%20/x",
            "%20../x",
            "...",
            "..../x",
            "..%c2%a0/x",
            "..%e2%80%8b/x",
            ".%e2%80%8b./x",
            "%e2%80%a5/x",
            "%e2%80%a6",
            "%ef%b9%92%ef%b9%92/x",
            "%ef%bc%85%32%65/x",
            "%ef%bc%9b",
            "%ef%b9%a8x",
            "%252e%252e/x",
            "..%00/x",
            "..%2f",
            "..%5c",
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        assert!(check(&"a/".repeat(2000)).is_err());
        assert!(check_query("a=1#frag").is_err());
        assert!(check_query(&"a".repeat(MAX_QUERY + 1)).is_err());
    }

    #[test]
    fn ordinary_names_with_dots_and_parameters_pass() {
        for good in [
            "states/light.kitchen",
            "a/.hidden",
            "a/..x",
            "v1.2/x",
            "a;b=c/d",
            "x/",
            "K%C3%BCche",
            "a%20b",
        ] {
            check(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    /// One `%XX` decoding pass, as a server behind the proxy might apply (lossy: a malformed
    /// escape stays as it is).
    fn decode_once(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (b[i], hex) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every way a server might read `path`: decoded zero to two times, NFKC or not, `\` as
    /// `/` or not; then each segment with or without `;` parameters, invisible characters and
    /// surrounding spaces, and with trailing dots trimmed down to two (as Windows does).
    fn server_views(path: &str) -> Vec<String> {
        let mut whole = vec![path.to_string()];
        let once = decode_once(path);
        whole.push(decode_once(&once));
        whole.push(once);
        let nfkc: Vec<String> = whole.iter().map(|p| p.nfkc().collect()).collect();
        whole.extend(nfkc);
        let slashed: Vec<String> = whole.iter().map(|p| p.replace('\\', "/")).collect();
        whole.extend(slashed);
        let mut out = Vec::new();
        for p in whole {
            for seg in p.split('/') {
                let stripped = seg.split(';').next().unwrap_or_default();
                for s in [seg, stripped] {
                    let visible: String = s.chars().filter(|c| !is_invisible(*c)).collect();
                    let trimmed = visible.trim().to_string();
                    let mut dots = trimmed.clone();
                    while dots.len() > 2 && dots.ends_with('.') {
                        dots.pop();
                    }
                    out.extend([s.to_string(), visible, trimmed, dots]);
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Whatever the check accepts, no server's reading of it has a `.` or `..` segment.
        #[test]
        fn accepted_paths_never_read_as_dot_segments(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "..", ".", ";", "%2e", "%2E", "%25", "%32", "%65", "/", "\\", "%2f", "%5c",
                    "%3b", "%20", " ", "%00", "%c0%ae", "%ef%bc%8e", "%e2%80%8b", "%e2%80%a5",
                    "%ef%bc%85", "\u{ff0e}", "a", "b", "x=1", "lights", "1", "a.b", "-", "~",
                ]),
                1..10,
            )
        ) {
            let path = parts.concat();
            if check(&path).is_ok() {
                for v in server_views(&path) {
                    proptest::prop_assert!(v != "." && v != "..", "{path:?} reads as {v:?}");
                }
            }
        }
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
