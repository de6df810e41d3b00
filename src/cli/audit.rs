//! `maestra audit query | verify | rotate | prune`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::error::{Error, Result};
use crate::privsec::audit::{self, Category, Event, Filter, Outcome};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries newest first, across the live and rotated files.
    Query {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        category: Option<Category>,
        /// RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; names the first line changed, inserted or removed.
    Verify {
        /// Accept a missing (or once-missing) head record. The head is what shows that the
        /// log's tail was cut, so without it the tail cannot be checked: this is reported
        /// loudly, and without the flag it fails verification.
        #[arg(long)]
        allow_missing_head: bool,
    },
    /// Rotate the live log to audit.YYYY-MM-DD.log.gz now.
    Rotate,
    /// Delete rotated files older than the retention period.
    Prune,
}

pub async fn run(config_file: Option<&Path>, cmd: AuditCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let path = ctx.config.audit.path.clone();
    match cmd {
        AuditCommand::Query {
            user,
            service,
            category,
            since,
            until,
            limit,
            json,
        } => {
            let filter = Filter {
                user,
                service,
                category,
                since: since.as_deref().map(Filter::parse_time).transpose()?,
                until: until.as_deref().map(Filter::parse_time).transpose()?,
                limit: Some(limit),
            };
            let entries = audit::query(&path, &filter)?;
            let mut out = std::io::stdout().lock();
            let io = |e| Error::io("cannot write to standard output", e);
            for e in entries {
                if json {
                    let line = serde_json::to_string(&e)
                        .map_err(|e| Error::Audit(e.to_string()).because(e))?;
                    writeln!(out, "{line}").map_err(io)?;
                } else {
                    writeln!(
                        out,
                        "{}  #{:<6} {:<16} {:<14} {:<24} {:<8} user={}",
                        e.ts,
                        e.seq,
                        serde_json::to_value(e.category)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        e.service,
                        e.action,
                        serde_json::to_value(e.result)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        e.user_id.as_deref().unwrap_or("-")
                    )
                    .map_err(io)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { allow_missing_head } => {
            let Some(key) = verify_key(&ctx, &path)? else {
                println!("nothing to verify: there is no audit log and no audit key yet");
                return Ok(ExitCode::SUCCESS);
            };
            let options = audit::VerifyOptions { allow_missing_head };
            let report = audit::verify_with(&path, &key, options)?;
            if let (Some(w), None) = (&report.head_warning, &report.problem) {
                eprintln!(
                    "WARNING: the end of the log is NOT verified (--allow-missing-head): {w}"
                );
            }
            match report.problem {
                Some(p) => Err(Error::Audit(format!("verify failed: {p}"))),
                None => {
                    println!(
                        "ok: {} entries in {} file(s), chain intact",
                        report.entries, report.files
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        AuditCommand::Rotate => {
            let rotated = audit::rotate(&path, ctx.audit_key()?)?;
            println!(
                "{}",
                if rotated {
                    "rotated"
                } else {
                    "nothing to rotate"
                }
            );
            ctx.audit(Event::new(
                Category::Admin,
                "audit",
                "audit.rotate",
                Outcome::Success,
            ))
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prune => {
            let days = ctx.config.audit.retention_days;
            let today = time::OffsetDateTime::now_utc().date();
            let removed = audit::prune(&path, &ctx.audit_key()?, days, today)?;
            for p in &removed {
                println!("removed {}", p.display());
            }
            println!("{} file(s) older than {days} days removed", removed.len());
            ctx.audit(
                Event::new(Category::Admin, "audit", "audit.prune", Outcome::Success)
                    .detail("files_removed", removed.len()),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The existing audit key. A missing key is never replaced here: a new key would make every
/// line fail, and deleting the key is itself something an attacker would do. `None` only when
/// there is nothing at all to verify (no key and no log file).
fn verify_key(ctx: &Context, path: &Path) -> Result<Option<audit::ChainKey>> {
    let key_path = ctx.home.audit_key();
    if key_path.exists() {
        return audit::ChainKey::load(&key_path).map(Some);
    }
    if audit::LogFiles::new(path).any_exist()? {
        return Err(Error::Audit(format!(
            "verify failed: the audit key {} is missing, so the log cannot be verified \
             (restore the key from a backup)",
            key_path.display()
        )));
    }
    Ok(None)
}
