//! `maestra conversations ...`, `maestra forget --user`, `maestra import --from`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::Context;
use crate::conversations::model::format_millis;
use crate::conversations::rights::{self, Actor};
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// List conversations, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Export one conversation (or with --user, everything of a user) as JSON on stdout.
    Export {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete one conversation; its content leaves the database files.
    Delete { id: String },
}

pub async fn run(config_file: Option<&Path>, cmd: ConversationsCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = open_store(&ctx).await?;
    let audit = ctx.audit_log()?;
    let result = async {
        match cmd {
            ConversationsCommand::List { user, limit, json } => {
                if let Some(u) = &user {
                    crate::conversations::model::validate_id("user", u)?;
                }
                let items = store.conversation_list(user.as_deref(), limit, 0).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&items).unwrap_or_default()
                    );
                } else {
                    for s in &items {
                        println!(
                            "{}  {:<20} {:>5} msgs  updated {}  {}",
                            s.id,
                            s.owner,
                            s.message_count,
                            format_millis(s.updated_at),
                            s.topic
                        );
                    }
                    eprintln!("{} conversation(s)", items.len());
                }
            }
            ConversationsCommand::Export { id, user } => {
                let value = match (id, user) {
                    (_, Some(u)) => {
                        rights::export_user(store.as_ref(), &audit, &u, &Actor::cli()).await?
                    }
                    (Some(id), None) => serde_json::to_value(
                        rights::export_conversation(store.as_ref(), &audit, &id, &Actor::cli())
                            .await?,
                    )
                    .map_err(|e| Error::Store(e.to_string()).because(e))?,
                    (None, None) => {
                        return Err(Error::BadRequest("give an ID or --user".into()));
                    }
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value)
                        .map_err(|e| Error::Store(e.to_string()).because(e))?
                );
            }
            ConversationsCommand::Delete { id } => {
                rights::delete_conversation(store.as_ref(), &audit, &id, &Actor::cli()).await?;
                eprintln!("deleted conversation {id}");
            }
        }
        Ok(())
    }
    .await;
    audit.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The store with conversations opened per user (sealing, with progress, what a database from
/// before encryption still holds in plaintext).
async fn open_store(ctx: &Context) -> Result<Arc<dyn Store>> {
    let mut progress = sealing_progress();
    Ok(crate::conversations::open::open(ctx, &mut progress)
        .await?
        .store)
}

/// "encrypting conversations" on standard error, for a database big enough to take a while
/// (more than a few batches): a bar on a terminal; otherwise, still, an "N/M rows" line per
/// batch (tests/encryption_cli.rs times its crash of a half-done migration by that line).
fn sealing_progress() -> impl FnMut(u64, u64) -> Result<()> + Send {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let mut batches = 0u64;
    let mut bar = None;
    move |done, total| {
        batches += 1;
        if batches >= 4 {
            if terminal {
                let show = bar
                    .get_or_insert_with(|| super::progress::callback("encrypting conversations"));
                show(done, total)?;
            } else {
                eprintln!("encrypting conversations: {done}/{total} rows");
            }
        }
        Ok(())
    }
}

/// `maestra forget --user U [--rotate-key]`.
///
/// The forget destroys U's data key, which every Maestra backup and every copied row needs.
/// A copy of the *whole* database taken earlier holds U's wrapped key too, wrapped under the
/// vault key: `--rotate-key` then rotates that key (the other users' data keys are re-wrapped,
/// the old vault key leaves the key file), so such a copy opens only with a key that no
/// longer exists anywhere but in copies of the key file itself.
pub async fn forget(
    config_file: Option<&Path>,
    user: String,
    rotate_key: bool,
) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    if rotate_key && ctx.config.encryption_keys.is_some() {
        // Refused before anything is deleted: the command would not do what it says.
        return Err(Error::BadRequest(
            "--rotate-key needs the vault key in its key file; with MAESTRA_ENCRYPTION_KEY, \
             forget without it, then put a new key first in that variable and run \
             `maestra vault rotate-key`"
                .into(),
        ));
    }
    let store = open_store(&ctx).await?;
    let audit = ctx.audit_log()?;
    let spinner = super::progress::Spinner::new("forgetting the user");
    let result = rights::forget_user(store.as_ref(), &audit, &user, &Actor::cli()).await;
    drop(spinner);
    // Copies Maestra made itself go too (whatever the outcome: the key may be gone even if a
    // later step failed): what a killed backup or restore left in the home.
    ctx.home.sweep_scratch();
    audit.close().await;
    let n = result?;
    let scrub = match store.meta_get(crate::store::SCRUB_OWED).await? {
        None => "database scrubbed",
        // PostgreSQL under a long transaction (a backup): `maestra serve` retries it.
        Some(_) => {
            "the scrub of the database files is owed (a long transaction holds the \
                    tables; a running `maestra serve` retries it every few seconds)"
        }
    };
    eprintln!(
        "forgot user {user}: data key destroyed (every copy of their content is unreadable), \
         {n} conversation(s) deleted, {scrub}"
    );
    if !rotate_key {
        return Ok(ExitCode::SUCCESS);
    }
    let mut vault = ctx.vault().await?;
    let mut progress = super::progress("re-encrypting");
    let rotation = vault.rotate_key(&mut progress).await;
    let outcome = match &rotation {
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failed,
    };
    let mut event = Event::new(Category::Admin, "vault", "vault.rotate_key", outcome)
        .detail("after_forget", user.as_str());
    if let Err(e) = &rotation {
        event = event.detail("error", e.code());
    }
    ctx.audit(event).await?;
    let report = rotation?;
    eprintln!(
        "vault key rotated ({} secret(s) re-encrypted, {} user data key(s) re-wrapped): copies \
         of the whole database taken before no longer open with the key in use",
        report.rewritten, report.data_keys_rewrapped
    );
    Ok(ExitCode::SUCCESS)
}

/// `maestra import --from DIR`. With the embedded store it adds to the cost ledger, whose
/// totals a running server keeps in memory (it would neither see nor keep the import): so it
/// holds the home like a server, and is refused while one runs (and a server while it runs).
pub async fn import(config_file: Option<&Path>, from: PathBuf) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let _home = match ctx.config.uses_postgres() {
        false => Some(crate::home_lock::HomeLock::acquire(&ctx.home, "import")?),
        // PostgreSQL's ledger is read where it is kept: running servers see the import.
        true => None,
    };
    let store = open_store(&ctx).await?;
    let audit = ctx.audit_log()?;
    let mut progress = super::progress("import");
    let result = rights::import_dir(store.as_ref(), &audit, &from, &mut progress).await;
    audit.close().await;
    let report = result?;
    for f in &report.failed {
        eprintln!("skipped {f}");
    }
    println!(
        "imported {} conversation(s), {} already present, {} unreadable; {} day(s) of cost history",
        report.imported,
        report.skipped_existing,
        report.failed.len(),
        report.cost_days
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}
