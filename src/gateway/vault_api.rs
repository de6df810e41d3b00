//! `GET /api/vault`: what the vault holds, for the privacy center. Names, whether each is
//! encrypted, when it was last written and last used, where the key comes from and whether
//! it opens the vault: never a value, not even masked. `POST /api/vault/rotate` rotates the
//! key (a job: every secret is re-encrypted).
//!
//! "Last used" is the newest audited call (not a local-only block, which never read it) of a
//! service whose credential the secret is: providers' keys and `[services.*]` credentials.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::ApiJson;
use super::jobs::{self, Jobs, Kind};
use super::request_info::RequestInfo;
use super::state::{AppState, Shared};
use crate::error::{Error, Result};
use crate::privsec::audit::{self, Category, Event, Filter, Outcome};
use crate::privsec::keycheck::KeyStatus;
use crate::privsec::keyring::KeySource;
use crate::providers::{ANTHROPIC_KEY, OPENAI_KEY};

/// The services that use the secret `name`.
fn users_of(state: &AppState, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name == OPENAI_KEY {
        out.push("openai".to_string());
    }
    if name == ANTHROPIC_KEY {
        out.push("anthropic".to_string());
    }
    for svc in state.config.services.keys() {
        if let Ok(s) = crate::services::resolve(svc, &state.config.services, state.egress.catalog())
            && s.credential.as_deref() == Some(name)
        {
            out.push(s.name);
        }
    }
    out
}

/// The newest call of one of `services` that could have read the secret: the summary names
/// the day, one day's files give the time.
fn last_used(state: &AppState, services: &[String]) -> Result<Option<String>> {
    if services.is_empty() {
        return Ok(None);
    }
    let day = state.audit.summary().read(|s| {
        s.rows
            .keys()
            .filter(|k| services.contains(&k.service) && k.category != Category::LocalOnlyBlock)
            .map(|k| k.day.clone())
            .max()
    })?;
    let Some(day) = day else { return Ok(None) };
    // The summary's newest day may hold only entries a client reported: then the whole log.
    let newest = newest_use(state, services, Some(Filter::parse_time(&day)?))?;
    match newest {
        Some(ts) => Ok(Some(ts)),
        None => newest_use(state, services, None),
    }
}

/// The time of the newest entry of one of `services` since `since` that stands for a call
/// Maestra made with the secret: not a local-only block (nothing left), not an event a
/// client reported (`POST /api/audit/events` cannot make a key look used). The filter is
/// applied before the limit, so a run of blocks cannot hide an older call.
fn newest_use(
    state: &AppState,
    services: &[String],
    since: Option<time::OffsetDateTime>,
) -> Result<Option<String>> {
    let mut newest: Option<String> = None;
    for service in services {
        let filter = Filter {
            service: Some(service.clone()),
            since,
            limit: Some(1),
            ..Filter::default()
        };
        let used = |e: &audit::StoredEntry| {
            e.category != Category::LocalOnlyBlock
                && e.details.get("reported") != Some(&Value::Bool(true))
        };
        let found = audit::query_matching(&state.config.audit.path, &filter, &used)?
            .into_iter()
            .next()
            .map(|e| e.ts);
        if found > newest {
            newest = found;
        }
    }
    Ok(newest)
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub(super) async fn info(State(state): State<Shared>) -> Result<Json<Value>> {
    let list = state.vault.list().await?;
    let status = state.vault.key_status().await?;
    // A secret's last use is read from the audit log: first the calls made before this read.
    state.audit.settled().await;
    let keys = state.vault.keys();
    let blocking = state.clone();
    let secrets = tokio::task::spawn_blocking(move || -> Result<Vec<Value>> {
        list.into_iter()
            .map(|s| {
                let used_by = users_of(&blocking, &s.name);
                Ok(json!({
                    "name": s.name,
                    "encrypted": s.encrypted,
                    "updated_at": rfc3339(s.updated_at),
                    "used_by": used_by,
                    "last_used": last_used(&blocking, &used_by)?,
                }))
            })
            .collect()
    })
    .await
    .map_err(|e| Error::Vault("the vault listing stopped unexpectedly".into()).because(e))??;
    Ok(Json(json!({
        "key_source": match keys.source { KeySource::Environment => "environment", KeySource::File(_) => "file" },
        "active_keys": keys.len(),
        "key_status": match status {
            KeyStatus::Matches => "matches",
            KeyStatus::Unset => "unset",
            KeyStatus::Mismatch => "mismatch",
        },
        "encrypted": secrets.iter().filter(|s| s["encrypted"] == true).count(),
        "unencrypted": secrets.iter().filter(|s| s["encrypted"] == false).count(),
        "secrets": secrets,
    })))
}

/// A rotation must be asked for in so many words.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotate {
    confirm: bool,
}

pub(super) async fn rotate(
    State(state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let req: Rotate = super::center_body::object(body)?;
    if !req.confirm {
        return Err(Error::BadRequest(
            "a key rotation needs {\"confirm\": true}".into(),
        ));
    }
    let KeySource::File(path) = state.vault.keys().source.clone() else {
        return Err(Error::BadRequest(
            "the vault key comes from MAESTRA_ENCRYPTION_KEY: put a new key first in that \
             variable and run `maestra vault rotate-key`"
                .into(),
        ));
    };
    let job = start_rotation(&state, &jobs, path, &info.id);
    Ok(Json(job.to_json()))
}

/// Starts (or joins) the vault key rotation job, audited as `vault.rotate_key` when it ends,
/// after which the server's own vault uses the new key. Shared by the vault section and
/// lockdown, so both rotate the same way.
pub(super) fn start_rotation(
    state: &Shared,
    jobs: &Jobs,
    path: std::path::PathBuf,
    request_id: &str,
) -> Arc<jobs::Job> {
    let (job, new) = jobs.start(Kind::VaultRotate);
    if new {
        let worker = job.clone();
        let state = state.clone();
        let request_id = request_id.to_string();
        jobs::spawn(job.clone(), async move {
            let result = jobs::rotate_vault(path, state.store.clone(), worker).await;
            let outcome = if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Error
            };
            let mut e = Event::new(Category::Admin, "vault", "vault.rotate_key", outcome)
                .request_id(request_id);
            if let Ok(r) = &result {
                e = e.detail("rewritten", r.rewritten as u64);
            }
            state.audit.record(e).await?;
            let r = result?;
            // The server's own vault takes up the new key now rather than at its next use.
            state.vault.key_status().await?;
            Ok(json!({
                "rewritten": r.rewritten,
                "already_done": r.already_done,
                "plaintext_left": r.plaintext_left,
                "retired_keys": r.retired_keys,
            }))
        });
    }
    job
}
