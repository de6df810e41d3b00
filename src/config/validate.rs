//! Range and format checks for every setting, run once at load so a bad value is one clear
//! error naming the setting before anything starts (never a panic later in a library that
//! trusted it, such as a CORS layer handed `*` or a channel handed a capacity of 2^63).
//!
//! Messages name the setting and quote a value only when it cannot be a secret: URLs that
//! may hold a password and keys are described, never echoed.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// Largest spending limit accepted, in USD. Money becomes integer micro-USD downstream; a
/// bound far below `i64::MAX` micro-USD (~9.2e12 USD) keeps every sum of limits exact.
pub const MAX_LIMIT_USD: f64 = 1e9;
/// Largest price accepted, in USD per million tokens.
pub const MAX_PRICE_PER_MILLION: f64 = 1e6;
/// Largest `cost.max_output_tokens`.
pub const MAX_OUTPUT_TOKENS: u64 = 1_000_000;
/// Most requests one rate-limit window may allow.
pub const MAX_RATE_LIMIT_REQUESTS: u32 = 1_000_000;
/// Longest duration setting (windows, timeouts, grace): a week. Longer ones are typos, and
/// durations far beyond it overflow clocks and micro-second counters downstream.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;
/// Largest request body limit: 256 MiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Longest retention: a hundred years (date arithmetic panics far beyond it).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Most messages one conversation may be configured to hold.
pub const MAX_MESSAGES: u64 = 10_000_000;
/// Most earlier messages sent upstream with a new one.
pub const MAX_CONTEXT_MESSAGES: u32 = 10_000;
/// Largest audit queue (a channel's capacity is allocated up front).
pub const MAX_AUDIT_QUEUE: usize = 1 << 20;
/// Longest static key, provider key or Redis prefix accepted.
const MAX_TOKEN_LEN: usize = 4096;

fn bad(name: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{name} {why}"))
}

/// A USD amount that is finite, non-negative and at most `max`.
pub fn money(name: &str, v: f64, max: f64) -> Result<f64> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            name,
            format!("must be a number of USD from 0 to {max}, not {v}"),
        ))
    }
}

/// A spending limit.
pub fn limit(name: &str, v: f64) -> Result<f64> {
    money(name, v, MAX_LIMIT_USD)
}

/// An integer within `lo..=hi`.
pub fn range<T>(name: &str, v: T, lo: T, hi: T) -> Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(bad(name, format!("must be from {lo} to {hi}, not {v}")))
    }
}

/// An IP address and port, as the listener binds it.
pub fn socket_addr(name: &str, v: &str) -> Result<String> {
    v.parse::<SocketAddr>().map(|_| v.to_string()).map_err(|e| {
        bad(
            name,
            format!("must be an IP address and port such as 127.0.0.1:8825, not {v:?}"),
        )
        .because(e)
    })
}

/// An http(s) endpoint with a host, no user info, query or fragment (the services' rule).
pub fn endpoint(name: &str, v: &str) -> Result<String> {
    crate::services::endpoint::parse_endpoint(v)
        .map(|_| v.trim().to_string())
        .map_err(|why| bad(name, why))
}

/// A browser origin exactly as a browser sends it: `scheme://host[:port]`, http or https,
/// lowercase, no path. `*` and `null` are refused: the API is never open to every page.
pub fn origin(name: &str, v: &str) -> Result<String> {
    let refuse = |why: &str| bad(name, format!("entry {v:?} {why}"));
    if v == "*" || v.eq_ignore_ascii_case("null") {
        return Err(refuse(
            "is not allowed: list each origin (such as http://localhost:3000)",
        ));
    }
    let url = url::Url::parse(v)
        .map_err(|e| refuse("is not an origin such as http://localhost:3000").because(e))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refuse("must be an http or https origin"));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != v {
        return Err(refuse(&format!(
            "is not in the form a browser sends; write {canonical:?}"
        )));
    }
    Ok(canonical)
}

/// A value that goes into an HTTP header or a key name: visible ASCII, no spaces, bounded.
/// A newline here would otherwise fail (or split a header) on every request.
pub fn token(name: &str, v: &str) -> Result<()> {
    if !v.is_empty() && v.len() <= MAX_TOKEN_LEN && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(bad(
            name,
            format!("must be 1-{MAX_TOKEN_LEN} visible ASCII characters without spaces"),
        ))
    }
}

/// A secret that goes into a header: checked like [`token`], never echoed.
pub fn secret_token(name: &str, v: Option<&SecretString>) -> Result<()> {
    v.map_or(Ok(()), |s| token(name, s.expose_secret()))
}

/// A URL whose scheme is one of `schemes`; the URL may hold a password, so it is not quoted.
pub fn secret_url(name: &str, v: Option<&SecretString>, schemes: &[&str]) -> Result<()> {
    let Some(v) = v else { return Ok(()) };
    let url = url::Url::parse(v.expose_secret().trim()).map_err(|_| {
        bad(
            name,
            "is not a valid URL (its value is not shown: it may hold a password)",
        )
    })?;
    if schemes.contains(&url.scheme()) {
        Ok(())
    } else {
        Err(bad(name, format!("must be a {} URL", schemes.join(" or "))))
    }
}

/// Comma-separated model names: each 1-128 visible characters.
pub fn model_names(name: &str, v: &str) -> Result<()> {
    let names: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(bad(name, "names no model"));
    }
    for n in names {
        if n.len() > 128 || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(
                name,
                format!("entry {n:?} must be 1-128 characters without spaces"),
            ));
        }
    }
    Ok(())
}

/// A `tracing` filter such as `info` or `maestra=debug`; a typo would otherwise silently
/// fall back to the default.
pub fn log_filter(name: &str, v: &str) -> Result<()> {
    tracing_subscriber::EnvFilter::try_new(v)
        .map(|_| ())
        .map_err(|e| bad(name, format!("is not a valid log filter ({e})")).because(e))
}

/// A guard override: a service name as the catalog keys it.
pub fn service_names(name: &str, names: &[String]) -> Result<()> {
    for n in names {
        crate::services::endpoint::validate_name(n).map_err(|_| {
            bad(
                name,
                format!(
                    "entry {n:?} must be 1-64 characters of lowercase letters, digits, `_` or `-`"
                ),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact() {
        assert_eq!(
            origin("o", "http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(origin("o", "https://app.example.com").is_ok());
        for bad in [
            "*",
            "null",
            "localhost:3000",
            "http://localhost:3000/",
            "http://localhost:3000/app",
            "HTTP://LOCALHOST",
            "ftp://x",
            "http://a\nb",
            "",
        ] {
            let e = origin("cors_origins", bad).unwrap_err().to_string();
            assert!(e.contains("cors_origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn money_is_finite_and_bounded() {
        for ok in [0.0, 0.5, MAX_LIMIT_USD] {
            assert!(limit("x", ok).is_ok());
        }
        for bad in [-0.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.1e9] {
            assert!(limit("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_urls_are_never_quoted() {
        let s = SecretString::from("postgresql://u:CANARY@h/db");
        assert!(secret_url("db_url", Some(&s), &["postgres", "postgresql"]).is_ok());
        let bad_url = SecretString::from("CANARY not a url");
        let e = secret_url("db_url", Some(&bad_url), &["postgresql"])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("CANARY") && e.contains("db_url"), "{e}");
        let wrong = SecretString::from("mysql://u:CANARY@h/db");
        let e = secret_url("db_url", Some(&wrong), &["postgresql"])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("CANARY"), "{e}");
    }
}
