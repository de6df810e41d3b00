//! `maestra init`: create the home, its keys, database and logs, a commented `maestra.toml`,
//! and say where they are.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use toml::Value;

use super::Context;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};

pub async fn run(config_file: Option<&Path>, fix: bool) -> Result<ExitCode> {
    let ctx = Context::load(config_file, fix)?;
    let created_key = ctx.ensure_vault_key()?;
    ctx.keyring()?; // the keys must parse, wherever they come from
    ctx.store().await?;
    ctx.audit_key()?;
    let wrote_sample = write_sample(&ctx.config.config_file, &ctx.config.home)?;
    ctx.audit(
        Event::new(Category::Admin, "maestra", "init", Outcome::Success)
            .detail("vault_key_created", created_key)
            .detail("sample_config_written", wrote_sample),
    )
    .await?;
    ctx.home.check_permissions(false)?;

    let c = &ctx.config;
    println!("Maestra home   {}", ctx.home.root.display());
    println!("  database     {}", ctx.home.db().display());
    match &c.encryption_keys {
        Some(_) => println!("  vault keys   from MAESTRA_ENCRYPTION_KEY"),
        None => println!("  vault key    {}", ctx.home.vault_key().display()),
    }
    println!("  audit key    {}", ctx.home.audit_key().display());
    println!("  audit log    {}", c.audit.path.display());
    if wrote_sample {
        println!(
            "  config       {} (new: every setting, commented out, with its default)",
            c.config_file.display()
        );
    } else {
        println!("  config       {}", c.config_file.display());
    }
    println!("Everything is private to this user (directories 0700, files 0600).");
    Ok(ExitCode::SUCCESS)
}

/// Writes the commented sample to `path` (0600) unless a file is there; never replaces one,
/// even one created between the check and the write. Whether it wrote.
fn write_sample(path: &Path, home: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let text = sample_config(home)?;
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io(format!("cannot write {}", path.display()), e)),
    };
    // Every line is a comment, so even a file cut short by a crash is a valid (empty) one.
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(true)
}

/// The sample `maestra.toml`: every setting of the file, commented out, with its default (as
/// the loader has it: read from a configuration built from nothing, so the two cannot
/// disagree) and the environment variables that override it; secrets are named with where
/// they belong instead. Removing the `#` of every `#key = value` and `#[table]` line gives a
/// file the loader accepts (`tests/first_use.rs` does, and checks that every key the loader
/// knows and every environment name in `src/config` is here).
fn sample_config(home: &Path) -> Result<String> {
    let d = Config::from_parts(
        &HashMap::<String, String>::new(),
        home.to_path_buf(),
        home.join("maestra.toml"),
        None,
    )?;
    let s = |v: &str| Value::String(v.to_string());
    let strings = |v: &[String]| Value::Array(v.iter().map(|x| s(x)).collect());
    let int = |v: u64| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
    let mut out = Sample(String::new());
    out.prose(&[
        "maestra.toml: the settings of Maestra, written by `maestra init` (it never replaces",
        "this file). Every setting is listed, commented out, with its default (or, where it",
        "has none, an example marked e.g.): remove the leading # of a line to change it.",
        "The environment variables named in brackets override this file. The file is found",
        "in $MAESTRA_HOME (MAESTRA_HOME, default ~/.8825), or given with `--config FILE`",
        "(MAESTRA_CONFIG).",
        "",
        "Secrets (keys, tokens, passwords) do not belong here: a backup's copy of this file",
        "drops them. Keep them in the vault (`maestra vault put NAME`), the key files under",
        "keys/, or the environment of the service.",
    ]);

    out.set(
        "bind",
        "The address `maestra serve` listens on; local mode accepts loopback only.",
        &["MAESTRA_BIND"],
        s(&d.bind),
    );
    out.set(
        "mode",
        "\"local\" (one person, loopback) or \"cloud\" (API keys, rate limits).",
        &["MAESTRA_MODE"],
        s(if d.mode == crate::config::Mode::Cloud {
            "cloud"
        } else {
            "local"
        }),
    );
    out.set(
        "local_only",
        "Block every cloud service and model; only local addresses are dialled.",
        &["MAESTRA_LOCAL_ONLY", "ATOM_LOCAL_ONLY"],
        Value::Boolean(d.local_only),
    );
    out.secret(
        "encryption_key",
        "the Fernet vault keys, newest first, comma-separated; unset: \
        the key file keys/vault.key (created by init).",
        &["MAESTRA_ENCRYPTION_KEY", "BYOK_ENCRYPTION_KEY"],
    );
    out.secret(
        "api_key",
        "a static API key for cloud mode; unset: only keys made with \
        `maestra keys create`.",
        &["MAESTRA_API_KEY"],
    );
    out.set(
        "daily_cost_limit",
        "USD that paid models may cost per day (UTC), all users together.",
        &["MAESTRA_DAILY_COST_LIMIT"],
        Value::Float(d.daily_cost_limit),
    );
    out.set(
        "monthly_cost_limit",
        "USD that paid models may cost per calendar month.",
        &["MAESTRA_MONTHLY_COST_LIMIT"],
        Value::Float(d.monthly_cost_limit),
    );
    out.set(
        "rate_limit_requests",
        "Requests a client (address or key) may make per window, in cloud mode.",
        &["MAESTRA_RATE_LIMIT_REQUESTS"],
        int(u64::from(d.rate_limit_requests)),
    );
    out.set(
        "rate_limit_window",
        "The rate limit's window, in seconds.",
        &["MAESTRA_RATE_LIMIT_WINDOW"],
        int(d.rate_limit_window),
    );
    out.set(
        "cloud_storage",
        "Where conversations, keys and the vault live: \"sqlite\" (the \
        embedded maestra.db) or \"postgresql\" (shared, needs db_url).",
        &["MAESTRA_CLOUD_STORAGE"],
        s(d.cloud_storage.as_deref().unwrap_or("sqlite")),
    );
    out.secret(
        "db_url",
        "postgresql://USER:PASSWORD@HOST/DB for cloud_storage = \
        \"postgresql\"; unset by default.",
        &["MAESTRA_DB_URL"],
    );
    out.secret(
        "redis_url",
        "redis://... shared by several servers for rate limits and budget \
        counters; unset: kept in memory.",
        &["MAESTRA_REDIS_URL"],
    );
    out.set(
        "redis_prefix",
        "Prefix of every Redis key (instances of one deployment share it).",
        &["MAESTRA_REDIS_PREFIX"],
        s(&d.redis_prefix),
    );
    out.secret(
        "openai_key",
        "imported into the vault (as openai_api_key) at start; \
        better: `maestra vault put openai_api_key`.",
        &["MAESTRA_OPENAI_KEY"],
    );
    out.secret(
        "anthropic_key",
        "imported into the vault (as anthropic_api_key) at start; \
        better: `maestra vault put anthropic_api_key`.",
        &["MAESTRA_ANTHROPIC_KEY"],
    );
    out.set(
        "local_model_url",
        "The local OpenAI-compatible server (Ollama, llama.cpp, ...).",
        &["MAESTRA_LOCAL_MODEL_URL"],
        s(&d.local_model_url),
    );
    out.set(
        "local_model",
        "Local model names, comma-separated; the first is the default model.",
        &["MAESTRA_LOCAL_MODEL"],
        s(&d.local_models().join(",")),
    );
    out.set(
        "openai_base_url",
        "OpenAI's API (or a compatible one).",
        &["MAESTRA_OPENAI_BASE_URL"],
        s(&d.openai_base_url),
    );
    out.set(
        "anthropic_base_url",
        "Anthropic's API.",
        &["MAESTRA_ANTHROPIC_BASE_URL"],
        s(&d.anthropic_base_url),
    );
    out.set(
        "cloud_fallback",
        "Send a request to a cloud model when the local one is down \
        (never in local-only mode).",
        &["MAESTRA_CLOUD_FALLBACK"],
        Value::Boolean(d.cloud_fallback),
    );
    out.set(
        "discovery",
        "Let `maestra services discover` and the privacy center's Find devices \
        look for devices on the local network (mDNS, SSDP multicast); false: refused.",
        &["MAESTRA_DISCOVERY"],
        Value::Boolean(d.discovery),
    );
    out.set(
        "upstream_timeout",
        "Seconds a model may take to answer, or between two streamed events.",
        &["MAESTRA_UPSTREAM_TIMEOUT"],
        int(d.upstream_timeout),
    );
    out.set(
        "log",
        "Log filter, such as \"info\" or \"maestra=debug\".",
        &["MAESTRA_LOG"],
        s(&d.log),
    );
    out.set(
        "cors_origins",
        "Browser origins allowed to call the API, such as \
        \"http://localhost:3000\"; the environment takes them comma-separated.",
        &["MAESTRA_CORS_ORIGINS"],
        strings(&d.cors_origins),
    );
    out.set(
        "allow_ips",
        "Addresses and networks that may connect (cloud mode); empty: any \
        (the API keys still decide).",
        &["MAESTRA_ALLOW_IPS"],
        strings(&d.network.allow_ips.to_strings()),
    );
    out.set(
        "trusted_proxies",
        "Proxies whose forwarding header is believed.",
        &["MAESTRA_TRUSTED_PROXIES"],
        strings(&d.network.trusted_proxies.to_strings()),
    );
    out.set(
        "forwarded_header",
        "The header those proxies write: \"x-forwarded-for\" or \"forwarded\".",
        &["MAESTRA_FORWARDED_HEADER"],
        s(d.network.forwarded_header.name()),
    );
    out.0.push('\n');
    out.prose(&[
        "tls: unset, plain HTTP. With TLS ended by a proxy in front (listed in",
        "trusted_proxies): tls = \"behind-proxy\" [MAESTRA_TLS]. Served by Maestra: the [tls]",
        "table at the end [MAESTRA_TLS_CERT, MAESTRA_TLS_KEY].",
    ]);

    out.table("audit", "The tamper-evident audit log.");
    out.set(
        "path",
        "The log file; a relative path is under the home.",
        &["AUDIT_LOG_PATH"],
        s(&d.audit
            .path
            .strip_prefix(&d.home)
            .unwrap_or(&d.audit.path)
            .display()
            .to_string()),
    );
    out.set(
        "retention_days",
        "Days rotated log files are kept (`maestra audit prune`).",
        &["AUDIT_LOG_RETENTION_DAYS"],
        int(u64::from(d.audit.retention_days)),
    );
    out.set(
        "fail_closed",
        "Refuse a request whose audit entry cannot be written.",
        &["MAESTRA_AUDIT_FAIL_CLOSED"],
        Value::Boolean(d.audit.fail_closed),
    );
    out.set(
        "queue_capacity",
        "Entries the writer may hold before a request waits.",
        &[],
        int(d.audit.queue_capacity as u64),
    );

    out.table("server", "Limits of the HTTP edge.");
    out.set(
        "max_body_bytes",
        "Largest request body accepted (413 above it).",
        &[],
        int(d.server.max_body_bytes as u64),
    );
    out.set(
        "max_model_body_bytes",
        "Largest body of a model route (chat, responses, embeddings): images ride as data: URLs.",
        &["MAESTRA_MAX_MODEL_BODY_BYTES"],
        int(d.server.max_model_body_bytes as u64),
    );
    out.set(
        "request_timeout",
        "Seconds a whole request may take (504 after; streams excepted).",
        &[],
        int(d.server.request_timeout),
    );
    out.set(
        "shutdown_grace",
        "Seconds requests in flight get to finish when the server stops.",
        &[],
        int(d.server.shutdown_grace),
    );
    out.set(
        "max_connections",
        "Connections served at once; more wait until one closes.",
        &["MAESTRA_MAX_CONNECTIONS"],
        int(d.server.max_connections as u64),
    );

    out.table(
        "cost",
        "Limits besides the daily and monthly ones above (unset: none), in USD.",
    );
    for (key, doc) in [
        ("user_daily_limit", "Per user per day, e.g."),
        ("user_monthly_limit", "Per user per month, e.g."),
        ("key_daily_limit", "Per API key per day, e.g."),
        ("key_monthly_limit", "Per API key per month, e.g."),
    ] {
        out.set(key, doc, &[], Value::Float(1.0));
    }
    out.set(
        "max_output_tokens",
        "Output tokens assumed (and sent as the cap) when a request sets no max_tokens.",
        &[],
        int(d.cost.max_output_tokens),
    );

    out.table("conversations", "Stored conversations.");
    out.set(
        "retention_days",
        "Delete conversations not updated for this many days; 0 keeps them.",
        &["MAESTRA_CONVERSATION_RETENTION_DAYS"],
        int(u64::from(d.conversations.retention_days.unwrap_or(0))),
    );
    out.set(
        "max_messages",
        "Most messages one conversation may hold.",
        &[],
        int(d.conversations.max_messages),
    );
    out.set(
        "context_messages",
        "Earlier messages sent to the model with a new one.",
        &[],
        int(u64::from(d.conversations.context_messages)),
    );

    out.table(
        "backup",
        "An s3:// backup destination (unset: AWS itself, and the AWS_* \
        variables such as AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID override these).",
    );
    out.set(
        "endpoint",
        "An S3-compatible server, e.g.",
        &[],
        s("https://s3.example.net"),
    );
    out.set("region", "The region, e.g.", &[], s("us-east-1"));
    out.set(
        "access_key_id",
        "The key id (not secret), e.g.",
        &[],
        s("maestra-backup"),
    );
    out.set(
        "secret_access_key_vault",
        "The vault secret that holds the secret key, e.g.",
        &[],
        s("backup_s3_secret"),
    );
    out.set(
        "allow_http",
        "Allow a plain-http endpoint (a server on this machine).",
        &[],
        Value::Boolean(d.backup.allow_http),
    );

    for (name, env, level) in [
        ("openai", "MAESTRA_OPENAI_MINIMISE", d.minimise.openai),
        (
            "anthropic",
            "MAESTRA_ANTHROPIC_MINIMISE",
            d.minimise.anthropic,
        ),
    ] {
        out.table(
            &format!("providers.{name}"),
            "A cloud model provider: what its calls withhold (personal data out, placeholders \
            in). Local models are \
            never minimised.",
        );
        out.set(
            "minimise",
            "\"off\" (secrets only), \"standard\" (personal data that passes its check, \
            your names, URLs with credentials) or \"strict\" (also what only looks like it, \
            and every URL); a request's X-Maestra-Minimise header can only tighten it.",
            &[env],
            s(level.as_str()),
        );
    }

    out.table("guard", "The local-only service catalog, extended.");
    out.set(
        "cloud_services",
        "More names treated as cloud services (blocked in local-only mode).",
        &[],
        strings(&d.guard.cloud_services),
    );
    out.set(
        "local_services",
        "More names treated as local services.",
        &[],
        strings(&d.guard.local_services),
    );

    out.table(
        "mcp",
        "Tools (MCP): the tool servers you add, offered to the assistant as SERVER__tool.",
    );
    out.set(
        "call_timeout",
        "Seconds one tools/call to a tool server may take (1 to 3600).",
        &[],
        int(d.mcp.call_timeout.as_secs()),
    );
    out.set(
        "ask_timeout",
        "Seconds a call of an \"ask\" tool waits for your approval before it is refused \
        (1 to 3600).",
        &[],
        int(d.mcp.ask_timeout.as_secs()),
    );
    out.table(
        "mcp.servers.time",
        "A tool server: `command` (a program spoken to over stdio) or `url` (streamable HTTP, \
        with `headers`); none by default. Credentials only as vault references.",
    );
    out.set(
        "command",
        "The program and its arguments, e.g.",
        &[],
        strings(&["uvx".into(), "mcp-server-time".into()]),
    );
    out.set(
        "kind",
        "\"local\" or \"cloud\" (refused in local-only mode); stated, never guessed.",
        &[],
        s("local"),
    );
    out.set(
        "env",
        "Its environment from the vault (it inherits no other secret), e.g.",
        &[],
        Value::Table(toml::map::Map::from_iter([(
            "TIME_TOKEN".to_string(),
            s("vault:time_token"),
        )])),
    );
    out.set(
        "tools",
        "Per tool \"allow\", \"deny\" (never offered) or \"ask\" (each call waits for your \
        approval in the privacy center or `maestra mcp approve`); \"*\" for the rest, e.g.",
        &[],
        Value::Table(toml::map::Map::from_iter([
            ("convert_time".to_string(), s("ask")),
            ("*".to_string(), s("allow")),
        ])),
    );

    out.table(
        "tls",
        "HTTPS served by Maestra from PEM files (re-read when they change); \
        a relative path is under the home. Unset by default.",
    );
    out.set(
        "cert",
        "The certificate chain, e.g.",
        &[],
        s("/etc/maestra/fullchain.pem"),
    );
    out.set(
        "key",
        "Its private key, e.g.",
        &[],
        s("/etc/maestra/privkey.pem"),
    );

    out.table(
        "pricing.\"my-model\"",
        "A model's price in USD per million tokens, over the \
        built-in table (by name or prefix); none by default.",
    );
    out.set(
        "input_per_million",
        "USD per million prompt tokens, e.g.",
        &[],
        Value::Float(0.15),
    );
    out.set(
        "output_per_million",
        "USD per million answer tokens, e.g.",
        &[],
        Value::Float(0.6),
    );

    out.table(
        "services.calendar",
        "A personal service reached through \
        /api/services/NAME/..., its credential injected from the vault; none by default, \
        built in: spotify, sonos, hue, home_assistant (complete them here).",
    );
    out.set(
        "base_url",
        "Where its API is, e.g.",
        &[],
        s("https://calendar.example.net/api"),
    );
    out.set(
        "category",
        "media, smarthome, creative, llm or data.",
        &[],
        s("data"),
    );
    out.set(
        "kind",
        "\"local\" or \"cloud\" (blocked in local-only mode).",
        &[],
        s("cloud"),
    );
    out.set(
        "credential",
        "The vault secret injected (default: the service's name).",
        &[],
        s("calendar"),
    );
    out.set(
        "auth",
        "bearer, header:NAME, path_prefix, oauth2 (with token_url) or none.",
        &[],
        s("oauth2"),
    );
    out.set(
        "token_url",
        "Where an oauth2 token is refreshed.",
        &[],
        s("https://calendar.example.net/oauth/token"),
    );
    out.set(
        "content_types",
        "Body types besides JSON that writes may carry.",
        &[],
        strings(&["application/x-www-form-urlencoded".to_string()]),
    );
    Ok(out.0)
}

/// The sample's text: prose as `# ...` lines, settings as `#key = value` lines.
struct Sample(String);

impl Sample {
    /// Lines of prose, each commented.
    fn prose(&mut self, lines: &[&str]) {
        for l in lines {
            self.0.push_str(if l.is_empty() { "#" } else { "# " });
            self.0.push_str(l);
            self.0.push('\n');
        }
    }

    /// `doc` wrapped, with the environment names appended in brackets.
    fn doc(&mut self, doc: &str, env: &[&str]) {
        let mut text = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        if !env.is_empty() {
            text.push_str(&format!(" [{}]", env.join(", ")));
        }
        self.0.push('\n');
        let mut line = String::new();
        for word in text.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > 90 {
                self.prose(&[&line]);
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        self.prose(&[&line]);
    }

    fn set(&mut self, key: &str, doc: &str, env: &[&str], value: Value) {
        self.doc(doc, env);
        self.0.push_str(&format!("#{key} = {value}\n"));
    }

    /// A secret setting: named, with where it belongs, but no line to uncomment.
    fn secret(&mut self, key: &str, doc: &str, env: &[&str]) {
        self.doc(
            &format!("{key}: a secret, so best set in the environment or kept in the vault; {doc}"),
            env,
        );
    }

    fn table(&mut self, name: &str, doc: &str) {
        self.0.push('\n');
        self.doc(doc, &[]);
        self.0.push_str(&format!("#[{name}]\n"));
    }
}
