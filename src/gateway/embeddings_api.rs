//! OpenAI-compatible `POST /v1/embeddings`: an assistant's memory made through Maestra, so it
//! is guarded, priced, limited and audited like chat.
//!
//! The input is the person's text and the vectors are a faithful image of it: neither is
//! stored, logged or audited. They live in this request and its call's task, then are gone.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::edge::ApiJson;
use super::pipeline::{self, Caller};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::cost::ledger::to_usd;
use crate::error::Result;
use crate::providers::Source;
use crate::providers::embeddings::{EmbeddingsRequest, Vector};

pub async fn embeddings(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response> {
    let req = EmbeddingsRequest::from_openai(&body)?;
    drop(body);
    // The acting user is the gateway's notion, checked here as the chat handler checks it.
    if let Some(u) = &req.user {
        crate::conversations::model::validate_id("user", u)?;
    }
    let user = super::access::acting_user(&state, &info, req.user.as_deref()).await?;
    let route = state.providers.route_embeddings(&req.model)?;
    // Named like every `/v1` call: the key's name, `X-Maestra-Surface` or the User-Agent.
    let caller = Caller {
        surface_id: info.claim.claimed()?,
        info,
        user_id: user,
        action: "embeddings",
    };
    let done = pipeline::embed(&state, &caller, route, req).await?;
    let data = done
        .embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, embedding)| Item {
            object: "embedding",
            index,
            embedding,
        })
        .collect();
    // Written straight from the vectors (no `Value` per number: an answer may hold millions).
    Ok(axum::Json(List {
        object: "list",
        data,
        model: &done.route.model,
        usage: UsageOut {
            prompt_tokens: done.usage.prompt_tokens,
            total_tokens: done.usage.prompt_tokens,
        },
        meta: Meta {
            latency_ms: done.latency_ms,
            model: &done.route.model,
            tokens: done.usage.prompt_tokens,
            cost_usd: to_usd(done.charged),
            source: done.route.provider.source(),
        },
    })
    .into_response())
}

/// OpenAI's answer shape, with Maestra's `meta` beside it as chat has.
#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: UsageOut,
    meta: Meta<'a>,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: &'a Vector,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Meta<'a> {
    latency_ms: u64,
    model: &'a str,
    tokens: u64,
    cost_usd: f64,
    source: Source,
}
