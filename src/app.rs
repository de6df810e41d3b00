//! The assembled server: every stage of the data path built once from a configuration, bound
//! to its address, served until a shutdown signal, then stopped so that nothing acknowledged
//! is lost. `maestra serve` only parses its flags and calls [`App::build`] and [`App::serve`];
//! tests can run the same server in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::config::network::Tls;
use crate::config::{Config, Mode};
use crate::context::Context;
use crate::conversations::rights::{self, Actor};
use crate::cost::budget::Budget;
use crate::egress::{Egress, EgressOptions};
use crate::error::{Error, Result};
use crate::gateway::{self, AppState};
use crate::home::Home;
use crate::home_lock::HomeLock;
use crate::mcp::Upstreams;
use crate::mcp::approvals::Approvals;
use crate::metrics::Metrics;
use crate::minimise::known::Known;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::privsec::guard::{Catalog, check_configured_peer};
use crate::privsec::lockdown::RuntimeState;
use crate::privsec::vault::Vault;
use crate::providers::{self, Providers};

/// How often, at most, a running server looks for a lockdown set by another process.
const LOCKDOWN_POLL: Duration = Duration::from_secs(1);
/// How often retention runs while serving.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// A built server, listening, not yet answering.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The home, this server's until it has stopped (one server per home).
    home_lock: HomeLock,
}

impl App {
    /// Checks the configuration's exposure and its services' tables, takes the home (refused if
    /// another server or a command holds it), loads TLS, binds, opens the store and checks the
    /// vault key (before anything is written), imports provider keys, opens the audit log. Every
    /// failure is an error here: there is no half start.
    pub async fn build(config: Config) -> Result<App> {
        App::build_for(config, "serve").await
    }

    /// [`App::build`] for `command` (`serve`, or `mcp` over stdio), which names the home's
    /// holder to a second process.
    pub async fn build_for(config: Config, command: &'static str) -> Result<App> {
        let addr = check_bind(&config)?;
        check_exposure(&config, addr)?;
        crate::services::check_services(&config)?;
        let home = Home::new(&config.home);
        home.create_dirs(false)?;
        // What a killed backup or restore left is removed before anything else runs.
        home.sweep_scratch();
        let home_lock = HomeLock::acquire(&home, command)?;
        // The certificate and key are loaded (and shown to match) before anything else.
        let tls = match &config.network.tls {
            Tls::Files { cert, key } => Some(gateway::tls::acceptor(cert, key)?),
            Tls::Off | Tls::BehindProxy => None,
        };
        // Bound before anything is written: a second server on a taken port stops here,
        // before it could release the running one's holds or write to its vault.
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listening address", e))?;
        home_lock.serving(local)?;
        let ctx = Context { home, config };
        // Before anything is written: a key that is not the shared vault's refuses the start.
        // Then conversations are encrypted per user (plaintext from before is sealed first).
        let opened = crate::conversations::open::open(
            &ctx,
            &mut crate::conversations::migrate::log_progress(),
        )
        .await?;
        let (store, vault) = (opened.store, opened.vault);
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
        let budget = Budget::new(&ctx.config, store.clone());
        // Shared rate limits: local-only reaches no Redis off this machine and the LAN.
        if let (Mode::Cloud, Some(url)) = (ctx.config.mode, &ctx.config.redis_url) {
            check_configured_peer(
                ctx.config.local_only,
                "redis_url (MAESTRA_REDIS_URL)",
                url.expose_secret(),
            )
            .await?;
        }
        let access = Access::new(&ctx.config, store.clone())?;
        check_cloud_keys(&ctx.config, &access).await?;
        let metrics = Metrics::with_egress(egress.bytes());
        let tools = Upstreams::new(
            &ctx.config.mcp,
            ctx.config.services.keys(),
            &ctx.home.root,
            egress.clone(),
            audit.clone(),
        )?;
        let approvals = Approvals::new(store.clone(), ctx.config.mcp.ask_timeout);
        let known = Known::new(vault.clone(), store.clone());
        let state = Arc::new(AppState {
            config: ctx.config,
            known,
            budget,
            access,
            store,
            vault,
            audit,
            egress,
            providers,
            metrics,
            started: Instant::now(),
            calls: Default::default(),
            tools,
            approvals,
        });
        // A lockdown in force is in force from the first request, not from the first poll.
        follow_lockdown(&state).await?;
        Ok(App {
            state,
            listener,
            local,
            tls,
            home_lock,
        })
    }

    /// The address it listens on (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Answers until `shutdown` completes, lets in-flight requests finish within the grace
    /// period, then [`App::shutdown`]s.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let App {
            state,
            listener,
            local,
            tls,
            home_lock,
        } = self;
        state
            .audit
            .record(
                Event::new(Category::Admin, "maestra", "serve.start", Outcome::Success)
                    .detail("bind", local.to_string())
                    .detail("local_only", state.config.local_only),
            )
            .await?;
        // The privacy center's report reads the audit summary: load it (rebuilding it if it is
        // missing) now, on a thread of its own, rather than on the first visit.
        let summary = state.audit.summary().clone();
        let _ = std::thread::Builder::new()
            .name("maestra-summary".into())
            .spawn(move || {
                if let Err(e) = summary.read(|_| ()) {
                    tracing::warn!(error = %e, "cannot read the audit summary");
                }
            });
        let tasks = vec![
            tokio::spawn(retention_loop(state.clone())),
            tokio::spawn(lockdown_watch(state.clone())),
        ];
        gateway::serve(
            listener,
            tls,
            gateway::router(state.clone()),
            shutdown,
            Duration::from_secs(state.config.server.shutdown_grace),
            state.config.server.max_connections,
        )
        .await;
        shutdown_state(state, tasks).await;
        // Only now may another server take the home: everything of this one is written.
        drop(home_lock);
        Ok(())
    }
}

impl App {
    /// `maestra mcp`: the MCP server over this process's stdin and stdout until the client
    /// closes them, with everything `serve` has behind its routes (guard, vault, audit log)
    /// and nothing listening: the listener bound by [`App::build_for`] is closed unused.
    pub async fn serve_mcp_stdio(self) -> Result<()> {
        let App {
            state, home_lock, ..
        } = self;
        state
            .audit
            .record(
                Event::new(Category::Admin, "maestra", "mcp.start", Outcome::Success)
                    .detail("transport", "stdio")
                    .detail("local_only", state.egress.local_only()),
            )
            .await?;
        let tasks = vec![tokio::spawn(lockdown_watch(state.clone()))];
        let tools = crate::gateway::mcp::Tools::over_stdio(state.clone());
        let served = match rmcp::ServiceExt::serve(tools, rmcp::transport::stdio()).await {
            Ok(running) => running
                .waiting()
                .await
                .map(|_| ())
                .map_err(|e| Error::Upstream("the MCP session failed".into()).because(e)),
            Err(e) => Err(Error::BadRequest(
                "the MCP client did not complete the handshake on stdin".into(),
            )
            .because(e)),
        };
        shutdown_state(state, tasks).await;
        drop(home_lock);
        served
    }
}

/// After the last request: paid calls settled, background work stopped, the stop audited,
/// turns and ledger changes held in memory written, the audit log flushed.
async fn shutdown_state(state: Arc<AppState>, tasks: Vec<JoinHandle<()>>) {
    // Paid calls outlive their requests: each is settled and audited before the store closes.
    state
        .calls
        .finish(Duration::from_secs(state.config.server.shutdown_grace))
        .await;
    for t in tasks {
        t.abort();
    }
    let audit = state.audit.clone();
    let _ = audit
        .record(Event::new(
            Category::Admin,
            "maestra",
            "serve.stop",
            Outcome::Success,
        ))
        .await;
    state.store.close().await;
    drop(state);
    audit.close().await;
}

fn check_bind(config: &Config) -> Result<SocketAddr> {
    let addr: SocketAddr = config.bind.parse().map_err(|e| {
        Error::Config(format!(
            "MAESTRA_BIND must be an IP address and port such as 127.0.0.1:8825, not {:?}",
            config.bind
        ))
        .because(e)
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
    let now = crate::store::now_unix();
    let active = access
        .store
        .api_key_list()
        .await?
        .iter()
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|t| now < t))
        .count();
    if active == 0 {
        return Err(Error::Config(
            "cloud mode needs an API key that is neither revoked nor expired: create one with \
             `maestra keys create NAME` or set MAESTRA_API_KEY"
                .into(),
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
/// mode is forced on; lifted, it follows the configuration again. Looked at when the store
/// changes (a commit by any process: `Store::changes`), at most once per [`LOCKDOWN_POLL`],
/// so a server at rest is not woken for it.
async fn lockdown_watch(state: Arc<AppState>) {
    let mut changes = state.store.changes();
    loop {
        if let Err(e) = follow_lockdown(&state).await {
            tracing::error!(error = %e, "cannot read the lockdown flags");
        }
        tokio::time::sleep(LOCKDOWN_POLL).await;
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// One look at the store's lockdown flags: the static key's refusal and local-only mode, as
/// [`RuntimeState`] reads them for every command, the log naming the real cause.
async fn follow_lockdown(state: &AppState) -> Result<()> {
    let now = RuntimeState::read(state.config.local_only, Some(state.store.as_ref())).await?;
    if state.access.set_locked_down(now.lockdown) {
        tracing::warn!(
            lockdown = now.lockdown,
            "lockdown changed: the static API key is refused while it is on"
        );
    }
    let on = now.local_only();
    if on {
        // However it was turned on (here, or by the page's switch): no tool program it would
        // not start keeps running.
        state.tools.stop_all();
    }
    if on != state.egress.local_only() {
        match now.why() {
            Some(why) => {
                tracing::warn!(local_only = true, cause = %why, "local-only mode on: {why}")
            }
            None => tracing::warn!(
                local_only = false,
                "local-only mode off: no lockdown, privacy center switch or configuration holds it"
            ),
        }
        state.egress.set_local_only(on);
    }
    Ok(())
}
