//! `ANY /api/services/{service}/{path}`: the credential-injecting proxy (SPEC §2.7), so the
//! assistant reaches its services through Maestra and never holds their tokens.
//!
//! One call: service and path checks → local-only guard → credential (vault; OAuth2 refresh)
//! → egress, the guarded client → the service's answer, streamed back scrubbed of the
//! credential → one audit entry (the service's category, `METHOD /path/{id}` as the action,
//! never a query or a body; the result; the latency to the answer's head).
//!
//! Bodies stream both ways, except to OAuth2 services: their request body is buffered (within
//! the same limit) because a 401 is answered by refreshing the token and sending it again.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use futures_util::{Stream, StreamExt};
use secrecy::SecretString;

use super::edge::RequestInfo;
use super::{AppState, Shared, audit_api};
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::privsec::guard::{Kind, LocalOnlyBlock};
use crate::services::auth::{self, Auth};
use crate::services::oauth::{self, Endpoint, Refresher, Token};
use crate::services::redact::Redactor;
use crate::services::{self as svcs, Service, path};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/services/{service}/{*path}", any(proxy))
        .layer(Extension(Arc::new(Refresher::default())))
}

async fn proxy(
    State(state): State<Shared>,
    Extension(refresher): Extension<Arc<Refresher>>,
    req: Request,
) -> Response {
    let info = req
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or(RequestInfo {
            id: String::new(),
            ip: None,
            key_id: None,
        });
    match call(&state, &refresher, &info, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Who the assistant says it acts for (`x-maestra-user`, `-agent`, `-surface`), for the audit
/// entry; these headers never go upstream.
#[derive(Default)]
struct Caller {
    user: Option<String>,
    agent: Option<String>,
    surface: Option<String>,
}

impl Caller {
    fn from_headers(h: &HeaderMap) -> Result<Caller> {
        let get = |name: &str| -> Result<Option<String>> {
            let Some(v) = h.get(name) else {
                return Ok(None);
            };
            let v = v.to_str().unwrap_or("\u{0}");
            audit_api::check_token(name, v, 128)?;
            Ok(Some(v.to_string()))
        };
        Ok(Caller {
            user: get("x-maestra-user")?,
            agent: get("x-maestra-agent")?,
            surface: get("x-maestra-surface")?,
        })
    }
}

/// A call that reached the service (whatever it answered).
struct Forwarded {
    response: Response,
    sent: Sent,
}

/// What the audit entry says about it.
#[derive(Clone, Copy)]
struct Sent {
    status: StatusCode,
    refreshed: bool,
    retried: bool,
}

/// A call that did not: the error and the stage it stopped at, for the audit entry.
struct Failure {
    error: Error,
    stage: &'static str,
}

trait At<T> {
    fn at(self, stage: &'static str) -> Result<T, Failure>;
}

impl<T> At<T> for Result<T> {
    fn at(self, stage: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure { error, stage })
    }
}

async fn call(
    state: &AppState,
    refresher: &Refresher,
    info: &RequestInfo,
    req: Request,
) -> Result<Response> {
    let start = Instant::now();
    let full = req.uri().path().to_string();
    let rest = full.strip_prefix("/api/services/").unwrap_or_default();
    let (name, raw) = rest.split_once('/').unwrap_or((rest, ""));
    let service = svcs::resolve(name, &state.config.services, state.egress.catalog())?;
    let caller = Caller::from_headers(req.headers())?;
    let action = format!("{} {}", req.method(), path::template(raw));
    let audit = Audit {
        state,
        info,
        caller,
        service: &service,
        action,
        start,
    };
    match forward(state, refresher, &service, req, raw).await {
        Ok(done) => {
            audit.forwarded(done.sent).await?;
            Ok(done.response)
        }
        Err(f) => {
            if matches!(f.stage, "guard" | "credential" | "upstream") {
                state.metrics.upstream_failure(&service.name, &f.error);
            }
            audit.failed(&f).await?;
            Err(f.error)
        }
    }
}

async fn forward(
    state: &AppState,
    refresher: &Refresher,
    service: &Service,
    req: Request,
    raw: &str,
) -> Result<Forwarded, Failure> {
    let (parts, body) = req.into_parts();
    if matches!(parts.method, Method::CONNECT | Method::TRACE) {
        return Err(Error::MethodNotAllowed(format!(
            "{} is not forwarded to services",
            parts.method
        )))
        .at("request");
    }
    path::check(raw).at("path")?;
    if let Some(q) = parts.uri.query() {
        path::check_query(q).at("path")?;
    }
    guard(state, service).at("guard")?;

    let mut token = credential(state, refresher, service, None)
        .await
        .at("credential")?;
    let mut refreshed = token.as_ref().is_some_and(|t| t.refreshed);
    let prefix = service
        .auth
        .path_prefix(token.as_ref().map(|t| &t.access))
        .at("credential")?;
    let url = path::join(&service.base_url, &prefix, raw, parts.uri.query()).at("path")?;
    let mut headers = auth::forward_request_headers(&parts.headers, &service.auth);
    let outgoing = Outgoing::new(state, service, &parts.headers, body)
        .await
        .at("request")?;
    if let Some(len) = outgoing.length() {
        // Devices such as the Hue bridge want a length, not a chunked upload.
        headers.insert(header::CONTENT_LENGTH, len.into());
    }

    let timeout = Duration::from_secs(state.config.upstream_timeout);
    let send = |token: Option<SecretString>, body: Option<reqwest::Body>| {
        let (url, mut headers) = (url.clone(), headers.clone());
        let method = parts.method.clone();
        async move {
            if let Some(t) = &token {
                service.auth.inject(t, &mut headers)?;
            }
            let mut req = state.egress.request(method, url).headers(headers);
            if let Some(body) = body {
                req = req.body(body);
            }
            match tokio::time::timeout(timeout, state.egress.send(&service.name, req)).await {
                Ok(r) => r,
                Err(_) => Err(Error::UpstreamTimeout(format!(
                    "{} did not answer within {} seconds",
                    service.name,
                    timeout.as_secs()
                ))),
            }
        }
    };
    let secrets = |t: &Option<Token>| Redactor::new(t.iter().map(|t| &t.access));
    let mut resp = send(token.as_ref().map(|t| t.access.clone()), outgoing.body())
        .await
        .map_err(|e| outgoing.explain(e, &secrets(&token), &service.name))
        .at("upstream")?;

    let mut retried = false;
    if resp.status() == StatusCode::UNAUTHORIZED
        && matches!(service.auth, Auth::OAuth2 { .. })
        && let Some(rejected) = token.as_ref().map(|t| t.access.clone())
    {
        let fresh = credential(state, refresher, service, Some(&rejected))
            .await
            .at("credential")?;
        refreshed |= fresh.as_ref().is_some_and(|t| t.refreshed);
        token = fresh;
        retried = true;
        resp = send(token.as_ref().map(|t| t.access.clone()), outgoing.body())
            .await
            .map_err(|e| outgoing.explain(e, &secrets(&token), &service.name))
            .at("upstream")?;
    }

    let status = resp.status();
    let redactor = secrets(&token);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    *response.headers_mut() = response_headers(resp.headers(), &redactor);
    let idle = timeout;
    *response.body_mut() = Body::from_stream(scrubbed(resp.bytes_stream(), redactor, idle));
    Ok(Forwarded {
        response,
        sent: Sent {
            status,
            refreshed,
            retried,
        },
    })
}

/// Local-only mode: a cloud service (by catalog name, or `kind = "cloud"` in its table) is
/// refused before its credential is even read. Egress then checks every address dialled.
fn guard(state: &AppState, service: &Service) -> Result<()> {
    if !state.egress.local_only() {
        return Ok(());
    }
    let catalog = state.egress.catalog();
    catalog.check_name(&service.name)?;
    if service.kind == Some(Kind::Cloud) {
        let group = serde_json::to_value(service.category).unwrap_or_default();
        return Err(LocalOnlyBlock {
            service: service.name.clone(),
            reason: "it is configured as a cloud service (kind = \"cloud\") and local-only mode keeps traffic on this machine".into(),
            suggested_alternatives: catalog
                .names(Kind::Local)
                .into_iter()
                .filter(|n| catalog.get(n).is_some_and(|e| group == e.group))
                .map(String::from)
                .collect(),
        }
        .into());
    }
    Ok(())
}

/// The credential to inject, if the service uses one.
async fn credential(
    state: &AppState,
    refresher: &Refresher,
    service: &Service,
    rejected: Option<&SecretString>,
) -> Result<Option<Token>> {
    let Some(name) = &service.credential else {
        return Ok(None);
    };
    if let Auth::OAuth2 { token_url } = &service.auth {
        let ep = Endpoint {
            service: &service.name,
            credential: name,
            token_url,
            timeout: Duration::from_secs(state.config.upstream_timeout),
        };
        return refresher
            .token(&state.vault, &state.egress, &ep, rejected)
            .await
            .map(Some);
    }
    match state.vault.get(name).await {
        Ok(access) => Ok(Some(Token {
            access,
            refreshed: false,
        })),
        Err(Error::SecretNotFound(_)) => Err(oauth::missing(&service.name, name)),
        Err(e) => Err(e),
    }
}

/// The client's body on its way up: none, streamed with the limit enforced as it passes, or
/// (for OAuth2 services, which may need to send it twice) read whole first.
struct Outgoing {
    kind: OutgoingKind,
    over_limit: Arc<AtomicBool>,
    limit: usize,
}

enum OutgoingKind {
    Empty,
    Buffered(Bytes),
    /// The body and its declared length (none when the client sent it chunked).
    Streamed(std::sync::Mutex<Option<reqwest::Body>>, Option<usize>),
}

impl Outgoing {
    async fn new(
        state: &AppState,
        service: &Service,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Outgoing> {
        let limit = state.config.server.max_body_bytes;
        let over_limit = Arc::new(AtomicBool::new(false));
        let declared = match headers.get(header::CONTENT_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| Error::BadRequest("invalid content-length".into()))?,
            ),
            None => None,
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        let kind = if declared.unwrap_or(0) == 0 && !chunked {
            OutgoingKind::Empty
        } else if matches!(service.auth, Auth::OAuth2 { .. }) {
            let bytes = axum::body::to_bytes(body, limit)
                .await
                .map_err(|_| too_large(limit))?;
            OutgoingKind::Buffered(bytes)
        } else {
            let flag = over_limit.clone();
            let mut seen = 0usize;
            let stream = body.into_data_stream().map(move |chunk| {
                let chunk = chunk.map_err(io::Error::other)?;
                seen += chunk.len();
                if seen > limit {
                    flag.store(true, Ordering::Relaxed);
                    return Err(io::Error::other("the request body is over the limit"));
                }
                Ok::<_, io::Error>(chunk)
            });
            let body = reqwest::Body::wrap_stream(stream);
            OutgoingKind::Streamed(std::sync::Mutex::new(Some(body)), declared)
        };
        Ok(Outgoing {
            kind,
            over_limit,
            limit,
        })
    }

    /// The body to send; a streamed body can be taken once (it is never retried).
    fn body(&self) -> Option<reqwest::Body> {
        match &self.kind {
            OutgoingKind::Empty => None,
            OutgoingKind::Buffered(b) => Some(reqwest::Body::from(b.clone())),
            OutgoingKind::Streamed(s, _) => s.lock().ok().and_then(|mut s| s.take()),
        }
    }

    /// The length to declare upstream for a streamed body (a buffered one declares its own).
    fn length(&self) -> Option<usize> {
        match &self.kind {
            OutgoingKind::Streamed(_, len) => *len,
            _ => None,
        }
    }

    /// A send error as the client should see it: 413 when our limit cut the body off, and
    /// never a message that names the credential.
    fn explain(&self, e: Error, secrets: &Redactor, service: &str) -> Error {
        if self.over_limit.load(Ordering::Relaxed) {
            return too_large(self.limit);
        }
        if secrets.contains(e.to_string().as_bytes()) {
            return Error::Upstream(format!(
                "{service}: the request failed (details withheld: they named the credential)"
            ));
        }
        e
    }
}

fn too_large(limit: usize) -> Error {
    Error::TooLarge(format!(
        "the request body is over the limit of {limit} bytes"
    ))
}

/// The service's headers as the client may see them: no hop-by-hop headers, no cookies (the
/// service's session stays with Maestra), no header holding the credential, and no length
/// when the body may be rewritten by scrubbing.
fn response_headers(from: &HeaderMap, redactor: &Redactor) -> HeaderMap {
    let named_by_connection: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        let drop = auth::is_hop_by_hop(n)
            || named_by_connection.contains(name)
            || matches!(
                n,
                "set-cookie"
                    | "set-cookie2"
                    | "authorization"
                    | "proxy-authorization"
                    | "alt-svc"
                    | "strict-transport-security"
            )
            || (n == "content-length" && !redactor.is_empty())
            || redactor.contains(value.as_bytes());
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

type Upstream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The service's body, scrubbed of the credential, ending with an error (so the client sees a
/// cut-off answer, not a complete one) if the service breaks off or goes quiet for `idle`.
fn scrubbed(
    inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    redactor: Redactor,
    idle: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let inner: Upstream = Box::pin(inner);
    futures_util::stream::unfold(
        (inner, redactor, false),
        move |(mut inner, mut redactor, done)| async move {
            if done {
                return None;
            }
            loop {
                let item = match tokio::time::timeout(idle, inner.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        let out = redactor.push(&chunk);
                        if out.is_empty() {
                            continue;
                        }
                        Ok(out)
                    }
                    Ok(None) => {
                        let rest = redactor.finish();
                        if rest.is_empty() {
                            return None;
                        }
                        return Some((Ok(rest), (inner, redactor, true)));
                    }
                    Ok(Some(Err(_))) => Err(io::Error::other("the service's answer broke off")),
                    Err(_) => Err(io::Error::other("the service stopped sending")),
                };
                let done = item.is_err();
                return Some((item, (inner, redactor, done)));
            }
        },
    )
}

/// Writes the call's one audit entry.
struct Audit<'a> {
    state: &'a AppState,
    info: &'a RequestInfo,
    caller: Caller,
    service: &'a Service,
    action: String,
    start: Instant,
}

impl Audit<'_> {
    fn event(&self, category: Category, result: Outcome) -> Event {
        let mut e = Event::new(category, &self.service.name, &self.action, result)
            .request_id(&self.info.id)
            .detail("latency_ms", self.start.elapsed().as_millis() as u64);
        if let Some(ip) = self.info.ip_string() {
            e = e.ip(ip);
        }
        if let Some(k) = &self.info.key_id {
            e = e.detail("key_id", k.as_str());
        }
        if let Some(u) = &self.caller.user {
            e = e.user(u);
        }
        if let Some(a) = &self.caller.agent {
            e = e.agent(a);
        }
        if let Some(s) = &self.caller.surface {
            e = e.surface(s);
        }
        e
    }

    async fn forwarded(&self, f: Sent) -> Result<()> {
        let result = match f.status.as_u16() {
            ..400 => Outcome::Success,
            400..500 => Outcome::Failed,
            _ => Outcome::Error,
        };
        let mut e = self
            .event(self.service.category, result)
            .detail("status", f.status.as_u16());
        if f.refreshed {
            e = e.detail("token_refreshed", true);
        }
        if f.retried {
            e = e.detail("retried_after_401", true);
        }
        self.state.audit.record(e).await
    }

    async fn failed(&self, f: &Failure) -> Result<()> {
        let e = match &f.error {
            Error::LocalOnly(block) => self
                .event(Category::LocalOnlyBlock, Outcome::Blocked)
                .detail("reason", block.reason.as_str()),
            other => {
                let client_side = matches!(f.stage, "path" | "request");
                let result = if client_side {
                    Outcome::Failed
                } else {
                    Outcome::Error
                };
                self.event(self.service.category, result)
                    .detail("error", other.code())
                    .detail("stage", f.stage)
            }
        };
        self.state.audit.record(e).await
    }
}
