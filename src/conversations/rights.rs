//! Data rights (SPEC §2.5): export, delete, forget, retention and import, shared by the HTTP
//! API and the command line. Every action is audited (category `data`) with counts and ids,
//! never content. Deletions end with [`Store::scrub`], so the content leaves the files.

use std::path::Path;

use serde_json::{Value, json};

use super::model::{Conversation, now_millis, validate_id};
use super::redact::redact;
use crate::error::{Error, Result};
use crate::privsec::audit::{AuditLog, Category, Event, Outcome};
use crate::store::Store;

/// Conversations read per page when a whole user is exported.
const PAGE: u32 = 200;
/// Largest conversation file `import` reads.
const MAX_IMPORT_FILE: u64 = 64 * 1024 * 1024;

/// Who performed a data action, for the audit entry.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// `api` or `cli`.
    pub via: &'static str,
}

impl Actor {
    pub fn cli() -> Actor {
        Actor {
            via: "cli",
            ..Actor::default()
        }
    }
}

fn event(actor: &Actor, action: &str, user: Option<&str>) -> Event {
    let mut e = Event::new(Category::Data, "conversations", action, Outcome::Success)
        .detail("via", actor.via);
    if let Some(id) = &actor.request_id {
        e = e.request_id(id);
    }
    if let Some(ip) = &actor.ip {
        e = e.ip(ip);
    }
    if let Some(u) = user {
        e = e.user(u);
    }
    e
}

pub async fn export_conversation(
    store: &dyn Store,
    audit: &AuditLog,
    id: &str,
    actor: &Actor,
) -> Result<Conversation> {
    validate_id("conversation id", id)?;
    let c = store
        .conversation_get(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id:?}")))?;
    audit
        .record(event(actor, "export", Some(&c.owner)).detail("conversation_id", id))
        .await?;
    Ok(c)
}

/// Everything of a user: `{user_id, exported_at, conversations: [...]}`.
pub async fn export_user(
    store: &dyn Store,
    audit: &AuditLog,
    user: &str,
    actor: &Actor,
) -> Result<Value> {
    export_user_observed(store, audit, user, actor, &|_, _| {}).await
}

/// [`export_user`], telling `progress` how many of the user's conversations are read, so a
/// large export can show where it is (the privacy center runs it as a job).
pub async fn export_user_observed(
    store: &dyn Store,
    audit: &AuditLog,
    user: &str,
    actor: &Actor,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<Value> {
    validate_id("user id", user)?;
    // The ids first (summaries are small), so the total is known before the long part.
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.conversation_list(Some(user), PAGE, offset).await?;
        ids.extend(page.iter().map(|s| s.id.clone()));
        if page.len() < PAGE as usize {
            break;
        }
        offset += PAGE;
    }
    let mut conversations = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        progress(i, ids.len());
        if let Some(c) = store.conversation_get(id).await? {
            conversations.push(c);
        }
    }
    progress(ids.len(), ids.len());
    audit
        .record(
            event(actor, "export_user", Some(user)).detail("conversations", conversations.len()),
        )
        .await?;
    Ok(json!({
        "user_id": user,
        "exported_at": super::model::format_millis(now_millis()),
        "conversations": conversations,
    }))
}

pub async fn delete_conversation(
    store: &dyn Store,
    audit: &AuditLog,
    id: &str,
    actor: &Actor,
) -> Result<()> {
    validate_id("conversation id", id)?;
    let owner = store
        .conversation_summary(id)
        .await?
        .map(|s| s.owner)
        .ok_or_else(|| Error::NotFound(format!("no conversation {id:?}")))?;
    store.conversation_delete(id).await?;
    store.scrub().await?;
    audit
        .record(event(actor, "delete", Some(&owner)).detail("conversation_id", id))
        .await
}

/// The right to be forgotten: the user's data key destroyed first (crypto-shredding: from
/// that commit on, their content is unreadable wherever it was copied, backups included), and
/// audited; then every conversation of `user` deleted and gone from the files. The callers
/// (command line, API) then sweep their home's scratch (`Home::sweep_scratch`): what a killed
/// backup left there goes with the key.
pub async fn forget_user(
    store: &dyn Store,
    audit: &AuditLog,
    user: &str,
    actor: &Actor,
) -> Result<u64> {
    validate_id("user id", user)?;
    let had_key = store.data_key_delete(user).await?;
    audit
        .record(event(actor, "forget_user.key_destroyed", Some(user)).detail("had_key", had_key))
        .await?;
    let n = store.conversations_delete_owner(user).await?;
    // A write that raced the first destroy may have made the user a new key before its turn
    // was deleted with the rest: that key locks nothing now, so it goes too.
    store.data_key_delete(user).await?;
    store.scrub().await?;
    audit
        .record(event(actor, "forget_user", Some(user)).detail("conversations", n))
        .await?;
    Ok(n)
}

/// Deletes conversations not updated for `days` days.
pub async fn apply_retention(
    store: &dyn Store,
    audit: &AuditLog,
    days: u32,
    actor: &Actor,
) -> Result<u64> {
    let cutoff = now_millis() - i64::from(days) * 86_400_000;
    let n = store.conversations_delete_before(cutoff).await?;
    if n > 0 {
        store.scrub().await?;
        audit
            .record(
                event(actor, "retention", None)
                    .detail("conversations", n)
                    .detail("retention_days", days),
            )
            .await?;
    }
    Ok(n)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub skipped_existing: u64,
    /// Days of spend read from `maestra_cost_tracker.json`.
    pub cost_days: u64,
    /// Files that could not be read, with the reason (file name and error only).
    pub failed: Vec<String>,
}

/// Reads the seed system's `DIR/conversations/*.json`. Each file is checked whole before it is
/// stored, messages are minimised like new ones, and an id already present is left alone.
pub async fn import_dir(
    store: &dyn Store,
    audit: &AuditLog,
    dir: &Path,
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<ImportReport> {
    let conv_dir = dir.join("conversations");
    let tracker = dir.join("maestra_cost_tracker.json");
    if !conv_dir.is_dir() && !tracker.is_file() {
        return Err(Error::NotFound(format!(
            "{} has neither conversations/ nor maestra_cost_tracker.json",
            dir.display()
        )));
    }
    let mut files: Vec<_> = match std::fs::read_dir(&conv_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut report = ImportReport::default();
    let total = files.len();
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_conversation(path) {
            Ok(c) => {
                if store.conversation_import(&c).await? {
                    report.imported += 1;
                } else {
                    report.skipped_existing += 1;
                }
            }
            Err(e) => report.failed.push(format!("{name}: {e}")),
        }
        progress(i + 1, total)?;
    }
    if tracker.is_file() {
        report.cost_days = import_cost_tracker(store, &tracker).await?;
    }
    audit
        .record(
            event(&Actor::cli(), "import", None)
                .detail("cost_days", report.cost_days)
                .detail("from", dir.display().to_string())
                .detail("imported", report.imported)
                .detail("skipped_existing", report.skipped_existing)
                .detail("failed", report.failed.len()),
        )
        .await?;
    Ok(report)
}

/// The seed's `{"YYYY-MM-DD": usd, ..., "monthly_total_YYYY-MM": usd}`: each day becomes a
/// settled charge (once: a second import changes nothing). Monthly totals are sums of the
/// days, so they are not imported again.
async fn import_cost_tracker(store: &dyn Store, path: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("cannot read the cost tracker", e))?;
    let map: serde_json::Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        Error::BadRequest(format!(
            "maestra_cost_tracker.json is not a JSON object: {e}"
        ))
        .because(e)
    })?;
    // Every entry is checked before anything is stored: a bad file imports nothing.
    let mut entries = Vec::new();
    for (key, value) in &map {
        if key.starts_with("monthly_total_") {
            continue;
        }
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let valid_day = key.len() == 10 && time::Date::parse(key, fmt).is_ok();
        let micros = value.as_f64().and_then(crate::cost::ledger::checked_micros);
        let (true, Some(micros)) = (valid_day, micros) else {
            return Err(Error::BadRequest(format!(
                "maestra_cost_tracker.json: {key:?} is not a day with an amount from 0 to {} USD",
                crate::cost::ledger::MAX_MICROS / 1_000_000
            )));
        };
        entries.push((key, micros));
    }
    let mut days = 0;
    for (day, micros) in entries {
        if store.cost_import(day, micros, now_millis()).await? {
            days += 1;
        }
    }
    Ok(days)
}

fn read_conversation(path: &Path) -> Result<Conversation> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot stat", e))?;
    if meta.len() > MAX_IMPORT_FILE {
        return Err(Error::TooLarge(format!("over {MAX_IMPORT_FILE} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", e))?;
    let mut c: Conversation = serde_json::from_str(&text)
        .map_err(|e| Error::BadRequest(format!("not a conversation: {e}")).because(e))?;
    validate_id("conversation id", &c.id)?;
    validate_id("owner", &c.owner)?;
    for m in &mut c.messages {
        m.content = redact(&m.content);
    }
    c.meta.message_count = c.messages.len() as u64;
    Ok(c)
}
