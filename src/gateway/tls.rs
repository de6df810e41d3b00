//! HTTPS for cloud mode (issue 15): rustls (ring), no OpenSSL. The certificate and key are
//! PEM files re-read when they change, so a renewal (certbot, an ACME client, a mounted
//! secret) takes effect without a restart.
//!
//! The check is made on a handshake, at most once a second: it compares the files' length and
//! modification time with what was loaded. A pair that does not load (half-written during a
//! renewal, a key that does not match) keeps the last good one serving and is logged; at
//! start, the same failure is an error naming the setting, so there is never a half start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};

/// How often a handshake may look at the files.
const RECHECK: Duration = Duration::from_secs(1);

/// What identifies one version of a file on disk: a renewal moved into place has a new inode,
/// one rewritten in place a new change time (which, unlike the modification time, copying
/// tools cannot set back), and either may keep its length.
type Stamp = [(u64, u64, i64, i64, Option<SystemTime>); 2];

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.ino(),
                m.len(),
                m.ctime(),
                m.ctime_nsec(),
                m.modified().ok(),
            )
        })
    };
    Some([one(cert)?, one(key)?])
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key. Errors name the setting and the file,
/// never the key's bytes.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            Error::Config(format!(
                "tls.cert (MAESTRA_TLS_CERT): cannot read {}: {e}",
                cert.display()
            ))
            .because(e)
        })?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "tls.cert (MAESTRA_TLS_CERT): {} is not a PEM certificate chain: {e}",
                cert.display()
            ))
            .because(e)
        })?;
    if chain.is_empty() {
        return Err(Error::Config(format!(
            "tls.cert (MAESTRA_TLS_CERT): {} holds no certificate",
            cert.display()
        )));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Config(format!(
            "tls.key (MAESTRA_TLS_KEY): {} holds no readable PEM private key: {e}",
            key.display()
        ))
        .because(e)
    })?;
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        Error::Config(format!(
            "tls.key (MAESTRA_TLS_KEY): {} cannot serve {}: {e}",
            key.display(),
            cert.display()
        ))
        .because(e)
    })?;
    // `from_der` lets an unknown consistency pass; a server key must be shown to match.
    certified.keys_match().map_err(|e| {
        Error::Config(format!(
            "tls.key (MAESTRA_TLS_KEY): {} does not match the certificate in {}: {e}",
            key.display(),
            cert.display()
        ))
        .because(e)
    })?;
    Ok(certified)
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<Stamp>,
    checked: Instant,
    key: Arc<CertifiedKey>,
}

/// A certificate resolver that follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

impl ReloadingCert {
    /// Loads the pair now: an error here stops the start.
    pub fn open(cert: &Path, key: &Path) -> Result<ReloadingCert> {
        // Looked at before loading: a swap in between is then seen at the next check.
        let before = stamp(cert, key);
        let certified = load(cert, key)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new(Loaded {
                stamp: before,
                checked: Instant::now(),
                key: Arc::new(certified),
            }),
        })
    }

    /// The pair to serve: re-read when the files changed since the last look.
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.loaded.lock().ok()?;
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != loaded.stamp {
                // A few small reads once a second at most, on a handshake: the cost of
                // following renewals without a watcher thread.
                match load(&self.cert, &self.key) {
                    Ok(fresh) => {
                        loaded.key = Arc::new(fresh);
                        loaded.stamp = now;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        // Maybe mid-renewal: keep serving the last good pair, look again soon.
                        tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous certificate");
                    }
                }
            }
        }
        Some(loaded.key.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// The acceptor for `maestra serve`: TLS 1.2 and 1.3 with ring's defaults, HTTP/1.1 by ALPN.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    let resolver = Arc::new(ReloadingCert::open(cert, key)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")).because(e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn bad_files_are_errors_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        assert!(load(&cert, &key).is_ok());
        let missing = load(&dir.path().join("none.crt"), &key)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("tls.cert"), "{missing}");
        let mismatch = load(&cert, &other_key).unwrap_err().to_string();
        assert!(
            mismatch.contains("tls.key") && mismatch.contains("match"),
            "{mismatch}"
        );
        let garbage = dir.path().join("garbage.key");
        std::fs::write(&garbage, "not a key").unwrap();
        let bad = load(&cert, &garbage).unwrap_err().to_string();
        assert!(bad.contains("tls.key"), "{bad}");
        assert!(
            load(&key, &key)
                .unwrap_err()
                .to_string()
                .contains("tls.cert")
        );
    }
}
