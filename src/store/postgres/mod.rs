//! The shared store: one PostgreSQL database for several `maestra serve` instances (SPEC §6).
//!
//! Same semantics as the embedded SQLite store; every multi-statement operation is one
//! transaction, and concurrent appends to one conversation are serialised by a row lock.

mod api_keys;
mod approvals;
mod conversations;
mod data_keys;
mod ledger;
mod meta;
mod scrub;
mod secrets;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};

use crate::store::changes::Changes;
use crate::store::codec::{add_surface, from_json, not_found, to_i64, to_json, to_u64, too_large};
use crate::store::codec::{message, summary};
use crate::store::{
    ApiKeys, Context, Conversations, Ledger, Meta, SecretInfo, SecretRecord, Secrets, Store,
    ToolApprovals, Turn,
};

use crate::conversations::model::{Conversation, ConversationMeta, Message, Summary, now_millis};
use crate::error::Result;

/// Connections per instance: several instances share one server, so each keeps few.
const MAX_CONNECTIONS: u32 = 8;

pub struct PostgresStore {
    pool: PgPool,
    scrubber: scrub::Scrubber,
    /// A change assumed once a second (see `store::changes`).
    changes: Changes,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host/db`) and applies the migrations.
    /// Neither the URL nor its password ever appears in an error.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock around the migrations, so instances starting together
        // do not race each other.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let scrubber = scrub::Scrubber::new(pool.clone());
        scrubber.resume_owed().await?;
        Ok(PostgresStore {
            pool,
            scrubber,
            changes: Changes::ticking(),
        })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn record(row: &PgRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        name: row.try_get("name")?,
        value: SecretString::from(row.try_get::<String, _>("value")?),
        encrypted: row.try_get("encrypted")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const MESSAGE_COLUMNS: &str = "id, role, content, surface, mode, timestamp, meta";
const SUMMARY_COLUMNS: &str = "id, topic, owner, surfaces, created_at, updated_at, message_count";

async fn insert_message(
    conn: &mut PgConnection,
    conversation_id: &str,
    seq: i64,
    m: &Message,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages
             (conversation_id, seq, id, role, content, surface, mode, timestamp, meta)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(conversation_id)
    .bind(seq)
    .bind(&m.id)
    .bind(&m.role)
    .bind(&m.content)
    .bind(&m.surface)
    .bind(&m.mode)
    .bind(m.timestamp)
    .bind(to_json("message meta", &m.meta)?)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Closes every connection of the pool (nothing is held back in memory).
    async fn close(&self) {
        self.pool.close().await;
    }
}
