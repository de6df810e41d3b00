//! The embedded store's small durable facts (rotation markers, the key check, the lockdown flag).
//! Each write is announced (`store::changes`): other processes watch some of these facts.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Meta for SqliteStore {
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
        .execute(&self.writer)
        .await?;
        self.changes.announce();
        Ok(())
    }

    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            self.changes.announce();
        }
        Ok(done.rows_affected() == 1)
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = ?1")
            .bind(key)
            .execute(&self.writer)
            .await?;
        self.changes.announce();
        Ok(())
    }
}
