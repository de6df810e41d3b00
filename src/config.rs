//! `maestra.toml` plus environment, with the seeds' names honoured (SPEC §5).
//!
//! The environment is read through [`EnvSource`] so parsing is tested with a plain map and never
//! touches the real process environment. Secret-typed values are [`SecretString`]s: their
//! `Debug` prints `[REDACTED]`, so a config dump can never show a key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};

mod conversations;
mod cost;
pub mod network;
#[cfg(test)]
mod proptests;
mod server;
mod validate;

pub use conversations::ConversationsConfig;
pub use cost::{CostConfig, PriceConfig};
pub use server::ServerConfig;
use validate::{MAX_AUDIT_QUEUE, MAX_RATE_LIMIT_REQUESTS, MAX_RETENTION_DAYS, MAX_SECONDS};
pub use validate::{MAX_LIMIT_USD, MAX_OUTPUT_TOKENS, MAX_PRICE_PER_MILLION};

/// Where environment variables come from.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Local,
    Cloud,
}

/// The file's shape. Every table denies unknown keys so a typo is an error naming the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    mode: Option<Mode>,
    local_only: Option<bool>,
    encryption_key: Option<SecretString>,
    api_key: Option<SecretString>,
    daily_cost_limit: Option<f64>,
    monthly_cost_limit: Option<f64>,
    rate_limit_requests: Option<u32>,
    rate_limit_window: Option<u64>,
    cloud_storage: Option<String>,
    db_url: Option<SecretString>,
    redis_url: Option<SecretString>,
    redis_prefix: Option<String>,
    openai_key: Option<SecretString>,
    anthropic_key: Option<SecretString>,
    local_model_url: Option<String>,
    local_model: Option<String>,
    openai_base_url: Option<String>,
    anthropic_base_url: Option<String>,
    cloud_fallback: Option<bool>,
    upstream_timeout: Option<u64>,
    log: Option<String>,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    server: server::ServerFile,
    #[serde(default)]
    cost: cost::CostFile,
    #[serde(default)]
    pricing: BTreeMap<String, PriceConfig>,
    cors_origins: Option<Vec<String>>,
    tls: Option<network::TlsFile>,
    allow_ips: Option<Vec<String>>,
    trusted_proxies: Option<Vec<String>>,
    forwarded_header: Option<String>,
    #[serde(default)]
    conversations: conversations::ConversationsFile,
    #[serde(default)]
    guard: GuardConfig,
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    path: Option<PathBuf>,
    retention_days: Option<u32>,
    fail_closed: Option<bool>,
    queue_capacity: Option<usize>,
}

/// Overrides of the local-only service catalog (SPEC §2.1).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Extra names treated as cloud services (blocked in local-only mode).
    #[serde(default)]
    pub cloud_services: Vec<String>,
    /// Extra names treated as local services.
    #[serde(default)]
    pub local_services: Vec<String>,
}

/// A personal service of SPEC §2.7.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub base_url: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub credential: Option<String>,
    pub auth: Option<String>,
    pub token_url: Option<String>,
    /// Body types besides JSON that writes to this service may carry (SPEC §2.6).
    #[serde(default)]
    pub content_types: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub retention_days: u32,
    pub fail_closed: bool,
    pub queue_capacity: usize,
}

/// The validated configuration every command runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    pub config_file: PathBuf,
    pub bind: String,
    pub mode: Mode,
    pub local_only: bool,
    /// Vault keys from the environment or the file; `None` means the key file under `keys/`.
    pub encryption_keys: Option<SecretString>,
    pub api_key: Option<SecretString>,
    pub daily_cost_limit: f64,
    pub monthly_cost_limit: f64,
    pub rate_limit_requests: u32,
    pub rate_limit_window: u64,
    pub cloud_storage: Option<String>,
    pub db_url: Option<SecretString>,
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so instances of one deployment share limits and others don't.
    pub redis_prefix: String,
    pub openai_key: Option<SecretString>,
    pub anthropic_key: Option<SecretString>,
    pub local_model_url: String,
    pub local_model: Option<String>,
    pub openai_base_url: String,
    pub anthropic_base_url: String,
    pub cloud_fallback: bool,
    /// Seconds an upstream model may take to answer (or to send the next streamed event).
    pub upstream_timeout: u64,
    pub log: String,
    pub audit: AuditConfig,
    pub server: ServerConfig,
    pub conversations: ConversationsConfig,
    pub cost: CostConfig,
    /// Pricing overrides and additions, by model name or prefix.
    pub pricing: BTreeMap<String, PriceConfig>,
    /// Browser origins allowed to call the API (CORS); empty allows none, never `*`.
    pub cors_origins: Vec<String>,
    /// TLS, the address allow-list, trusted proxies (issue 15).
    pub network: network::NetworkConfig,
    pub guard: GuardConfig,
    pub services: BTreeMap<String, ServiceConfig>,
}

impl Config {
    /// Loads `--config FILE` (or `$MAESTRA_HOME/maestra.toml` when it exists) and applies the
    /// environment on top.
    pub fn load(env: &dyn EnvSource, config_file: Option<&Path>) -> Result<Config> {
        let home = match env.var("MAESTRA_HOME") {
            Some(h) => PathBuf::from(h),
            None => default_home(env)?,
        };
        let path = config_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| home.join("maestra.toml"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && config_file.is_none() => None,
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        Self::from_parts(env, home, path, text.as_deref())
    }

    /// Builds the configuration from a file's text and an environment; pure, for tests.
    pub fn from_parts(
        env: &dyn EnvSource,
        home: PathBuf,
        config_file: PathBuf,
        text: Option<&str>,
    ) -> Result<Config> {
        let file: FileConfig = match text {
            Some(t) => toml::from_str(t).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| t[..s.start.min(t.len())].matches('\n').count() + 1)
                    .unwrap_or(1);
                let message = e.message().trim().replace('\n', "; ");
                Error::Config(format!(
                    "{} line {line}{}: {message}",
                    config_file.display(),
                    key_of_line(t, line)
                ))
            })?,
            None => FileConfig::default(),
        };
        let e = Lookup(env);
        let mode = match e.get(&["MAESTRA_MODE"]) {
            Some(m) => match m.to_ascii_lowercase().as_str() {
                "local" => Mode::Local,
                "cloud" => Mode::Cloud,
                other => {
                    return Err(Error::Config(format!(
                        "MAESTRA_MODE must be `local` or `cloud`, not {other:?}"
                    )));
                }
            },
            None => file.mode.unwrap_or_default(),
        };
        let audit_path = e
            .get(&["AUDIT_LOG_PATH"])
            .map(PathBuf::from)
            .or(file.audit.path)
            .map(|p| if p.is_relative() { home.join(p) } else { p })
            .unwrap_or_else(|| home.join("logs").join("audit.log"));
        let cfg = Config {
            bind: validate::socket_addr(
                "bind (MAESTRA_BIND)",
                &e.get(&["MAESTRA_BIND"])
                    .or(file.bind)
                    .unwrap_or_else(|| "127.0.0.1:8825".into()),
            )?,
            mode,
            local_only: e
                .bool(&["MAESTRA_LOCAL_ONLY", "ATOM_LOCAL_ONLY"])?
                .or(file.local_only)
                .unwrap_or(false),
            encryption_keys: e
                .secret(&["MAESTRA_ENCRYPTION_KEY", "BYOK_ENCRYPTION_KEY"])
                .or(file.encryption_key),
            api_key: e.secret(&["MAESTRA_API_KEY"]).or(file.api_key),
            daily_cost_limit: validate::limit(
                "daily_cost_limit (MAESTRA_DAILY_COST_LIMIT)",
                e.num(&["MAESTRA_DAILY_COST_LIMIT"])?
                    .or(file.daily_cost_limit)
                    .unwrap_or(5.0),
            )?,
            monthly_cost_limit: validate::limit(
                "monthly_cost_limit (MAESTRA_MONTHLY_COST_LIMIT)",
                e.num(&["MAESTRA_MONTHLY_COST_LIMIT"])?
                    .or(file.monthly_cost_limit)
                    .unwrap_or(100.0),
            )?,
            rate_limit_requests: validate::range(
                "rate_limit_requests (MAESTRA_RATE_LIMIT_REQUESTS)",
                e.num(&["MAESTRA_RATE_LIMIT_REQUESTS"])?
                    .or(file.rate_limit_requests)
                    .unwrap_or(100),
                1,
                MAX_RATE_LIMIT_REQUESTS,
            )?,
            rate_limit_window: validate::range(
                "rate_limit_window (MAESTRA_RATE_LIMIT_WINDOW)",
                e.num(&["MAESTRA_RATE_LIMIT_WINDOW"])?
                    .or(file.rate_limit_window)
                    .unwrap_or(60),
                1,
                MAX_SECONDS,
            )?,
            cloud_storage: e.get(&["MAESTRA_CLOUD_STORAGE"]).or(file.cloud_storage),
            db_url: e.secret(&["MAESTRA_DB_URL"]).or(file.db_url),
            redis_url: e.secret(&["MAESTRA_REDIS_URL"]).or(file.redis_url),
            redis_prefix: e
                .get(&["MAESTRA_REDIS_PREFIX"])
                .or(file.redis_prefix)
                .unwrap_or_else(|| "maestra:".into()),
            openai_key: e.secret(&["MAESTRA_OPENAI_KEY"]).or(file.openai_key),
            anthropic_key: e.secret(&["MAESTRA_ANTHROPIC_KEY"]).or(file.anthropic_key),
            local_model_url: validate::endpoint(
                "local_model_url (MAESTRA_LOCAL_MODEL_URL)",
                &e.get(&["MAESTRA_LOCAL_MODEL_URL"])
                    .or(file.local_model_url)
                    .unwrap_or_else(|| "http://127.0.0.1:11434/v1".into()),
            )?,
            local_model: e.get(&["MAESTRA_LOCAL_MODEL"]).or(file.local_model),
            openai_base_url: validate::endpoint(
                "openai_base_url (MAESTRA_OPENAI_BASE_URL)",
                &e.get(&["MAESTRA_OPENAI_BASE_URL"])
                    .or(file.openai_base_url)
                    .unwrap_or_else(|| "https://api.openai.com/v1".into()),
            )?,
            anthropic_base_url: validate::endpoint(
                "anthropic_base_url (MAESTRA_ANTHROPIC_BASE_URL)",
                &e.get(&["MAESTRA_ANTHROPIC_BASE_URL"])
                    .or(file.anthropic_base_url)
                    .unwrap_or_else(|| "https://api.anthropic.com/v1".into()),
            )?,
            cloud_fallback: e
                .bool(&["MAESTRA_CLOUD_FALLBACK"])?
                .or(file.cloud_fallback)
                .unwrap_or(false),
            upstream_timeout: validate::range(
                "upstream_timeout (MAESTRA_UPSTREAM_TIMEOUT)",
                e.num(&["MAESTRA_UPSTREAM_TIMEOUT"])?
                    .or(file.upstream_timeout)
                    .unwrap_or(120),
                1,
                MAX_SECONDS,
            )?,
            server: server::load(file.server)?,
            conversations: conversations::load(&e, file.conversations)?,
            cost: cost::load(file.cost)?,
            pricing: cost::check_pricing(file.pricing)?,
            cors_origins: e
                .get(&["MAESTRA_CORS_ORIGINS"])
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect::<Vec<_>>()
                })
                .or(file.cors_origins)
                .unwrap_or_default()
                .iter()
                .map(|o| validate::origin("cors_origins (MAESTRA_CORS_ORIGINS)", o))
                .collect::<Result<_>>()?,
            log: e
                .get(&["MAESTRA_LOG"])
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            audit: AuditConfig {
                path: audit_path,
                retention_days: validate::range(
                    "audit.retention_days (AUDIT_LOG_RETENTION_DAYS)",
                    e.num(&["AUDIT_LOG_RETENTION_DAYS"])?
                        .or(file.audit.retention_days)
                        .unwrap_or(90),
                    1,
                    MAX_RETENTION_DAYS,
                )?,
                fail_closed: e
                    .bool(&["MAESTRA_AUDIT_FAIL_CLOSED"])?
                    .or(file.audit.fail_closed)
                    .unwrap_or(false),
                queue_capacity: validate::range(
                    "audit.queue_capacity",
                    file.audit.queue_capacity.unwrap_or(16_384),
                    1,
                    MAX_AUDIT_QUEUE,
                )?,
            },
            network: network::load(
                network::NetworkEnv {
                    tls: e.get(&["MAESTRA_TLS"]),
                    cert: e.get(&["MAESTRA_TLS_CERT"]),
                    key: e.get(&["MAESTRA_TLS_KEY"]),
                    allow_ips: e.get(&["MAESTRA_ALLOW_IPS"]),
                    trusted_proxies: e.get(&["MAESTRA_TRUSTED_PROXIES"]),
                    forwarded_header: e.get(&["MAESTRA_FORWARDED_HEADER"]),
                },
                file.tls,
                file.allow_ips,
                file.trusted_proxies,
                file.forwarded_header,
                &home,
            )?,
            guard: file.guard,
            services: file.services,
            home,
            config_file,
        };
        cfg.check_formats()?;
        Ok(cfg)
    }

    /// The format checks that need several fields or none of the range checks above.
    fn check_formats(&self) -> Result<()> {
        if let Some(storage) = &self.cloud_storage
            && storage != "postgresql"
            && storage != "sqlite"
        {
            return Err(Error::Config(format!(
                "MAESTRA_CLOUD_STORAGE must be `postgresql` (or `sqlite`), not {storage:?}"
            )));
        }
        validate::secret_token("api_key (MAESTRA_API_KEY)", self.api_key.as_ref())?;
        validate::secret_token("openai_key (MAESTRA_OPENAI_KEY)", self.openai_key.as_ref())?;
        validate::secret_token(
            "anthropic_key (MAESTRA_ANTHROPIC_KEY)",
            self.anthropic_key.as_ref(),
        )?;
        validate::secret_url(
            "db_url (MAESTRA_DB_URL)",
            self.db_url.as_ref(),
            &["postgres", "postgresql"],
        )?;
        validate::secret_url(
            "redis_url (MAESTRA_REDIS_URL)",
            self.redis_url.as_ref(),
            &["redis", "rediss", "redis+unix", "unix"],
        )?;
        validate::token("redis_prefix (MAESTRA_REDIS_PREFIX)", &self.redis_prefix)?;
        if let Some(models) = &self.local_model {
            validate::model_names("local_model (MAESTRA_LOCAL_MODEL)", models)?;
        }
        validate::log_filter("log (MAESTRA_LOG)", &self.log)?;
        if self.audit.path.as_os_str().is_empty() || self.audit.path.file_name().is_none() {
            return Err(Error::Config(
                "audit.path (AUDIT_LOG_PATH) must name a file".into(),
            ));
        }
        validate::service_names("guard.cloud_services", &self.guard.cloud_services)?;
        validate::service_names("guard.local_services", &self.guard.local_services)?;
        self.check_services()
    }

    /// Every `[services.NAME]` table resolved once now, so a bad one is an error at start
    /// rather than a 503 on its first call.
    fn check_services(&self) -> Result<()> {
        let catalog = crate::privsec::guard::Catalog::new(&self.guard);
        for name in self.services.keys() {
            crate::services::resolve(name, &self.services, &catalog).map_err(|e| match e {
                Error::Config(m) => Error::Config(m),
                other => Error::Config(format!("[services.{name}]: {}", inner_message(&other))),
            })?;
        }
        Ok(())
    }

    /// The local model names (`MAESTRA_LOCAL_MODEL`, comma-separated); the first is the default.
    pub fn local_models(&self) -> Vec<String> {
        let names: Vec<String> = self
            .local_model
            .as_deref()
            .unwrap_or("llama3.2")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            vec!["llama3.2".into()]
        } else {
            names
        }
    }

    /// Whether conversations go to the shared PostgreSQL store.
    pub fn uses_postgres(&self) -> bool {
        self.cloud_storage.as_deref() == Some("postgresql")
    }

    /// The SQLite database of the embedded store.
    pub fn db_path(&self) -> PathBuf {
        self.home.join("maestra.db")
    }
}

fn default_home(env: &dyn EnvSource) -> Result<PathBuf> {
    env.var("HOME")
        .map(|h| PathBuf::from(h).join(".8825"))
        .ok_or_else(|| Error::Config("neither MAESTRA_HOME nor HOME is set".into()))
}

/// ` (`KEY`)` for the `KEY = ...` line of a TOML error, so the message names the setting
/// without quoting its value (which may be a secret).
fn key_of_line(text: &str, line: usize) -> String {
    let Some(l) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    match l.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() && key.trim().len() <= 128 => {
            format!(" (`{}`)", key.trim())
        }
        _ => String::new(),
    }
}

/// An error's message without the status prefix its `Display` adds.
fn inner_message(e: &Error) -> String {
    match e {
        Error::BadRequest(m) | Error::NotFound(m) | Error::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Environment lookups over a list of names, first one set wins (Maestra's name, then the seed's).
struct Lookup<'a>(&'a dyn EnvSource);

impl Lookup<'_> {
    fn get(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.0.var(n))
    }

    fn named(&self, names: &[&str]) -> Option<(String, String)> {
        names
            .iter()
            .find_map(|n| self.0.var(n).map(|v| ((*n).to_string(), v)))
    }

    fn secret(&self, names: &[&str]) -> Option<SecretString> {
        self.get(names).map(SecretString::from)
    }

    fn bool(&self, names: &[&str]) -> Result<Option<bool>> {
        let Some((name, v)) = self.named(names) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::Config(format!(
                "{name} must be true or false, not {v:?}"
            ))),
        }
    }

    fn num<T: std::str::FromStr>(&self, names: &[&str]) -> Result<Option<T>> {
        let Some((name, v)) = self.named(names) else {
            return Ok(None);
        };
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Config(format!("{name} must be a number, not {v:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)], text: Option<&str>) -> Result<Config> {
        Config::from_parts(
            &env(pairs),
            PathBuf::from("/h"),
            PathBuf::from("/h/maestra.toml"),
            text,
        )
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8825");
        assert_eq!(c.mode, Mode::Local);
        assert!(!c.local_only);
        assert_eq!(c.daily_cost_limit, 5.0);
        assert_eq!(c.monthly_cost_limit, 100.0);
        assert_eq!(c.rate_limit_requests, 100);
        assert_eq!(c.rate_limit_window, 60);
        assert_eq!(c.audit.retention_days, 90);
        assert_eq!(c.audit.path, PathBuf::from("/h/logs/audit.log"));
        assert_eq!(c.local_model_url, "http://127.0.0.1:11434/v1");
        assert!(!c.cloud_fallback);
    }

    #[test]
    fn seed_aliases_are_honoured() {
        let c = load(
            &[
                ("ATOM_LOCAL_ONLY", "true"),
                ("BYOK_ENCRYPTION_KEY", "k1"),
                ("AUDIT_LOG_PATH", "/var/a.log"),
                ("AUDIT_LOG_RETENTION_DAYS", "7"),
                ("MAESTRA_MODE", "cloud"),
                ("MAESTRA_API_KEY", "static"),
                ("MAESTRA_DAILY_COST_LIMIT", "1.5"),
                ("MAESTRA_MONTHLY_COST_LIMIT", "20"),
                ("MAESTRA_RATE_LIMIT_REQUESTS", "10"),
                ("MAESTRA_RATE_LIMIT_WINDOW", "30"),
                ("MAESTRA_CLOUD_STORAGE", "postgresql"),
                ("MAESTRA_DB_URL", "postgresql://x"),
                ("MAESTRA_OPENAI_KEY", "sk-o"),
                ("MAESTRA_ANTHROPIC_KEY", "sk-a"),
            ],
            None,
        )
        .unwrap();
        assert!(c.local_only);
        assert_eq!(c.encryption_keys.unwrap().expose_secret(), "k1");
        assert_eq!(c.audit.path, PathBuf::from("/var/a.log"));
        assert_eq!(c.audit.retention_days, 7);
        assert_eq!(c.mode, Mode::Cloud);
        assert_eq!(c.daily_cost_limit, 1.5);
        assert_eq!(c.monthly_cost_limit, 20.0);
        assert_eq!(c.rate_limit_requests, 10);
        assert_eq!(c.rate_limit_window, 30);
        assert_eq!(c.cloud_storage.as_deref(), Some("postgresql"));
        assert!(c.openai_key.is_some() && c.anthropic_key.is_some());
    }

    #[test]
    fn maestra_name_wins_over_seed_alias() {
        let c = load(
            &[("MAESTRA_LOCAL_ONLY", "false"), ("ATOM_LOCAL_ONLY", "true")],
            None,
        )
        .unwrap();
        assert!(!c.local_only);
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            &[("MAESTRA_BIND", "127.0.0.1:9")],
            Some("bind = \"127.0.0.1:1\"\nlocal_only = true\n[audit]\nfail_closed = true\n"),
        )
        .unwrap();
        assert_eq!(c.bind, "127.0.0.1:9");
        assert!(c.local_only);
        assert!(c.audit.fail_closed);
    }

    #[test]
    fn server_and_conversation_tables_are_read() {
        let c = load(
            &[("MAESTRA_UPSTREAM_TIMEOUT", "7"), ("MAESTRA_LOCAL_MODEL", "a, b")],
            Some("[server]\nmax_body_bytes = 1000\n[conversations]\nretention_days = 30\nmax_messages = 9\n"),
        )
        .unwrap();
        assert_eq!(c.server.max_body_bytes, 1000);
        assert_eq!(c.conversations.retention_days, Some(30));
        assert_eq!(c.conversations.max_messages, 9);
        assert_eq!(c.upstream_timeout, 7);
        assert_eq!(c.local_models(), vec!["a", "b"]);
        let d = load(&[], None).unwrap();
        assert_eq!(d.conversations.retention_days, None);
        assert_eq!(d.local_models(), vec!["llama3.2"]);
        assert!(load(&[], Some("[server]\nmax_body = 1\n")).is_err());
    }

    #[test]
    fn pricing_and_cost_tables_are_validated() {
        let c = load(
            &[],
            Some("[pricing.\"my-model\"]\ninput_per_million = 1.0\noutput_per_million = 2.0\n[cost]\nuser_daily_limit = 1.5\n"),
        )
        .unwrap();
        assert_eq!(c.pricing["my-model"].output_per_million, 2.0);
        assert_eq!(c.cost.user_daily_limit, Some(1.5));
        assert_eq!(c.cost.max_output_tokens, 4096);
        let missing = load(&[], Some("[pricing.m]\ninput_per_million = 1.0\n"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("output_per_million"), "{missing}");
        let negative = load(
            &[],
            Some("[pricing.m]\ninput_per_million = -1.0\noutput_per_million = 1.0\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(negative.contains("input_per_million"), "{negative}");
        assert!(load(&[], Some("[cost]\nuser_daily_limit = -2\n")).is_err());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&[], Some("local_onyl = true\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("local_onyl"), "{err}");
        let err = load(&[], Some("[audit]\nretention = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
    }

    #[test]
    fn garbled_line_is_a_config_error() {
        let err = load(&[], Some("bind = = 3\n")).unwrap_err();
        assert!(matches!(err, Error::Config(_)));
    }

    #[test]
    fn bad_numbers_are_rejected() {
        for (k, v) in [
            ("MAESTRA_DAILY_COST_LIMIT", "-1"),
            ("MAESTRA_DAILY_COST_LIMIT", "abc"),
            ("MAESTRA_MONTHLY_COST_LIMIT", "NaN"),
            ("MAESTRA_RATE_LIMIT_REQUESTS", "0"),
            ("MAESTRA_LOCAL_ONLY", "maybe"),
            ("MAESTRA_MODE", "hybrid"),
        ] {
            let err = load(&[(k, v)], None).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }

    #[test]
    fn secrets_print_masked() {
        let c = load(
            &[
                ("MAESTRA_ENCRYPTION_KEY", "CANARY-enc"),
                ("MAESTRA_API_KEY", "CANARY-api"),
                ("MAESTRA_DB_URL", "postgresql://u:CANARY-pw@h/db"),
            ],
            Some("openai_key = \"CANARY-openai\"\n"),
        )
        .unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("CANARY"), "{dump}");
    }
}
