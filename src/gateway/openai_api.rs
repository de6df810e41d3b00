//! OpenAI-compatible `POST /v1/chat/completions` (plain and `stream: true` as server-sent
//! events) and `GET /v1/models`, so any OpenAI client works through Maestra unchanged.
//!
//! These calls are stateless like OpenAI's own: the client sends the history, nothing is
//! stored, and the call is audited without its content.

use crate::cost::ledger::{Micros, to_usd};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use super::edge::{ApiJson, RequestInfo};
use super::pipeline::{self, Caller};
use super::{AppState, Shared};
use crate::cost::budget::Hold;
use crate::error::{Error, Result};
use crate::providers::{ChatRequest, Delta, DeltaStream, Route, Usage};

pub async fn chat_completions(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response> {
    let req = ChatRequest::from_openai(&body)?;
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
        info: &info,
        user_id: user.as_deref(),
        surface_id: None,
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
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer.completion.content},
                "finish_reason": answer.completion.finish_reason,
            }],
            "usage": usage_json(usage),
            "meta": meta(&answer.route, usage, answer.charged, answer.latency_ms),
        }))
        .into_response());
    }
    let start = Instant::now();
    let open = pipeline::open_stream(&state, &caller, route, &req, start).await?;
    let route = open.route.clone();
    let report = StreamReport {
        state: state.clone(),
        info: info.clone(),
        user,
        route: open.route,
        start,
        usage: None,
        streamed_bytes: 0,
        hold: Some(open.hold),
        request: open.request,
        outcome: None,
    };
    let events = sse_events(open.deltas, route, include_usage, report);
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

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "total_tokens": u.total()})
}

fn meta(route: &Route, usage: Usage, charged: Micros, latency_ms: u64) -> Value {
    json!({"latency_ms": latency_ms, "model": route.model, "tokens": usage.total(),
           "cost_usd": to_usd(charged), "source": route.provider.source()})
}

/// Settles and audits a stream when it ends, however it ends: completed, failed upstream, or
/// dropped because the client went away. The charge is the usage the provider reported, or,
/// when it reported none, what was counted: a stream is never recorded at $0.
struct StreamReport {
    state: Arc<AppState>,
    info: RequestInfo,
    user: Option<String>,
    route: Route,
    start: Instant,
    usage: Option<Usage>,
    streamed_bytes: usize,
    hold: Option<Hold>,
    request: ChatRequest,
    /// `Some(Ok)` when complete, `Some(Err)` when the upstream failed; `None` if abandoned.
    outcome: Option<Result<()>>,
}

impl Drop for StreamReport {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, info, user, route) = (
            self.state.clone(),
            self.info.clone(),
            self.user.clone(),
            self.route.clone(),
        );
        let start = self.start;
        let usage = self
            .usage
            .unwrap_or_else(|| pipeline::counted_usage(&self.request, self.streamed_bytes));
        let hold = self.hold.take();
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(Error::Upstream(
                "the client disconnected before the stream ended".into(),
            ))
        });
        rt.spawn(async move {
            let charged = match hold {
                Some(hold) => match state.budget.settle(hold, &route, usage).await {
                    Ok(charged) => charged,
                    Err(e) => {
                        tracing::error!(error = %e, "could not settle a streamed call's cost");
                        state
                            .budget
                            .pricing()
                            .cost(route.provider, &route.model, usage)
                    }
                },
                None => 0,
            };
            let caller = Caller {
                info: &info,
                user_id: user.as_deref(),
                surface_id: None,
                action: "chat.completions",
            };
            let latency_ms = start.elapsed().as_millis() as u64;
            let _ = match outcome {
                Ok(()) => {
                    let stream = true;
                    pipeline::record_success(
                        &state, &caller, &route, usage, charged, latency_ms, stream,
                    )
                    .await
                }
                Err(e) => pipeline::record_failure(&state, &caller, &route, &e, start).await,
            };
        });
    }
}

struct Relay {
    deltas: DeltaStream,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    started: bool,
    ended: bool,
    report: StreamReport,
}

fn sse_events(
    deltas: DeltaStream,
    route: Route,
    include_usage: bool,
    report: StreamReport,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let relay = Relay {
        deltas,
        id: completion_id(),
        created: crate::store::now_unix(),
        model: route.model,
        include_usage,
        started: false,
        ended: false,
        report,
    };
    futures_util::stream::unfold(relay, |mut r| async move {
        if r.ended {
            return None;
        }
        if !r.started {
            r.started = true;
            let first = r.chunk(json!({"role": "assistant", "content": ""}), None);
            return Some((Ok(first), r));
        }
        loop {
            match r.deltas.next().await {
                Some(Ok(Delta::Text(t))) => {
                    r.report.streamed_bytes += t.len();
                    let ev = r.chunk(json!({"content": t}), None);
                    return Some((Ok(ev), r));
                }
                Some(Ok(Delta::Finish(reason))) => {
                    let ev = r.chunk(json!({}), Some(reason));
                    return Some((Ok(ev), r));
                }
                Some(Ok(Delta::Usage(u))) => {
                    r.report.usage = Some(u);
                    if r.include_usage {
                        let ev = SseEvent::default().data(
                            json!({"id": r.id, "object": "chat.completion.chunk",
                                   "created": r.created, "model": r.model, "choices": [],
                                   "usage": usage_json(u)})
                            .to_string(),
                        );
                        return Some((Ok(ev), r));
                    }
                }
                Some(Err(e)) => {
                    r.ended = true;
                    let ev = SseEvent::default().data(e.body().to_string());
                    r.report.outcome = Some(Err(e));
                    return Some((Ok(ev), r));
                }
                None => {
                    r.ended = true;
                    r.report.outcome = Some(Ok(()));
                    return Some((Ok(SseEvent::default().data("[DONE]")), r));
                }
            }
        }
    })
}

impl Relay {
    fn chunk(&self, delta: Value, finish: Option<String>) -> SseEvent {
        SseEvent::default().data(
            json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    }
}
