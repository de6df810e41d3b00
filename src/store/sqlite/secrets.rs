//! The embedded store's vault secrets: tokens as the vault hands them over, swapped only if unchanged.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Secrets for SqliteStore {
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
        .execute(&self.writer)
        .await?;
        // Minimisation's list of the vault's values follows vault writes (`minimise::known`).
        self.changes.announce();
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
            .execute(&self.writer)
            .await?;
        self.changes.announce();
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
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
