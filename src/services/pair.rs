//! Hue link-button pairing (SPEC §2.7): the bridge hands out a username, the credential of the
//! `hue` service, to whoever asks within 30 seconds of its button being pressed. Asked through
//! egress in local-only mode (a bridge is a device on the local network); the username goes
//! straight into the vault and is never shown.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};

use super::{Auth, Service};
use crate::egress::Egress;
use crate::error::{Error, Result};

/// How often the bridge is asked while nobody has pressed its button: the Hue API asks
/// applications not to poll more than about once a second.
pub const ASK_EVERY: Duration = Duration::from_secs(2);

/// The largest answer read: the bridge's is under a hundred bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The longest username kept: the bridge's are 40 characters; anything much longer is not one.
const MAX_USERNAME_CHARS: usize = 128;

/// What the bridge is told is asking (`application#device`, at most 40 characters).
const DEVICETYPE: &str = "maestra#maestra";

/// The Hue error type that means "press the button first".
const LINK_BUTTON_NOT_PRESSED: u64 = 101;

/// One request's outcome.
#[derive(Debug)]
pub enum Attempt {
    Paired(SecretString),
    /// The link button has not been pressed (yet).
    NotPressed,
}

/// Refuses a service that is not a Hue bridge's (its credential is not a path prefix).
pub fn check_is_hue(service: &Service) -> Result<()> {
    match service.auth {
        Auth::PathPrefix { .. } => Ok(()),
        _ => Err(Error::BadRequest(format!(
            "[services.{}] is not a Hue bridge (its auth is not path_prefix:/api)",
            service.name
        ))),
    }
}

/// Asks the bridge of `service` once for a username.
pub async fn ask(egress: &Egress, service: &Service) -> Result<Attempt> {
    let mut url = service.base_url.clone();
    url.path_segments_mut()
        .map_err(|()| {
            Error::Config(format!(
                "[services.{}] base_url cannot hold a path",
                service.name
            ))
        })?
        .pop_if_empty()
        .push("api");
    let request = egress
        .request(reqwest::Method::POST, url)
        .json(&json!({ "devicetype": DEVICETYPE }));
    let mut response = egress.send(&service.name, request).await?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        Error::Upstream(format!("{}: cannot read the bridge's answer", service.name)).because(e)
    })? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Error::Upstream(format!(
                "{}: the bridge's answer is too large",
                service.name
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(Error::Upstream(format!(
            "{}: the bridge answered {status}",
            service.name
        )));
    }
    read_answer(&body).map_err(|why| Error::Upstream(format!("{}: {why}", service.name)))
}

/// The bridge's answer: `[{"success": {"username": ...}}]` or `[{"error": {"type": 101, ...}}]`.
fn read_answer(body: &[u8]) -> std::result::Result<Attempt, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| "the bridge's answer is not JSON".to_string())?;
    let first = v.get(0).ok_or("the bridge's answer is not a list")?;
    if let Some(name) = first.pointer("/success/username").and_then(Value::as_str) {
        let ok = !name.is_empty()
            && name.chars().count() <= MAX_USERNAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        // A username outside these characters could not sit in a request path as the bridge
        // expects; its value is not quoted (it is the credential).
        return if ok {
            Ok(Attempt::Paired(SecretString::from(name.to_string())))
        } else {
            Err("the bridge's username is not letters and digits".into())
        };
    }
    match first.pointer("/error/type").and_then(Value::as_u64) {
        Some(LINK_BUTTON_NOT_PRESSED) => Ok(Attempt::NotPressed),
        Some(t) => {
            let text = first
                .pointer("/error/description")
                .and_then(Value::as_str)
                .map(super::discover::clean::clean_name)
                .unwrap_or_default();
            Err(format!("the bridge refused pairing (error {t}: {text})"))
        }
        None => Err("the bridge's answer has neither a username nor an error".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_the_bridge_answers() {
        let ok = br#"[{"success":{"username":"83b7780291a6ceffbe0bd049104df"}}]"#;
        match read_answer(ok).unwrap() {
            Attempt::Paired(u) => assert_eq!(u.expose_secret(), "83b7780291a6ceffbe0bd049104df"),
            other => panic!("{other:?}"),
        }
        let wait =
            br#"[{"error":{"type":101,"address":"","description":"link button not pressed"}}]"#;
        assert!(matches!(read_answer(wait).unwrap(), Attempt::NotPressed));
        let other = br#"[{"error":{"type":7,"description":"invalid value \u001b[31m"}}]"#;
        let e = read_answer(other).unwrap_err();
        assert!(e.contains("error 7") && !e.contains('\u{1b}'), "{e}");
        for bad in [
            &b"{}"[..],
            b"[]",
            b"nope",
            br#"[{"success":{"username":"a/../b"}}]"#,
        ] {
            assert!(read_answer(bad).is_err());
        }
    }
}
