//! `maestra serve`: build every stage of the data path once, then answer until a signal.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::Context;
use crate::access::Access;
use crate::config::network::Tls;
use crate::config::{Config, Mode};
use crate::conversations::rights::{self, Actor};
use crate::cost::budget::Budget;
use crate::egress::{Egress, EgressOptions};
use crate::error::{Error, Result};
use crate::gateway::{self, AppState};
use crate::metrics::Metrics;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::privsec::guard::Catalog;
use crate::privsec::vault::Vault;
use crate::providers::{self, Providers};

/// How often a running server looks for a lockdown.
const LOCKDOWN_POLL: Duration = Duration::from_secs(1);
/// How often retention runs while serving.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(config_file: Option<&Path>, bind: Option<String>) -> Result<ExitCode> {
    let mut ctx = Context::load(config_file, false)?;
    if let Some(b) = bind {
        ctx.config.bind = b;
    }
    init_logging(&ctx.config.log);
    let addr = check_bind(&ctx.config)?;
    check_exposure(&ctx.config, addr)?;
    // The certificate and key are loaded (and shown to match) before anything else starts.
    let tls = match &ctx.config.network.tls {
        Tls::Files { cert, key } => Some(crate::gateway::tls::acceptor(cert, key)?),
        Tls::Off | Tls::BehindProxy => None,
    };
    ctx.ensure_vault_key()?;
    let store = ctx.store().await?;
    let vault = Arc::new(Vault::new(ctx.keyring()?, store.clone()));
    // Before anything is written: a key that is not the shared vault's refuses the start.
    vault.verify_key().await?;
    store.cost_recover().await?;
    import_provider_keys(&ctx.config, &vault).await?;
    let audit = ctx.audit_log()?;
    let egress = Egress::new(
        Catalog::new(&ctx.config.guard),
        EgressOptions {
            local_only: ctx.config.local_only,
            ..EgressOptions::default()
        },
    )?;
    let providers = Providers::new(&ctx.config, egress.clone(), vault.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", e))?;
    let budget = Budget::new(&ctx.config, store.clone());
    let access = Access::new(&ctx.config, store.clone())?;
    check_cloud_keys(&ctx.config, &access).await?;
    let state = Arc::new(AppState {
        config: ctx.config.clone(),
        budget,
        access,
        store,
        vault,
        audit: audit.clone(),
        egress,
        providers,
        metrics: Metrics::default(),
        started: Instant::now(),
    });
    audit
        .record(
            Event::new(Category::Admin, "maestra", "serve.start", Outcome::Success)
                .detail("bind", local.to_string())
                .detail("local_only", ctx.config.local_only),
        )
        .await?;
    announce(&ctx, local);
    let retention = tokio::spawn(retention_loop(state.clone()));
    let lockdown = tokio::spawn(lockdown_watch(state.clone()));
    gateway::serve(
        listener,
        tls,
        gateway::router(state.clone()),
        shutdown_signal(),
        Duration::from_secs(ctx.config.server.shutdown_grace),
    )
    .await;
    retention.abort();
    lockdown.abort();
    let _ = audit
        .record(Event::new(
            Category::Admin,
            "maestra",
            "serve.stop",
            Outcome::Success,
        ))
        .await;
    // Turns and ledger changes held back in memory are written before the process ends.
    state.store.close().await;
    drop(state);
    audit.close().await;
    eprintln!("maestra: stopped; audit log flushed");
    Ok(ExitCode::SUCCESS)
}

/// Local mode serves this machine only: a non-loopback bind needs cloud mode (SPEC §2.6).
fn check_bind(config: &Config) -> Result<SocketAddr> {
    let addr: SocketAddr = config.bind.parse().map_err(|_| {
        Error::Config(format!(
            "MAESTRA_BIND must be an IP address and port such as 127.0.0.1:8825, not {:?}",
            config.bind
        ))
    })?;
    if config.mode == Mode::Local && !addr.ip().is_loopback() {
        return Err(Error::Config(format!(
            "local mode binds loopback only; {addr} would expose Maestra to the network \
             (use MAESTRA_MODE=cloud with API keys for that)"
        )));
    }
    Ok(addr)
}

/// Cloud mode on an address other machines can reach speaks HTTPS: served here from the
/// configured files, or ended by a proxy named in `trusted_proxies`. Keys never cross a
/// network in the clear.
fn check_exposure(config: &Config, addr: SocketAddr) -> Result<()> {
    if config.mode == Mode::Cloud && !addr.ip().is_loopback() && config.network.tls == Tls::Off {
        return Err(Error::Config(format!(
            "cloud mode on {addr} (not loopback) needs TLS: [tls] cert and key \
             (MAESTRA_TLS_CERT, MAESTRA_TLS_KEY), or tls = \"behind-proxy\" with \
             trusted_proxies (MAESTRA_TRUSTED_PROXIES)"
        )));
    }
    Ok(())
}

/// Cloud mode is reachable from the network: it refuses to start with no key to check.
async fn check_cloud_keys(config: &Config, access: &Access) -> Result<()> {
    if config.mode != Mode::Cloud || config.api_key.is_some() {
        return Ok(());
    }
    let active = access
        .store
        .api_key_list()
        .await?
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .count();
    if active == 0 {
        return Err(Error::Config(
            "cloud mode needs API keys: create one with `maestra keys create NAME` or set MAESTRA_API_KEY".into(),
        ));
    }
    Ok(())
}

/// `MAESTRA_OPENAI_KEY` / `MAESTRA_ANTHROPIC_KEY` go into the vault, encrypted at rest, so
/// the running server reads provider keys from one place.
async fn import_provider_keys(config: &Config, vault: &Vault) -> Result<()> {
    for (value, name) in [
        (&config.openai_key, providers::OPENAI_KEY),
        (&config.anthropic_key, providers::ANTHROPIC_KEY),
    ] {
        let Some(value) = value else { continue };
        let same = match vault.get(name).await {
            Ok(old) => old.expose_secret() == value.expose_secret(),
            Err(_) => false,
        };
        if !same {
            vault
                .put(name, &SecretString::from(value.expose_secret().to_string()))
                .await?;
        }
    }
    Ok(())
}

fn announce(ctx: &Context, local: SocketAddr) {
    let c = &ctx.config;
    let scheme = match c.network.tls {
        Tls::Files { .. } => "https",
        Tls::Off | Tls::BehindProxy => "http",
    };
    println!("maestra listening on {scheme}://{local}");
    println!("  home         {}", ctx.home.root.display());
    if c.uses_postgres() {
        println!("  storage      postgresql (MAESTRA_DB_URL)");
    } else {
        println!("  storage      {}", ctx.home.db().display());
    }
    println!("  audit log    {}", c.audit.path.display());
    println!(
        "  mode         {}{}",
        if c.mode == Mode::Cloud {
            "cloud"
        } else {
            "local"
        },
        if c.local_only { ", local-only" } else { "" }
    );
    println!("  local model  {}", c.local_model_url);
}

async fn retention_loop(state: Arc<AppState>) {
    let Some(days) = state.config.conversations.retention_days else {
        return;
    };
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tick.tick().await;
        let actor = Actor {
            via: "retention",
            ..Actor::default()
        };
        match rights::apply_retention(state.store.as_ref(), &state.audit, days, &actor).await {
            Ok(n) if n > 0 => {
                tracing::info!(conversations = n, "retention removed old conversations")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}

/// Follows `maestra lockdown` from another process: while the store's flag is set, local-only
/// mode is forced on; lifted, it follows the configuration again.
async fn lockdown_watch(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(LOCKDOWN_POLL);
    loop {
        tick.tick().await;
        match state.store.meta_get(super::lockdown::LOCKDOWN_FLAG).await {
            Ok(flag) => {
                let on = flag.is_some() || state.config.local_only;
                if on != state.egress.local_only() {
                    tracing::warn!(local_only = on, "local-only mode changed by lockdown");
                    state.egress.set_local_only(on);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the lockdown flag"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn init_logging(filter: &str) {
    // Libraries stay quiet below warnings: their debug output can carry URLs and headers.
    let spec = format!("sqlx=warn,hyper=warn,reqwest=warn,{filter}");
    let filter = tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
