//! `maestra services discover [--timeout 5s] [--json] [--write]`: the person's devices on the
//! local network (SPEC §2.7, issue 28), listed, and with `--write` added to `maestra.toml`;
//! `maestra services pair hue`: the Hue bridge's username, into the vault.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::{Context, STDOUT_WRITE};
use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::privsec::audit::{Event, Outcome};
use crate::privsec::guard::Catalog;
use crate::services::discover::report;
use crate::services::discover::write::{self, Offer};
use crate::services::discover::{self, Device, Discovery, MAX_WINDOW, MIN_WINDOW};
use crate::services::pair;

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Find devices on the local network over mDNS and SSDP (nothing is sent off the link).
    Discover {
        /// How long to listen for answers (1s to 2m).
        #[arg(long, default_value = "5s", value_parser = parse_window)]
        timeout: Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Add the devices found to maestra.toml as [services.NAME] (never changing an entry
        /// that is there).
        #[arg(long)]
        write: bool,
    },
    /// Pair with a device and keep its credential in the vault: `pair hue` walks the Hue
    /// bridge's link-button flow (the username is stored, never shown).
    Pair {
        #[arg(value_enum)]
        device: PairDevice,
        /// The [services.NAME] of the bridge (its base_url is asked).
        #[arg(long, default_value = "hue")]
        service: String,
        /// How long to wait for the link button to be pressed (1s to 2m).
        #[arg(long, default_value = "60s", value_parser = parse_window)]
        timeout: Duration,
    },
}

/// The devices `pair` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PairDevice {
    Hue,
}

fn parse_window(text: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(MIN_WINDOW),
            humantime::format_duration(MAX_WINDOW)
        ));
    }
    Ok(d)
}

pub async fn run(config_file: Option<&Path>, cmd: ServicesCommand) -> Result<ExitCode> {
    match cmd {
        ServicesCommand::Discover {
            timeout,
            json,
            write,
        } => discover_command(config_file, timeout, json, write).await,
        ServicesCommand::Pair {
            device: PairDevice::Hue,
            service,
            timeout,
        } => pair_hue(config_file, &service, timeout).await,
    }
}

async fn discover_command(
    config_file: Option<&Path>,
    window: Duration,
    as_json: bool,
    write_config: bool,
) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    if !ctx.config.discovery {
        return Err(report::turned_off());
    }
    // Descriptions are fetched only from local addresses, whatever the mode.
    let egress = Egress::local_network(Catalog::new(&ctx.config.guard))?;
    if !as_json {
        // On standard output: standard error is kept for the one line a failure ends with.
        println!(
            "listening for {} on the local network (mDNS, SSDP)...",
            humantime::format_duration(window)
        );
    }
    let found = discover::discover(window, &egress).await;
    let offers = write::offers(&found.devices, &ctx.config.services);
    let written = if write_config {
        write::write(&ctx.config.config_file, &offers)?
    } else {
        Vec::new()
    };
    ctx.audit(report::audit_event(&found, &offers, &written))
        .await?;
    let text = if as_json {
        let mut v = report::to_json(&found, &offers);
        v["written"] = json!(written);
        format!("{v:#}\n")
    } else {
        report_text(&found, &offers, write_config.then_some(&written[..]), &ctx)
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io(STDOUT_WRITE, e))?;
    Ok(ExitCode::SUCCESS)
}

fn report_text(
    found: &Discovery,
    offers: &[Offer],
    written: Option<&[String]>,
    ctx: &Context,
) -> String {
    let mut out = String::new();
    if found.devices.is_empty() {
        out.push_str("no devices answered\n");
    } else {
        let _ = writeln!(
            out,
            "{:<16} {:<32} {:<28} {:<10} CONFIGURED",
            "KIND", "NAME", "ADDRESS", "FOUND BY"
        );
        for (d, o) in found.devices.iter().zip(offers) {
            let how: Vec<&str> = d.found_by.iter().map(|h| h.as_str()).collect();
            let _ = writeln!(
                out,
                "{:<16} {:<32} {:<28} {:<10} {}",
                d.kind,
                column(&d.name),
                d.authority(),
                how.join("+"),
                o.column()
            );
        }
    }
    for (d, o) in found.devices.iter().zip(offers) {
        if let Some(line) = note(d, o, written.is_some()) {
            out.push_str(&line);
        }
    }
    if found.dropped > 0 {
        let _ = writeln!(
            out,
            "{} more answers were not kept: one run keeps at most {} devices",
            found.dropped,
            discover::MAX_DEVICES
        );
    }
    if found.unreadable > 0 {
        let _ = writeln!(
            out,
            "{} answers could not be read and were ignored",
            found.unreadable
        );
    }
    for p in &found.problems {
        let _ = writeln!(out, "{p}");
    }
    match written {
        Some([]) => out.push_str("nothing written: no new device to add\n"),
        Some(names) => {
            let _ = writeln!(
                out,
                "added to {}: {}",
                ctx.config.config_file.display(),
                names
                    .iter()
                    .map(|n| format!("[services.{n}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        None if offers.iter().any(|o| matches!(o, Offer::New { .. })) => {
            out.push_str("add them to maestra.toml with --write\n");
        }
        None => {}
    }
    out
}

/// A name as its column shows it: at most [`NAME_COLUMN`] characters, `-` for none (the
/// JSON has it whole).
fn column(name: &str) -> String {
    match name.chars().count() {
        0 => "-".into(),
        n if n > NAME_COLUMN => name.chars().take(NAME_COLUMN - 1).chain(['…']).collect(),
        _ => name.to_string(),
    }
}

/// The width of the table's name column.
const NAME_COLUMN: usize = 32;

/// The line under the table a row needs: why it is not written, an offered update, or the
/// credential a new entry still needs.
fn note(d: &Device, o: &Offer, writing: bool) -> Option<String> {
    let at = d.authority();
    match o {
        Offer::NotWritable { reason } if !d.local || d.not_writable.is_some() => {
            Some(format!("{} at {at}: not written: {reason}\n", d.kind))
        }
        Offer::Update {
            service,
            configured,
            found,
        } => Some(format!(
            "[services.{service}] has base_url {configured}, where nothing answered; a {} \
             answered at {found}: if it moved, change base_url yourself (never rewritten)\n",
            d.kind
        )),
        Offer::New {
            service,
            credential,
            ..
        } if writing => Some(format!("[services.{service}] still needs {credential}\n")),
        _ => None,
    }
}

/// `pair hue`: asks the bridge for a username every [`pair::ASK_EVERY`] until its link button is
/// pressed or `wait` is over, then stores it in the vault under the service's credential name.
async fn pair_hue(config_file: Option<&Path>, name: &str, wait: Duration) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let catalog = Catalog::new(&ctx.config.guard);
    let service = crate::services::resolve(name, &ctx.config.services, &catalog)?;
    pair::check_is_hue(&service)?;
    let credential = service
        .credential
        .clone()
        .ok_or_else(|| Error::Config(format!("[services.{name}] takes no credential")))?;
    // A bridge is a device on the local network, whatever the mode.
    let egress = Egress::local_network(catalog)?;
    // On standard output: standard error is kept for the one line a failure ends with.
    println!(
        "press the link button on the bridge at {}; waiting up to {}",
        service.base_url.host_str().unwrap_or_default(),
        humantime::format_duration(wait)
    );
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        match pair::ask(&egress, &service).await {
            Ok(pair::Attempt::Paired(username)) => break Ok(username),
            Ok(pair::Attempt::NotPressed)
                if tokio::time::Instant::now() + pair::ASK_EVERY < deadline =>
            {
                tokio::time::sleep(pair::ASK_EVERY).await;
            }
            Ok(pair::Attempt::NotPressed) => {
                break Err(Error::UpstreamTimeout(format!(
                    "{name}: the bridge's link button was not pressed within {}",
                    humantime::format_duration(wait)
                )));
            }
            Err(e) => break Err(e),
        }
    };
    let stored = match result {
        Ok(username) => ctx.vault().await?.put(&credential, &username).await,
        Err(e) => Err(e),
    };
    let mut event = Event::new(
        service.category,
        name,
        "pair",
        if stored.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failed
        },
    )
    .detail("credential", credential.as_str());
    if let Err(e) = &stored {
        event = event.detail("error", e.code());
    }
    ctx.audit(event).await?;
    stored?;
    println!("paired: the bridge's username is in the vault as {credential:?} (not shown)");
    Ok(ExitCode::SUCCESS)
}
