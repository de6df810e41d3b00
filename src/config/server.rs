//! The `[server]` section: limits of the HTTP edge, each checked where it is read.

use serde::Deserialize;

use super::validate::{self, MAX_BODY_BYTES, MAX_SECONDS};
use crate::error::Result;

const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT: u64 = 300;
const DEFAULT_SHUTDOWN_GRACE: u64 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    max_body_bytes: Option<usize>,
    request_timeout: Option<u64>,
    shutdown_grace: Option<u64>,
}

/// Limits of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Seconds a whole request may take before 504 (streams excepted: they have idle timeouts).
    pub request_timeout: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace: u64,
}

/// Reads the `[server]` section, naming every setting that is wrong.
pub(super) fn load(file: ServerFile) -> Result<ServerConfig> {
    let max_body_bytes = validate::range(
        "server.max_body_bytes",
        file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        1,
        MAX_BODY_BYTES,
    );
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
    super::report(&[
        max_body_bytes.as_ref().err(),
        request_timeout.as_ref().err(),
        shutdown_grace.as_ref().err(),
    ])?;
    Ok(ServerConfig {
        max_body_bytes: max_body_bytes?,
        request_timeout: request_timeout?,
        shutdown_grace: shutdown_grace?,
    })
}
