//! A tool server's credentials: the vault secrets its `env` (a program) or `headers` (a URL)
//! name, read when it is started or dialled and never kept with the configuration.

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::privsec::vault::Vault;

/// `(variable or header, secret)` for each `(variable or header, vault name)` pair. A secret
/// missing from the vault is named (never its value) with the command that stores it.
pub async fn read(
    server: &str,
    pairs: &[(String, String)],
    vault: &Vault,
) -> Result<Vec<(String, SecretString)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (key, secret) in pairs {
        let value = vault.get(secret).await.map_err(|e| match e.plain() {
            Error::SecretNotFound(_) => Error::UpstreamUnavailable(format!(
                "the tool server {server:?} needs the vault secret {secret:?}: store it with \
                 `maestra vault put {secret}`"
            )),
            _ => e,
        })?;
        out.push((key.clone(), value));
    }
    Ok(out)
}
