//! The shared store's API keys: hashes, never secrets.

use async_trait::async_trait;

use super::*;

use super::PostgresStore;
use crate::error::{Error, Result};
use crate::store::ApiKeyRecord;

#[async_trait]
impl ApiKeys for PostgresStore {
    async fn api_key_insert(&self, k: &ApiKeyRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, hash, created_at, user_id, scope, services, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.hash)
        .bind(k.created_at)
        .bind(&k.user_id)
        .bind(k.scope.as_str())
        .bind(crate::store::codec::key_services_to_column(k.services.as_ref())?)
        .bind(k.expires_at)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::BadRequest(format!(
                "an API key named {:?} exists",
                k.name
            )));
        }
        Ok(())
    }

    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(crate::store::codec::key_record)
            .transpose()
    }

    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(crate::store::codec::key_record).collect()
    }

    async fn api_key_revoke(&self, name_or_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2
             WHERE (name = $1 OR id = $1) AND revoked_at IS NULL",
        )
        .bind(name_or_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn api_keys_revoke_all(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn api_key_touch(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
