//! Conversations and a user's data rights over HTTP (SPEC §2.5, §4).

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use super::access;
use super::edge::{ApiJson, ApiPath, ApiQuery};
use super::jobs::{self, Jobs, Kind};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::conversations::model::validate_id;
use crate::conversations::rights::{self, Actor};
use crate::error::{Error, Result};

/// Largest page of a listing.
const MAX_PAGE: u32 = 500;

/// Unknown fields are refused: `?user=x` must not list every user's conversations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

fn actor(info: &RequestInfo) -> Actor {
    Actor {
        request_id: Some(info.id.clone()),
        ip: info.ip_string(),
        via: "api",
    }
}

pub async fn list(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Value>> {
    if let Some(u) = &q.user_id {
        validate_id("user_id", u)?;
    }
    // A user's key lists that user's conversations, whatever it names or leaves out.
    let user = access::acting_user(&state, &info, q.user_id.as_deref()).await?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::BadRequest(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    let items = state
        .store
        .conversation_list(user.as_deref(), limit, offset)
        .await?;
    Ok(axum::Json(
        json!({"conversations": items, "limit": limit, "offset": offset}),
    ))
}

pub async fn get(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Value>> {
    validate_id("conversation id", &id)?;
    access::own_conversation(&state, &info, &id).await?;
    let c = state
        .store
        .conversation_get(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id:?}")))?;
    Ok(axum::Json(json!(c)))
}

pub async fn export(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    validate_id("conversation id", &id)?;
    access::own_conversation(&state, &info, &id).await?;
    let c =
        rights::export_conversation(state.store.as_ref(), &state.audit, &id, &actor(&info)).await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}.json\""),
        )],
        axum::Json(json!(c)),
    ))
}

pub async fn delete(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Value>> {
    validate_id("conversation id", &id)?;
    access::own_conversation(&state, &info, &id).await?;
    rights::delete_conversation(state.store.as_ref(), &state.audit, &id, &actor(&info)).await?;
    Ok(axum::Json(json!({"deleted": id})))
}

pub async fn export_user(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(user): ApiPath<String>,
) -> Result<axum::Json<Value>> {
    validate_id("user_id", &user)?;
    access::acting_user(&state, &info, Some(&user)).await?;
    let v = rights::export_user(state.store.as_ref(), &state.audit, &user, &actor(&info)).await?;
    Ok(axum::Json(v))
}

/// Export everything of a user as a job the privacy center polls (progress: conversations
/// read); the job's result is the export. One job per user at a time.
pub async fn export_user_job(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    Extension(jobs): Extension<Arc<Jobs>>,
    ApiPath(user): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<Value>> {
    let _: super::verify_api::Start = super::center_body::object(body)?;
    validate_id("user_id", &user)?;
    access::acting_user(&state, &info, Some(&user)).await?;
    let (job, new) = jobs.start_for(Kind::UserExport, Some(&user));
    if new {
        let worker = job.clone();
        let actor = actor(&info);
        jobs::spawn(job.clone(), async move {
            let progress = |done: usize, total: usize| worker.progress(done, total);
            rights::export_user_observed(
                state.store.as_ref(),
                &state.audit,
                &user,
                &actor,
                &progress,
            )
            .await
        });
    }
    Ok(axum::Json(job.to_json()))
}

pub async fn forget_user(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    Extension(jobs): Extension<Arc<Jobs>>,
    ApiPath(user): ApiPath<String>,
) -> Result<axum::Json<Value>> {
    validate_id("user_id", &user)?;
    access::acting_user(&state, &info, Some(&user)).await?;
    jobs.forget(&user);
    let n = rights::forget_user(state.store.as_ref(), &state.audit, &user, &actor(&info)).await;
    // Copies Maestra made itself go too: what a killed backup or restore left in the home.
    crate::home::Home::new(&state.config.home).sweep_scratch();
    // Again after, whatever the outcome (the key may be gone even if a later step failed): an
    // export that finished while the forget ran holds what it read before.
    jobs.forget(&user);
    let n = n?;
    Ok(axum::Json(
        json!({"user_id": user, "deleted_conversations": n}),
    ))
}
