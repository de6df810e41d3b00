//! `maestra.toml` plus environment, with the seeds' names honoured (SPEC §5).
//!
//! The environment is read through [`EnvSource`] so parsing is tested with a plain map and never
//! touches the real process environment. Secret-typed values are [`SecretString`]s: their
//! `Debug` prints `[REDACTED]`, so a config dump can never show a key.
//!
//! It only parses and validates values; what needs more is checked where the configuration
//! is used. The `[services.NAME]` tables are resolved against the guard's catalog
//! (`services::check_services`) by every command as it loads the file (`context::load_config`)
//! and by `App::build`; the bind address is checked against the network by `App::build`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};

mod audit;
mod backup;
mod conversations;
mod cost;
mod env;
pub mod mcp;
pub mod minimise;
mod names;
pub mod network;
#[cfg(test)]
mod proptests;
mod server;
#[cfg(test)]
mod tests;
mod validate;

pub use audit::AuditConfig;
pub use backup::BackupConfig;
pub use conversations::ConversationsConfig;
pub use cost::{CostConfig, PriceConfig};
use env::Lookup;
pub use env::{EnvSource, ProcessEnv};
pub use server::ServerConfig;
pub use validate::{MAX_LIMIT_USD, MAX_OUTPUT_TOKENS, MAX_PRICE_PER_MILLION};
use validate::{MAX_RATE_LIMIT_REQUESTS, MAX_SECONDS};

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
    discovery: Option<bool>,
    upstream_timeout: Option<u64>,
    log: Option<String>,
    #[serde(default)]
    audit: audit::AuditFile,
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
    backup: backup::BackupFile,
    #[serde(default)]
    guard: GuardConfig,
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    mcp: mcp::McpFile,
    #[serde(default)]
    providers: minimise::ProvidersFile,
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
    /// Whether `POST /api/services/discover` (and `maestra services discover`) may look for
    /// devices on the local network: multicast the machine sends to whatever network it is on.
    /// Off, the route answers 409 `discovery_off` and sends nothing.
    pub discovery: bool,
    /// Seconds an upstream model may take to answer (or to send the next streamed event).
    pub upstream_timeout: u64,
    pub log: String,
    pub audit: AuditConfig,
    pub server: ServerConfig,
    pub conversations: ConversationsConfig,
    /// Where an `s3://` backup goes (issue 18).
    pub backup: BackupConfig,
    pub cost: CostConfig,
    /// Pricing overrides and additions, by model name or prefix.
    pub pricing: BTreeMap<String, PriceConfig>,
    /// Browser origins allowed to call the API (CORS); empty allows none, never `*`.
    pub cors_origins: Vec<String>,
    /// TLS, the address allow-list, trusted proxies (issue 15).
    pub network: network::NetworkConfig,
    pub guard: GuardConfig,
    pub services: BTreeMap<String, ServiceConfig>,
    /// The tool servers the person added (`[mcp.servers.NAME]`, SPEC §2.11).
    pub mcp: mcp::McpConfig,
    /// What calls to each cloud provider withhold (SPEC §2.12).
    pub minimise: minimise::Minimise,
}

impl Config {
    /// Loads `--config FILE` (or `$MAESTRA_HOME/maestra.toml` when it exists) and applies the
    /// environment on top.
    pub fn load(env: &dyn EnvSource, config_file: Option<&Path>) -> Result<Config> {
        let home = match env.var(names::HOME) {
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
        let mode = match e.get(names::MODE) {
            Some(m) => match m.to_ascii_lowercase().as_str() {
                "local" => Ok(Mode::Local),
                "cloud" => Ok(Mode::Cloud),
                other => Err(Error::Config(format!(
                    "MAESTRA_MODE must be `local` or `cloud`, not {other:?}"
                ))),
            },
            None => Ok(file.mode.unwrap_or_default()),
        };
        let bind = validate::socket_addr(
            "bind (MAESTRA_BIND)",
            &e.get(names::BIND)
                .or(file.bind)
                .unwrap_or_else(|| names::DEFAULT_BIND.into()),
        );
        let local_only = e
            .bool(names::LOCAL_ONLY)
            .map(|b| b.or(file.local_only).unwrap_or(false));
        let daily_cost_limit = e.num(names::DAILY_COST_LIMIT).and_then(|v| {
            validate::limit(
                "daily_cost_limit (MAESTRA_DAILY_COST_LIMIT)",
                v.or(file.daily_cost_limit)
                    .unwrap_or(names::DEFAULT_DAILY_COST_LIMIT),
            )
        });
        let monthly_cost_limit = e.num(names::MONTHLY_COST_LIMIT).and_then(|v| {
            validate::limit(
                "monthly_cost_limit (MAESTRA_MONTHLY_COST_LIMIT)",
                v.or(file.monthly_cost_limit)
                    .unwrap_or(names::DEFAULT_MONTHLY_COST_LIMIT),
            )
        });
        let rate_limit_requests = e.num(names::RATE_LIMIT_REQUESTS).and_then(|v| {
            validate::range(
                "rate_limit_requests (MAESTRA_RATE_LIMIT_REQUESTS)",
                v.or(file.rate_limit_requests)
                    .unwrap_or(names::DEFAULT_RATE_LIMIT_REQUESTS),
                1,
                MAX_RATE_LIMIT_REQUESTS,
            )
        });
        let rate_limit_window = e.num(names::RATE_LIMIT_WINDOW).and_then(|v| {
            validate::range(
                "rate_limit_window (MAESTRA_RATE_LIMIT_WINDOW)",
                v.or(file.rate_limit_window)
                    .unwrap_or(names::DEFAULT_RATE_LIMIT_WINDOW),
                1,
                MAX_SECONDS,
            )
        });
        let endpoint = |setting: &str, names: &[&str], file: Option<String>, default: &str| {
            validate::endpoint(
                setting,
                &e.get(names).or(file).unwrap_or_else(|| default.into()),
            )
        };
        let local_model_url = endpoint(
            "local_model_url (MAESTRA_LOCAL_MODEL_URL)",
            names::LOCAL_MODEL_URL,
            file.local_model_url,
            names::DEFAULT_LOCAL_MODEL_URL,
        );
        let openai_base_url = endpoint(
            "openai_base_url (MAESTRA_OPENAI_BASE_URL)",
            names::OPENAI_BASE_URL,
            file.openai_base_url,
            names::DEFAULT_OPENAI_BASE_URL,
        );
        let anthropic_base_url = endpoint(
            "anthropic_base_url (MAESTRA_ANTHROPIC_BASE_URL)",
            names::ANTHROPIC_BASE_URL,
            file.anthropic_base_url,
            names::DEFAULT_ANTHROPIC_BASE_URL,
        );
        let cloud_fallback = e
            .bool(names::CLOUD_FALLBACK)
            .map(|b| b.or(file.cloud_fallback).unwrap_or(false));
        let discovery = e
            .bool(names::DISCOVERY)
            .map(|b| b.or(file.discovery).unwrap_or(true));
        let upstream_timeout = e.num(names::UPSTREAM_TIMEOUT).and_then(|v| {
            validate::range(
                "upstream_timeout (MAESTRA_UPSTREAM_TIMEOUT)",
                v.or(file.upstream_timeout)
                    .unwrap_or(names::DEFAULT_UPSTREAM_TIMEOUT),
                1,
                MAX_SECONDS,
            )
        });
        let cors_origins = e
            .get(names::CORS_ORIGINS)
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
            .collect::<Result<Vec<_>>>();
        let server = server::load(&e, file.server);
        let conversations = conversations::load(&e, file.conversations);
        let backup = backup::load(file.backup);
        let mcp = mcp::load(file.mcp);
        let minimise = minimise::load(&e, file.providers);
        let cost = cost::load(file.cost);
        let pricing = cost::check_pricing(file.pricing);
        let audit = audit::load(&e, file.audit, &home);
        let network = network::load(
            network::NetworkEnv {
                tls: e.get(names::TLS),
                cert: e.get(names::TLS_CERT),
                key: e.get(names::TLS_KEY),
                allow_ips: e.get(names::ALLOW_IPS),
                trusted_proxies: e.get(names::TRUSTED_PROXIES),
                forwarded_header: e.get(names::FORWARDED_HEADER),
            },
            file.tls,
            file.allow_ips,
            file.trusted_proxies,
            file.forwarded_header,
            &home,
        );
        // Every setting is read before any is refused, so one start names them all.
        report(&[
            mode.as_ref().err(),
            bind.as_ref().err(),
            local_only.as_ref().err(),
            daily_cost_limit.as_ref().err(),
            monthly_cost_limit.as_ref().err(),
            rate_limit_requests.as_ref().err(),
            rate_limit_window.as_ref().err(),
            local_model_url.as_ref().err(),
            openai_base_url.as_ref().err(),
            anthropic_base_url.as_ref().err(),
            cloud_fallback.as_ref().err(),
            discovery.as_ref().err(),
            upstream_timeout.as_ref().err(),
            cors_origins.as_ref().err(),
            server.as_ref().err(),
            conversations.as_ref().err(),
            backup.as_ref().err(),
            mcp.as_ref().err(),
            minimise.as_ref().err(),
            cost.as_ref().err(),
            pricing.as_ref().err(),
            audit.as_ref().err(),
            network.as_ref().err(),
        ])
        .map_err(headed)?;
        let cfg = Config {
            bind: bind?,
            mode: mode?,
            local_only: local_only?,
            encryption_keys: e.secret(names::ENCRYPTION_KEY).or(file.encryption_key),
            api_key: e.secret(names::API_KEY).or(file.api_key),
            daily_cost_limit: daily_cost_limit?,
            monthly_cost_limit: monthly_cost_limit?,
            rate_limit_requests: rate_limit_requests?,
            rate_limit_window: rate_limit_window?,
            cloud_storage: e.get(names::CLOUD_STORAGE).or(file.cloud_storage),
            db_url: e.secret(names::DB_URL).or(file.db_url),
            redis_url: e.secret(names::REDIS_URL).or(file.redis_url),
            redis_prefix: e
                .get(names::REDIS_PREFIX)
                .or(file.redis_prefix)
                .unwrap_or_else(|| names::DEFAULT_REDIS_PREFIX.into()),
            openai_key: e.secret(names::OPENAI_KEY).or(file.openai_key),
            anthropic_key: e.secret(names::ANTHROPIC_KEY).or(file.anthropic_key),
            local_model_url: local_model_url?,
            local_model: e.get(names::LOCAL_MODEL).or(file.local_model),
            openai_base_url: openai_base_url?,
            anthropic_base_url: anthropic_base_url?,
            cloud_fallback: cloud_fallback?,
            discovery: discovery?,
            upstream_timeout: upstream_timeout?,
            server: server?,
            conversations: conversations?,
            backup: backup?,
            cost: cost?,
            pricing: pricing?,
            cors_origins: cors_origins?,
            log: e
                .get(names::LOG)
                .or(file.log)
                .unwrap_or_else(|| names::DEFAULT_LOG.into()),
            audit: audit?,
            network: network?,
            guard: file.guard,
            services: file.services,
            mcp: mcp?,
            minimise: minimise?,
            home,
            config_file,
        };
        cfg.check_formats()?;
        Ok(cfg)
    }

    /// The format checks that need several fields or none of the range checks above, all
    /// reported at once like those.
    fn check_formats(&self) -> Result<()> {
        let storage = match &self.cloud_storage {
            Some(s) if s != "postgresql" && s != "sqlite" => Err(Error::Config(format!(
                "MAESTRA_CLOUD_STORAGE must be `postgresql` (or `sqlite`), not {s:?}"
            ))),
            _ => Ok(()),
        };
        let local_model = match &self.local_model {
            Some(models) => validate::model_names("local_model (MAESTRA_LOCAL_MODEL)", models),
            None => Ok(()),
        };
        let checks = [
            storage,
            validate::secret_token("api_key (MAESTRA_API_KEY)", self.api_key.as_ref()),
            validate::secret_token("openai_key (MAESTRA_OPENAI_KEY)", self.openai_key.as_ref()),
            validate::secret_token(
                "anthropic_key (MAESTRA_ANTHROPIC_KEY)",
                self.anthropic_key.as_ref(),
            ),
            validate::secret_url(
                "db_url (MAESTRA_DB_URL)",
                self.db_url.as_ref(),
                &["postgres", "postgresql"],
            ),
            validate::secret_url(
                "redis_url (MAESTRA_REDIS_URL)",
                self.redis_url.as_ref(),
                &["redis", "rediss", "redis+unix", "unix"],
            ),
            validate::token("redis_prefix (MAESTRA_REDIS_PREFIX)", &self.redis_prefix),
            local_model,
            validate::log_filter("log (MAESTRA_LOG)", &self.log),
            validate::service_names("guard.cloud_services", &self.guard.cloud_services),
            validate::service_names("guard.local_services", &self.guard.local_services),
        ];
        report(&checks.iter().map(|c| c.as_ref().err()).collect::<Vec<_>>()).map_err(headed)
    }

    /// The local model names (`MAESTRA_LOCAL_MODEL`, comma-separated); the first is the default.
    pub fn local_models(&self) -> Vec<String> {
        let names: Vec<String> = self
            .local_model
            .as_deref()
            .unwrap_or(names::DEFAULT_LOCAL_MODEL)
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            vec![names::DEFAULT_LOCAL_MODEL.into()]
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

/// Every failed setting of a list as one configuration error, a line each (in list order);
/// nothing when all were read. Sections use it too, so their lines join their parent's.
fn report(results: &[Option<&Error>]) -> Result<()> {
    let lines: Vec<String> = results.iter().flatten().map(|e| inner_message(e)).collect();
    if lines.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(lines.join("\n")))
    }
}

/// A several-line report gets a heading that counts it; a single problem reads as before.
fn headed(e: Error) -> Error {
    match e {
        Error::Config(m) if m.contains('\n') => {
            let n = m.lines().count();
            Error::Config(format!(
                "{n} settings are invalid:\n  - {}",
                m.replace('\n', "\n  - ")
            ))
        }
        other => other,
    }
}
