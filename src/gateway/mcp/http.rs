//! `POST /mcp`: MCP's streamable HTTP transport, served by rmcp behind the edge stages (key,
//! scope, rate limit, Host and Origin checks, body limit), so the edge's checks are the only
//! ones; rmcp's own Host check is off.
//!
//! Stateless: no session outlives its request (nothing to bound, nothing to leak between
//! clients), answers are JSON, and GET and DELETE (the server-to-client stream and session
//! end, which a stateless server does not offer) answer 405. A refusal of rmcp's own (a wrong
//! `Accept`, a body that is not JSON-RPC) leaves as a SPEC §4 JSON error with its status.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;

use super::tools::Tools;
use crate::error::Error;
use crate::gateway::state::Shared;
use crate::services::oauth::Refresher;

/// The largest refusal body of rmcp's read to build the JSON error from.
const MAX_REFUSAL: usize = 4096;

/// The transport, built once with the router.
pub struct McpHttp(StreamableHttpService<Tools, NeverSessionManager>);

impl McpHttp {
    pub fn new(state: Shared, refresher: Arc<Refresher>) -> McpHttp {
        let limit = state.config.server.max_body_bytes;
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .disable_allowed_hosts()
            .with_max_request_body_bytes(limit);
        let tools = Tools::over_http(state, refresher);
        McpHttp(StreamableHttpService::new(
            move || Ok(tools.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        ))
    }
}

pub async fn post(Extension(mcp): Extension<Arc<McpHttp>>, req: Request) -> Response {
    let resp = mcp.0.handle(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || json {
        return resp.map(Body::new);
    }
    // A refusal of the transport's, in plain text: read it (bounded) and answer in JSON.
    let text = match http_body_util::Limited::new(resp.into_body(), MAX_REFUSAL)
        .collect()
        .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    refusal(status, &text).into_response()
}

/// rmcp's refusal as the error of SPEC §4 with the same status. The parser's message is not
/// passed on: it may quote the body.
fn refusal(status: StatusCode, text: &str) -> Error {
    let said = text.trim();
    match status {
        StatusCode::NOT_ACCEPTABLE => Error::NotAcceptable(said.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE if said.starts_with("fail to deserialize") => {
            Error::BadRequest(
                "the body is not a JSON-RPC message (one request, not a batch)".into(),
            )
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(said.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(said.to_string()),
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed(
            "/mcp takes POST only: this server keeps no sessions and opens no stream of its own"
                .into(),
        ),
        StatusCode::NOT_FOUND => Error::NotFound(said.to_string()),
        StatusCode::FORBIDDEN => Error::Forbidden(said.to_string()),
        s if s.is_client_error() => Error::BadRequest(said.to_string()),
        _ => Error::Upstream(format!("the MCP transport failed: {said}")),
    }
}
