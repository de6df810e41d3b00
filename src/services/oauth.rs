//! OAuth2 credentials (Spotify, SPEC §2.7): kept in the vault as JSON `{"access_token",
//! "refresh_token", "expires_at" (Unix seconds), "client_id", "client_secret"}`, refreshed
//! shortly before they expire or once after the service answers 401.
//!
//! Refreshes are single-flight per credential: requests that find the token stale queue on
//! one lock, the first refreshes and writes the new token back (encrypted) to the vault, and
//! the others read it from there. A failed refresh is shared the same way, so fifty waiting
//! requests cause one call to the token endpoint whether it succeeds or not. (With several
//! instances each instance refreshes on its own; the vault keeps whichever wrote last.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;
use crate::store::now_unix;

/// A token this close to its expiry is refreshed before use.
const EXPIRY_SKEW_SECS: i64 = 60;
/// Lifetime assumed when the token endpoint does not say (`expires_in`).
const DEFAULT_LIFETIME_SECS: i64 = 3600;
/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The vault's JSON. `Debug` shows no secret: every secret field is a [`SecretString`].
#[derive(Debug, Deserialize)]
pub struct OAuthCredential {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub expires_at: i64,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
}

impl OAuthCredential {
    pub fn parse(value: &SecretString, name: &str) -> Result<OAuthCredential> {
        // The parser's error is dropped on purpose: it may quote the credential.
        serde_json::from_str(value.expose_secret()).map_err(|_| {
            Error::Config(format!(
                "the vault secret {name:?} is not OAuth2 JSON {{\"access_token\", \"refresh_token\", \"expires_at\", \"client_id\", \"client_secret\"}}"
            ))
        })
    }

    /// The JSON stored back in the vault.
    pub fn to_secret(&self) -> SecretString {
        let v = serde_json::json!({
            "access_token": self.access_token.expose_secret(),
            "refresh_token": self.refresh_token.as_ref().map(|s| s.expose_secret()),
            "expires_at": self.expires_at,
            "client_id": self.client_id,
            "client_secret": self.client_secret.as_ref().map(|s| s.expose_secret()),
        });
        SecretString::from(v.to_string())
    }

    fn stale(&self, now: i64, rejected: Option<&SecretString>) -> bool {
        self.expires_at <= now + EXPIRY_SKEW_SECS
            || rejected.is_some_and(|r| r.expose_secret() == self.access_token.expose_secret())
    }
}

/// Where a credential lives and how to refresh it.
pub struct Endpoint<'a> {
    pub service: &'a str,
    pub credential: &'a str,
    pub token_url: &'a Url,
    pub timeout: Duration,
}

/// An access token ready to use; `refreshed` when this request did the refresh.
pub struct Token {
    pub access: SecretString,
    pub refreshed: bool,
}

#[derive(Default)]
struct Flight {
    /// The last failure and when it happened: requests that were waiting on it share it.
    failed: Option<(Instant, String)>,
}

/// The per-credential refresh locks; one per server.
#[derive(Default)]
pub struct Refresher {
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Flight>>>>,
}

impl Refresher {
    /// A usable access token for `ep`. `rejected` is the token the service just answered 401
    /// for: it is replaced unless another request already did that.
    pub async fn token(
        &self,
        vault: &Vault,
        egress: &Egress,
        ep: &Endpoint<'_>,
        rejected: Option<&SecretString>,
    ) -> Result<Token> {
        let cred = load(vault, ep).await?;
        if !cred.stale(now_unix(), rejected) {
            return Ok(Token {
                access: cred.access_token,
                refreshed: false,
            });
        }
        let asked = Instant::now();
        let flight = self.flight(ep.credential);
        let mut flight = flight.lock().await;
        if let Some((at, msg)) = &flight.failed
            && *at >= asked
        {
            return Err(Error::Upstream(msg.clone()));
        }
        let cred = load(vault, ep).await?;
        if !cred.stale(now_unix(), rejected) {
            return Ok(Token {
                access: cred.access_token,
                refreshed: false,
            });
        }
        match refresh(egress, ep, cred).await {
            Ok(fresh) => {
                vault.put(ep.credential, &fresh.to_secret()).await?;
                flight.failed = None;
                Ok(Token {
                    access: fresh.access_token,
                    refreshed: true,
                })
            }
            Err(e) => {
                if let Error::Upstream(msg) | Error::UpstreamTimeout(msg) = e.plain() {
                    flight.failed = Some((Instant::now(), msg.clone()));
                }
                Err(e)
            }
        }
    }

    fn flight(&self, credential: &str) -> Arc<tokio::sync::Mutex<Flight>> {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(credential.to_string()).or_default().clone()
    }
}

async fn load(vault: &Vault, ep: &Endpoint<'_>) -> Result<OAuthCredential> {
    let value = vault.get(ep.credential).await.map_err(|e| match e {
        Error::SecretNotFound(_) => missing(ep.service, ep.credential),
        other => other,
    })?;
    OAuthCredential::parse(&value, ep.credential)
}

/// The error for a service whose credential is not in the vault.
pub fn missing(service: &str, credential: &str) -> Error {
    Error::Config(format!(
        "service {service:?} has no credential in the vault; run `maestra vault put {credential}`"
    ))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_in: Option<i64>,
}

/// One refresh-token grant (RFC 6749 §6). Client credentials go in HTTP Basic when there is
/// a secret (Spotify's way), else the client id goes in the form (public clients, PKCE).
async fn refresh(
    egress: &Egress,
    ep: &Endpoint<'_>,
    cred: OAuthCredential,
) -> Result<OAuthCredential> {
    let failed = |why: &str| {
        Error::Upstream(format!(
            "{}: refreshing the OAuth2 token failed: {why}",
            ep.service
        ))
    };
    let refresh_token = cred
        .refresh_token
        .as_ref()
        .ok_or_else(|| failed("the vault credential has no refresh_token"))?;
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    let mut req = egress
        .request(reqwest::Method::POST, ep.token_url.clone())
        .header("accept", "application/json")
        .timeout(ep.timeout);
    match (&cred.client_id, &cred.client_secret) {
        (Some(id), Some(secret)) => req = req.basic_auth(id, Some(secret.expose_secret())),
        (Some(id), None) => form.push(("client_id", id)),
        _ => {}
    }
    let resp = egress
        .send_relaying_redirects(ep.service, req.form(&form))
        .await
        .map_err(|e| match e.plain() {
            Error::LocalOnly(_) => e,
            Error::UpstreamTimeout(_) => {
                failed("the token endpoint did not answer in time").because(e)
            }
            _ => failed(&format!(
                "the token endpoint cannot be reached ({})",
                e.code()
            ))
            .because(e),
        })?;
    let status = resp.status();
    let body = read_limited(resp)
        .await
        // What failed is the read of a size-limited body; `read_limited` reports no cause.
        .map_err(|_| failed("its answer could not be read"))?;
    if !status.is_success() {
        let code = oauth_error_code(&body)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        return Err(failed(&format!(
            "the token endpoint answered {status}{code}"
        )));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        // The parser's error is dropped on purpose: it may quote the answer, which holds tokens.
        .map_err(|_| failed("the token endpoint's answer is not an OAuth2 token"))?;
    let lifetime = answer
        .expires_in
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    Ok(OAuthCredential {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token.or(cred.refresh_token),
        expires_at: now_unix() + lifetime,
        client_id: cred.client_id,
        client_secret: cred.client_secret,
    })
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ()> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| ())? {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The RFC 6749 `error` code of a refusal, when it is a plain code (never free text, which
/// could quote what was sent).
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error")?.as_str()?;
    (code.len() <= 40 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .then(|| code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips_without_showing_secrets() {
        let s = SecretString::from(
            r#"{"access_token":"AT-1","refresh_token":"RT-1","expires_at":5,"client_id":"cid","client_secret":"CS-1"}"#,
        );
        let c = OAuthCredential::parse(&s, "spotify").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AT-1") && !dbg.contains("RT-1") && !dbg.contains("CS-1"));
        assert!(c.stale(now_unix(), None));
        let back = OAuthCredential::parse(&c.to_secret(), "spotify").unwrap();
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "RT-1");
        assert_eq!(back.client_id.as_deref(), Some("cid"));
        let e =
            OAuthCredential::parse(&SecretString::from("not json AT-9"), "spotify").unwrap_err();
        assert!(!e.to_string().contains("AT-9"));
    }

    #[test]
    fn stale_when_expiring_or_rejected() {
        let now = 1_000_000;
        let c = OAuthCredential {
            access_token: SecretString::from("a"),
            refresh_token: None,
            expires_at: now + 3600,
            client_id: None,
            client_secret: None,
        };
        assert!(!c.stale(now, None));
        assert!(c.stale(now, Some(&SecretString::from("a"))));
        assert!(!c.stale(now, Some(&SecretString::from("older"))));
        assert!(c.stale(now + 3600 - 30, None));
    }

    #[test]
    fn only_plain_error_codes() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(br#"{"error":"token RT-1 is bad"}"#), None);
        assert_eq!(oauth_error_code(b"<html>"), None);
    }
}
