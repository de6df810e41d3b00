//! The `[server]` section: limits of the HTTP edge, each checked where it is read.

use serde::Deserialize;

use super::env::Lookup;
use super::names;
use super::validate::{self, MAX_BODY_BYTES, MAX_SECONDS};
use crate::error::Result;

const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The model routes' body limit: room for a few photos as `data:` URLs (a 4 MB image is
/// about 5.4 MB in base64) and for embeddings' own 1 MiB input limit with its JSON around it.
const DEFAULT_MAX_MODEL_BODY_BYTES: usize = 20 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT: u64 = 300;
const DEFAULT_SHUTDOWN_GRACE: u64 = 30;
/// Connections served at once; more wait to be accepted. Well under the usual 1024 open files.
const DEFAULT_MAX_CONNECTIONS: usize = 512;
const MAX_MAX_CONNECTIONS: usize = 65_536;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    max_body_bytes: Option<usize>,
    max_model_body_bytes: Option<usize>,
    request_timeout: Option<u64>,
    shutdown_grace: Option<u64>,
    max_connections: Option<usize>,
}

/// Limits of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it), on every route but the model routes.
    pub max_body_bytes: usize,
    /// Largest body of a model route (`/v1/chat/completions`, `/v1/responses`,
    /// `/v1/embeddings`; `MAESTRA_MAX_MODEL_BODY_BYTES`): a model's input carries images as
    /// `data:` URLs and thousands of texts to embed, far past what any other route needs.
    pub max_model_body_bytes: usize,
    /// Seconds a whole request may take before 504 (streams excepted: they have idle timeouts).
    pub request_timeout: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace: u64,
    /// Connections served at once (`MAESTRA_MAX_CONNECTIONS`); further ones wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

/// Reads the `[server]` section, naming every setting that is wrong.
pub(super) fn load(env: &Lookup<'_>, file: ServerFile) -> Result<ServerConfig> {
    let max_body_bytes = validate::range(
        "server.max_body_bytes",
        file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        1,
        MAX_BODY_BYTES,
    );
    let max_model_body_bytes = env.num(names::MAX_MODEL_BODY_BYTES).and_then(|v| {
        validate::range(
            "server.max_model_body_bytes (MAESTRA_MAX_MODEL_BODY_BYTES)",
            v.or(file.max_model_body_bytes)
                .unwrap_or(DEFAULT_MAX_MODEL_BODY_BYTES),
            1,
            MAX_BODY_BYTES,
        )
    });
    let request_timeout = validate::range(
        "server.request_timeout",
        file.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        1,
        crate::cost::ledger::MAX_CALL_SECS,
    );
    let shutdown_grace = validate::range(
        "server.shutdown_grace",
        file.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        0,
        MAX_SECONDS,
    );
    let max_connections = env.num(names::MAX_CONNECTIONS).and_then(|v| {
        validate::range(
            "server.max_connections (MAESTRA_MAX_CONNECTIONS)",
            v.or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1,
            MAX_MAX_CONNECTIONS,
        )
    });
    super::report(&[
        max_body_bytes.as_ref().err(),
        max_model_body_bytes.as_ref().err(),
        request_timeout.as_ref().err(),
        shutdown_grace.as_ref().err(),
        max_connections.as_ref().err(),
    ])?;
    Ok(ServerConfig {
        max_body_bytes: max_body_bytes?,
        max_model_body_bytes: max_model_body_bytes?,
        request_timeout: request_timeout?,
        shutdown_grace: shutdown_grace?,
        max_connections: max_connections?,
    })
}
