//! The shared store's per-user data keys (the `data_keys` table).

use async_trait::async_trait;

use super::*;
use crate::store::codec::{
    DATA_KEY_DELETE_SQL, DATA_KEY_GET_SQL, DATA_KEY_INSERT_SQL, DATA_KEY_LIST_SQL,
    DATA_KEY_SWAP_SQL, data_key, dollars,
};
use crate::store::{DataKeyRecord, DataKeys};

#[async_trait]
impl DataKeys for PostgresStore {
    async fn data_key_get(&self, user: &str) -> Result<Option<DataKeyRecord>> {
        let row = sqlx::query(&dollars(DATA_KEY_GET_SQL))
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(data_key).transpose()
    }

    async fn data_key_insert(&self, record: &DataKeyRecord) -> Result<DataKeyRecord> {
        // A racing insert makes this one wait on the primary key, then do nothing; the read
        // that follows (a fresh snapshot per statement) returns the key that stands.
        let mut tx = self.pool.begin().await?;
        sqlx::query(&dollars(DATA_KEY_INSERT_SQL))
            .bind(&record.user)
            .bind(&record.wrapped)
            .bind(&record.kek)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&dollars(DATA_KEY_GET_SQL))
            .bind(&record.user)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        data_key(&row)
    }

    async fn data_key_delete(&self, user: &str) -> Result<bool> {
        // One autocommitted statement: it returns once the delete is committed, which is all
        // forget needs before it deletes the user's rows.
        let done = sqlx::query(&dollars(DATA_KEY_DELETE_SQL))
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn data_key_list(&self) -> Result<Vec<DataKeyRecord>> {
        let rows = sqlx::query(&dollars(DATA_KEY_LIST_SQL))
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
        let done = sqlx::query(&dollars(DATA_KEY_SWAP_SQL))
            .bind(wrapped)
            .bind(kek)
            .bind(user)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
