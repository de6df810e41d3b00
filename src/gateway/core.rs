//! `POST /api/maestra/core` (the seed's MaestraRequest → MaestraEnvelope) and the legacy
//! `POST /api/maestra/advisor/ask`, both on the same pipeline.
//!
//! Multi-turn: the conversation's earlier messages go upstream with the new one. What is stored
//! is minimised first (secrets redacted, surface file contents dropped), and only once the
//! model has answered, so a failed call stores nothing half.

use crate::cost::ledger::to_usd;
use axum::Extension;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::ApiJson;
use super::pipeline::{self, Caller};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::conversations::model::{now_millis, validate_id, validate_mode};
use crate::error::{Error, Result};
use crate::providers::chat::MAX_MESSAGE_BYTES;
use crate::providers::{ChatMessage, ChatRequest};

#[derive(Debug, Deserialize)]
pub struct MaestraRequest {
    /// Optional with a user's API key (the key's user is the one); required otherwise.
    #[serde(default)]
    pub user_id: Option<String>,
    pub surface_id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    pub message: String,
    #[serde(default)]
    pub mode_hint: Option<String>,
    #[serde(default)]
    pub surface_context: Option<Value>,
}

/// The legacy advisor shape: a `question` (or `message`), everything else optional.
#[derive(Debug, Deserialize)]
pub struct AdvisorRequest {
    #[serde(default, alias = "message")]
    pub question: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub surface_id: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default, alias = "surface_context")]
    pub context: Option<Value>,
}

pub async fn core(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<MaestraRequest>,
) -> Result<axum::Json<Value>> {
    let envelope = handle(&state, &info, req, "core").await?;
    Ok(axum::Json(envelope))
}

pub async fn advisor_ask(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<AdvisorRequest>,
) -> Result<axum::Json<Value>> {
    let question = req
        .question
        .ok_or_else(|| Error::BadRequest("`question` is required".into()))?;
    if let Some(u) = &req.user_id {
        validate_id("user_id", u)?;
    }
    // No user named: the key's own, else the seed's "default".
    let user = super::access::acting_user(&state, &info, req.user_id.as_deref()).await?;
    let core = MaestraRequest {
        user_id: Some(user.unwrap_or_else(|| "default".into())),
        surface_id: req.surface_id.unwrap_or_else(|| "advisor".into()),
        conversation_id: req.conversation_id,
        message: question,
        mode_hint: Some("advisor".into()),
        surface_context: req.context,
    };
    let mut envelope = handle(&state, &info, core, "advisor.ask").await?;
    if let Some(obj) = envelope.as_object_mut() {
        let reply = obj.get("reply").cloned().unwrap_or(Value::Null);
        obj.insert("answer".into(), reply);
    }
    Ok(axum::Json(envelope))
}

async fn handle(
    state: &Shared,
    info: &RequestInfo,
    req: MaestraRequest,
    action: &'static str,
) -> Result<Value> {
    if let Some(u) = &req.user_id {
        validate_id("user_id", u)?;
    }
    validate_id("surface_id", &req.surface_id)?;
    let user_id = super::access::acting_user(state, info, req.user_id.as_deref())
        .await?
        .ok_or_else(|| Error::BadRequest("`user_id` is required".into()))?;
    if req
        .surface_context
        .as_ref()
        .is_some_and(|c| !matches!(c, Value::Object(_) | Value::Null))
    {
        return Err(Error::BadRequest(
            "`surface_context` must be an object".into(),
        ));
    }
    // A conversation named by the caller may have history; a freshly named one cannot.
    let (conversation_id, continued) = match req.conversation_id.as_deref() {
        Some(id) if !id.is_empty() => {
            validate_id("conversation_id", id)?;
            (id.to_string(), true)
        }
        _ => (new_conversation_id(&user_id), false),
    };
    if req.message.trim().is_empty() {
        return Err(Error::BadRequest("`message` must not be empty".into()));
    }
    if req.message.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge(format!(
            "`message` is over {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    if let Some(m) = &req.mode_hint {
        validate_mode(m)?;
    }
    let mode = req.mode_hint.clone().unwrap_or_else(|| "chat".into());

    // Owner and size are checked before the model sees anything: another user's history must
    // never go upstream, and a full conversation must not cost a call it cannot store.
    let limits = &state.config.conversations;
    let context = if continued {
        state
            .store
            .conversation_context(&conversation_id, limits.context_messages)
            .await?
    } else {
        None
    };
    let history = match context {
        Some(c) if c.owner != user_id => {
            return Err(Error::NotFound(format!(
                "no conversation {conversation_id:?} for this user"
            )));
        }
        Some(c) if c.message_count + 2 > limits.max_messages => {
            return Err(Error::TooLarge(format!(
                "conversation {conversation_id:?} holds the maximum of {} messages; start a new one",
                limits.max_messages
            )));
        }
        Some(c) => c.recent,
        None => Vec::new(),
    };

    let mut messages: Vec<ChatMessage> = Vec::with_capacity(history.len() + 2);
    if let Some(ctx) = req.surface_context.as_ref().and_then(context_prompt) {
        messages.push(ChatMessage::text("system", ctx));
    }
    messages.extend(
        history
            .into_iter()
            .map(|m| ChatMessage::text(&m.role, m.content)),
    );
    messages.push(ChatMessage::text("user", req.message.clone()));
    let route = state.providers.default_route();
    let chat_req = ChatRequest::new(route.model.clone(), messages);
    let caller = Caller {
        info: info.clone(),
        user_id: Some(user_id.clone()),
        surface_id: Some(req.surface_id.clone()),
        action,
    };
    let answer = pipeline::complete(state, &caller, route, &chat_req).await?;
    let asked = pipeline::store::Asked {
        message: &req.message,
        surface_id: &req.surface_id,
        surface_context: req.surface_context.as_ref(),
    };
    pipeline::store::turn(
        state,
        &asked,
        &user_id,
        &conversation_id,
        !continued,
        &mode,
        &answer,
    )
    .await?;

    let usage = answer.completion.usage;
    Ok(json!({
        "reply": answer.completion.text(),
        "mode": mode,
        "conversation_id": conversation_id,
        "source": answer.route.provider.source(),
        "version": env!("CARGO_PKG_VERSION"),
        "artifacts": [],
        "actions": [],
        "meta": {
            "latency_ms": answer.latency_ms,
            "model": answer.route.model,
            "tokens": usage.total(),
            "cost_usd": to_usd(answer.charged),
        }
    }))
}

/// What of a surface's context the model is shown: the file it came from and its content.
/// (Only the path is ever stored.)
fn context_prompt(ctx: &Value) -> Option<String> {
    let obj = ctx.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    let content = text("file_content")
        .or_else(|| text("selection"))
        .or_else(|| text("content"))?;
    let path = text("file_path")
        .or_else(|| text("path"))
        .unwrap_or("(unnamed)");
    Some(format!(
        "The user is looking at {path}. Its content:\n{content}"
    ))
}

/// `conv_YYYY-MM-DD_<user prefix>_<random>`, the seed's shape.
fn new_conversation_id(user: &str) -> String {
    let date = crate::conversations::model::format_millis(now_millis());
    let who: String = user
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "conv_{}_{}_{}",
        date.get(..10).unwrap_or("0000-00-00"),
        who,
        rand.get(..12).unwrap_or(&rand)
    )
}
