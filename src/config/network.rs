//! How `maestra serve` faces a network (issue 15): TLS, the address allow-list, the proxies
//! whose forwarding headers are believed.
//!
//! ```toml
//! allow_ips = ["10.0.0.0/8", "2001:db8::/32"]   # MAESTRA_ALLOW_IPS, comma-separated
//! trusted_proxies = ["10.0.0.2"]                # MAESTRA_TRUSTED_PROXIES
//! forwarded_header = "x-forwarded-for"          # or "forwarded"; MAESTRA_FORWARDED_HEADER
//! [tls]                                          # MAESTRA_TLS_CERT, MAESTRA_TLS_KEY
//! cert = "/etc/maestra/fullchain.pem"
//! key = "/etc/maestra/privkey.pem"
//! # or, with TLS ended by a proxy in front: tls = "behind-proxy" (MAESTRA_TLS=behind-proxy)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::access::network::{ForwardedHeader, Networks};
use crate::error::{Error, Result};

/// How connections are secured.
#[derive(Debug, Clone, PartialEq)]
pub enum Tls {
    /// Plain HTTP: loopback, or local mode.
    Off,
    /// HTTPS served by Maestra from these PEM files (re-read when they change).
    Files { cert: PathBuf, key: PathBuf },
    /// HTTPS ended by a proxy listed in `trusted_proxies`.
    BehindProxy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub tls: Tls,
    /// Empty: every address may connect (the keys still decide).
    pub allow_ips: Networks,
    pub trusted_proxies: Networks,
    /// The one header the trusted proxies write the client's address into.
    pub forwarded_header: ForwardedHeader,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            tls: Tls::Off,
            allow_ips: Networks::default(),
            trusted_proxies: Networks::default(),
            forwarded_header: ForwardedHeader::default(),
        }
    }
}

/// `tls` in the file: a `[tls]` table, or the string `"behind-proxy"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TlsFile {
    Mode(String),
    Files(TlsFiles),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// What the environment says (already looked up; `None`: not set).
pub(super) struct NetworkEnv {
    pub tls: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub allow_ips: Option<String>,
    pub trusted_proxies: Option<String>,
    pub forwarded_header: Option<String>,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Reads the section, the environment over the file, naming the setting that is wrong.
pub(super) fn load(
    env: NetworkEnv,
    file_tls: Option<TlsFile>,
    file_allow: Option<Vec<String>>,
    file_proxies: Option<Vec<String>>,
    file_header: Option<String>,
    home: &Path,
) -> Result<NetworkConfig> {
    let forwarded_header = match env.forwarded_header.or(file_header) {
        Some(h) => ForwardedHeader::parse("forwarded_header (MAESTRA_FORWARDED_HEADER)", &h)?,
        None => ForwardedHeader::default(),
    };
    let allow_ips = Networks::parse(
        "allow_ips (MAESTRA_ALLOW_IPS)",
        &env.allow_ips
            .as_deref()
            .map(list)
            .or(file_allow)
            .unwrap_or_default(),
    )?;
    let trusted_proxies = Networks::parse(
        "trusted_proxies (MAESTRA_TRUSTED_PROXIES)",
        &env.trusted_proxies
            .as_deref()
            .map(list)
            .or(file_proxies)
            .unwrap_or_default(),
    )?;
    let anchored = |p: PathBuf| if p.is_relative() { home.join(p) } else { p };
    let tls = match (env.cert, env.key, env.tls, file_tls) {
        (Some(cert), Some(key), _, _) => Tls::Files {
            cert: anchored(cert.into()),
            key: anchored(key.into()),
        },
        (Some(_), None, _, _) | (None, Some(_), _, _) => {
            return Err(Error::Config(
                "MAESTRA_TLS_CERT and MAESTRA_TLS_KEY go together: set both or neither".into(),
            ));
        }
        (None, None, Some(mode), _) | (None, None, None, Some(TlsFile::Mode(mode))) => {
            if mode != "behind-proxy" {
                return Err(Error::Config(format!(
                    "tls (MAESTRA_TLS) must be a [tls] table with cert and key, or \
                     \"behind-proxy\", not {mode:?}"
                )));
            }
            Tls::BehindProxy
        }
        (None, None, None, Some(TlsFile::Files(f))) => Tls::Files {
            cert: anchored(f.cert),
            key: anchored(f.key),
        },
        (None, None, None, None) => Tls::Off,
    };
    if tls == Tls::BehindProxy && trusted_proxies.is_empty() {
        return Err(Error::Config(
            "tls = \"behind-proxy\" needs trusted_proxies (MAESTRA_TRUSTED_PROXIES): the \
             addresses of the proxies that end TLS in front of Maestra"
                .into(),
        ));
    }
    Ok(NetworkConfig {
        tls,
        allow_ips,
        trusted_proxies,
        forwarded_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> NetworkEnv {
        NetworkEnv {
            tls: None,
            cert: None,
            key: None,
            allow_ips: None,
            trusted_proxies: None,
            forwarded_header: None,
        }
    }

    fn from_toml(text: &str) -> Result<NetworkConfig> {
        #[derive(Deserialize)]
        struct F {
            tls: Option<TlsFile>,
            allow_ips: Option<Vec<String>>,
            trusted_proxies: Option<Vec<String>>,
            forwarded_header: Option<String>,
        }
        let f: F = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let h = Path::new("/h");
        load(
            env(),
            f.tls,
            f.allow_ips,
            f.trusted_proxies,
            f.forwarded_header,
            h,
        )
    }

    #[test]
    fn each_form_reads_and_each_mistake_names_its_setting() {
        let files = from_toml("[tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n").unwrap();
        assert_eq!(
            files.tls,
            Tls::Files {
                cert: "/h/c.pem".into(),
                key: "/k.pem".into()
            }
        );
        let proxied =
            from_toml("tls = \"behind-proxy\"\ntrusted_proxies = [\"10.0.0.2\"]\n").unwrap();
        assert_eq!(proxied.tls, Tls::BehindProxy);
        for (text, names) in [
            ("tls = \"behind-proxy\"\n", "trusted_proxies"),
            ("tls = \"on\"\n", "tls"),
            ("allow_ips = [\"10.0.0.0/33\"]\n", "allow_ips"),
            ("trusted_proxies = [\"proxy.example\"]\n", "trusted_proxies"),
            ("forwarded_header = \"x-real-ip\"\n", "forwarded_header"),
        ] {
            let e = from_toml(text).unwrap_err().to_string();
            assert!(e.contains(names), "{text}: {e}");
        }
        let half = NetworkEnv {
            cert: Some("/c".into()),
            ..env()
        };
        let e = load(half, None, None, None, None, Path::new("/h")).unwrap_err();
        assert!(e.to_string().contains("MAESTRA_TLS_KEY"));
        let listed = NetworkEnv {
            allow_ips: Some("10.0.0.0/8, 192.0.2.7".into()),
            ..env()
        };
        let n = load(listed, None, None, None, None, Path::new("/h")).unwrap();
        assert_eq!(n.allow_ips.to_strings(), ["10.0.0.0/8", "192.0.2.7/32"]);
    }
}
