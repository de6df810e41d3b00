//! `maestra backup create | verify | restore` (issue 18): see `crate::backup`.

use std::fs;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Subcommand;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

use crate::backup::connector::{GuardedConnector, Traffic};
use crate::backup::{self, KeySource, Location, S3Settings};
use crate::config::Config;
use crate::context::Context;
use crate::egress::{Egress, EgressOptions};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::privsec::audit::{Category, Event, Outcome};
use crate::privsec::guard::Catalog;
use crate::privsec::lockdown;

/// The passphrase's variable; asked on the terminal when unset.
const PASSPHRASE_ENV: &str = "MAESTRA_BACKUP_PASSPHRASE";
const MIN_PASSPHRASE: usize = 8;
const MIN_KEY_FILE: usize = 32;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up the database (a consistent snapshot, server running or not), the audit log and
    /// the configuration, encrypted, to a new or empty directory or to s3://bucket/prefix.
    Create {
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        to: String,
        /// Also put in the vault key, the audit key and the data keys (under the passphrase).
        #[arg(long)]
        with_keys: bool,
        /// Derive the backup key from this file instead of a passphrase.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Check that a backup decrypts and that every file matches its SHA-256.
    Verify {
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        from: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Restore a backup into an empty $MAESTRA_HOME.
    Restore {
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        from: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Take the keys from this home (its key files and its database's data keys) instead
        /// of from the backup: the keys of today, without the keys of users forgotten since.
        #[arg(long, value_name = "HOME")]
        keys_from: Option<PathBuf>,
        /// PostgreSQL with --keys-from: the live database whose data keys to take (from the
        /// environment only, so its password is never on a command line).
        #[arg(skip = std::env::var("MAESTRA_RESTORE_KEYS_DB_URL").ok().map(SecretString::from))]
        keys_db: Option<SecretString>,
    },
}

pub async fn run(config_file: Option<&Path>, cmd: BackupCommand) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create {
            to,
            with_keys,
            key_file,
        } => {
            refuse_keys_under_key_file(with_keys, key_file.as_deref())?;
            let to = Location::parse(&to)?;
            let ctx = Context::load(config_file, false)?;
            let source = key_source(key_file.as_deref(), true)?;
            let (s3, traffic) = s3_settings(&ctx.config, Some(&ctx), &to).await?;
            let spinner = super::progress::Spinner::new("writing the backup");
            let created = backup::create(&ctx, &to, &source, with_keys, &s3).await;
            drop(spinner);
            // The backup's own error comes first: an audit failure must not hide it.
            let audited = audit_s3(Some(&ctx), &to, "backup.upload", &traffic, &created).await;
            let created = created?;
            audited?;
            let m = &created.manifest;
            ctx.audit(
                Event::new(
                    Category::Admin,
                    "maestra",
                    "backup.create",
                    Outcome::Success,
                )
                .detail("destination", kind(&to))
                .detail("with_keys", with_keys)
                .detail("files", m.files.len() as u64),
            )
            .await?;
            println!(
                "backup written to {}: {} files, {:.1} MB encrypted",
                to.describe(),
                m.files.len(),
                m.data_size as f64 / 1e6
            );
            if with_keys {
                println!("keys: included (vault key, audit key, data keys), under the backup key");
            } else {
                let left_out = created
                    .data_keys_left_out
                    .map(|n| format!("{n} data keys left out"))
                    .unwrap_or_else(|| "the data keys' rows left out".into());
                println!("keys: not included ({left_out}); restore with --keys-from HOME");
                if !created.config_secrets_removed.is_empty() {
                    println!(
                        "configuration: secrets removed from the backup's copy of maestra.toml: \
                         {} (give them again after a restore; --with-keys keeps them)",
                        created.config_secrets_removed.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify { from, key_file } => {
            let from = Location::parse(&from)?;
            let config = crate::context::load_config(config_file)?;
            let source = key_source(key_file.as_deref(), false)?;
            // An existing home's vault may hold the bucket's secret key; verify never makes one.
            let ctx = match Home::new(&config.home).db().exists() {
                true => Some(Context::load(config_file, false)?),
                false => None,
            };
            let (s3, traffic) = s3_settings(&config, ctx.as_ref(), &from).await?;
            let scratch = std::env::temp_dir();
            let spinner = super::progress::Spinner::new("verifying the backup");
            let checked = async {
                let opened = backup::open(&from, &source, &s3, &scratch).await?;
                opened.check(None).await?;
                Ok(opened)
            }
            .await;
            drop(spinner);
            let audited =
                audit_s3(ctx.as_ref(), &from, "backup.download", &traffic, &checked).await;
            let opened = checked?;
            audited?;
            let m = &opened.manifest;
            println!(
                "backup OK: made {} ({:?}{}), {} files, every SHA-256 matches{}",
                m.created_at,
                m.backend,
                if m.with_keys { ", with keys" } else { "" },
                m.files.len(),
                m.audit_head
                    .as_ref()
                    .map(|h| format!("; audit chain head: entry {}", h.seq))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore {
            from,
            key_file,
            keys_from,
            keys_db,
        } => {
            let from = Location::parse(&from)?;
            let config = crate::context::load_config(config_file)?;
            let source = key_source(key_file.as_deref(), false)?;
            let (s3, traffic) = s3_settings(&config, None, &from).await?;
            let spinner = super::progress::Spinner::new("restoring the backup");
            let r = backup::restore(
                &config,
                &from,
                &source,
                keys_from.as_deref(),
                keys_db.as_ref(),
                &s3,
            )
            .await;
            drop(spinner);
            let r = r?;
            println!(
                "restored {} files of the backup made {} into {} (keys from {}, {} data keys)",
                r.manifest.files.len(),
                r.manifest.created_at,
                config.home.display(),
                r.keys_from,
                r.data_keys
            );
            // The restored home's own log records where it came from.
            let ctx = Context::load(config_file, false)?;
            audit_s3(Some(&ctx), &from, "backup.download", &traffic, &Ok(())).await?;
            ctx.audit(
                Event::new(
                    Category::Admin,
                    "maestra",
                    "backup.restore",
                    Outcome::Success,
                )
                .detail("source", kind(&from))
                .detail("backup_created_at", r.manifest.created_at.clone())
                .detail("keys_from_backup", r.keys_from_backup),
            )
            .await?;
            println!("next: `maestra audit verify` and `maestra doctor`");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Key files go into a backup only under a passphrase: a backup key file kept beside the
/// vault key would open it, and one kept apart is one more root secret to lose. Refused
/// before anything is read or written.
fn refuse_keys_under_key_file(with_keys: bool, key_file: Option<&Path>) -> Result<()> {
    if with_keys && key_file.is_some() {
        return Err(Error::BadRequest(
            "--with-keys puts the vault and audit keys in the backup, and they go in only under \
             a passphrase: drop --key-file (and set MAESTRA_BACKUP_PASSPHRASE or type one), or \
             drop --with-keys"
                .into(),
        ));
    }
    Ok(())
}

fn kind(l: &Location) -> &'static str {
    match l {
        Location::Dir(_) => "directory",
        Location::S3 { .. } => "s3",
    }
}

/// The backup key's source: `--key-file`, else `MAESTRA_BACKUP_PASSPHRASE`, else the terminal.
fn key_source(key_file: Option<&Path>, new: bool) -> Result<KeySource> {
    if let Some(path) = key_file {
        let meta = fs::metadata(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Permissions {
                path: path.to_path_buf(),
                reason: "a backup key file must be readable by its owner only (chmod 600)".into(),
            });
        }
        let bytes = Zeroizing::new(
            fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?,
        );
        if bytes.len() < MIN_KEY_FILE {
            return Err(Error::BadRequest(format!(
                "{} holds fewer than {MIN_KEY_FILE} bytes; make one with `head -c 32 /dev/urandom > FILE`",
                path.display()
            )));
        }
        return Ok(KeySource::KeyFile(SecretSlice::from(bytes.to_vec())));
    }
    let passphrase = match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => SecretString::from(p),
        _ if std::io::stdin().is_terminal() => ask(new)?,
        _ => {
            return Err(Error::BadRequest(format!(
                "a backup needs a passphrase: set {PASSPHRASE_ENV}, run on a terminal, or give --key-file"
            )));
        }
    };
    if new && passphrase.expose_secret().chars().count() < MIN_PASSPHRASE {
        return Err(Error::BadRequest(format!(
            "the backup passphrase must have at least {MIN_PASSPHRASE} characters"
        )));
    }
    Ok(KeySource::Passphrase(SecretSlice::from(
        passphrase.expose_secret().as_bytes().to_vec(),
    )))
}

fn ask(new: bool) -> Result<SecretString> {
    let io = |e| Error::io("cannot read the passphrase", e);
    let first = SecretString::from(rpassword::prompt_password("Backup passphrase: ").map_err(io)?);
    if new {
        let again = Zeroizing::new(rpassword::prompt_password("Again: ").map_err(io)?);
        if again.as_str() != first.expose_secret() {
            return Err(Error::BadRequest("the passphrases differ".into()));
        }
    }
    Ok(first)
}

/// S3 settings: `[backup]`, and the secret key from the vault when it names one and the
/// environment gives none (only where a vault exists: not for a restore into an empty home).
/// The bucket is reached through egress, local-only as a running server of this home has it;
/// the [`Traffic`] counts what went to it, for the audit entry.
async fn s3_settings(
    config: &Config,
    ctx: Option<&Context>,
    l: &Location,
) -> Result<(S3Settings, Arc<Traffic>)> {
    let mut vault_secret = None;
    let mut local_only = false;
    if let Location::S3 { .. } = l {
        local_only = local_only_now(config, ctx).await?;
        if let (Some(ctx), Some(name)) = (ctx, config.backup.secret_access_key_vault.as_deref())
            && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none()
        {
            vault_secret = Some(ctx.vault().await?.get(name).await?);
        }
    }
    let egress = Egress::new(
        Catalog::new(&config.guard),
        EgressOptions {
            local_only,
            ..EgressOptions::default()
        },
    )?;
    let traffic = Arc::new(Traffic::default());
    let settings = S3Settings {
        config: config.backup.clone(),
        vault_secret,
        connector: GuardedConnector::new(egress, S3_SERVICE, traffic.clone()),
    };
    Ok((settings, traffic))
}

/// The service name S3 traffic is guarded and audited under.
const S3_SERVICE: &str = "s3";

/// On by configuration, or forced on by a lockdown recorded in the home's store (as
/// `maestra guard check` decides it).
async fn local_only_now(config: &Config, ctx: Option<&Context>) -> Result<bool> {
    if config.local_only {
        return Ok(true);
    }
    let Some(ctx) = ctx else { return Ok(false) };
    if !ctx.config.uses_postgres() && !ctx.home.db().exists() {
        return Ok(false);
    }
    let store = ctx.store().await?;
    for flag in [lockdown::LOCKDOWN_FLAG, lockdown::LOCKDOWN_ENGAGED] {
        if store.meta_get(flag).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Audits what a backup command sent to or got from a bucket: its bytes (category admin), or
/// the guard's refusal (category local_only_block). Only where a home exists to hold the log.
async fn audit_s3<T>(
    ctx: Option<&Context>,
    l: &Location,
    action: &str,
    traffic: &Traffic,
    result: &Result<T>,
) -> Result<()> {
    let (Location::S3 { .. }, Some(ctx)) = (l, ctx) else {
        return Ok(());
    };
    let event = match result {
        Ok(_) => Event::new(Category::Admin, S3_SERVICE, action, Outcome::Success),
        Err(Error::LocalOnly(b)) => Event::new(
            Category::LocalOnlyBlock,
            S3_SERVICE,
            action,
            Outcome::Blocked,
        )
        .detail("reason", b.reason.clone()),
        Err(_) => Event::new(Category::Admin, S3_SERVICE, action, Outcome::Failed),
    };
    let host = traffic.host();
    let event = event
        .detail("host", host)
        .detail("bytes_sent", traffic.sent.load(Ordering::Relaxed))
        .detail("bytes_received", traffic.received.load(Ordering::Relaxed));
    ctx.audit(event).await
}
