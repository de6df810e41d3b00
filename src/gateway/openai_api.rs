//! OpenAI-compatible `POST /v1/chat/completions` (plain and `stream: true` as server-sent
//! events) and `GET /v1/models`, so any OpenAI client works through Maestra unchanged.
//!
//! These calls are stateless like OpenAI's own: the client sends the history, nothing is
//! stored, and the call is audited without its content.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::edge::ApiJson;
use super::pipeline::{self, Caller, Relayed};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::cost::ledger::{Micros, to_usd};
use crate::error::{Error, Result};
use crate::providers::{ChatRequest, Choice, Delta, Route, Usage};

pub async fn chat_completions(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response> {
    let req = ChatRequest::from_openai(&body)?;
    let choices = req.n;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::BadRequest("`stream` must be true or false".into())),
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let user = match body.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            crate::conversations::model::validate_id("user", u)?;
            Some(u.clone())
        }
        Some(_) => return Err(Error::BadRequest("`user` must be a string".into())),
    };
    let user = super::access::acting_user(&state, &info, user.as_deref()).await?;
    let route = state.providers.route(&req.model)?;
    let caller = Caller {
        surface_id: info.claim.claimed()?,
        info,
        user_id: user,
        action: "chat.completions",
    };
    if !stream {
        let answer = pipeline::complete(&state, &caller, route, &req).await?;
        let usage = answer.completion.usage;
        return Ok(axum::Json(json!({
            "id": completion_id(),
            "object": "chat.completion",
            "created": crate::store::now_unix(),
            "model": answer.route.model,
            "choices": answer.completion.choices.iter().enumerate()
                .map(|(i, c)| choice_json(i, c)).collect::<Vec<_>>(),
            "usage": usage_json(usage),
            "meta": meta(&answer.route, usage, answer.charged, answer.latency_ms),
        }))
        .into_response());
    }
    // The relay's task opens the stream: a client gone before the first byte is its to settle.
    let mut relayed = pipeline::relay(state.clone(), caller, route, req);
    let model = match relayed.recv().await {
        Some(Relayed::Opened { model }) => model,
        Some(Relayed::Refused(e)) => return Err(e),
        _ => return Err(Error::Upstream("the stream ended before it opened".into())),
    };
    let events = sse_events(relayed, model, include_usage, choices);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub async fn models(State(state): State<Shared>) -> axum::Json<Value> {
    let data: Vec<Value> = state
        .providers
        .models()
        .await
        .into_iter()
        .map(|(id, provider)| {
            json!({"id": id, "object": "model", "created": 0, "owned_by": provider.service()})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// One choice of a whole answer, as OpenAI writes it: `content` null when the model only
/// called functions, `tool_calls` only when it called any.
fn choice_json(index: usize, c: &Choice) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if c.content.is_empty() && !c.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(c.content)
        },
        "refusal": c.refusal,
    });
    if !c.tool_calls.is_empty() {
        message["tool_calls"] = c
            .tool_calls
            .iter()
            .map(|t| {
                json!({"id": t.id, "type": "function",
                       "function": {"name": t.name, "arguments": t.arguments}})
            })
            .collect();
    }
    json!({
        "index": index,
        "message": message,
        "logprobs": c.logprobs,
        "finish_reason": c.finish_reason,
    })
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "total_tokens": u.total()})
}

pub(super) fn meta(route: &Route, usage: Usage, charged: Micros, latency_ms: u64) -> Value {
    json!({"latency_ms": latency_ms, "model": route.model, "tokens": usage.total(),
           "cost_usd": to_usd(charged), "source": route.provider.source()})
}

/// The client's side of a relayed stream, as OpenAI's chunks: a first chunk per choice naming
/// the role, one per delta, the usage chunk when asked for, then `[DONE]` (or an error event
/// instead).
struct Chunks {
    relayed: mpsc::Receiver<Relayed>,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    /// Choices whose first chunk (the role) is still to be sent.
    unopened: std::ops::Range<u32>,
}

fn sse_events(
    relayed: mpsc::Receiver<Relayed>,
    model: String,
    include_usage: bool,
    choices: u32,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let chunks = Chunks {
        relayed,
        id: completion_id(),
        created: crate::store::now_unix(),
        model,
        include_usage,
        unopened: 0..choices,
    };
    futures_util::stream::unfold(chunks, |mut c| async move {
        if let Some(choice) = c.unopened.next() {
            let first = c.chunk(choice, json!({"role": "assistant", "content": ""}), None);
            return Some((Ok(first), c));
        }
        loop {
            let event = match c.relayed.recv().await? {
                Relayed::Delta(Delta::Text { choice, text }) => {
                    c.chunk(choice, json!({"content": text}), None)
                }
                Relayed::Delta(Delta::ToolCall {
                    choice,
                    index,
                    id,
                    name,
                    arguments,
                }) => {
                    // The first fragment of a call names it; later ones only add arguments.
                    let mut call = json!({"index": index, "function": {"arguments": arguments}});
                    if let Some(id) = id {
                        call["id"] = json!(id);
                        call["type"] = json!("function");
                    }
                    if let Some(name) = name {
                        call["function"]["name"] = json!(name);
                    }
                    c.chunk(choice, json!({"tool_calls": [call]}), None)
                }
                Relayed::Delta(Delta::Refusal { choice, text }) => {
                    c.chunk(choice, json!({"refusal": text}), None)
                }
                Relayed::Delta(Delta::Logprobs { choice, logprobs }) => {
                    c.chunk_with(choice, json!({}), None, logprobs)
                }
                Relayed::Delta(Delta::Finish { choice, reason }) => {
                    c.chunk(choice, json!({}), Some(reason))
                }
                Relayed::Delta(Delta::Usage(u)) if c.include_usage => SseEvent::default().data(
                    json!({"id": c.id, "object": "chat.completion.chunk",
                           "created": c.created, "model": c.model, "choices": [],
                           "usage": usage_json(u)})
                    .to_string(),
                ),
                Relayed::Delta(Delta::Usage(_)) | Relayed::Opened { .. } => continue,
                Relayed::Refused(e) => SseEvent::default().data(e.body().to_string()),
                Relayed::Failed(body) => SseEvent::default().data(body.to_string()),
                Relayed::Done => SseEvent::default().data("[DONE]"),
            };
            return Some((Ok(event), c));
        }
    })
}

impl Chunks {
    fn chunk(&self, choice: u32, delta: Value, finish: Option<String>) -> SseEvent {
        self.chunk_with(choice, delta, finish, Value::Null)
    }

    fn chunk_with(
        &self,
        choice: u32,
        delta: Value,
        finish: Option<String>,
        logprobs: Value,
    ) -> SseEvent {
        SseEvent::default().data(
            json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": choice, "delta": delta, "logprobs": logprobs,
                             "finish_reason": finish}],
            })
            .to_string(),
        )
    }
}
