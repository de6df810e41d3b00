//! Sealing a database written before conversations were encrypted (issue 18), at start.
//!
//! Rows are read in key order, a batch at a time, and each batch is rewritten in one
//! transaction, only where a row still holds what was read (another process may be writing).
//! A value is already sealed when it has the sealed prefix *and* opens in its place under
//! its owner's key; anything else is plaintext (a message that happened to start with `mx1:`
//! included): after a crash, the next start finds the rows still plaintext and goes on from
//! there, so the work is resumable without a cursor.
//! When every row is sealed the store is scrubbed (write-ahead log checkpointed, PostgreSQL
//! tables vacuumed), so the plaintext leaves the files, and a marker in `meta` saves later
//! starts the scan.

use super::cipher::{Column, Place, is_sealed, open, seal};
use super::keys::UserKeys;
use crate::error::{Error, Result};
use crate::privsec::datakeys::DataKey;
use crate::store::{RawConversation, RawMessage, Store};
use std::sync::Arc;

/// Meta key set once every row is sealed.
pub const DONE: &str = "conversations.sealed";
const DONE_VALUE: &str = "mx1";
/// Set before the first plaintext row is rewritten and cleared with [`DONE`]: a run that
/// finds it was interrupted after rewriting, so it scrubs even with nothing left to rewrite
/// (the old plaintext versions may still sit in free pages, the WAL or dead tuples).
const STARTED: &str = "conversations.sealing";
/// Rows read and rewritten per transaction.
pub const BATCH: u32 = 500;

/// What the migration did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub conversations: u64,
    pub messages: u64,
    /// Found already done by an earlier start.
    pub already_done: bool,
}

/// Called with (rows looked at, rows in the database) after each batch; an error stops the
/// migration there (how tests simulate a crash).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) -> Result<()> + Send);

/// Progress for a server start: a log line every ten batches, and at the end of a big run.
pub fn log_progress() -> impl FnMut(u64, u64) -> Result<()> + Send {
    let mut batches = 0u64;
    move |done, total| {
        batches += 1;
        if batches.is_multiple_of(10) || (done == total && batches >= 10) {
            tracing::info!(done, total, "encrypting plaintext conversations");
        }
        Ok(())
    }
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Store("cannot encode a sealed value".into()).because(e))
}

/// A stored `meta` that the sealed store leaves plain (see `sealed::meta_is_empty`).
fn empty_meta(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| super::sealed::meta_is_empty(&v))
}

/// Whether `text` is a value sealed for `at` under `key` (an earlier, interrupted run did it),
/// not plaintext that merely starts like one.
fn sealed_here(key: &DataKey, at: &Place<'_>, text: &str) -> bool {
    is_sealed(text) && open(key, at, text).is_ok()
}

/// A text column sealed, unless it already is.
fn seal_text(key: &DataKey, at: &Place<'_>, text: &str) -> Result<String> {
    match sealed_here(key, at, text) {
        true => Ok(text.to_owned()),
        false => seal(key, at, text),
    }
}

/// A JSON column (`meta`) sealed as a JSON string, unless it already is or is empty.
fn seal_json_text(key: &DataKey, at: &Place<'_>, text: &str) -> Result<String> {
    let sealed = serde_json::from_str::<String>(text).is_ok_and(|v| sealed_here(key, at, &v));
    match sealed || empty_meta(text) {
        true => Ok(text.to_owned()),
        false => json(&seal(key, at, text)?),
    }
}

/// A list column (JSON text) sealed as a one-element list; the empty list stays as it is.
fn seal_list_text(key: &DataKey, at: &Place<'_>, text: &str) -> Result<String> {
    let sealed =
        serde_json::from_str::<[String; 1]>(text).is_ok_and(|[v]| sealed_here(key, at, &v));
    if text == "[]" || sealed {
        return Ok(text.to_owned());
    }
    json(&[seal(key, at, text)?])
}

/// The key to seal `owner`'s row with: theirs if they have one; a new one only if the row holds
/// something that is not sealed at all. `None`: the owner was forgotten (by another process,
/// mid-migration) and the row is sealed under the destroyed key — left as it is, unreadable,
/// rather than taken for plaintext and sealed again under a key made for a forgotten user.
async fn key_for(keys: &UserKeys, owner: &str, columns: &[&str]) -> Result<Option<Arc<DataKey>>> {
    if let Some(key) = keys.for_read(owner).await? {
        return Ok(Some(key));
    }
    let plain = |text: &&str| {
        let inner = serde_json::from_str::<String>(text)
            .ok()
            .or_else(|| serde_json::from_str::<[String; 1]>(text).ok().map(|[v]| v));
        !is_sealed(inner.as_deref().unwrap_or(text)) && *text != "[]" && !empty_meta(text)
    };
    match columns.iter().any(plain) {
        true => keys.for_write(owner).await.map(Some),
        false => Ok(None),
    }
}

/// Seals every plaintext row of `store` (the undecorated one), unless an earlier start did.
pub async fn seal_plaintext(
    store: &dyn Store,
    keys: &UserKeys,
    progress: Progress<'_>,
) -> Result<Sealed> {
    if store.meta_get(DONE).await?.as_deref() == Some(DONE_VALUE) {
        return Ok(Sealed {
            already_done: true,
            ..Sealed::default()
        });
    }
    let (conversations, messages) = store.raw_counts().await?;
    let total = conversations + messages;
    let mut report = Sealed::default();
    let mut seen = 0;

    // Set once, before the first rewrite (see `STARTED`).
    let mut started = false;
    let mut after = String::new();
    loop {
        let rows = store.raw_conversations(&after, BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        seen += rows.len() as u64;
        let mut pairs = Vec::with_capacity(rows.len());
        for old in rows {
            let columns = [old.topic.as_str(), &old.tags, &old.artifacts];
            let Some(key) = key_for(keys, &old.owner, &columns).await? else {
                continue;
            };
            let at = |column| Place {
                owner: &old.owner,
                conversation: &old.id,
                message: "",
                column,
            };
            let new = RawConversation {
                topic: seal_text(&key, &at(Column::Topic), &old.topic)?,
                tags: seal_list_text(&key, &at(Column::Tags), &old.tags)?,
                artifacts: seal_list_text(&key, &at(Column::Artifacts), &old.artifacts)?,
                ..old.clone()
            };
            if new != old {
                pairs.push((old, new));
            }
        }
        if !pairs.is_empty() && !started {
            store.meta_set(STARTED, DONE_VALUE).await?;
            started = true;
        }
        report.conversations += store.raw_conversations_rewrite(&pairs).await?;
        progress(seen, total)?;
    }

    let mut after = (String::new(), i64::MIN);
    loop {
        let rows = store.raw_messages((&after.0, after.1), BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = (last.conversation_id.clone(), last.seq);
        seen += rows.len() as u64;
        let mut pairs = Vec::with_capacity(rows.len());
        for old in rows {
            let columns = [old.content.as_str(), &old.meta];
            let Some(key) = key_for(keys, &old.owner, &columns).await? else {
                continue;
            };
            let at = |column| Place {
                owner: &old.owner,
                conversation: &old.conversation_id,
                message: &old.id,
                column,
            };
            let new = RawMessage {
                content: seal_text(&key, &at(Column::Content), &old.content)?,
                meta: seal_json_text(&key, &at(Column::Meta), &old.meta)?,
                ..old.clone()
            };
            if new != old {
                pairs.push((old, new));
            }
        }
        if !pairs.is_empty() && !started {
            store.meta_set(STARTED, DONE_VALUE).await?;
            started = true;
        }
        report.messages += store.raw_messages_rewrite(&pairs).await?;
        progress(seen.min(total), total)?;
    }

    let interrupted = store.meta_get(STARTED).await?.is_some();
    if report.conversations + report.messages > 0 || interrupted {
        tracing::info!(
            conversations = report.conversations,
            messages = report.messages,
            "plaintext conversation content encrypted; scrubbing the database files"
        );
        store.scrub().await?;
    }
    store.meta_set(DONE, DONE_VALUE).await?;
    store.meta_delete(STARTED).await?;
    Ok(report)
}
