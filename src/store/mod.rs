//! Storage: one trait, an embedded SQLite implementation and (later) a shared PostgreSQL one.
//!
//! Callers hold an `Arc<dyn Store>` and never see SQL, so a second backend is a second file.

mod sqlite;

use async_trait::async_trait;
use secrecy::SecretString;

pub use sqlite::SqliteStore;

use crate::error::Result;

/// A stored vault entry. `value` is a Fernet token, or legacy plaintext when `!encrypted`.
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub name: String,
    pub value: SecretString,
    pub encrypted: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `vault list` may show: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub encrypted: bool,
    pub updated_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts or replaces a secret.
    async fn secret_put(&self, record: &SecretRecord) -> Result<()>;
    async fn secret_get(&self, name: &str) -> Result<Option<SecretRecord>>;
    async fn secret_list(&self) -> Result<Vec<SecretInfo>>;
    /// Returns whether a secret was deleted.
    async fn secret_delete(&self, name: &str) -> Result<bool>;
    /// Replaces a secret's value only if it still holds `expected`: rotation and migration use
    /// it so a concurrent `vault put` is never overwritten with an older value.
    async fn secret_swap(
        &self,
        name: &str,
        expected: &SecretString,
        new_value: &SecretString,
        encrypted: bool,
    ) -> Result<bool>;
    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    async fn meta_set(&self, key: &str, value: &str) -> Result<()>;
    async fn meta_delete(&self, key: &str) -> Result<()>;
}

/// Seconds since the Unix epoch, the store's timestamp unit.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
