//! The shared store's per-user data keys (the `data_keys` table).

use async_trait::async_trait;

use super::*;
use crate::store::{DataKeyRecord, DataKeys};

fn data_key(row: &sqlx::postgres::PgRow) -> Result<DataKeyRecord> {
    Ok(DataKeyRecord {
        user: row.try_get("user_id")?,
        wrapped: row.try_get("wrapped")?,
        kek: row.try_get("kek")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl DataKeys for PostgresStore {
    async fn data_key_get(&self, user: &str) -> Result<Option<DataKeyRecord>> {
        let row = sqlx::query("SELECT * FROM data_keys WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(data_key).transpose()
    }

    async fn data_key_insert(&self, record: &DataKeyRecord) -> Result<DataKeyRecord> {
        // A racing insert makes this one wait on the primary key, then do nothing; the read
        // that follows (a fresh snapshot per statement) returns the key that stands.
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO data_keys (user_id, wrapped, kek, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(&record.user)
        .bind(&record.wrapped)
        .bind(&record.kek)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM data_keys WHERE user_id = $1")
            .bind(&record.user)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        data_key(&row)
    }

    async fn data_key_delete(&self, user: &str) -> Result<bool> {
        // One autocommitted statement: it returns once the delete is committed, which is all
        // forget needs before it deletes the user's rows.
        let done = sqlx::query("DELETE FROM data_keys WHERE user_id = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn data_key_list(&self) -> Result<Vec<DataKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM data_keys ORDER BY user_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(data_key).collect()
    }

    async fn data_key_swap(
        &self,
        user: &str,
        expected: &str,
        wrapped: &str,
        kek: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE data_keys SET wrapped = $1, kek = $2 WHERE user_id = $3 AND wrapped = $4",
        )
        .bind(wrapped)
        .bind(kek)
        .bind(user)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
