//! Tool calls waiting for the person's approval (`store::ToolApprovals`).

use async_trait::async_trait;

use super::*;

use super::PostgresStore;
use crate::error::Result;
use crate::store::codec::{APPROVAL_KEPT_MS, approval_record};
use crate::store::{ApprovalRecord, Decision};

#[async_trait]
impl ToolApprovals for PostgresStore {
    async fn approval_insert(&self, r: &ApprovalRecord) -> Result<()> {
        sqlx::query("DELETE FROM tool_approvals WHERE expires_at < $1")
            .bind(r.asked_at - APPROVAL_KEPT_MS)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO tool_approvals (id, server, tool, asked_by, arguments_bytes,
                 arguments_digest, asked_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.id)
        .bind(&r.server)
        .bind(&r.tool)
        .bind(&r.asked_by)
        .bind(r.arguments_bytes)
        .bind(&r.arguments_digest)
        .bind(r.asked_at)
        .bind(r.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        let row = sqlx::query("SELECT * FROM tool_approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(approval_record).transpose()
    }

    async fn approval_pending(&self, now: i64, limit: u32) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tool_approvals WHERE decision IS NULL AND expires_at > $1
             ORDER BY asked_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(approval_record).collect()
    }

    async fn approval_decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tool_approvals SET decision = $2, decided_by = $3, decided_at = $4
             WHERE id = $1 AND decision IS NULL AND expires_at > $4",
        )
        .bind(id)
        .bind(decision.as_str())
        .bind(by)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn approval_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM tool_approvals WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
