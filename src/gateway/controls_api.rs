//! The privacy center's controls: `POST /api/controls/local-only` turns local-only mode on or
//! off, `POST /api/controls/lockdown` is `maestra lockdown` from the page.
//!
//! Both act through the store's lockdown flag, the one `maestra lockdown` sets and the
//! server's watch follows (so a switch here survives the watch and a restart, and other
//! servers on a shared database follow within seconds), and also switch this server's egress
//! at once. Local-only set in the configuration cannot be turned off from here, nor during a
//! lockdown: only `maestra lockdown --lift`, on the machine, lifts one.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edge::ApiJson;
use super::jobs::Jobs;
use super::request_info::RequestInfo;
use super::state::Shared;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::privsec::keyring::KeySource;
use crate::privsec::lockdown::{LOCKDOWN_ENGAGED, LOCKDOWN_FLAG, engage_lockdown};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LocalOnly {
    on: bool,
}

pub(super) async fn local_only(
    State(state): State<Shared>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let req: LocalOnly = super::center_body::object(body)?;
    if req.on {
        state.store.meta_set(LOCKDOWN_FLAG, "true").await?;
        state.egress.set_local_only(true);
    } else {
        if state.config.local_only {
            return Err(Error::BadRequest(
                "local-only mode is set in the configuration (local_only = true); change it \
                 there"
                    .into(),
            ));
        }
        // Lifting is a local command: no credential turns a lockdown's local-only off.
        if state.store.meta_get(LOCKDOWN_ENGAGED).await?.is_some() {
            let e = Error::Lockdown(
                "local-only mode stays on during a lockdown; lift it on the server's machine \
                 with `maestra lockdown --lift`"
                    .into(),
            );
            let mut refused = Event::new(
                Category::Admin,
                "maestra",
                "local_only.off",
                Outcome::Blocked,
            )
            .request_id(&info.id)
            .detail("reason", "lockdown");
            if let Some(k) = &info.key_id {
                refused = refused.detail("key_id", k.as_str());
            }
            state.audit.record(refused).await?;
            return Err(e);
        }
        state.store.meta_delete(LOCKDOWN_FLAG).await?;
        state.egress.set_local_only(false);
    }
    let action = if req.on {
        "local_only.on"
    } else {
        "local_only.off"
    };
    let mut e = Event::new(Category::Admin, "maestra", action, Outcome::Success)
        .request_id(&info.id)
        .detail("local_only", req.on);
    if let Some(k) = &info.key_id {
        e = e.detail("key_id", k.as_str());
    }
    state.audit.record(e).await?;
    Ok(Json(json!({"local_only": state.egress.local_only()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Lockdown {
    confirm: bool,
}

/// Local-only on, every API key revoked (the page's own key too, in cloud mode), and the
/// vault key rotated as a job the answer names.
pub(super) async fn lockdown(
    State(state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let req: Lockdown = super::center_body::object(body)?;
    if !req.confirm {
        return Err(Error::BadRequest(
            "a lockdown needs {\"confirm\": true}".into(),
        ));
    }
    let revoked = engage_lockdown(state.store.as_ref()).await?;
    state.access.set_locked_down(true);
    state.egress.set_local_only(true);
    let rotation = match state.vault.keys().source.clone() {
        KeySource::Environment => None,
        // Audited and taken up by this server's vault like a rotation from the vault section.
        KeySource::File(path) => Some(super::vault_api::start_rotation(
            &state, &jobs, path, &info.id,
        )),
    };
    state
        .audit
        .record(
            Event::new(Category::Admin, "maestra", "lockdown", Outcome::Success)
                .request_id(&info.id)
                .detail("local_only", true)
                .detail("api_keys_revoked", revoked)
                .detail("vault_key_rotation", rotation.is_some()),
        )
        .await?;
    Ok(Json(json!({
        "local_only": true,
        "api_keys_revoked": revoked,
        "vault_rotation": rotation.map(|j| j.to_json()),
    })))
}
