//! `POST /api/audit/verify` starts a verify of the whole chain (every rotated day and the live
//! file) as a job; `GET /api/audit/verify` is the newest one's state, which the privacy center
//! shows as "verified through entry #N" or where the chain breaks.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::ApiJson;
use super::jobs::{self, Jobs, Kind};
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::privsec::audit::{self, Category, ChainKey, Event, Outcome, VerifyOptions};

/// A write's body: nothing to say, but it must be JSON (which keeps cross-site forms out).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Start {}

pub(super) async fn start(
    State(state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let _: Start = super::center_body::object(body)?;
    let (job, new) = jobs.start(Kind::AuditVerify);
    if new {
        let path = state.config.audit.path.clone();
        let key_path = Home::new(&state.config.home).audit_key();
        let state = state.clone();
        let request_id = info.id.clone();
        let worker = job.clone();
        jobs::spawn(job.clone(), async move {
            let report = tokio::task::spawn_blocking(move || {
                let key = ChainKey::load(&key_path)?;
                audit::verify_observed(&path, &key, VerifyOptions::default(), &|d, t| {
                    worker.progress(d, t)
                })
            })
            .await
            .map_err(|e| Error::Audit("the verify stopped unexpectedly".into()).because(e))??;
            let ok = report.problem.is_none();
            let (seq, hash) = report.last.clone().unwrap_or((0, String::new()));
            let e = Event::new(
                Category::Admin,
                "audit",
                "audit.verify",
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
            )
            .request_id(request_id)
            .detail("entries", report.entries)
            .detail("through_seq", seq);
            state.audit.record(e).await?;
            Ok(json!({
                "ok": ok,
                "files": report.files,
                "entries": report.entries,
                "through_seq": seq,
                "last_hash": hash,
                "problem": report.problem.as_ref().map(|p| json!({
                    "file": p.file.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "line": p.line,
                    "message": p.message,
                })),
                "head_warning": report.head_warning,
            }))
        });
    }
    Ok(Json(job.to_json()))
}

pub(super) async fn latest(
    State(_state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
) -> Json<Value> {
    Json(json!({"job": jobs.latest(Kind::AuditVerify).map(|j| j.to_json())}))
}
