//! What a backup holds: every file with its size and SHA-256, the audit chain's head, and the
//! hash of the encrypted data file it belongs to. Stored encrypted (`manifest.mxb`) and written
//! last, so a backup without one is unfinished and nothing accepts it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format written by this version.
pub const FORMAT: u32 = 1;

/// Paths inside a backup (its tar archive).
pub mod paths {
    pub const SQLITE_DB: &str = "database/maestra.db";
    pub const POSTGRES_DUMP: &str = "database/postgres.sql";
    pub const CONFIG: &str = "config/maestra.toml";
    pub const AUDIT_DIR: &str = "audit";
    pub const VAULT_KEY: &str = "keys/vault.key";
    pub const AUDIT_KEY: &str = "keys/audit.key";
    pub const DATA_KEYS_SQLITE: &str = "keys/data_keys.db";
    pub const DATA_KEYS_POSTGRES: &str = "keys/data_keys.sql";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgresql,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The last entry of the audit chain when the log was copied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub maestra_version: String,
    pub backend: Backend,
    /// Whether the key files and the data keys are inside.
    pub with_keys: bool,
    pub files: Vec<FileEntry>,
    /// `None` when there was no audit log yet.
    pub audit_head: Option<AuditHead>,
    /// Size and SHA-256 of the encrypted data file (`data.mxb`).
    pub data_size: u64,
    pub data_sha256: String,
}

impl Manifest {
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| {
            Error::BadRequest(format!("backup: cannot write the manifest: {e}")).because(e)
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::BadRequest(format!("backup: the manifest is not valid: {e}")).because(e)
        })?;
        if m.format != FORMAT {
            return Err(Error::BadRequest(format!(
                "backup: format {} is not supported by this version (it reads {FORMAT})",
                m.format
            )));
        }
        Ok(m)
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}
