//! Which request bodies the proxy forwards (SPEC §2.6): a state-changing request carries a JSON
//! content type, unless the service's configuration declares another one it needs.
//!
//! Why: in local mode anything on the machine can reach the proxy, including a web page in the
//! user's browser. A page may send a "simple" cross-site request without asking first (CORS
//! preflight): a POST whose type is `text/plain`, `application/x-www-form-urlencoded` or
//! `multipart/form-data`, or that has no body and no type at all. The proxy would add the
//! service's credential and turn the page's request into an authenticated one (unlock the
//! door, skip the track). A JSON type cannot be sent that way, so requiring it stops those.
//!
//! POST, PUT and PATCH always need the type (even with no body, since a bodiless POST is a
//! simple request); DELETE needs it when it has a body. The type is parsed with `mime`, so
//! `application/json; charset=utf-8` and `application/merge-patch+json` pass, while
//! `application/jsonx`, `text/json` or two `Content-Type` headers do not.

use axum::http::{HeaderMap, Method, header};
use mime::Mime;

use crate::error::{Error, Result};

/// Longest list of declared types, and longest type, accepted from the configuration.
const MAX_DECLARED: usize = 16;
const MAX_TYPE_LEN: usize = 128;

/// Parses `content_types = [...]` from a service's table: plain `type/subtype` values (no
/// wildcard, no parameters), so what is allowed is exactly what was written.
pub fn parse_declared(list: &[String]) -> Result<Vec<Mime>, String> {
    if list.len() > MAX_DECLARED {
        return Err(format!("lists more than {MAX_DECLARED} types"));
    }
    list.iter()
        .map(|t| {
            let m: Mime = t
                .trim()
                .parse()
                .ok()
                .filter(|_| t.len() <= MAX_TYPE_LEN)
                .ok_or_else(|| "holds a value that is not a media type".to_string())?;
            if m.type_() == mime::STAR || m.subtype() == mime::STAR {
                return Err("must name types exactly (no `*`)".into());
            }
            if m.params().next().is_some() {
                return Err("must name types without parameters".into());
            }
            Ok(m)
        })
        .collect()
}

/// Refuses a state-changing request whose body type is neither JSON nor declared (415, the
/// SPEC §4 `unsupported_media_type`, naming the header).
pub fn check(method: &Method, headers: &HeaderMap, declared: &[Mime]) -> Result<()> {
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let state_changing = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        || (*method == Method::DELETE && has_body);
    if !state_changing {
        return Ok(());
    }
    let refuse = |why: &str| {
        let also = if declared.is_empty() {
            String::new()
        } else {
            let list: Vec<&str> = declared.iter().map(Mime::essence_str).collect();
            format!(" or one the service declares ({})", list.join(", "))
        };
        Error::UnsupportedMediaType(format!(
            "a {method} to a service needs `Content-Type: application/json`{also}; {why}"
        ))
    };
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(header::CONTENT_TYPE) {
            refuse("the request has more than one `Content-Type` header")
        } else {
            refuse("the request has no `Content-Type` header")
        });
    };
    let parsed: Option<Mime> = value.to_str().ok().and_then(|v| v.parse().ok());
    let Some(m) = parsed else {
        return Err(refuse("its `Content-Type` is not a media type"));
    };
    if is_json(&m)
        || declared
            .iter()
            .any(|d| d.type_() == m.type_() && d.subtype() == m.subtype())
    {
        Ok(())
    } else {
        Err(refuse(&format!(
            "`Content-Type: {}` is not accepted",
            m.essence_str()
        )))
    }
}

/// `application/json`, or an `application/*+json` type (JSON by RFC 6839).
fn is_json(m: &Mime) -> bool {
    m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_is_required_on_writes() {
        let json = [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ];
        let not_json = [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "text/json",
            "application/json-seq",
            "application/xjson",
            "json",
            "",
            "application/json, text/plain",
        ];
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for t in json {
                let h = headers(&[("content-type", t), ("content-length", "2")]);
                check(&m, &h, &[]).unwrap_or_else(|e| panic!("{m} {t}: {e}"));
            }
            for t in not_json {
                let h = headers(&[("content-type", t), ("content-length", "2")]);
                let e = check(&m, &h, &[]).unwrap_err();
                assert_eq!(e.status(), 415, "{m} {t}");
                assert!(e.to_string().contains("Content-Type"), "{e}");
            }
            let h = headers(&[("content-length", "2")]);
            assert_eq!(check(&m, &h, &[]).unwrap_err().status(), 415, "{m} none");
            let h = headers(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
                ("content-length", "2"),
            ]);
            assert_eq!(check(&m, &h, &[]).unwrap_err().status(), 415, "{m} two");
        }
        // A bodiless POST is a simple cross-site request too; GET and a bare DELETE are not
        // writes with a body.
        assert!(check(&Method::POST, &HeaderMap::new(), &[]).is_err());
        assert!(
            check(
                &Method::GET,
                &headers(&[("content-type", "text/plain")]),
                &[]
            )
            .is_ok()
        );
        assert!(check(&Method::DELETE, &HeaderMap::new(), &[]).is_ok());
        let chunked = headers(&[("transfer-encoding", "chunked")]);
        assert!(check(&Method::DELETE, &chunked, &[]).is_err());
    }

    #[test]
    fn declared_types_are_exact() {
        let declared = parse_declared(&["application/x-www-form-urlencoded".into()]).unwrap();
        let form = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("content-length", "3"),
        ]);
        assert!(check(&Method::POST, &form, &declared).is_ok());
        let text = headers(&[("content-type", "text/plain"), ("content-length", "3")]);
        let e = check(&Method::POST, &text, &declared).unwrap_err();
        assert!(e.to_string().contains("x-www-form-urlencoded"), "{e}");
        for bad in ["*/*", "text/*", "text/plain; charset=x", "no", ""] {
            assert!(parse_declared(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_declared(&vec!["text/plain".to_string(); 17]).is_err());
    }
}
