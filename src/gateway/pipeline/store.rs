//! Stage 6: the turn (the user's message and the answer, both redacted) written to its
//! conversation, with the context minimised and the ledger's charge beside the answer.

use serde_json::json;

use super::call::Answer;
use crate::conversations::model::{Message, new_message_id, now_millis};
use crate::conversations::redact::{minimise_context, redact};
use crate::cost::ledger::to_usd;
use crate::error::Result;
use crate::gateway::state::AppState;
use crate::store::Turn;

/// What the person asked, as the turn stores it: the stage takes these from its caller (the
/// core route) rather than importing the caller's request type.
pub struct Asked<'a> {
    pub message: &'a str,
    pub surface_id: &'a str,
    pub surface_context: Option<&'a serde_json::Value>,
}

pub async fn turn(
    state: &AppState,
    req: &Asked<'_>,
    owner: &str,
    conversation_id: &str,
    opens: bool,
    mode: &str,
    answer: &Answer,
) -> Result<()> {
    let now = now_millis();
    let usage = answer.completion.usage;
    let mut user_meta = json!({});
    if let Some(ctx) = req.surface_context.and_then(minimise_context) {
        user_meta["surface_context"] = ctx;
    }
    let messages = [
        Message {
            id: new_message_id(),
            role: "user".into(),
            content: redact(req.message),
            surface: req.surface_id.to_string(),
            mode: mode.to_string(),
            timestamp: now,
            meta: user_meta,
        },
        Message {
            id: new_message_id(),
            role: "assistant".into(),
            content: redact(answer.completion.text()),
            surface: req.surface_id.to_string(),
            mode: mode.to_string(),
            timestamp: now,
            meta: json!({
                "model": answer.route.model,
                "source": answer.route.provider.source(),
                "tokens": usage.total(),
                "latency_ms": answer.latency_ms,
                "cost_usd": to_usd(answer.charged),
            }),
        },
    ];
    let topic: String = redact(req.message).chars().take(80).collect();
    state
        .store
        .conversation_append(&Turn {
            conversation_id,
            owner,
            topic: topic.trim(),
            surface: req.surface_id,
            messages: &messages,
            max_messages: state.config.conversations.max_messages,
            opens,
        })
        .await
}
