//! `maestra guard status | check SERVICE_OR_URL`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::config::Config;
use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::privsec::guard::{Catalog, Kind, LocalOnlyBlock};
use crate::privsec::lockdown::RuntimeState;
use crate::services;

/// `guard check` exits with this when the target would be blocked.
pub const EXIT_BLOCKED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Show whether local-only mode is on and the service catalog.
    Status,
    /// Would this service or URL be allowed? Exit 0 allowed, 3 blocked.
    Check { target: String },
}

pub async fn run(config_file: Option<&Path>, cmd: GuardCommand) -> Result<ExitCode> {
    let config = crate::context::load_config(config_file)?;
    let catalog = Catalog::new(&config.guard);
    let ctx = Context {
        home: Home::new(&config.home),
        config,
    };
    let state = runtime_state(&ctx).await?;
    let local_only = state.local_only();
    match cmd {
        GuardCommand::Status => {
            println!("local-only mode: {}", state.describe());
            println!(
                "cloud services (blocked when on): {}",
                catalog.names(Kind::Cloud).join(", ")
            );
            println!("local services: {}", catalog.names(Kind::Local).join(", "));
            Ok(ExitCode::SUCCESS)
        }
        GuardCommand::Check { target } => check(&ctx.config, local_only, catalog, &target).await,
    }
}

/// Local-only mode as a running server has it (the one [`RuntimeState`] reading: the
/// configuration, the privacy center's switch, a lockdown), without creating a store that is
/// not there yet. `maestra doctor` reads it here too.
pub(super) async fn runtime_state(ctx: &Context) -> Result<RuntimeState> {
    if !ctx.config.uses_postgres() && !ctx.home.db().exists() {
        return RuntimeState::read(ctx.config.local_only, None).await;
    }
    let store = ctx.store().await?;
    RuntimeState::read(ctx.config.local_only, Some(store.as_ref())).await
}

async fn check(
    config: &Config,
    local_only: bool,
    catalog: Catalog,
    target: &str,
) -> Result<ExitCode> {
    let egress = Egress::local_network(catalog)?;
    let verdict = if target.contains("://") {
        let url = url::Url::parse(target)
            .map_err(|e| Error::BadRequest(format!("{target:?} is not a URL: {e}")).because(e))?;
        address_verdict(&egress, "url", &url).await
    } else {
        service_verdict(config, &egress, target).await
    };
    let mode = if local_only { "on" } else { "off" };
    match verdict {
        Ok(why) => {
            println!("allowed: {target}: {why} (local-only mode is {mode})");
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::LocalOnly(b)) if local_only => {
            println!("blocked: {target}: {}", b.reason);
            if !b.suggested_alternatives.is_empty() {
                println!(
                    "local alternatives: {}",
                    b.suggested_alternatives.join(", ")
                );
            }
            Ok(ExitCode::from(EXIT_BLOCKED))
        }
        Err(Error::LocalOnly(b)) => {
            println!(
                "allowed: {target}: local-only mode is off (with it on: blocked, {})",
                b.reason
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

/// A service name, decided as the runtime decides it: a personal service (a `[services.X]`
/// table or a built-in one) as the services proxy does, by the shared
/// [`Catalog::check_service`] and then its `base_url`'s addresses; any other name (a
/// provider, a catalog entry) by the name check egress applies to every call.
async fn service_verdict(config: &Config, egress: &Egress, name: &str) -> Result<String> {
    let catalog = egress.catalog();
    match services::resolve(name, &config.services, catalog) {
        Ok(service) => {
            let group = serde_json::to_value(service.category).unwrap_or_default();
            catalog.check_service(
                &service.name,
                service.kind,
                group.as_str().unwrap_or_default(),
            )?;
            address_verdict(egress, &service.name, &service.base_url).await
        }
        // A configured table the proxy cannot use: every call to it is refused as it is.
        Err(e) if config.services.contains_key(name) => Err(e),
        Err(_) => {
            catalog.check_name(name)?;
            match catalog.get(name) {
                Some(_) => Ok("a local service; its address is checked again when dialled".into()),
                None => Err(LocalOnlyBlock {
                    service: name.to_string(),
                    reason: "an unknown service with no configured address; unknown services \
                             pass only to local addresses"
                        .into(),
                    suggested_alternatives: Vec::new(),
                }
                .into()),
            }
        }
    }
}

/// The address check egress applies when it dials `url`: in local-only mode, a host that does
/// not resolve is blocked there, since it cannot be shown to be local.
async fn address_verdict(egress: &Egress, service: &str, url: &url::Url) -> Result<String> {
    let host = url.host_str().unwrap_or_default();
    let ips = egress.check_url(service, url).await?;
    Ok(format!(
        "{host} resolves to {} (local)",
        ips.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
