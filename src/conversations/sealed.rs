//! Conversations encrypted at rest, per user (issue 18): a `Store` that wraps another, seals
//! conversation content on the way in and opens it on the way out, and forwards every other
//! concern untouched. Both backends get it alike; neither sees plaintext content.
//!
//! Sealed, each under its owner's data key with its place as associated data
//! ([`super::cipher`]): a conversation's topic, tags and artifacts; a message's content and
//! meta. Plain, because listing, limits, retention and routing need them and they are not what
//! a user wrote: ids, owner, timestamps, counts, status, a message's role, surface and mode,
//! and the conversation's surfaces (client names such as `cli` or `web`, set by the server,
//! merged by the store's SQL). Tags and artifacts that are empty (a conversation made by chat
//! turns) are stored as the plain empty list the store writes by default.
//!
//! How sealed values fit the typed columns: topic and content hold the sealed text itself;
//! meta holds it as a JSON string; tags and artifacts hold a one-element list with it. The
//! sealed text is always the JSON of the whole value, so the stored shapes stay valid JSON.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::Value;

use super::cipher::{Column, Place, is_sealed, open_stored, seal};
use super::keys::UserKeys;
use super::model::{Conversation, Message, Summary};
use crate::cost::ledger::{
    Charge, Limit, Micros, Reservation, ReserveOutcome, Scope, Tokens, Usage,
};
use crate::error::{Error, Result};
use crate::privsec::datakeys::DataKey;
use crate::store::{
    ApiKeyRecord, ApiKeys, ApprovalRecord, Context, Conversations, DataKeyRecord, DataKeys,
    Decision, Ledger, Meta, RawContent, RawConversation, RawMessage, SecretInfo, SecretRecord,
    Secrets, Store, ToolApprovals, Turn,
};

/// The decorator: `inner` holds only sealed content.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<UserKeys>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, keys: Arc<UserKeys>) -> SealedStore {
        SealedStore { inner, keys }
    }
}

fn place<'a>(owner: &'a str, conversation: &'a str, message: &'a str, column: Column) -> Place<'a> {
    Place {
        owner,
        conversation,
        message,
        column,
    }
}

fn json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Store(format!("cannot encode {what} as JSON")).because(e))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        // The parser's error is dropped on purpose: it may quote the decrypted text.
        .map_err(|_| Error::Store(format!("decrypted {what} is not valid JSON")))
}

fn seal_message(key: &DataKey, owner: &str, conversation: &str, m: &Message) -> Result<Message> {
    let at = |column| place(owner, conversation, &m.id, column);
    // Field by field rather than `..m.clone()`: the plaintext is not copied only to be
    // replaced (this runs for every message of every turn).
    Ok(Message {
        id: m.id.clone(),
        role: m.role.clone(),
        content: seal(key, &at(Column::Content), &m.content)?,
        surface: m.surface.clone(),
        mode: m.mode.clone(),
        timestamp: m.timestamp,
        meta: if meta_is_empty(&m.meta) {
            m.meta.clone()
        } else {
            Value::String(seal(
                key,
                &at(Column::Meta),
                &json("message meta", &m.meta)?,
            )?)
        },
    })
}

/// An absent or empty `meta` (`null`, `{}`) stays as it is, like an empty list: it holds
/// nothing to hide but its absence, and a user's message usually has none, so a context read
/// opens one value per message instead of two.
pub(super) fn meta_is_empty(meta: &Value) -> bool {
    match meta {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn open_message(
    key: Option<&DataKey>,
    owner: &str,
    conversation: &str,
    m: Message,
) -> Result<Message> {
    let Message {
        id,
        role,
        content,
        surface,
        mode,
        timestamp,
        meta,
    } = m;
    let at = |column| place(owner, conversation, &id, column);
    let content = open_stored(key, &at(Column::Content), content)?;
    let meta = match meta {
        Value::String(s) if is_sealed(&s) => {
            parse("message meta", &open_stored(key, &at(Column::Meta), s)?)?
        }
        other => other,
    };
    Ok(Message {
        id,
        role,
        content,
        surface,
        mode,
        timestamp,
        meta,
    })
}

/// A list sealed whole into one element (empty stays empty: nothing to hide but its absence).
fn seal_list<T: serde::Serialize>(
    key: &DataKey,
    at: &Place<'_>,
    list: &[T],
    wrap: impl Fn(String) -> T,
) -> Result<Vec<T>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![wrap(seal(key, at, &json("list", list)?)?)])
}

fn open_list<T: serde::de::DeserializeOwned>(
    key: Option<&DataKey>,
    at: &Place<'_>,
    list: Vec<T>,
    sealed: impl Fn(&T) -> Option<&str>,
) -> Result<Vec<T>> {
    match list.as_slice() {
        [one] => match sealed(one) {
            Some(text) if is_sealed(text) => parse("list", &open_stored(key, at, text.to_owned())?),
            _ => Ok(list),
        },
        _ => Ok(list),
    }
}

fn seal_conversation(key: &DataKey, c: &Conversation) -> Result<Conversation> {
    let (owner, id) = (c.owner.as_str(), c.id.as_str());
    Ok(Conversation {
        topic: seal(key, &place(owner, id, "", Column::Topic), &c.topic)?,
        tags: seal_list(key, &place(owner, id, "", Column::Tags), &c.tags, |s| s)?,
        artifacts: seal_list(
            key,
            &place(owner, id, "", Column::Artifacts),
            &c.artifacts,
            Value::String,
        )?,
        messages: c
            .messages
            .iter()
            .map(|m| seal_message(key, owner, id, m))
            .collect::<Result<_>>()?,
        id: c.id.clone(),
        owner: c.owner.clone(),
        surfaces: c.surfaces.clone(),
        meta: c.meta.clone(),
    })
}

fn open_conversation(key: Option<&DataKey>, c: Conversation) -> Result<Conversation> {
    let (owner, id) = (c.owner.clone(), c.id.clone());
    let at = |column| place(&owner, &id, "", column);
    Ok(Conversation {
        topic: open_stored(key, &at(Column::Topic), c.topic)?,
        tags: open_list(key, &at(Column::Tags), c.tags, |s| Some(s.as_str()))?,
        artifacts: open_list(key, &at(Column::Artifacts), c.artifacts, Value::as_str)?,
        messages: c
            .messages
            .into_iter()
            .map(|m| open_message(key, &owner, &id, m))
            .collect::<Result<_>>()?,
        ..c
    })
}

impl SealedStore {
    fn open_summary(&self, key: Option<&DataKey>, s: Summary) -> Result<Summary> {
        let topic = open_stored(
            key,
            &place(&s.owner, &s.id, "", Column::Topic),
            s.topic.clone(),
        )?;
        Ok(Summary { topic, ..s })
    }
}

#[async_trait]
impl Conversations for SealedStore {
    async fn conversation_append(&self, turn: &Turn<'_>) -> Result<()> {
        let _writing = self.keys.gate(turn.owner).read().await;
        let key = self.keys.for_write(turn.owner).await?;
        let (owner, id) = (turn.owner, turn.conversation_id);
        let topic = seal(&key, &place(owner, id, "", Column::Topic), turn.topic)?;
        let messages: Vec<Message> = turn
            .messages
            .iter()
            .map(|m| seal_message(&key, owner, id, m))
            .collect::<Result<_>>()?;
        let sealed = Turn {
            topic: &topic,
            messages: &messages,
            ..turn.clone()
        };
        self.inner.conversation_append(&sealed).await
    }

    async fn conversation_get(&self, id: &str) -> Result<Option<Conversation>> {
        let Some(c) = self.inner.conversation_get(id).await? else {
            return Ok(None);
        };
        let key = self.keys.for_read(&c.owner).await?;
        open_conversation(key.as_deref(), c).map(Some)
    }

    async fn conversation_summary(&self, id: &str) -> Result<Option<Summary>> {
        let Some(s) = self.inner.conversation_summary(id).await? else {
            return Ok(None);
        };
        let key = self.keys.for_read(&s.owner).await?;
        self.open_summary(key.as_deref(), s).map(Some)
    }

    async fn conversation_context(&self, id: &str, limit: u32) -> Result<Option<Context>> {
        let Some(c) = self.inner.conversation_context(id, limit).await? else {
            return Ok(None);
        };
        let key = self.keys.for_read(&c.owner).await?;
        let recent = c
            .recent
            .into_iter()
            .map(|m| open_message(key.as_deref(), &c.owner, id, m))
            .collect::<Result<_>>()?;
        Ok(Some(Context { recent, ..c }))
    }

    /// A conversation whose topic cannot be opened (its owner was forgotten, and the row came
    /// back, say from an old backup) is listed with an empty topic rather than failing the
    /// whole list; reading it fails.
    async fn conversation_list(
        &self,
        owner: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Summary>> {
        let list = self.inner.conversation_list(owner, limit, offset).await?;
        let mut keys: HashMap<String, Option<Arc<DataKey>>> = HashMap::new();
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            if !keys.contains_key(&s.owner) {
                let key = self.keys.for_read(&s.owner).await?;
                keys.insert(s.owner.clone(), key);
            }
            let key = keys.get(&s.owner).and_then(Option::as_deref);
            let id = s.id.clone();
            match self.open_summary(key, s.clone()) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(conversation = %id, error = %e, "listed without its topic");
                    out.push(Summary {
                        topic: String::new(),
                        ..s
                    });
                }
            }
        }
        Ok(out)
    }

    async fn conversation_delete(&self, id: &str) -> Result<bool> {
        self.inner.conversation_delete(id).await
    }

    /// Waits for the owner's writes in flight (their turns are then deleted too) and holds
    /// new ones until the rows are gone.
    async fn conversations_delete_owner(&self, owner: &str) -> Result<u64> {
        let _forgetting = self.keys.gate(owner).write().await;
        self.inner.conversations_delete_owner(owner).await
    }

    async fn conversations_delete_before(&self, updated_before_ms: i64) -> Result<u64> {
        self.inner
            .conversations_delete_before(updated_before_ms)
            .await
    }

    async fn conversation_import(&self, conversation: &Conversation) -> Result<bool> {
        let _writing = self.keys.gate(&conversation.owner).read().await;
        let key = self.keys.for_write(&conversation.owner).await?;
        let sealed = seal_conversation(&key, conversation)?;
        self.inner.conversation_import(&sealed).await
    }

    async fn scrub(&self) -> Result<()> {
        self.inner.scrub().await
    }
}

/// Destroying a key goes through the cache, so no request goes on using it.
#[async_trait]
impl DataKeys for SealedStore {
    async fn data_key_get(&self, user: &str) -> Result<Option<DataKeyRecord>> {
        self.inner.data_key_get(user).await
    }
    async fn data_key_insert(&self, record: &DataKeyRecord) -> Result<DataKeyRecord> {
        self.inner.data_key_insert(record).await
    }
    async fn data_key_delete(&self, user: &str) -> Result<bool> {
        self.keys.destroy(user).await
    }
    async fn data_key_list(&self) -> Result<Vec<DataKeyRecord>> {
        self.inner.data_key_list().await
    }
    async fn data_key_swap(
        &self,
        user: &str,
        expected: &str,
        wrapped: &str,
        kek: &str,
    ) -> Result<bool> {
        self.inner.data_key_swap(user, expected, wrapped, kek).await
    }
}

#[async_trait]
impl RawContent for SealedStore {
    async fn raw_conversations(&self, after: &str, limit: u32) -> Result<Vec<RawConversation>> {
        self.inner.raw_conversations(after, limit).await
    }
    async fn raw_messages(&self, after: (&str, i64), limit: u32) -> Result<Vec<RawMessage>> {
        self.inner.raw_messages(after, limit).await
    }
    async fn raw_conversations_rewrite(
        &self,
        rows: &[(RawConversation, RawConversation)],
    ) -> Result<u64> {
        self.inner.raw_conversations_rewrite(rows).await
    }
    async fn raw_messages_rewrite(&self, rows: &[(RawMessage, RawMessage)]) -> Result<u64> {
        self.inner.raw_messages_rewrite(rows).await
    }
    async fn raw_counts(&self) -> Result<(u64, u64)> {
        self.inner.raw_counts().await
    }
}

#[async_trait]
impl Secrets for SealedStore {
    async fn secret_put(&self, record: &SecretRecord) -> Result<()> {
        self.inner.secret_put(record).await
    }
    async fn secret_get(&self, name: &str) -> Result<Option<SecretRecord>> {
        self.inner.secret_get(name).await
    }
    async fn secret_list(&self) -> Result<Vec<SecretInfo>> {
        self.inner.secret_list().await
    }
    async fn secret_delete(&self, name: &str) -> Result<bool> {
        self.inner.secret_delete(name).await
    }
    async fn secret_swap(
        &self,
        name: &str,
        expected: &SecretString,
        new_value: &SecretString,
        encrypted: bool,
    ) -> Result<bool> {
        self.inner
            .secret_swap(name, expected, new_value, encrypted)
            .await
    }
}

#[async_trait]
impl Meta for SealedStore {
    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.inner.meta_get(key).await
    }
    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.inner.meta_set(key, value).await
    }
    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        self.inner.meta_set_if_absent(key, value).await
    }
    async fn meta_delete(&self, key: &str) -> Result<()> {
        self.inner.meta_delete(key).await
    }
}

#[async_trait]
impl Ledger for SealedStore {
    async fn cost_reserve(&self, r: &Reservation<'_>, limits: &[Limit]) -> Result<ReserveOutcome> {
        self.inner.cost_reserve(r, limits).await
    }
    async fn cost_recover(&self) -> Result<()> {
        self.inner.cost_recover().await
    }
    async fn cost_settle(&self, id: i64, spent: Micros, tokens: Tokens) -> Result<()> {
        self.inner.cost_settle(id, spent, tokens).await
    }
    async fn cost_release(&self, id: i64) -> Result<()> {
        self.inner.cost_release(id).await
    }
    async fn cost_usage(&self, scope: &Scope, period: &str) -> Result<Usage> {
        self.inner.cost_usage(scope, period).await
    }
    async fn cost_charges(&self, since_day: &str) -> Result<Vec<Charge>> {
        self.inner.cost_charges(since_day).await
    }
    async fn cost_import(&self, day: &str, spent: Micros, now_ms: i64) -> Result<bool> {
        self.inner.cost_import(day, spent, now_ms).await
    }
}

#[async_trait]
impl ApiKeys for SealedStore {
    async fn api_key_insert(&self, key: &ApiKeyRecord) -> Result<()> {
        self.inner.api_key_insert(key).await
    }
    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.inner.api_key_get(id).await
    }
    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        self.inner.api_key_list().await
    }
    async fn api_key_revoke(&self, name_or_id: &str, now: i64) -> Result<bool> {
        self.inner.api_key_revoke(name_or_id, now).await
    }
    async fn api_keys_revoke_all(&self, now: i64) -> Result<u64> {
        self.inner.api_keys_revoke_all(now).await
    }
    async fn api_key_touch(&self, id: &str, now: i64) -> Result<()> {
        self.inner.api_key_touch(id, now).await
    }
}

#[async_trait]
impl ToolApprovals for SealedStore {
    async fn approval_insert(&self, record: &ApprovalRecord) -> Result<()> {
        self.inner.approval_insert(record).await
    }
    async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        self.inner.approval_get(id).await
    }
    async fn approval_pending(&self, now: i64, limit: u32) -> Result<Vec<ApprovalRecord>> {
        self.inner.approval_pending(now, limit).await
    }
    async fn approval_decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        self.inner.approval_decide(id, decision, by, now).await
    }
    async fn approval_delete(&self, id: &str) -> Result<()> {
        self.inner.approval_delete(id).await
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn close(&self) {
        self.inner.close().await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes()
    }

    fn catch_up_changes(&self) {
        self.inner.catch_up_changes();
    }
}
