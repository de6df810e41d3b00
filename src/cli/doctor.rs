//! `maestra doctor`: the seed's configuration checklist (local and cloud columns), pass or
//! fail, each with its fix.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use super::Context;
use crate::config::{Config, Mode};
use crate::error::Result;
use crate::home::Home;
use crate::privsec::audit::{ChainKey, LogFiles, verify};
use crate::privsec::keycheck::KeyStatus;
use crate::privsec::keyring::Keyring;
use crate::privsec::vault::Vault;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

struct Check {
    status: Status,
    what: String,
    fix: String,
}

fn check(ok: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        status: if ok { Status::Pass } else { Status::Fail },
        what: what.into(),
        fix: fix.into(),
    }
}

/// The system service (`maestra service install`), if one is installed: it must be what this
/// configuration would write now, hardening included. Not installing one is fine.
fn service_check(ctx: &Context) -> Check {
    match super::service::installed(ctx) {
        Ok(None) => Check {
            status: Status::Skip,
            what: "service: none installed, system or per-user (optional: maestra service \
                   install [--user])"
                .into(),
            fix: String::new(),
        },
        Ok(Some((path, user, current))) => {
            let (what, flag) = if user {
                ("per-user service", " --user")
            } else {
                ("system service", "")
            };
            // Running means a server holds this home's lock, whoever started it.
            let runs = match crate::home_lock::holder(&ctx.home) {
                Some(who) => format!("a server runs on this home: {who}"),
                None => "installed, not running (no server holds this home)".to_string(),
            };
            check(
                current,
                format!(
                    "service: {what} {} is hardened and matches this configuration; {runs}",
                    path.display()
                ),
                format!("run `maestra service install{flag}` again"),
            )
        }
        Err(e) => check(
            false,
            format!("service: cannot check the installed service ({e})"),
            "run `maestra service status`",
        ),
    }
}

/// Local-only mode as it is in force (the same reading `guard status` and a running server
/// make): the configuration, the privacy center's switch, or a lockdown.
async fn local_only_check(ctx: &Context) -> Check {
    match super::guard::runtime_state(ctx).await {
        Ok(state) => Check {
            status: if state.local_only() {
                Status::Pass
            } else {
                Status::Warn
            },
            what: format!("local: local-only mode is {}", state.describe()),
            fix: "set MAESTRA_LOCAL_ONLY=true (or switch it on in the privacy center) to keep \
                  all traffic on this machine"
                .into(),
        },
        Err(e) => check(
            false,
            format!("local: cannot read local-only mode from the store ({e})"),
            "run `maestra guard status`",
        ),
    }
}

pub async fn run(config_file: Option<&Path>, fix: bool) -> Result<ExitCode> {
    let config = crate::context::load_config(config_file)?;
    let home = Home::new(&config.home);
    if fix {
        let ctx = Context::load(config_file, true)?;
        ctx.ensure_vault_key()?;
        ctx.audit_key()?;
    }
    let mut checks = local_checks(&config, &home);
    checks.extend(cloud_checks(&config));
    let ctx = Context { config, home };
    checks.push(service_check(&ctx));
    let local_only = local_only_check(&ctx).await;
    let at = checks
        .iter()
        .position(|c| c.what.starts_with("cloud: "))
        .unwrap_or(checks.len());
    checks.insert(at, local_only);
    if let Some(c) = vault_key_check(ctx).await {
        // Right after the key file check, which it refines.
        let at = checks
            .iter()
            .position(|c| c.what.starts_with("local: vault key present"))
            .map_or(checks.len(), |i| i + 1);
        checks.insert(at, c);
    }
    let mut failed = 0;
    for c in &checks {
        let tag = match c.status {
            Status::Pass => "pass",
            Status::Fail => {
                failed += 1;
                "FAIL"
            }
            Status::Warn => "warn",
            Status::Skip => "n/a ",
        };
        if c.status == Status::Pass || c.status == Status::Skip {
            println!("[{tag}] {}", c.what);
        } else {
            println!("[{tag}] {} — fix: {}", c.what, c.fix);
        }
    }
    if failed > 0 {
        eprintln!("maestra: doctor found {failed} failing check(s)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the key is the vault's own (a shared PostgreSQL vault is written by every instance,
/// so a foreign key must be caught before it writes). Reads only; `None` when there is no
/// vault to ask yet (no home, or no key to ask with).
async fn vault_key_check(ctx: Context) -> Option<Check> {
    if !ctx.config.uses_postgres() && !ctx.home.db().exists() {
        return None;
    }
    let keys = Keyring::load(ctx.config.encryption_keys.as_ref(), &ctx.home.vault_key()).ok()?;
    let what = "local: the vault key opens this vault (its key check, or every secret)";
    let status = match ctx.store().await {
        Ok(store) => Vault::new(keys, store).key_status().await,
        Err(e) => Err(e),
    };
    Some(match status {
        Ok(KeyStatus::Matches) => check(true, what, ""),
        Ok(KeyStatus::Unset) => check(
            true,
            format!("{what}; its check value is stored on first use"),
            "",
        ),
        Ok(KeyStatus::Mismatch) => check(
            false,
            what,
            "this is not the vault's key: use the key the vault was made with (the same \
             MAESTRA_ENCRYPTION_KEY or keys/vault.key on every instance sharing the database)",
        ),
        Err(e) => check(false, what, format!("the vault cannot be read: {e}")),
    })
}

fn local_checks(c: &Config, home: &Home) -> Vec<Check> {
    let mut out = vec![check(
        home.exists(),
        format!("local: home {} exists", home.root.display()),
        "run `maestra init`",
    )];
    let loose = home.loose_paths();
    out.push(check(
        loose.is_empty(),
        "local: home is 0700 and its files 0600 (seed: conversations user-only)",
        format!(
            "run `maestra doctor --fix` (too open: {})",
            loose
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    let keys = Keyring::load(c.encryption_keys.as_ref(), &home.vault_key());
    out.push(check(
        keys.is_ok(),
        "local: vault key present and valid",
        match &keys {
            Err(e) => format!("{e}; run `maestra init` or set MAESTRA_ENCRYPTION_KEY"),
            Ok(_) => String::new(),
        },
    ));
    let env_file = Path::new(".env");
    if env_file.exists() {
        let ignored = std::fs::read_to_string(".gitignore")
            .map(|g| g.lines().any(|l| l.trim() == ".env" || l.trim() == "/.env"))
            .unwrap_or(false);
        out.push(check(
            ignored,
            "local: .env file is gitignored",
            "add `.env` to .gitignore",
        ));
    }
    out.push(check(
        c.mode == Mode::Local || c.mode == Mode::Cloud,
        format!(
            "local: MAESTRA_MODE={}",
            if c.mode == Mode::Local {
                "local"
            } else {
                "cloud"
            }
        ),
        "set MAESTRA_MODE to local or cloud",
    ));
    let loopback = c
        .bind
        .parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(c.bind.starts_with("localhost:"));
    out.push(check(
        c.mode == Mode::Cloud || loopback,
        format!("local: binds loopback only ({})", c.bind),
        "set MAESTRA_BIND=127.0.0.1:8825, or MAESTRA_MODE=cloud with API keys",
    ));
    let audit_dir_ok = c.audit.path.parent().is_some_and(|d| {
        d.is_dir()
            && !std::fs::metadata(d)
                .map(|m| m.permissions().readonly())
                .unwrap_or(true)
    });
    out.push(check(
        audit_dir_ok,
        format!(
            "local: audit log directory writable ({})",
            c.audit.path.display()
        ),
        "run `maestra init`",
    ));
    // A log without its key cannot be verified: that fails too (only a home with neither is
    // simply not set up yet).
    let key = ChainKey::load(&home.audit_key());
    if key.is_ok() || LogFiles::new(&c.audit.path).any_exist().unwrap_or(true) {
        let ok = key.and_then(|key| verify(&c.audit.path, &key).map(|r| r.problem.is_none()));
        out.push(check(
            matches!(ok, Ok(true)),
            "local: audit chain verifies (key, every line, and the head that shows a cut tail)",
            "run `maestra audit verify` to see what is missing or the first broken line",
        ));
    }
    out
}

fn cloud_checks(c: &Config) -> Vec<Check> {
    let cloud = c.mode == Mode::Cloud;
    let item = |ok: bool, what: &str, fix: &str| {
        if cloud {
            check(ok, format!("cloud: {what}"), fix)
        } else {
            Check {
                status: Status::Skip,
                what: format!("cloud: {what} (MAESTRA_MODE=local)"),
                fix: String::new(),
            }
        }
    };
    let env = |n: &str| std::env::var(n).is_ok_and(|v| !v.is_empty());
    vec![
        item(
            c.api_key.is_some(),
            "MAESTRA_API_KEY set (or keys created)",
            "set MAESTRA_API_KEY or run `maestra keys create NAME`",
        ),
        item(
            env("MAESTRA_MONTHLY_COST_LIMIT"),
            "MAESTRA_MONTHLY_COST_LIMIT set",
            "set MAESTRA_MONTHLY_COST_LIMIT (USD)",
        ),
        item(
            env("MAESTRA_DAILY_COST_LIMIT"),
            "MAESTRA_DAILY_COST_LIMIT set",
            "set MAESTRA_DAILY_COST_LIMIT (USD)",
        ),
        item(
            c.rate_limit_requests > 0,
            "rate limiting enabled",
            "set MAESTRA_RATE_LIMIT_REQUESTS",
        ),
        if cloud {
            Check {
                status: Status::Warn,
                what: "cloud: HTTPS enforced".into(),
                fix: "Maestra speaks plain HTTP: put it behind a TLS-terminating proxy (TLS 1.2+)"
                    .into(),
            }
        } else {
            item(true, "HTTPS enforced", "")
        },
    ]
}
