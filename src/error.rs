//! One error type for the whole library.
//!
//! Every variant knows its HTTP status and its SPEC §4 `code`, so the HTTP edge and the
//! command line render the same failure the same way. Messages are written for the user and
//! never carry a secret: variants hold names, paths and reasons, not values.

use std::path::PathBuf;

use serde_json::{Value, json};

mod payload;
pub use payload::{CostLimitExceeded, LocalOnlyBlock, ToolRpcError};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration error: {0}")]
    Config(String),

    #[error("{path}: {reason}")]
    Permissions { path: PathBuf, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("storage error: {0}")]
    Store(String),

    /// A database error, with its cause kept for whoever walks the source chain (logs, tests).
    /// sqlx errors name tables and constraints, never bound values, so they are safe to show.
    #[error("storage error: {0}")]
    Database(#[source] Box<sqlx::Error>),

    #[error("storage error: cannot migrate the database: {0}")]
    Migrate(#[source] Box<sqlx::migrate::MigrateError>),

    #[error("vault: {0}")]
    Vault(String),

    #[error("vault: no secret named {0:?}")]
    SecretNotFound(String),

    #[error("invalid token: {0}")]
    InvalidToken(String),

    #[error("audit: {0}")]
    Audit(String),

    #[error("audit log unavailable, request refused (audit.fail_closed = true): {0}")]
    AuditUnavailable(String),

    #[error("{0}")]
    LocalOnly(Box<LocalOnlyBlock>),

    #[error("upstream error: {0}")]
    Upstream(String),

    /// A tool server answered a `tools/call` with a JSON-RPC error.
    #[error("the tool server answered: {0}")]
    ToolError(Box<ToolRpcError>),

    #[error("upstream timed out: {0}")]
    UpstreamTimeout(String),

    #[error("bad request: {0}")]
    BadRequest(String),

    #[error("not found: {0}")]
    NotFound(String),

    #[error("unknown model {0:?}; GET /v1/models lists the available ones")]
    UnknownModel(String),

    /// A paid model the pricing table does not know: refused before anything is reserved or
    /// sent, as a guardrail cannot bound what it cannot price.
    #[error(
        "model {0:?} has no price, so its cost cannot be bounded; price it in maestra.toml: \
         [pricing.{0:?}] input_per_million = <USD> output_per_million = <USD>"
    )]
    UnpricedModel(String),

    #[error("too large: {0}")]
    TooLarge(String),

    /// A request head over the edge's limits (431).
    #[error("request header fields too large: {0}")]
    HeadersTooLarge(String),

    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),

    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),

    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),

    /// The client does not accept what the route answers with (`Accept`).
    #[error("not acceptable: {0}")]
    NotAcceptable(String),

    #[error("request timed out: {0}")]
    RequestTimeout(String),

    #[error("{0}")]
    CostLimit(Box<CostLimitExceeded>),

    #[error("unauthorized: {0}")]
    Unauthorized(String),

    #[error("rate limit exceeded: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },

    #[error("forbidden: {0}")]
    Forbidden(String),

    /// A request body arriving slower than the edge's minimum rate (408): it would hold its
    /// connection for the whole request timeout.
    #[error("request body too slow: {0}")]
    BodyTooSlow(String),

    /// A daily budget is spent (the audit log's room for reported events): 429 until the next
    /// UTC day, never a silent drop.
    #[error("{message}; retry in {retry_after_secs} s")]
    BudgetSpent {
        message: String,
        retry_after_secs: u64,
    },

    /// Another process holds the home (one server per home, SPEC §6).
    #[error("{0}")]
    HomeInUse(String),

    /// Device discovery asked of a server whose `discovery` setting is off (409): nothing was
    /// sent; the message says how to turn it on.
    #[error("{0}")]
    DiscoveryOff(String),

    /// Refused while lockdown is on; only `maestra lockdown --lift` on the machine lifts it.
    #[error("lockdown: {0}")]
    Lockdown(String),

    /// A failure with its cause kept: it reads, maps to a status and carries a `code` exactly
    /// as `error` does, and hands `source` to whoever walks the chain (logs, tests). Built with
    /// [`Error::because`]; [`Error::plain`] is the failure to match on.
    #[error("{error}")]
    Caused {
        error: Box<Error>,
        #[source]
        source: BoxError,
    },
}

/// A cause kept behind an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The marker a request body's read error carries when the edge cut the body off for
/// arriving too slowly (`gateway::server`). It lives here, below every reader of bodies (the
/// JSON extractor, the services proxy), so each can tell that failure from the others.
#[derive(Debug)]
pub struct SlowBody {
    /// The minimum rate, in bytes a second, the body fell below.
    pub min_rate: u64,
}

impl std::fmt::Display for SlowBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived slower than {} bytes a second",
            self.min_rate
        )
    }
}

impl std::error::Error for SlowBody {}

/// The [`SlowBody`] in `err`'s chain, if the body failed for being too slow.
pub fn slow_body<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a SlowBody> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(slow) = e.downcast_ref::<SlowBody>() {
            return Some(slow);
        }
        cur = e.source();
    }
    None
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// This failure, with `source` kept as its cause. The message must already say what the
    /// caller wants shown (the cause is not appended), and the cause must hold no secret:
    /// a reqwest error goes in `without_url()`, a decryption error not at all.
    pub fn because(self, source: impl Into<BoxError>) -> Self {
        Error::Caused {
            error: Box::new(self),
            source: source.into(),
        }
    }

    /// Every cause behind this failure, nearest first (what logs and tests walk).
    pub fn causes(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        std::iter::successors(std::error::Error::source(self), |c| c.source())
    }

    /// The failure itself, without the cause [`Error::because`] kept: the one to match on.
    pub fn plain(&self) -> &Error {
        match self {
            Error::Caused { error, .. } => error.plain(),
            e => e,
        }
    }

    /// [`Error::plain`], by value: the cause is dropped.
    pub fn into_plain(self) -> Error {
        match self {
            Error::Caused { error, .. } => error.into_plain(),
            e => e,
        }
    }

    /// The HTTP status this failure maps to at the edge.
    pub fn status(&self) -> u16 {
        match self {
            Error::Caused { error, .. } => error.status(),
            Error::BadRequest(_) | Error::InvalidToken(_) | Error::UnpricedModel(_) => 400,
            Error::NotFound(_) | Error::SecretNotFound(_) | Error::UnknownModel(_) => 404,
            Error::TooLarge(_) => 413,
            Error::HeadersTooLarge(_) => 431,
            Error::UnsupportedMediaType(_) => 415,
            Error::UpstreamUnavailable(_) => 503,
            Error::MethodNotAllowed(_) => 405,
            Error::NotAcceptable(_) => 406,
            Error::CostLimit(_) => 402,
            Error::Unauthorized(_) => 401,
            Error::RateLimited { .. } | Error::BudgetSpent { .. } => 429,
            Error::BodyTooSlow(_) => 408,
            Error::Forbidden(_) => 403,
            Error::HomeInUse(_) | Error::DiscoveryOff(_) => 409,
            Error::Lockdown(_) => 403,
            Error::RequestTimeout(_) => 504,
            Error::LocalOnly(_) => 403,
            Error::Upstream(_) | Error::ToolError(_) => 502,
            Error::AuditUnavailable(_) => 503,
            Error::UpstreamTimeout(_) => 504,
            Error::Config(_)
            | Error::Permissions { .. }
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Database(_)
            | Error::Migrate(_)
            | Error::Vault(_)
            | Error::Audit(_) => 503,
        }
    }

    /// The stable snake_case code of SPEC §4.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Caused { error, .. } => error.code(),
            Error::Config(_) => "configuration_error",
            Error::Permissions { .. } => "insecure_permissions",
            Error::Io { .. } => "io_error",
            Error::Store(_) | Error::Database(_) | Error::Migrate(_) => "storage_unavailable",
            Error::Vault(_) => "vault_error",
            Error::SecretNotFound(_) => "secret_not_found",
            Error::InvalidToken(_) => "invalid_token",
            Error::Audit(_) => "audit_error",
            Error::AuditUnavailable(_) => "audit_unavailable",
            Error::LocalOnly(_) => "local_only_mode",
            Error::Upstream(_) => "upstream_error",
            Error::ToolError(_) => "tool_error",
            Error::UpstreamTimeout(_) => "upstream_timeout",
            Error::BadRequest(_) => "bad_request",
            Error::NotFound(_) => "not_found",
            Error::UnknownModel(_) => "model_not_found",
            Error::UnpricedModel(_) => "unpriced_model",
            Error::TooLarge(_) => "payload_too_large",
            Error::HeadersTooLarge(_) => "headers_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::UpstreamUnavailable(_) => "upstream_unavailable",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::NotAcceptable(_) => "not_acceptable",
            Error::CostLimit(_) => "cost_limit_exceeded",
            Error::Unauthorized(_) => "unauthorized",
            Error::RateLimited { .. } => "rate_limit_exceeded",
            Error::Forbidden(_) => "forbidden",
            Error::HomeInUse(_) => "home_in_use",
            Error::DiscoveryOff(_) => "discovery_off",
            Error::Lockdown(_) => "lockdown",
            Error::RequestTimeout(_) => "request_timeout",
            Error::BodyTooSlow(_) => "request_body_timeout",
            Error::BudgetSpent { .. } => "budget_exhausted",
        }
    }

    /// The SPEC §4 body: `{"error": {"code", "message", ...}}`.
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code(), "message": self.to_string() });
        let this = self.plain();
        if let (Error::LocalOnly(block), Some(obj)) = (this, err.as_object_mut()) {
            obj.insert("service".into(), json!(block.service));
            obj.insert("reason".into(), json!(block.reason));
            obj.insert(
                "suggested_alternatives".into(),
                json!(block.suggested_alternatives),
            );
        }
        if let (Error::CostLimit(c), Some(obj)) = (this, err.as_object_mut()) {
            obj.insert("period".into(), json!(c.period));
            obj.insert("scope".into(), json!(c.scope));
            obj.insert("limit_usd".into(), json!(c.limit_usd));
            obj.insert("spent_usd".into(), json!(c.spent_usd));
            obj.insert("reserved_usd".into(), json!(c.reserved_usd));
            obj.insert("resets_at".into(), json!(c.resets_at));
        }
        if let (
            Error::RateLimited { retry_after_secs }
            | Error::BudgetSpent {
                retry_after_secs, ..
            },
            Some(obj),
        ) = (this, err.as_object_mut())
        {
            obj.insert("retry_after".into(), json!(retry_after_secs));
        }
        json!({ "error": err })
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(Box::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_error_keeps_its_cause_and_its_status() {
        let e = Error::from(sqlx::Error::RowNotFound);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!((e.status(), e.code()), (503, "storage_unavailable"));
    }

    #[test]
    fn a_kept_cause_is_found_in_the_chain_and_changes_nothing_shown() {
        let e = crate::backup::manifest::Manifest::from_json(b"{").unwrap_err();
        assert!(e.causes().any(|c| c.is::<serde_json::Error>()), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("bad request: backup: the manifest is not valid: ")
        );
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert!(matches!(e.plain(), Error::BadRequest(_)));

        let io = std::io::Error::other("disk gone");
        let e = Error::Store("cannot write".into()).because(io);
        assert_eq!(e.to_string(), "storage error: cannot write");
        assert_eq!(e.body()["error"]["code"], "storage_unavailable");
        assert!(e.causes().any(|c| c.to_string() == "disk gone"));

        // Kept twice over: the chain runs through both, the outer failure is what shows.
        let inner = Error::Upstream("a".into()).because(std::io::Error::other("root"));
        let e = Error::Config("b".into()).because(inner);
        assert_eq!(
            (e.to_string().as_str(), e.code()),
            ("configuration error: b", "configuration_error")
        );
        assert!(e.causes().any(|c| c.to_string() == "root"));

        // The extra fields of the body come from the failure itself.
        let e = Error::RateLimited {
            retry_after_secs: 7,
        }
        .because(std::io::Error::other("x"));
        assert_eq!(
            (e.status(), e.body()["error"]["retry_after"].as_u64()),
            (429, Some(7))
        );
    }
}
