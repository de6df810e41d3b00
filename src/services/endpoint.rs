//! A service's name and endpoint checked on their own, needing nothing else of the crate:
//! the configuration checks its settings with them, and `resolve` its tables.

use url::Url;

use crate::error::{Error, Result};

/// Service names are identifiers: they go into audit entries, metrics and vault names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "a service name is 1-64 characters of lowercase letters, digits, `_` or `-`".into(),
        ))
    }
}

/// An http(s) URL with a host and nothing a request path could be confused with: no user
/// info (a credential in the config file), no query, no fragment. The reason never quotes
/// the value, which may hold a secret.
pub fn parse_endpoint(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text.trim()).map_err(|_| "is not a valid URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL");
    }
    if url.host().is_none() {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password (put credentials in the vault)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(url)
}
