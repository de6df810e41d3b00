//! The HTTP edge: the first stage of the data path and the only place an [`Error`] becomes a
//! response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::agent::Claim;
use super::request_info::RequestInfo;
use super::route::{Matched, RouteTable};
use super::state::Shared;
use crate::access::scope::Principal;
use crate::error::Error;
use crate::metrics::{HttpLabels, RouteLabels};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = (status, axum::Json(self.body())).into_response();
        let headers = resp.headers_mut();
        match &self {
            // RFC 9110 §10.2.3: clients and proxies read the wait from the header, not the body.
            Error::RateLimited { retry_after_secs }
            | Error::BudgetSpent {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            // The rest of the body is never read: the connection cannot carry another request.
            Error::BodyTooSlow(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            Error::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"maestra\""),
                );
            }
            _ => {}
        }
        resp
    }
}

/// Gives every request a fresh id, returned in `x-request-id`. A client's own id is not
/// trusted: it would land in logs and audit entries unchecked.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let claim = Claim::read(req.headers());
    let minimise = super::request_info::read_minimise(req.headers());
    req.extensions_mut().insert(RequestInfo {
        id: id.clone(),
        ip,
        key_id: None,
        principal: Principal::anonymous(),
        claim,
        minimise,
    });
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Notes which route template the request's path matches (see [`RouteTable::matched`]), for
/// the stages that follow: they run outside the router, before it routes.
/// A file of the privacy center's page is named by its own path.
pub fn match_route(table: &'static RouteTable, mut req: Request) -> Request {
    let path = req.uri().path();
    let found = table
        .matched(path)
        .or_else(|| crate::web::file_path(path).map(|p| table.file(p)));
    if let Some(m) = found {
        req.extensions_mut().insert(m);
    }
    req
}

/// Counts every request by route template and status, and times it to the response head.
/// Logs the same, without bodies, queries or headers: no message content reaches a log.
pub async fn observe(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<Matched>()
        .map_or("unmatched", |m| m.template)
        .to_string();
    let method = method_label(req.method()).to_string();
    let start = Instant::now();
    state.metrics.in_flight.inc();
    let resp = next.run(req).await;
    state.metrics.in_flight.dec();
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method: method.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(%method, %route, status, latency_us = elapsed.as_micros() as u64, "request");
    resp
}

/// A metric label for a method: the standard ones by name, any extension method a client
/// invents as `other`, so a label's values stay a fixed set.
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// Bounds a request's time to its response head. Streams, once started, are bounded by the
/// provider's idle timeout instead.
pub async fn deadline(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.config.server.request_timeout);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Error::RequestTimeout(format!("no answer within {} seconds", limit.as_secs()))
            .into_response(),
    }
}

pub async fn not_found(req: Request) -> Error {
    Error::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

pub async fn method_not_allowed(req: Request) -> Error {
    Error::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

/// A panic is a bug; the client still gets JSON, and nothing of the request is echoed.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = serde_json::json!({"error": {"code": "internal_error",
        "message": "an internal error occurred; it has been logged"}});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// A JSON body whose every failure is a SPEC §4 error: 415 without a JSON content type (which
/// also stops simple cross-site form posts), 413 over the body limit, 400 for invalid UTF-8,
/// malformed JSON or a wrong field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".into(),
            )),
            Err(JsonRejection::BytesRejection(r)) => {
                if super::server::too_slow(&r) {
                    Err(Error::BodyTooSlow(format!(
                        "the body arrived slower than {} bytes a second",
                        super::server::MIN_BODY_RATE
                    )))
                } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Err(Error::TooLarge("the request body is over the limit".into()))
                } else {
                    Err(Error::BadRequest(
                        "the request body could not be read".into(),
                    ))
                }
            }
            // The rejections are not kept as causes: axum's text echoes the body, which may hold a
            // secret (a vault value, a key); `json_detail` keeps serde's message only.
            Err(JsonRejection::JsonDataError(e)) => Err(Error::BadRequest(json_detail(&e))),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::BadRequest(json_detail(&e))),
            Err(other) => Err(Error::BadRequest(other.body_text())),
        }
    }
}

/// serde's message without the echo of the body that axum's text would include.
fn json_detail(e: &dyn std::error::Error) -> String {
    let mut inner = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        inner = s.to_string();
        cur = s.source();
    }
    if inner.contains("stream did not contain valid UTF-8") {
        "the request body is not valid UTF-8".into()
    } else {
        format!("invalid JSON body: {inner}")
    }
}

/// A path parameter whose rejection is a SPEC §4 error.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| Error::BadRequest("invalid path parameter".into()).because(e))
    }
}

/// A query string whose rejection is a SPEC §4 error.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| Error::BadRequest(format!("invalid query string: {e}")).because(e))
    }
}
