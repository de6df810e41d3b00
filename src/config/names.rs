//! Environment names and defaults of the top-level settings, in one place.
//!
//! Each setting lists Maestra's own name first, then the seeds' aliases (SPEC §5): the first
//! one set wins, so `MAESTRA_LOCAL_ONLY=false` overrides a leftover `ATOM_LOCAL_ONLY=true`.

pub(super) const HOME: &str = "MAESTRA_HOME";
pub(super) const MODE: &[&str] = &["MAESTRA_MODE"];
pub(super) const BIND: &[&str] = &["MAESTRA_BIND"];
pub(super) const LOCAL_ONLY: &[&str] = &["MAESTRA_LOCAL_ONLY", "ATOM_LOCAL_ONLY"];
pub(super) const ENCRYPTION_KEY: &[&str] = &["MAESTRA_ENCRYPTION_KEY", "BYOK_ENCRYPTION_KEY"];
pub(super) const API_KEY: &[&str] = &["MAESTRA_API_KEY"];
pub(super) const DAILY_COST_LIMIT: &[&str] = &["MAESTRA_DAILY_COST_LIMIT"];
pub(super) const MONTHLY_COST_LIMIT: &[&str] = &["MAESTRA_MONTHLY_COST_LIMIT"];
pub(super) const RATE_LIMIT_REQUESTS: &[&str] = &["MAESTRA_RATE_LIMIT_REQUESTS"];
pub(super) const RATE_LIMIT_WINDOW: &[&str] = &["MAESTRA_RATE_LIMIT_WINDOW"];
pub(super) const CLOUD_STORAGE: &[&str] = &["MAESTRA_CLOUD_STORAGE"];
pub(super) const DB_URL: &[&str] = &["MAESTRA_DB_URL"];
pub(super) const REDIS_URL: &[&str] = &["MAESTRA_REDIS_URL"];
pub(super) const REDIS_PREFIX: &[&str] = &["MAESTRA_REDIS_PREFIX"];
pub(super) const OPENAI_KEY: &[&str] = &["MAESTRA_OPENAI_KEY"];
pub(super) const ANTHROPIC_KEY: &[&str] = &["MAESTRA_ANTHROPIC_KEY"];
pub(super) const LOCAL_MODEL_URL: &[&str] = &["MAESTRA_LOCAL_MODEL_URL"];
pub(super) const LOCAL_MODEL: &[&str] = &["MAESTRA_LOCAL_MODEL"];
pub(super) const OPENAI_BASE_URL: &[&str] = &["MAESTRA_OPENAI_BASE_URL"];
pub(super) const ANTHROPIC_BASE_URL: &[&str] = &["MAESTRA_ANTHROPIC_BASE_URL"];
pub(super) const CLOUD_FALLBACK: &[&str] = &["MAESTRA_CLOUD_FALLBACK"];
pub(super) const DISCOVERY: &[&str] = &["MAESTRA_DISCOVERY"];
pub(super) const UPSTREAM_TIMEOUT: &[&str] = &["MAESTRA_UPSTREAM_TIMEOUT"];
pub(super) const CORS_ORIGINS: &[&str] = &["MAESTRA_CORS_ORIGINS"];
pub(super) const LOG: &[&str] = &["MAESTRA_LOG"];
pub(super) const AUDIT_LOG_PATH: &[&str] = &["AUDIT_LOG_PATH"];
pub(super) const AUDIT_RETENTION_DAYS: &[&str] = &["AUDIT_LOG_RETENTION_DAYS"];
pub(super) const AUDIT_FAIL_CLOSED: &[&str] = &["MAESTRA_AUDIT_FAIL_CLOSED"];
pub(super) const TLS: &[&str] = &["MAESTRA_TLS"];
pub(super) const TLS_CERT: &[&str] = &["MAESTRA_TLS_CERT"];
pub(super) const TLS_KEY: &[&str] = &["MAESTRA_TLS_KEY"];
pub(super) const ALLOW_IPS: &[&str] = &["MAESTRA_ALLOW_IPS"];
pub(super) const TRUSTED_PROXIES: &[&str] = &["MAESTRA_TRUSTED_PROXIES"];
pub(super) const FORWARDED_HEADER: &[&str] = &["MAESTRA_FORWARDED_HEADER"];
pub(super) const MAX_CONNECTIONS: &[&str] = &["MAESTRA_MAX_CONNECTIONS"];
pub(super) const MAX_MODEL_BODY_BYTES: &[&str] = &["MAESTRA_MAX_MODEL_BODY_BYTES"];

/// The loopback port the seeds' assistants already call.
pub(super) const DEFAULT_BIND: &str = "127.0.0.1:8825";
pub(super) const DEFAULT_DAILY_COST_LIMIT: f64 = 5.0;
pub(super) const DEFAULT_MONTHLY_COST_LIMIT: f64 = 100.0;
pub(super) const DEFAULT_RATE_LIMIT_REQUESTS: u32 = 100;
pub(super) const DEFAULT_RATE_LIMIT_WINDOW: u64 = 60;
pub(super) const DEFAULT_REDIS_PREFIX: &str = "maestra:";
/// Ollama's OpenAI-compatible endpoint.
pub(super) const DEFAULT_LOCAL_MODEL_URL: &str = "http://127.0.0.1:11434/v1";
pub(super) const DEFAULT_LOCAL_MODEL: &str = "llama3.2";
pub(super) const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub(super) const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
pub(super) const DEFAULT_UPSTREAM_TIMEOUT: u64 = 120;
pub(super) const DEFAULT_LOG: &str = "info";
