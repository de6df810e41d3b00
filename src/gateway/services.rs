//! `ANY /api/services/{service}/{path}`: the credential-injecting proxy (SPEC §2.7), so the
//! assistant reaches its services through Maestra and never holds their tokens.
//!
//! One call: service, path and body-type checks → local-only guard → credential (vault; OAuth2 refresh)
//! → egress, the guarded client → the service's answer, streamed back scrubbed of the
//! credential → one audit entry (the service's category, `METHOD /path/{id}` as the action,
//! never a query or a body; the result; the latency to the answer's head).
//!
//! Bodies stream both ways, except to OAuth2 services: their request body is buffered (within
//! the same limit) because a 401 is answered by refreshing the token and sending it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::audit_api;
use super::request_info::RequestInfo;
use super::state::{AppState, Shared};
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::services::auth::{self, Auth};
use crate::services::body::{Outgoing, scrubbed};
use crate::services::content_type;
use crate::services::oauth::{self, Endpoint, Refresher, Token};
use crate::services::redact::Redactor;
use crate::services::{self as svcs, Service, path};

/// OPTIONS is not among them: the CORS layer answers every OPTIONS at the edge.
const FORWARDED_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The proxy for every forwarded method (see `routes::ROUTES`).
pub async fn proxy(
    State(state): State<Shared>,
    Extension(refresher): Extension<Arc<Refresher>>,
    req: Request,
) -> Response {
    let info = req
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_else(RequestInfo::unknown);
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

/// The service tool a proxied request was made for (`gateway::mcp`, as a request extension):
/// the call's entry names it (`details.tool`), so the privacy report counts the call as that
/// tool's. A client's request cannot carry one: extensions never come from the wire.
#[derive(Clone)]
pub(in crate::gateway) struct ForTool(pub String);

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

/// One proxied call, from a route's request or a service tool's (`gateway::mcp`).
pub(in crate::gateway) async fn call(
    state: &AppState,
    refresher: &Refresher,
    info: &RequestInfo,
    req: Request,
) -> Result<Response> {
    let start = Instant::now();
    // The methods REST services use; CONNECT, TRACE and extension methods are not forwarded
    // (and so never reach an audit entry's action unchecked).
    if !FORWARDED_METHODS.contains(req.method()) {
        return Err(Error::MethodNotAllowed(format!(
            "{} is not forwarded to services",
            req.method()
        )));
    }
    let full = req.uri().path().to_string();
    let rest = full.strip_prefix("/api/services/").unwrap_or_default();
    let (name, raw) = rest.split_once('/').unwrap_or((rest, ""));
    let service = svcs::resolve(name, &state.config.services, state.egress.catalog())?;
    if !info.principal.may_call(&service.name) {
        let e = Error::Forbidden(format!(
            "this API key may not call the service {:?} (see `keys create --services`)",
            service.name
        ));
        let user = info.principal.user_id.as_deref();
        super::access::refused(state, info, user, "service_not_allowed", &e).await?;
        return Err(e);
    }
    let mut caller = Caller::from_headers(req.headers())?;
    // The user the call is audited under is the key's, whatever a header claims.
    caller.user = super::access::acting_user(state, info, caller.user.as_deref()).await?;
    let action = format!("{} {}", req.method(), path::template(raw));
    let audit = Audit {
        state,
        info,
        caller,
        service: &service,
        action,
        tool: req.extensions().get::<ForTool>().map(|t| t.0.clone()),
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
    path::check(raw).at("path")?;
    if let Some(q) = parts.uri.query() {
        path::check_query(q).at("path")?;
    }
    // Before the credential is even read: a write without a JSON (or declared) type could be
    // a web page's cross-site form post, which the credential would make authenticated.
    content_type::check(&parts.method, &parts.headers, &service.content_types).at("request")?;
    super::pipeline::guard_service(state, service).at("guard")?;

    let token = credential(state, refresher, service, None)
        .await
        .at("credential")?;
    let mut refreshed = token.as_ref().is_some_and(|t| t.refreshed);
    let prefix = service
        .auth
        .path_prefix(token.as_ref().map(|t| &t.access))
        .at("credential")?;
    let url = path::join(&service.base_url, &prefix, raw, parts.uri.query()).at("path")?;
    let mut headers = auth::forward_request_headers(&parts.headers, &service.auth);
    // OAuth2 bodies are kept whole: a 401 is answered by sending them again.
    let replayable = matches!(service.auth, Auth::OAuth2 { .. });
    let limit = state.config.server.max_body_bytes;
    let outgoing = Outgoing::new(limit, replayable, &parts.headers, body)
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
            match tokio::time::timeout(
                timeout,
                state.egress.send_relaying_redirects(&service.name, req),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Error::UpstreamTimeout(format!(
                    "{} did not answer within {} seconds",
                    service.name,
                    timeout.as_secs()
                ))),
            }
        }
    };
    let mut used: Vec<SecretString> = token.iter().map(|t| t.access.clone()).collect();
    let mut resp = send(used.last().cloned(), outgoing.body())
        .await
        .map_err(|e| send_failure(&outgoing, e, &used, &service.name))?;

    let mut retried = false;
    if resp.status() == StatusCode::UNAUTHORIZED
        && matches!(service.auth, Auth::OAuth2 { .. })
        && let Some(rejected) = used.last().cloned()
    {
        let fresh = credential(state, refresher, service, Some(&rejected))
            .await
            .at("credential")?;
        refreshed |= fresh.as_ref().is_some_and(|t| t.refreshed);
        used.extend(fresh.map(|t| t.access));
        retried = true;
        resp = send(used.last().cloned(), outgoing.body())
            .await
            .map_err(|e| send_failure(&outgoing, e, &used, &service.name))?;
    }

    let status = resp.status();
    // Every token sent (the rejected one too): an answer must echo none of them.
    let redactor = Redactor::new(&used);
    // A compressed body cannot be searched for the credential (we asked for none, so this is
    // a service that compresses anyway): it is not relayed.
    let encoded = resp
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded && !redactor.is_empty() {
        return Err(Failure {
            error: Error::Upstream(format!(
                "{} sent a compressed answer, which cannot be checked for the credential",
                service.name
            )),
            stage: "upstream",
        });
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    *response.headers_mut() = auth::response_headers(resp.headers(), &redactor);
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

/// A send error as the client should see it: 413 when our limit cut the body off (the
/// client's doing), and never a message that names a credential that was sent.
fn send_failure(out: &Outgoing, e: Error, sent: &[SecretString], service: &str) -> Failure {
    if out.over_limit() {
        return Failure {
            error: out.too_large(),
            stage: "request",
        };
    }
    if out.too_slow() {
        return Failure {
            error: Error::BodyTooSlow(
                crate::error::SlowBody {
                    min_rate: super::server::MIN_BODY_RATE,
                }
                .to_string(),
            ),
            stage: "request",
        };
    }
    // The whole chain is searched: a kept cause must not carry the credential either.
    let error = if Redactor::new(sent).names_secret(&e) {
        Error::Upstream(format!(
            "{service}: the request failed (details withheld: they named the credential)"
        ))
    } else {
        e
    };
    Failure {
        error,
        stage: "upstream",
    }
}

/// Writes the call's one audit entry.
struct Audit<'a> {
    state: &'a AppState,
    info: &'a RequestInfo,
    caller: Caller,
    service: &'a Service,
    action: String,
    /// The service tool the call was made for, if any.
    tool: Option<String>,
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
        if let Some(t) = &self.tool {
            e = e.detail("tool", t.as_str());
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
