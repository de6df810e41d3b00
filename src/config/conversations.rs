//! The `[conversations]` section (SPEC §2.5): retention, size and context, each checked where
//! it is read (`MAESTRA_CONVERSATION_RETENTION_DAYS` over the file).

use serde::Deserialize;

use super::Lookup;
use super::validate::{self, MAX_CONTEXT_MESSAGES, MAX_MESSAGES, MAX_RETENTION_DAYS};
use crate::error::Result;

const RETENTION_DAYS: &[&str] = &["MAESTRA_CONVERSATION_RETENTION_DAYS"];
const DEFAULT_MAX_MESSAGES: u64 = 10_000;
/// Earlier messages sent upstream with a new one.
const DEFAULT_CONTEXT_MESSAGES: u32 = 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConversationsFile {
    retention_days: Option<u32>,
    max_messages: Option<u64>,
    context_messages: Option<u32>,
}

/// How conversations are kept (SPEC §2.5).
#[derive(Debug, Clone)]
pub struct ConversationsConfig {
    /// Conversations not updated for this many days are deleted; `None` keeps them (the seed's
    /// default: the user controls retention).
    pub retention_days: Option<u32>,
    /// Most messages one conversation may hold.
    pub max_messages: u64,
    /// Earlier messages sent upstream with a new one.
    pub context_messages: u32,
}

/// Reads the `[conversations]` section, naming every setting that is wrong.
pub(super) fn load(e: &Lookup<'_>, file: ConversationsFile) -> Result<ConversationsConfig> {
    let retention_days = e.num(RETENTION_DAYS).and_then(|d| {
        d.or(file.retention_days)
            .map(|d| {
                validate::range(
                    "conversations.retention_days (MAESTRA_CONVERSATION_RETENTION_DAYS)",
                    d,
                    0,
                    MAX_RETENTION_DAYS,
                )
            })
            .transpose()
    });
    let max_messages = validate::range(
        "conversations.max_messages",
        file.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES),
        1,
        MAX_MESSAGES,
    );
    let context_messages = validate::range(
        "conversations.context_messages",
        file.context_messages.unwrap_or(DEFAULT_CONTEXT_MESSAGES),
        0,
        MAX_CONTEXT_MESSAGES,
    );
    super::report(&[
        retention_days.as_ref().err(),
        max_messages.as_ref().err(),
        context_messages.as_ref().err(),
    ])?;
    Ok(ConversationsConfig {
        // 0 days means "keep", as unset does.
        retention_days: retention_days?.filter(|d| *d > 0),
        max_messages: max_messages?,
        context_messages: context_messages?,
    })
}
