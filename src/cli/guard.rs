//! `maestra guard status | check SERVICE_OR_URL`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::egress::{Egress, EgressOptions};
use crate::error::{Error, Result};
use crate::privsec::guard::{Catalog, Kind};

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
    let config = Config::load(&crate::config::ProcessEnv, config_file)?;
    let catalog = Catalog::new(&config.guard);
    match cmd {
        GuardCommand::Status => {
            println!(
                "local-only mode: {}",
                if config.local_only { "on" } else { "off" }
            );
            println!(
                "cloud services (blocked when on): {}",
                catalog.names(Kind::Cloud).join(", ")
            );
            println!("local services: {}", catalog.names(Kind::Local).join(", "));
            Ok(ExitCode::SUCCESS)
        }
        GuardCommand::Check { target } => check(&config, catalog, &target).await,
    }
}

async fn check(config: &Config, catalog: Catalog, target: &str) -> Result<ExitCode> {
    let egress = Egress::new(
        catalog,
        EgressOptions {
            local_only: true,
            ..EgressOptions::default()
        },
    )?;
    let (service, url) = if target.contains("://") {
        let url = url::Url::parse(target)
            .map_err(|e| Error::BadRequest(format!("{target:?} is not a URL: {e}")))?;
        ("url".to_string(), Some(url))
    } else {
        let url = config
            .services
            .get(target)
            .and_then(|s| s.base_url.as_deref())
            .map(url::Url::parse)
            .transpose()
            .map_err(|e| Error::Config(format!("services.{target}.base_url: {e}")))?;
        (target.to_string(), url)
    };
    let verdict = match &url {
        Some(url) => egress.check_url(&service, url).await.map(|ips| {
            format!(
                "{} resolves to {} (local)",
                url.host_str().unwrap_or_default(),
                ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            )
        }),
        None => match egress.catalog().check_name(&service) {
            Err(b) => Err(b.into()),
            Ok(()) => match egress.catalog().get(&service) {
                Some(_) => Ok("a local service; its address is checked again when dialled".into()),
                None => Err(Error::LocalOnly(Box::new(crate::privsec::guard::LocalOnlyBlock {
                    service: service.clone(),
                    reason: "an unknown service with no configured address; unknown services pass only to local addresses".into(),
                    suggested_alternatives: Vec::new(),
                }))),
            },
        },
    };
    let mode = if config.local_only { "on" } else { "off" };
    match verdict {
        Ok(why) => {
            println!("allowed: {target}: {why} (local-only mode is {mode})");
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::LocalOnly(b)) if config.local_only => {
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
