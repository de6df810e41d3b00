//! What every command starts from: the configuration, a private home, and the parts it needs.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, ProcessEnv};
use secrecy::ExposeSecret;

use crate::error::{Error, Result};
use crate::home::Home;
use crate::privsec::audit::{AuditLog, ChainKey, Event};
use crate::privsec::guard::check_configured_peer;
use crate::privsec::keyring::Keyring;
use crate::privsec::vault::Vault;
use crate::store::{PostgresStore, SqliteStore, Store};

/// How the database's setting is named in a local-only refusal.
pub const DB_URL_SETTING: &str = "db_url (MAESTRA_DB_URL)";

/// The configuration as every command reads it: parsed and validated, and its
/// `[services.NAME]` tables resolved against the guard's catalog.
pub fn load_config(config_file: Option<&Path>) -> Result<Config> {
    let config = Config::load(&ProcessEnv, config_file)?;
    crate::services::check_services(&config)?;
    Ok(config)
}

pub struct Context {
    pub config: Config,
    pub home: Home,
}

impl Context {
    /// Loads the configuration and makes sure the home exists and is private (creating what is
    /// missing, refusing what is too open unless `fix`).
    pub fn load(config_file: Option<&Path>, fix: bool) -> Result<Context> {
        let config = load_config(config_file)?;
        let home = Home::new(&config.home);
        home.create_dirs(fix)?;
        // Every command comes through here: what a killed backup or restore left is removed
        // before anything else runs (issue 23, class 4).
        home.sweep_scratch();
        Ok(Context { config, home })
    }

    /// Creates the vault key file on first use, unless keys come from the environment.
    pub fn ensure_vault_key(&self) -> Result<bool> {
        if self.config.encryption_keys.is_some() {
            return Ok(false);
        }
        Keyring::create_file_if_missing(&self.home.vault_key())
    }

    pub fn keyring(&self) -> Result<Keyring> {
        self.ensure_vault_key()?;
        Keyring::load(self.config.encryption_keys.as_ref(), &self.home.vault_key())
    }

    /// The embedded SQLite store, or the shared PostgreSQL one when configured.
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        if self.config.uses_postgres() {
            let url = self.config.db_url.as_ref().ok_or_else(|| {
                Error::Config("MAESTRA_CLOUD_STORAGE=postgresql needs MAESTRA_DB_URL".into())
            })?;
            // Local-only reaches no database off this machine and the LAN (before any dial).
            check_configured_peer(self.config.local_only, DB_URL_SETTING, url.expose_secret())
                .await?;
            return Ok(Arc::new(PostgresStore::open(url.expose_secret()).await?));
        }
        Ok(Arc::new(SqliteStore::open(&self.home.db()).await?))
    }

    pub async fn vault(&self) -> Result<Vault> {
        Ok(Vault::new(self.keyring()?, self.store().await?))
    }

    pub fn audit_key(&self) -> Result<ChainKey> {
        ChainKey::load_or_create(&self.home.audit_key())
    }

    pub fn audit_log(&self) -> Result<AuditLog> {
        AuditLog::open(&self.config.audit, self.audit_key()?)
    }

    /// Writes one entry and waits for it to be on disk (commands are short-lived).
    pub async fn audit(&self, event: Event) -> Result<()> {
        let log = self.audit_log()?;
        let result = log.record(event).await;
        log.close().await;
        result
    }
}
