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
    Verify,
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
                    let line =
                        serde_json::to_string(&e).map_err(|e| Error::Audit(e.to_string()))?;
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
        AuditCommand::Verify => {
            let report = audit::verify(&path, &ctx.audit_key()?)?;
            if let Some(w) = &report.head_warning {
                eprintln!("warning: {w}");
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
