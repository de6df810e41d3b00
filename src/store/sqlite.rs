//! The embedded store: one SQLite file under `$MAESTRA_HOME`.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{SecretInfo, SecretRecord, Store};
use crate::error::Result;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        crate::home::restrict_umask();
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Deleted content is overwritten with zeros, so erased data leaves no trace in the file.
            .pragma("secure_delete", "ON")
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        name: row.try_get("name")?,
        value: SecretString::from(row.try_get::<String, _>("value")?),
        encrypted: row.try_get::<i64, _>("encrypted")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn secret_put(&self, r: &SecretRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (name, value, encrypted, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value,
                 encrypted = excluded.encrypted, updated_at = excluded.updated_at",
        )
        .bind(&r.name)
        .bind(r.value.expose_secret())
        .bind(r.encrypted as i64)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn secret_get(&self, name: &str) -> Result<Option<SecretRecord>> {
        let row = sqlx::query("SELECT * FROM secrets WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    async fn secret_list(&self) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query("SELECT name, encrypted, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: r.try_get("name")?,
                    encrypted: r.try_get::<i64, _>("encrypted")? != 0,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn secret_delete(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn secret_swap(
        &self,
        name: &str,
        expected: &SecretString,
        new_value: &SecretString,
        encrypted: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE secrets SET value = ?1, encrypted = ?2 WHERE name = ?3 AND value = ?4",
        )
        .bind(new_value.expose_secret())
        .bind(encrypted as i64)
        .bind(name)
        .bind(expected.expose_secret())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = ?1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
