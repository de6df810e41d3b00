//! A tool server over streamable HTTP (`url = "..."`), dialled through egress and nothing else.
//!
//! rmcp's streamable-HTTP client keeps the protocol (the session, the event streams and their
//! resumption, re-initialising an expired session) and asks an HTTP backend for three things:
//! post a message, open the server's event stream, end the session. Its ready-made backend is
//! a reqwest client of its own, which would dial around the guard; [`Remote`] is that backend
//! on [`Egress`] instead, so every request of a tool server:
//! - leaves through [`Egress::send`] under the server's name: local-only mode decides each
//!   address dialled, a redirect ends the request (following it would carry the credential to
//!   wherever it points), and the bytes are counted, in `/metrics` and, for a `tools/call`, in
//!   the call's audit entry (the call carries its request's tally to this client's task);
//! - carries the server's `headers`, read from the vault when it is dialled and kept here as
//!   sensitive values, never in rmcp's configuration (which it clones into its tasks);
//! - reads at most [`MAX_MESSAGE_BYTES`] of a JSON answer or of one event of a stream, and
//!   gives a POST the call timeout (and a little more) to be answered.
//!
//! A failure is told in Maestra's own words (a status, a limit, egress's reason), never with a
//! body or a header the server sent, which may quote the credential; [`own_failure`] finds
//! it again inside what rmcp made of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue, StatusCode};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::service::ClientInitializeError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use secrecy::{ExposeSecret, SecretString};
use sse_stream::Sse;
use url::Url;

mod events;

use super::credentials;
use super::limits::MAX_RESULT_BYTES;
use crate::config::mcp::ToolServer;
use crate::egress::Egress;
use crate::egress::tally::Carried;
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;

/// The most read of one JSON answer or one event: a message that carries the largest result
/// passed on ([`MAX_RESULT_BYTES`]), with room for its envelope and for escapes its
/// re-encoding drops. The result is then held to its own limit; a larger message is an error,
/// never read on.
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_RESULT_BYTES;
/// The most read of an error answer, looking for the JSON-RPC error in it; past this only
/// its status is told.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The longest header value sent from the vault: servers refuse heads much larger, and a
/// value this long is a wrong secret rather than a credential.
const MAX_HEADER_VALUE: usize = 8 * 1024;
/// A POST's own deadline is the call timeout plus this: the call's deadline, which cancels the
/// call at the server and says it timed out, comes first; this one only frees the connection.
const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// How often a broken event stream is resumed (with `Last-Event-ID`) before it is given up,
/// and the longest wait between two tries; rmcp's default tries forever.
const STREAM_RESUMES: usize = 3;
const MAX_RESUME_WAIT: Duration = Duration::from_secs(30);

/// What rmcp's streamable-HTTP client runs on: one tool server, reached through egress.
#[derive(Clone)]
pub struct Remote {
    egress: Egress,
    /// The server's name: the service egress sends for (the guard, `/metrics`, the tally).
    name: Arc<str>,
    /// Its host, for messages.
    host: Arc<str>,
    /// Its `headers`, with their values from the vault, marked sensitive.
    headers: Arc<HeaderMap>,
    /// How long a POST may take, its answer read to the end: a little more than the call
    /// timeout, so a server that hangs holds no connection much longer than the call it serves.
    answer_within: Duration,
}

/// The transport to `url` for `server`, and the credentials it sends (scrubbed from what the
/// server answers). `call_timeout` is how long a call may take.
pub async fn dial(
    server: &ToolServer,
    url: &str,
    egress: &Egress,
    call_timeout: Duration,
    vault: &Vault,
) -> Result<(StreamableHttpClientTransport<Remote>, Vec<SecretString>)> {
    let name = &server.name;
    let parsed = Url::parse(url).map_err(|e| {
        Error::Config(format!("[mcp.servers.{name}] url cannot be parsed")).because(e)
    })?;
    let given = credentials::read(name, &server.headers, vault).await?;
    let mut headers = HeaderMap::new();
    let mut secrets = Vec::with_capacity(given.len() * 2);
    for (header, value) in given {
        headers.insert(
            header_name(name, &header)?,
            header_value(name, &header, &value)?,
        );
        // A server may quote the token without its scheme (`Bearer `): both are scrubbed.
        if let Some((_, token)) = value.expose_secret().trim().split_once(' ') {
            secrets.push(SecretString::from(token.trim().to_string()));
        }
        secrets.push(value);
    }
    let remote = Remote {
        egress: egress.clone(),
        name: name.as_str().into(),
        host: parsed.host_str().unwrap_or_default().into(),
        headers: Arc::new(headers),
        answer_within: call_timeout + ANSWER_GRACE,
    };
    let mut config = StreamableHttpClientTransportConfig::with_uri(url)
        .max_sse_event_size(MAX_MESSAGE_BYTES)
        .max_json_response_size(MAX_MESSAGE_BYTES)
        .max_error_response_size(MAX_ERROR_BYTES);
    let mut resume = ExponentialBackoff::default();
    resume.max_times = Some(STREAM_RESUMES);
    resume.max_delay = Some(MAX_RESUME_WAIT);
    config.retry_config = Arc::new(resume);
    Ok((
        StreamableHttpClientTransport::with_client(remote, config),
        secrets,
    ))
}

fn header_name(server: &str, header: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
        Error::Config(format!(
            "[mcp.servers.{server}] headers.{header}: not a name"
        ))
    })
}

/// The causes are dropped on purpose: they are about the value, which is never told.
fn header_value(server: &str, header: &str, value: &SecretString) -> Result<HeaderValue> {
    let v = value.expose_secret().trim();
    let unsendable = || {
        Error::Config(format!(
            "[mcp.servers.{server}] headers.{header}: its vault secret cannot be sent in a \
             header (at most {MAX_HEADER_VALUE} bytes of visible text)"
        ))
    };
    if v.len() > MAX_HEADER_VALUE {
        return Err(unsendable());
    }
    let mut v = HeaderValue::from_str(v).map_err(|_| unsendable())?;
    v.set_sensitive(true);
    Ok(v)
}

/// This client's own account of a failure, inside the error rmcp made of it (a handshake's
/// or a request's), if the failure was this client's to tell.
pub fn own_failure<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(StreamableHttpError::Client(own)) = c.downcast_ref::<HttpError>() {
            return Some(own);
        }
        // The handshake's transport error holds the transport's without naming it a source.
        cur = match c.downcast_ref::<ClientInitializeError>() {
            Some(ClientInitializeError::TransportError { error, .. }) => {
                Some(error.error.as_ref() as &(dyn std::error::Error + 'static))
            }
            _ => c.source(),
        };
    }
    None
}

type HttpError = StreamableHttpError<Error>;
type Events = BoxStream<'static, std::result::Result<Sse, SseError>>;

/// What an answer's `Content-Type` says it is.
#[derive(PartialEq, Eq)]
enum Body {
    Json,
    Events,
    Other,
}

fn body_of(headers: &HeaderMap) -> Body {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case(JSON_MIME_TYPE) {
        Body::Json
    } else if essence.eq_ignore_ascii_case(EVENT_STREAM_MIME_TYPE) {
        Body::Events
    } else {
        Body::Other
    }
}

/// The tally of the request a message was sent for (a `tools/call` carries it).
fn carried(message: &ClientJsonRpcMessage) -> Option<Carried> {
    match message {
        ClientJsonRpcMessage::Request(r) => r.request.extensions().get::<Carried>().cloned(),
        _ => None,
    }
}

impl Remote {
    /// A failure of this server, told as `NAME (HOST) what`.
    fn failure(&self, what: impl std::fmt::Display) -> HttpError {
        StreamableHttpError::Client(Error::Upstream(format!(
            "{} ({}) {what}",
            self.name, self.host
        )))
    }

    fn refused(&self, status: StatusCode) -> HttpError {
        let code = status.as_u16();
        self.failure(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "answered {code}: it refused the credential its `headers` name (or it needs \
                 one); check the vault secret"
            ),
            _ => format!("answered HTTP {code}"),
        })
    }

    /// `uri`'s request with the headers rmcp chose and the server's own.
    fn request(
        &self,
        method: Method,
        uri: &str,
        session: Option<&str>,
        rmcp_headers: HashMap<HeaderName, HeaderValue>,
    ) -> std::result::Result<reqwest::RequestBuilder, HttpError> {
        let url = Url::parse(uri).map_err(|_| self.failure("has a URL that cannot be parsed"))?;
        let mut b = self.egress.request(method, url);
        for (k, v) in rmcp_headers {
            b = b.header(k, v);
        }
        if let Some(s) = session {
            b = b.header(HEADER_SESSION_ID, s);
        }
        // Last, so nothing rmcp sets replaces them (the configuration refuses the names the
        // transport uses itself).
        Ok(b.headers((*self.headers).clone()))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        tally: Option<Carried>,
    ) -> std::result::Result<reqwest::Response, HttpError> {
        let sent = self.egress.send(&self.name, request);
        match tally {
            Some(t) => t.scope(sent).await,
            None => sent.await,
        }
        .map_err(StreamableHttpError::Client)
    }

    /// The whole body, or an error past `limit` bytes (told by `Content-Length` at once).
    async fn read(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> std::result::Result<Vec<u8>, HttpError> {
        let too_large =
            || self.failure(format!("answered over {limit} bytes; at most that is read"));
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => return Err(too_large()),
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(e) if e.is_timeout() => {
                    return Err(self.failure("did not finish its answer in time"));
                }
                Err(_) => return Err(self.failure("closed the connection mid-answer")),
            }
        }
    }

    /// The answer as events, each at most `limit` bytes (see [`events::bounded`]).
    fn events(&self, resp: reqwest::Response, limit: usize) -> Events {
        events::bounded(resp, limit, format!("{} ({})", self.name, self.host))
    }

    async fn post(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session: Option<Arc<str>>,
        rmcp_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> std::result::Result<StreamableHttpPostResponse, HttpError> {
        let body = serde_json::to_vec(&message)?;
        let request = self
            .request(Method::POST, &uri, session.as_deref(), rmcp_headers)?
            .header(
                ACCEPT,
                format!("{JSON_MIME_TYPE}, {EVENT_STREAM_MIME_TYPE}"),
            )
            .header(CONTENT_TYPE, JSON_MIME_TYPE)
            .timeout(self.answer_within)
            .body(body);
        let resp = self.send(request, carried(&message)).await?;
        let status = resp.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session.is_some() {
            // rmcp starts a new session and sends the message again.
            return Err(StreamableHttpError::SessionExpired);
        }
        let new_session = resp
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = body_of(resp.headers());
        // A notification or a reply waits for nothing: any success will do.
        let awaits_nothing = !matches!(message, ClientJsonRpcMessage::Request(_));
        if !status.is_success() {
            // A JSON-RPC error is the server's answer to the message, whatever the status.
            if body == Body::Json
                && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                && let Ok(text) = self.read(resp, MAX_ERROR_BYTES).await
                && let Ok(e @ ServerJsonRpcMessage::Error(_)) = serde_json::from_slice(&text)
            {
                return Ok(StreamableHttpPostResponse::Json(e, new_session));
            }
            return Err(self.refused(status));
        }
        match body {
            Body::Events => Ok(StreamableHttpPostResponse::Sse(
                self.events(resp, limits.max_sse_event_size.min(MAX_MESSAGE_BYTES)),
                new_session,
            )),
            Body::Json => {
                let limit = limits.max_json_response_size.min(MAX_MESSAGE_BYTES);
                let text = self.read(resp, limit).await?;
                match serde_json::from_slice(&text) {
                    Ok(m) => Ok(StreamableHttpPostResponse::Json(m, new_session)),
                    Err(_) if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
                    Err(_) => Err(self.failure("answered JSON that is not a JSON-RPC message")),
                }
            }
            Body::Other if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
            Body::Other => Err(self.failure("answered neither JSON nor an event stream")),
        }
    }

    async fn stream(
        &self,
        uri: Arc<str>,
        session: Option<Arc<str>>,
        last_event_id: Option<String>,
        rmcp_headers: HashMap<HeaderName, HeaderValue>,
        limit: usize,
    ) -> std::result::Result<Events, HttpError> {
        let mut request = self
            .request(Method::GET, &uri, session.as_deref(), rmcp_headers)?
            .header(ACCEPT, EVENT_STREAM_MIME_TYPE);
        if let Some(id) = last_event_id {
            request = request.header(HEADER_LAST_EVENT_ID, id);
        }
        // Not counted for a call: the server's stream is the session's, not one request's.
        let resp = self.send(request, None).await?;
        let status = resp.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !status.is_success() {
            return Err(self.refused(status));
        }
        if body_of(resp.headers()) != Body::Events {
            return Err(self.failure("answered its event stream with something else"));
        }
        Ok(self.events(resp, limit.min(MAX_MESSAGE_BYTES)))
    }
}

impl StreamableHttpClient for Remote {
    type Error = Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        // Never set: the server's credentials are this client's `headers`.
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> std::result::Result<StreamableHttpPostResponse, HttpError> {
        let limits = StreamableHttpResponseLimits::default();
        self.post(uri, message, session_id, custom_headers, limits)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> std::result::Result<StreamableHttpPostResponse, HttpError> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post(uri, message, session_id, custom_headers, limits)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> std::result::Result<StreamableHttpPostResponse, HttpError> {
        self.post(uri, message, session_id, custom_headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> std::result::Result<(), HttpError> {
        let request = self
            .request(Method::DELETE, &uri, Some(&session_id), custom_headers)?
            .timeout(self.answer_within);
        let resp = self.send(request, None).await?;
        match resp.status() {
            // A server that does not end sessions on request lets them expire.
            StatusCode::METHOD_NOT_ALLOWED => Ok(()),
            s if s.is_success() => Ok(()),
            s => Err(self.refused(s)),
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> std::result::Result<Events, HttpError> {
        self.stream(
            uri,
            session_id,
            last_event_id,
            custom_headers,
            MAX_MESSAGE_BYTES,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> std::result::Result<Events, HttpError> {
        self.stream(
            uri,
            session_id,
            last_event_id,
            custom_headers,
            max_sse_event_size,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_value_is_never_told() {
        let secret = SecretString::from("Bearer sk-CANARY\nInjected: x".to_string());
        let e = header_value("notion", "Authorization", &secret).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("CANARY"), "{e:?}");
        let ok = header_value(
            "notion",
            "Authorization",
            &"Bearer sk-1 ".to_string().into(),
        );
        let ok = ok.unwrap();
        assert!(ok.is_sensitive());
        assert_eq!(ok, "Bearer sk-1");
        assert!(!format!("{ok:?}").contains("sk-1"));
    }
}
