//! The auth and rate-limit stages (SPEC §2.6), in pipeline order, as two middlewares: who may
//! connect at all ([`network_stage`], every path) and the key, limits and scope ([`stage`]).
//!
//! Local mode: no key, but a web page in the user's browser can reach 127.0.0.1, so a `Host`
//! that is not a loopback name (DNS rebinding) and an `Origin` that is not configured are
//! refused. Cloud mode: a key on every route but `/health`, then GCRA limits per client
//! address and per key. Every refusal is counted and audited (category `auth`, never the
//! presented key); refusals anyone can cause without a key (a bad key, a foreign host or
//! origin, an address over its limit) are audited within a budget, the rest summarised (see
//! [`crate::access::refusals`]). A failed key spends its address's rate-limit allowance, so
//! guessing keys is throttled like any other traffic.

use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::request_info::RequestInfo;
use super::route::Matched;
use super::state::{AppState, Shared};
use crate::access::network::{client_ip, loopback_host};
use crate::access::ratelimit::Decision;
use crate::access::refusals::{REFUSAL_WINDOW, Verdict};
use crate::access::scope::Principal;
use crate::access::{client_bucket, keys};
use crate::config::Mode;
use crate::config::network::Tls;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};

/// Seconds between updates of a key's `last_used_at`: a write per request would be waste.
const TOUCH_EVERY: i64 = 60;

pub async fn stage(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    match admit(&state, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Who may talk to this server at all, for every path (the page's files and `OPTIONS`
/// included): the behind-proxy rule, the client address behind a trusted proxy, the
/// allow-list, a loopback `Host` in local mode and a configured `Origin`. It runs before
/// CORS, so a preflight is answered only for a configured origin (see `gateway::router`).
pub async fn network_stage(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    match admit_network(&state, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn admit_network(state: &Shared, req: &mut Request) -> Result<()> {
    let mut info = req
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_else(RequestInfo::unknown);
    let network = &state.config.network;
    if let Some(peer) = info.ip {
        // Behind a proxy that ends TLS, a direct connection would carry keys in the clear:
        // only the trusted proxies may connect (list 127.0.0.1 too for local checks).
        if network.tls == Tls::BehindProxy && !network.trusted_proxies.contains(peer) {
            let e =
                Error::Forbidden("connect through the HTTPS proxy (tls = \"behind-proxy\")".into());
            refused_anonymous(state, &info, "not_through_proxy", &e).await?;
            return Err(e);
        }
        // The client behind a trusted proxy; from anyone else, forwarding headers mean
        // nothing. An unreadable chain leaves the client unknown (`None`), never the proxy.
        let client = client_ip(
            peer,
            req.headers(),
            &network.trusted_proxies,
            network.forwarded_header,
        );
        if client != Some(peer) {
            info.ip = client;
            if let Some(i) = req.extensions_mut().get_mut::<RequestInfo>() {
                i.ip = client;
            }
        }
    }
    // Before any other work: an address outside the allow-list learns nothing else.
    if !network.allow_ips.is_empty() && !info.ip.is_some_and(|ip| network.allow_ips.contains(ip)) {
        let e = Error::Forbidden("this client address is not in allow_ips".into());
        refused_anonymous(state, &info, "address_not_allowed", &e).await?;
        return Err(e);
    }
    let access = &state.access;
    if access.mode == Mode::Local && !loopback_host(req.headers()) {
        let e = Error::Forbidden("the Host header is not a loopback name".into());
        refused_anonymous(state, &info, "foreign_host", &e).await?;
        return Err(e);
    }
    if let Some(origin) = req.headers().get("origin") {
        let allowed = origin
            .to_str()
            .map(|o| access.cors_origins.iter().any(|a| a == o))
            .unwrap_or(false);
        if !allowed {
            let e = Error::Forbidden("this Origin is not allowed (see cors_origins)".into());
            refused_anonymous(state, &info, "foreign_origin", &e).await?;
            return Err(e);
        }
    }
    Ok(())
}

/// The key, the rate limits and the route's scope, after [`network_stage`] and CORS.
async fn admit(state: &Shared, req: &mut Request) -> Result<()> {
    let info = req
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_else(RequestInfo::unknown);
    let access = &state.access;
    if req.uri().path() == "/health" {
        return Ok(());
    }
    let mut key_id = None;
    let mut principal = Principal::local();
    if access.mode == Mode::Cloud {
        let id = authenticate(state, req.headers()).await;
        match id {
            Ok(p) => {
                key_id = p.key_id.clone();
                principal = p;
            }
            Err(e) => {
                // A failed key spends the address's allowance: guessing is throttled too.
                if let Some(limiter) = &access.limiter
                    && let Decision::Deny { retry_after_secs } =
                        limiter.check(&[client_bucket(info.ip)]).await?
                {
                    let e = Error::RateLimited { retry_after_secs };
                    refused_anonymous(state, &info, "rate_limit", &e).await?;
                    return Err(e);
                }
                let reason = match e {
                    Error::Lockdown(_) => "lockdown",
                    _ => "bad_key",
                };
                refused_anonymous(state, &info, reason, &e).await?;
                return Err(e);
            }
        }
    }
    if let Some(limiter) = &access.limiter {
        let mut buckets = vec![client_bucket(info.ip)];
        if let Some(k) = &key_id {
            buckets.push(format!("key:{k}"));
        }
        if let Decision::Deny { retry_after_secs } = limiter.check(&buckets).await? {
            let e = Error::RateLimited { retry_after_secs };
            let mut with_key = info.clone();
            with_key.key_id = key_id.clone();
            refused(state, &with_key, None, "rate_limit", &e).await?;
            return Err(e);
        }
    }
    let need = req
        .extensions()
        .get::<Matched>()
        .and_then(|m| m.scope(req.method().as_str()));
    if let Some(need) = need
        && !principal.allows(need)
    {
        let e = Error::Forbidden(format!(
            "this API key's scope ({}) does not allow this route (needs {need})",
            principal.scope.map_or("none", |s| s.as_str())
        ));
        let mut with_key = info.clone();
        with_key.key_id = key_id.clone();
        refused(state, &with_key, principal.user_id.as_deref(), "scope", &e).await?;
        return Err(e);
    }
    if let Some(i) = req.extensions_mut().get_mut::<RequestInfo>() {
        i.key_id = key_id;
        i.principal = principal;
    }
    Ok(())
}

/// Who the presented key is (`static` for `MAESTRA_API_KEY`, an admin), or a 401.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal> {
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                // The scheme is case-insensitive (RFC 9110 §11.1).
                .and_then(|v| {
                    let (scheme, token) = v.trim_start().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(token)
                })
        })
        .map(|k| SecretString::from(k.trim().to_string()))
        .ok_or_else(|| {
            Error::Unauthorized(
                "an API key is required (X-API-Key or Authorization: Bearer)".into(),
            )
        })?;
    if let Some(configured) = &state.access.static_key
        && keys::matches_static(&presented, configured)
    {
        // Lockdown revokes table keys; this one lives in the environment or maestra.toml,
        // out of its reach, so it is refused for as long as the lockdown lasts.
        if state.access.locked_down() {
            return Err(Error::Lockdown(
                "the static API key (MAESTRA_API_KEY, api_key) is refused during a lockdown; \
                 lift it on the server's machine with `maestra lockdown --lift`"
                    .into(),
            ));
        }
        return Ok(Principal::static_key());
    }
    let now = crate::store::now_unix();
    match keys::verify(state.access.store.as_ref(), &presented, now).await? {
        Some(record) => {
            if record.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
                let _ = state.access.store.api_key_touch(&record.id, now).await;
            }
            Ok(Principal {
                key_id: Some(record.id),
                key_name: Some(record.name),
                scope: Some(record.scope),
                user_id: record.user_id,
                services: record.services,
            })
        }
        None => Err(Error::Unauthorized(
            "the API key is invalid, revoked or expired".into(),
        )),
    }
}

/// Counts a refusal that needs no key, and audits it within the refusal budget. The first
/// suppressed one of a window schedules the window's summary entry.
async fn refused_anonymous(
    state: &Shared,
    info: &RequestInfo,
    reason: &'static str,
    err: &Error,
) -> Result<()> {
    match state.access.refusals.admit(reason, Instant::now()) {
        Verdict::Record => refused(state, info, None, reason, err).await,
        Verdict::Suppress { summary_at } => {
            count(state, reason);
            if let Some(at) = summary_at {
                tokio::spawn(summarise(Arc::downgrade(state), at));
            }
            Ok(())
        }
    }
}

/// Writes the window's summary when it ends. Holds the state weakly so a shutdown is never
/// kept waiting (a summary due after the audit log closed is not written).
async fn summarise(state: Weak<AppState>, at: Instant) {
    tokio::time::sleep_until(at.into()).await;
    let Some(state) = state.upgrade() else { return };
    let Some(s) = state.access.refusals.take_summary(Instant::now()) else {
        return;
    };
    let mut e = Event::new(
        Category::Auth,
        "maestra",
        "refusals_suppressed",
        Outcome::Blocked,
    )
    .detail("suppressed", s.total)
    .detail("window_seconds", REFUSAL_WINDOW.as_secs());
    for (reason, n) in s.by_reason {
        e = e.detail(reason, n);
    }
    let _ = state.audit.record(e).await;
}

fn count(state: &AppState, reason: &str) {
    state
        .metrics
        .refusals
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: reason.to_string(),
        })
        .inc();
}

/// Audits and counts a refusal at an access stage (bad key, rate limit, cost limit, foreign
/// host). The entry names the reason and the client, never a presented key.
/// The user a request acts for, given the one it names: an admin key's (or local mode's)
/// choice, otherwise the key's own user. Naming another user is a 403, audited.
pub async fn acting_user(
    state: &AppState,
    info: &RequestInfo,
    named: Option<&str>,
) -> Result<Option<String>> {
    match info.principal.user_for(named) {
        Ok(user) => Ok(user),
        Err(why) => {
            let e = Error::Forbidden(why);
            refused(
                state,
                info,
                info.principal.user_id.as_deref(),
                "other_user",
                &e,
            )
            .await?;
            Err(e)
        }
    }
}

/// Refuses (as not found, so another user's ids are not confirmed) a conversation that is not
/// the key's user's. Admin keys and local mode reach every conversation.
pub async fn own_conversation(state: &AppState, info: &RequestInfo, id: &str) -> Result<()> {
    if info.principal.allows(crate::access::scope::KeyScope::Admin) {
        return Ok(());
    }
    // The header only (owner, size): the handler reads the messages itself when allowed.
    let owner = state.store.conversation_summary(id).await?.map(|c| c.owner);
    if owner.is_some() && owner == info.principal.user_id {
        return Ok(());
    }
    Err(Error::NotFound(format!("no conversation {id:?}")))
}

pub async fn refused(
    state: &AppState,
    info: &RequestInfo,
    user: Option<&str>,
    reason: &str,
    err: &Error,
) -> Result<()> {
    count(state, reason);
    let mut e = Event::new(Category::Auth, "maestra", reason, Outcome::Blocked)
        .detail("status", err.status())
        .request_id(&info.id);
    if let Some(ip) = info.ip_string() {
        e = e.ip(ip);
    }
    if let Some(k) = &info.key_id {
        e = e.detail("key_id", k.as_str());
    }
    if let Some(u) = user {
        e = e.user(u);
    }
    state.audit.record(e).await
}
