//! Storage: one trait, an embedded SQLite implementation and a shared PostgreSQL one.
//!
//! Callers hold an `Arc<dyn Store>` and never see SQL, so a backend is one file.

mod codec;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use secrecy::SecretString;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::conversations::model::{Conversation, Message, Summary};
use crate::error::Result;

/// Messages appended to a conversation, which is created on first use.
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub conversation_id: &'a str,
    pub owner: &'a str,
    /// The topic a new conversation gets; an existing one keeps its own.
    pub topic: &'a str,
    /// Added to the conversation's `surfaces` when not already there.
    pub surface: &'a str,
    pub messages: &'a [Message],
    /// The conversation may hold at most this many messages; over it the append is refused
    /// whole with [`crate::Error::TooLarge`].
    pub max_messages: u64,
}

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

    /// Appends a turn in one transaction. A conversation owned by another user is reported as
    /// [`crate::Error::NotFound`], so ids of other users' conversations cannot be probed.
    async fn conversation_append(&self, turn: &Turn<'_>) -> Result<()>;
    async fn conversation_get(&self, id: &str) -> Result<Option<Conversation>>;
    /// The conversation without its messages: owner and size checks before a model call.
    async fn conversation_summary(&self, id: &str) -> Result<Option<Summary>> {
        Ok(self.conversation_get(id).await?.map(|c| Summary {
            id: c.id,
            topic: c.topic,
            owner: c.owner,
            surfaces: c.surfaces,
            created_at: c.meta.created_at,
            updated_at: c.meta.updated_at,
            message_count: c.meta.message_count,
        }))
    }
    /// The last `limit` messages, oldest first: the context sent upstream for a multi-turn chat.
    async fn conversation_recent(&self, id: &str, limit: u32) -> Result<Vec<Message>>;
    /// Newest first (by `updated_at`), optionally one owner's only.
    async fn conversation_list(
        &self,
        owner: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Summary>>;
    /// Deletes a conversation and its messages; returns whether it existed.
    async fn conversation_delete(&self, id: &str) -> Result<bool>;
    /// Deletes every conversation of `owner`; returns how many.
    async fn conversations_delete_owner(&self, owner: &str) -> Result<u64>;
    /// Deletes conversations last updated before `updated_before_ms` (retention); returns how many.
    async fn conversations_delete_before(&self, updated_before_ms: i64) -> Result<u64>;
    /// Stores a whole conversation (import); returns false, changing nothing, if the id exists.
    async fn conversation_import(&self, conversation: &Conversation) -> Result<bool>;
    /// Makes deleted content leave the database files (checkpoint the WAL, vacuum), so that
    /// "forget" holds for someone reading the files afterwards.
    async fn scrub(&self) -> Result<()>;
}

/// Seconds since the Unix epoch, the store's timestamp unit.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
