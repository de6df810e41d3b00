//! Storage: a trait per concern (secrets, meta, conversations, ledger, API keys, data keys,
//! tool approvals),
//! `Store` for all of them, an embedded SQLite implementation and a shared PostgreSQL one.
//!
//! Callers hold an `Arc<dyn Store>` (or only the concern they use) and never see SQL.
//! `changes` tells them when the store may have changed, so nothing polls it at rest.

mod changes;
mod codec;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use secrecy::SecretString;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
/// Backups: a consistent copy of the embedded database without its data keys.
pub use sqlite::snapshot as sqlite_snapshot;

use crate::conversations::model::{Conversation, Message, Summary};
use crate::cost::ledger::{
    Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Tokens, Usage,
};
use crate::error::Result;

/// A stored API key: the public id and a SHA-256 of the secret part, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The user the key acts for; `None` only for an admin key.
    pub user_id: Option<String>,
    pub scope: crate::access::scope::KeyScope,
    /// Personal services the key may call; `None`: every configured one.
    pub services: Option<Vec<String>>,
    /// Unix seconds from which the key opens nothing.
    pub expires_at: Option<i64>,
}

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
    /// The turn opens a conversation under an id the server has just generated, so no stored
    /// conversation can refuse it. The embedded store then acknowledges it before its commit
    /// (see `sqlite::turns`); every later read of the store still sees it.
    pub opens: bool,
}

/// What a model call needs of a conversation before it is made: who owns it (another user's
/// history must never go upstream), how full it is, and its last messages, read in one
/// statement so they come from one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub owner: String,
    pub message_count: u64,
    /// The last messages asked for, oldest first.
    pub recent: Vec<Message>,
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

/// Vault secrets, stored as the vault hands them over (Fernet tokens, or legacy plaintext).
#[async_trait]
pub trait Secrets: Send + Sync {
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
}

/// Small durable facts: an unfinished key rotation, the vault's key check, the lockdown flag.
#[async_trait]
pub trait Meta: Send + Sync {
    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    async fn meta_set(&self, key: &str, value: &str) -> Result<()>;
    /// Sets `key` only if it is absent; true when this call set it. Atomic, so of two
    /// processes racing to set a first value (the vault's key check) exactly one wins.
    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool>;
    async fn meta_delete(&self, key: &str) -> Result<()>;
}

/// Conversations and their messages (SPEC §2.5).
#[async_trait]
pub trait Conversations: Send + Sync {
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
    /// Owner, size and the last `limit` messages (oldest first) of a conversation, or `None`
    /// if there is none: the context sent upstream for a multi-turn chat.
    async fn conversation_context(&self, id: &str, limit: u32) -> Result<Option<Context>>;
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

/// A user's data key as stored: wrapped (encrypted) under a key-encryption key derived from
/// the vault key, never in the clear (see `privsec::datakeys`).
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub user: String,
    /// The wrapped key (base64 of nonce and ciphertext).
    pub wrapped: String,
    /// Public fingerprint of the vault key whose derived key wraps it.
    pub kek: String,
    pub created_at: i64,
}

impl std::fmt::Debug for DataKeyRecord {
    /// The wrapped key stays out of logs too: with an old copy of the vault key it would open.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRecord")
            .field("user", &self.user)
            .field("kek", &self.kek)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Per-user data keys (issue 18), in their own table (`data_keys`), apart from the content
/// they lock: a data backup leaves the table out, so forgetting a user (deleting their row)
/// makes every copy of their content unreadable.
#[async_trait]
pub trait DataKeys: Send + Sync {
    async fn data_key_get(&self, user: &str) -> Result<Option<DataKeyRecord>>;
    /// Stores `record` unless its user has a key already, and returns the key that stands:
    /// of two processes racing for a user's first write, both end with the same key.
    async fn data_key_insert(&self, record: &DataKeyRecord) -> Result<DataKeyRecord>;
    /// Destroys a user's key, committed when this returns; true if there was one.
    async fn data_key_delete(&self, user: &str) -> Result<bool>;
    async fn data_key_list(&self) -> Result<Vec<DataKeyRecord>>;
    /// Replaces a key's wrapping only if it still holds `expected` (rotation re-wraps with
    /// it, so a concurrent forget or re-wrap is never overwritten).
    async fn data_key_swap(
        &self,
        user: &str,
        expected: &str,
        wrapped: &str,
        kek: &str,
    ) -> Result<bool>;
}

/// A conversation's content columns exactly as stored (JSON text for the lists).
#[derive(Clone, PartialEq, Eq)]
pub struct RawConversation {
    pub id: String,
    pub owner: String,
    pub topic: String,
    pub tags: String,
    pub artifacts: String,
}

/// A message's content columns exactly as stored, with its conversation's owner.
#[derive(Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub conversation_id: String,
    pub seq: i64,
    pub id: String,
    pub owner: String,
    pub content: String,
    /// JSON text.
    pub meta: String,
}

/// Stored content as it is, for the one-time encryption of a database written before issue 18
/// (`conversations::migrate`): paged in key order, rewritten only where unchanged since read.
/// `meta` key present while a PostgreSQL scrub is owed (deferred behind a long transaction,
/// such as a backup's; `store/postgres/scrub.rs`).
pub const SCRUB_OWED: &str = "store.scrub_pending";

#[async_trait]
pub trait RawContent: Send + Sync {
    /// Up to `limit` conversations after id `after`, in id order, content as stored (sealed or
    /// plaintext: the start-up migration tells them apart by opening them).
    async fn raw_conversations(&self, after: &str, limit: u32) -> Result<Vec<RawConversation>>;
    /// Up to `limit` messages after `(conversation id, seq)`, in that order, as stored.
    async fn raw_messages(&self, after: (&str, i64), limit: u32) -> Result<Vec<RawMessage>>;
    /// Writes each `(old, new)` pair's content columns in one transaction, where the row still
    /// holds `old`'s; returns how many rows changed.
    async fn raw_conversations_rewrite(
        &self,
        rows: &[(RawConversation, RawConversation)],
    ) -> Result<u64>;
    async fn raw_messages_rewrite(&self, rows: &[(RawMessage, RawMessage)]) -> Result<u64>;
    /// Rows in both tables, for progress.
    async fn raw_counts(&self) -> Result<(u64, u64)>;
}

/// The cost ledger (SPEC §2.4): reservations, charges and running totals.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Checks every limit and records the reservation atomically with the check (serialised
    /// in memory for the embedded store, under an advisory lock for PostgreSQL), so concurrent
    /// reservations (from any instance sharing the store) can never together pass a limit.
    /// Returns the reservation's id, or the first limit it would exceed. Any amount is
    /// accepted: it is clamped into `0..=MAX_MICROS` first, so no total can overflow.
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome>;
    /// Releases reservations whose request died: on the embedded store, every one a previous
    /// run left open; on a shared store, those older than `STALE_AFTER_MS` (other instances'
    /// younger ones are live). Called at start by `maestra serve`, so a hold left by a crash
    /// is not reported as reserved until a refusal happens to sweep it.
    async fn cost_recover(&self) -> Result<()>;
    /// Turns a reservation into a charge of `spent`, clamped into `0..=` the amount it held,
    /// recording the `tokens` the call used beside it (for reports).
    async fn cost_settle(&self, id: i64, spent: Micros, tokens: Tokens) -> Result<()>;
    /// Drops a reservation whose call failed: nothing was spent.
    async fn cost_release(&self, id: i64) -> Result<()>;
    /// Spent and reserved amounts of a scope in a period: a day (`YYYY-MM-DD`) or a month
    /// (`YYYY-MM`).
    async fn cost_usage(&self, scope: &Scope, period: &str) -> Result<Usage>;
    /// Settled charges from `since_day` on, for reports.
    async fn cost_charges(&self, since_day: &str) -> Result<Vec<Charge>>;
    /// Records a day's spend from the seed's tracker; false (changing nothing) if that day was
    /// imported before.
    async fn cost_import(&self, day: &str, spent: Micros, now_ms: i64) -> Result<bool>;
}

/// API keys for cloud mode (SPEC §2.6), as hashes.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// Stores a new key; a name in use is a [`crate::Error::BadRequest`].
    async fn api_key_insert(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes the key with this name or id; false if there is no such active key.
    async fn api_key_revoke(&self, name_or_id: &str, now: i64) -> Result<bool>;
    /// Revokes every active key (lockdown); returns how many.
    async fn api_keys_revoke_all(&self, now: i64) -> Result<u64>;
    async fn api_key_touch(&self, id: &str, now: i64) -> Result<()>;
}

/// A tool call waiting for the person's approval (`tools = { NAME = "ask" }`): what the person
/// is shown to decide on, and the decision. Never the arguments themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: String,
    pub server: String,
    pub tool: String,
    /// Who asks, as the person should read it (agent, surface, user).
    pub asked_by: String,
    pub arguments_bytes: i64,
    /// The audit log's keyed digest of the arguments: matches the call's audit entry.
    pub arguments_digest: String,
    /// Unix milliseconds.
    pub asked_at: i64,
    pub expires_at: i64,
    pub decision: Option<Decision>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Denied,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "approved" => Some(Decision::Approved),
            "denied" => Some(Decision::Denied),
            _ => None,
        }
    }
}

/// Tool calls waiting for approval, shared by every process and instance on the store, so the
/// person can decide from the privacy center or the command line whichever one waits.
#[async_trait]
pub trait ToolApprovals: Send + Sync {
    /// Stores a new waiting call, first dropping rows whose wait ended long ago (a server that
    /// stopped while it waited never deleted its own).
    async fn approval_insert(&self, record: &ApprovalRecord) -> Result<()>;
    async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRecord>>;
    /// Undecided calls still waiting at `now`, oldest first, at most `limit`.
    async fn approval_pending(&self, now: i64, limit: u32) -> Result<Vec<ApprovalRecord>>;
    /// Records the decision if the call is still undecided and waiting at `now`; false if it
    /// is not (decided already, given up, or unknown): the first decision is the one kept.
    async fn approval_decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        now: i64,
    ) -> Result<bool>;
    async fn approval_delete(&self, id: &str) -> Result<()>;
}

/// A backend: every concern above over one database. Each consumer asks for the concern it
/// uses (`Arc<dyn Ledger>`, ...); an `Arc<dyn Store>` converts to any of them.
#[async_trait]
pub trait Store:
    Secrets + Meta + Conversations + Ledger + ApiKeys + DataKeys + RawContent + ToolApprovals
{
    /// Writes whatever the store holds back in memory (queued turns, ledger changes) and
    /// closes its connections: the last thing a graceful stop does with it.
    async fn close(&self);

    /// Wakes when the store may have changed, by this process or another: what the watchers
    /// of flags other processes set (lockdown, forgotten users' keys) wait on, so a server at
    /// rest is not woken by a timer (see `changes`).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Counts another process's change now, where the store can tell without waiting for a
    /// notice (the embedded store reads its marker: `changes::Changes::catch_up`).
    fn catch_up_changes(&self) {}
}

/// The storage traits, for code that calls their methods on an `Arc<dyn Store>`.
pub mod prelude {
    pub use super::{
        ApiKeys, Conversations, DataKeys, Ledger, Meta, RawContent, Secrets, Store, ToolApprovals,
    };
}

/// What in a database is locked by the vault key: read by [`sqlite_snapshot::key_use`] or
/// `backup::postgres`, judged by `backup::keys`. Everything here is ciphertext or a public
/// fingerprint.
#[derive(Default)]
pub struct KeyUse {
    /// The vault's key check value (`meta` `vault.key_check`), when it has one.
    pub check: Option<String>,
    /// The encrypted vault secrets: (name, Fernet token).
    pub secrets: Vec<(String, SecretString)>,
    /// The distinct `kek` fingerprints that wrap the data keys.
    pub keks: Vec<String>,
}

impl KeyUse {
    /// Whether nothing at all depends on the vault key (a fresh database).
    pub fn is_empty(&self) -> bool {
        self.check.is_none() && self.secrets.is_empty() && self.keks.is_empty()
    }
}

/// Seconds since the Unix epoch, the store's timestamp unit.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
