//! `POST /v1/responses`: OpenAI's Responses API (what the Agents SDK speaks by default), for
//! text and function tools, plain and streamed as typed events, stateless.
//!
//! Stateless because Maestra keeps nothing the person did not ask it to keep: no response is
//! stored to be continued (`previous_response_id`, `store: true` and stored conversations are
//! refused by name), the client sends the history in `input`, and no provider is asked to keep
//! it either. The request becomes a chat request and takes the chat pipeline (guard, reserve,
//! call, settle, audit as `responses`, never the content), so nothing about it is new but the
//! shapes:
//!
//! - `input`  — the request body, field by field, into a `ChatRequest`
//! - `output` — the Response object
//! - `events` — a relayed stream as the typed server-sent events

mod events;
mod input;
mod output;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::edge::ApiJson;
use super::pipeline::{self, Caller, Relayed};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::error::{Error, Result};
use input::Read;
use output::{End, Head};

pub async fn create(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response> {
    let read = Read::from_body(&body)?;
    let user = super::access::acting_user(&state, &info, read.user.as_deref()).await?;
    let route = state.providers.route(&read.request.model)?;
    let caller = Caller {
        surface_id: info.claim.claimed()?,
        info,
        user_id: user,
        action: "responses",
    };
    if !read.stream {
        let answer = pipeline::complete(&state, &caller, route, &read.request)
            .await
            .map_err(input::responses_names)?;
        let head = Head::new(
            &read.request,
            read.instructions.as_deref(),
            answer.route.model.clone(),
        );
        let choice = answer
            .completion
            .choices
            .first()
            .cloned()
            .unwrap_or_default();
        let usage = answer.completion.usage;
        let end = End::finished(Some(&choice.finish_reason));
        let mut response = head.response(&end, output::output_of(&choice), Some(usage));
        response["meta"] =
            super::openai_api::meta(&answer.route, usage, answer.charged, answer.latency_ms);
        return Ok(axum::Json(response).into_response());
    }
    let mut head = Head::new(
        &read.request,
        read.instructions.as_deref(),
        route.model.clone(),
    );
    // The relay's task opens the stream: a client gone before the first byte is its to settle.
    let mut relayed = pipeline::relay(state.clone(), caller, route, read.request);
    match relayed.recv().await {
        // The model that answers, a fallback's where one was allowed.
        Some(Relayed::Opened { model }) => head.model = model,
        Some(Relayed::Refused(e)) => return Err(input::responses_names(e)),
        _ => return Err(Error::Upstream("the stream ended before it opened".into())),
    }
    Ok(Sse::new(events::stream(relayed, head))
        .keep_alive(KeepAlive::default())
        .into_response())
}
