//! The `[backup]` section: where an `s3://` backup destination is. The usual `AWS_*` variables
//! (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_ALLOW_HTTP`, ...) override it when the backup connects; the secret key itself is never
//! written here, only the name of the vault secret that holds it.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupFile {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key_vault: Option<String>,
    allow_http: Option<bool>,
}

/// Settings of an S3-compatible backup destination (all optional: `AWS_*` may give them).
#[derive(Debug, Clone, Default)]
pub struct BackupConfig {
    /// `http(s)://host[:port]` of an S3-compatible server; absent: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Not secret: the key id names the credential, the secret key proves it.
    pub access_key_id: Option<String>,
    /// Name of the vault secret holding the secret access key (`maestra vault put NAME`).
    pub secret_access_key_vault: Option<String>,
    /// Allow a plain-HTTP endpoint (a server on the same machine); the backup is encrypted
    /// either way, but credentials would cross the network in the clear.
    pub allow_http: bool,
}

/// Reads the `[backup]` section, naming the setting that is wrong.
pub(super) fn load(file: BackupFile) -> Result<BackupConfig> {
    if let Some(endpoint) = &file.endpoint {
        let url = url::Url::parse(endpoint).map_err(|e| {
            Error::Config(format!("backup.endpoint must be an http(s) URL: {e}")).because(e)
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Error::Config(
                "backup.endpoint must be an http(s)://host[:port] URL".into(),
            ));
        }
    }
    if let Some(name) = &file.secret_access_key_vault
        && name.trim().is_empty()
    {
        return Err(Error::Config(
            "backup.secret_access_key_vault must name a vault secret".into(),
        ));
    }
    Ok(BackupConfig {
        endpoint: file.endpoint,
        region: file.region,
        access_key_id: file.access_key_id,
        secret_access_key_vault: file.secret_access_key_vault,
        allow_http: file.allow_http.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BackupConfig> {
        load(toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?)
    }

    #[test]
    fn reads_and_checks_the_section() {
        let c = parse(
            "endpoint = \"http://127.0.0.1:9000\"\nregion = \"r\"\naccess_key_id = \"k\"\nsecret_access_key_vault = \"s\"\nallow_http = true",
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.secret_access_key_vault.as_deref(), Some("s"));
        assert!(c.allow_http);
        assert!(!parse("").unwrap().allow_http);
        assert!(parse("endpoint = \"ftp://x\"").is_err());
        assert!(parse("endpoint = \"not a url\"").is_err());
        assert!(parse("secret_access_key_vault = \" \"").is_err());
        // The secret itself has no place here.
        assert!(parse("secret_access_key = \"x\"").is_err());
    }
}
