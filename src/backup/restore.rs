//! `maestra backup restore`: into an empty home only. Everything is checked and assembled in a
//! scratch directory beside the home (same file system) and moved into place by one rename at
//! the end, so a refusal or a failure changes nothing on disk.
//!
//! Keys: a backup made `--with-keys` carries the key files and the data keys; otherwise (or to
//! override them) `--keys-from HOME` takes the key files of that home and the data keys of its
//! database, the keys of today. A user forgotten since the backup has no data key there, so
//! their restored conversations cannot be read: the crypto-shredding promise holds for backups.

use std::fs;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::crypt::KeySource;
use super::keys::{self, KeyUse};
use super::location::{Location, S3Settings};
use super::manifest::{Backend, Manifest, paths};
use super::open;
use super::postgres;
use crate::config::Config;
use crate::context::DB_URL_SETTING;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::home::WorkDir;
use crate::privsec::audit::{self, ChainKey};
use crate::privsec::guard::check_configured_peer;
use crate::privsec::keyring::Keyring;
use crate::store::sqlite_snapshot;

#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub data_keys: u64,
    /// Where the keys came from, for the summary.
    pub keys_from: String,
    /// The keys are the backup's own (`--with-keys`), not today's.
    pub keys_from_backup: bool,
}

pub async fn restore(
    config: &Config,
    from: &Location,
    source: &KeySource,
    keys_from: Option<&Path>,
    keys_db: Option<&SecretString>,
    s3: &S3Settings,
) -> Result<Restored> {
    crate::home::restrict_umask();
    let home = Home::new(&config.home);
    refuse_non_empty(&home.root)?;
    let audit_rel = config
        .audit
        .path
        .strip_prefix(&home.root)
        .map(Path::to_path_buf)
        .map_err(|e| {
            Error::Config(format!(
                "restore puts the audit log in the home, but audit.path ({}) is outside it",
                config.audit.path.display()
            ))
            .because(e)
        })?;
    let keys_home = match keys_from {
        Some(h) => Some(check_keys_home(h, config)?),
        None => None,
    };
    let parent = home
        .root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if !parent.is_dir() {
        return Err(Error::BadRequest(format!(
            "restore: {} does not exist",
            parent.display()
        )));
    }

    let opened = open::open(from, source, s3, &parent).await?;
    let manifest = opened.manifest.clone();
    if !manifest.with_keys && keys_home.is_none() {
        return Err(Error::BadRequest(
            "restore: this backup carries no keys (made without --with-keys); give --keys-from HOME, the home whose keys open it".into(),
        ));
    }
    let pg_url = match manifest.backend {
        Backend::Postgresql => {
            let url = config.db_url.clone().filter(|_| config.uses_postgres()).ok_or_else(|| {
                Error::Config(
                    "this backup is of a PostgreSQL store: set MAESTRA_CLOUD_STORAGE=postgresql and MAESTRA_DB_URL to an empty database".into(),
                )
            })?;
            if keys_home.is_some() && keys_db.is_none() {
                return Err(Error::BadRequest(
                    "restore: for PostgreSQL, --keys-from needs MAESTRA_RESTORE_KEYS_DB_URL too: the live database whose data keys to take".into(),
                ));
            }
            check_configured_peer(config.local_only, DB_URL_SETTING, url.expose_secret()).await?;
            if let Some(keys_db) = keys_db {
                check_configured_peer(
                    config.local_only,
                    "MAESTRA_RESTORE_KEYS_DB_URL",
                    keys_db.expose_secret(),
                )
                .await?;
            }
            if !postgres::is_empty(&url).await? {
                return Err(Error::BadRequest(
                    "restore: the PostgreSQL database already has tables; restore into an empty one".into(),
                ));
            }
            Some(url)
        }
        Backend::Sqlite => {
            if config.uses_postgres() {
                return Err(Error::Config(
                    "this backup is of the embedded store, but PostgreSQL is configured".into(),
                ));
            }
            None
        }
    };

    let name = home
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "home".into());
    let work = WorkDir::create(&parent, &format!(".{name}.restore-"))?;
    let unpacked = work.path().join("unpacked");
    opened.check(Some(&unpacked)).await?;

    // The new home, assembled beside the real one.
    let staged = Home::new(work.path().join("home"));
    staged.create_dirs(false)?;
    let take = |inside: &str, to: &Path| -> Result<bool> {
        let src = unpacked.join(inside);
        if !src.exists() {
            return Ok(false);
        }
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        fs::rename(&src, to).map_err(|e| Error::io(format!("cannot move {inside}"), e))?;
        Ok(true)
    };
    take(paths::SQLITE_DB, &staged.db())?;
    take(paths::CONFIG, &staged.root.join("maestra.toml"))?;
    let audit_live = staged.root.join(&audit_rel);
    let audit_dir = audit_live
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let audit_files: Vec<String> = manifest
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix(&format!("{}/", paths::AUDIT_DIR)))
        .map(str::to_string)
        .collect();
    for file in &audit_files {
        take(
            &format!("{}/{file}", paths::AUDIT_DIR),
            &audit_dir.join(file),
        )?;
    }

    // Keys: today's from another home, or the backup's own.
    let mut data_keys = 0;
    let keys_label;
    if let Some(h) = &keys_home {
        for (from, to) in [
            (h.vault_key(), staged.vault_key()),
            (h.audit_key(), staged.audit_key()),
        ] {
            if from.is_file() {
                copy_private(&from, &to)?;
            }
        }
        if manifest.backend == Backend::Sqlite {
            data_keys = sqlite_snapshot::copy_data_keys(&staged.db(), &h.db()).await?;
        }
        keys_label = format!("the home {}", h.root.display());
    } else {
        take(paths::VAULT_KEY, &staged.vault_key())?;
        take(paths::AUDIT_KEY, &staged.audit_key())?;
        let keys_db = unpacked.join(paths::DATA_KEYS_SQLITE);
        if manifest.backend == Backend::Sqlite && keys_db.exists() {
            data_keys = sqlite_snapshot::copy_data_keys(&staged.db(), &keys_db).await?;
        }
        keys_label = "the backup".into();
    }
    if manifest.backend == Backend::Sqlite {
        sqlite_snapshot::check_restored(&staged.db()).await?;
        // The vault key must open what it locks in the database it comes with (a rotation
        // since the backup retires the key the backup's secrets are under).
        let uses = sqlite_snapshot::key_use(&staged.db()).await?;
        check_keys(config, &staged, &uses, &keys_label, keys_home.is_none())?;
    }

    // The audit chain must verify with the keys it will be used with, up to the backup's head.
    if let Some(head) = &manifest.audit_head {
        let key = ChainKey::load(&staged.audit_key()).map_err(|e| {
            Error::BadRequest(format!(
                "restore: no usable audit key ({e}); the audit log could not be verified"
            ))
            .because(e)
        })?;
        let report = audit::verify(&audit_live, &key)?;
        if let Some(p) = report.problem {
            return Err(Error::BadRequest(format!(
                "restore: the audit log does not verify with the audit key from {keys_label}: {p}"
            )));
        }
        if report.last.as_ref().map(|(s, h)| (*s, h.as_str()))
            != Some((head.seq, head.hash.as_str()))
        {
            return Err(Error::BadRequest(
                "restore: the audit log does not end at the head the manifest recorded".into(),
            ));
        }
    }
    staged.check_permissions(false)?;

    // The only steps that change anything outside the scratch directory: the home renamed
    // into place, then (PostgreSQL) the database loaded and checked, the rename undone if
    // either fails.
    let home_existed = home.root.exists();
    if home_existed {
        // Checked empty above; rename(2) cannot replace a directory on every system.
        fs::remove_dir(&home.root)
            .map_err(|e| Error::io(format!("cannot replace {}", home.root.display()), e))?;
    }
    super::location::rename_durably(&staged.root, &home.root)?;
    if let Some(url) = &pg_url {
        let keys = match (&keys_home, keys_db) {
            (Some(_), Some(live)) => {
                let today = work.path().join("data_keys_today.sql");
                match postgres::dump(live, &today, postgres::Part::DataKeysOnly).await {
                    Ok(()) => Some(today),
                    Err(e) => return Err(undo_rename(&home.root, &staged.root, home_existed, e)),
                }
            }
            _ => Some(unpacked.join(paths::DATA_KEYS_POSTGRES)).filter(|k| k.exists()),
        };
        let dump = unpacked.join(paths::POSTGRES_DUMP);
        let mut dumps = vec![dump.as_path()];
        dumps.extend(keys.as_deref());
        // One transaction: a failed load leaves the database as empty as it was.
        if let Err(e) = postgres::load(url, &dumps).await {
            return Err(undo_rename(&home.root, &staged.root, home_existed, e));
        }
        let checked = match postgres::key_use(url).await {
            Ok(uses) => check_keys(
                config,
                &Home::new(&home.root),
                &uses,
                &keys_label,
                keys_home.is_none(),
            ),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            // The database was empty before the load: emptying it again undoes the load.
            if let Err(clear) = postgres::clear(url).await {
                tracing::warn!(error = %clear, "cannot empty the database after a refused restore");
            }
            return Err(undo_rename(&home.root, &staged.root, home_existed, e));
        }
    }
    drop(work);
    Ok(Restored {
        manifest,
        data_keys,
        keys_from: keys_label,
        keys_from_backup: keys_home.is_none(),
    })
}

/// Refuses, before anything is committed, a database that its vault key does not open.
fn check_keys(
    config: &Config,
    home: &Home,
    uses: &KeyUse,
    keys_label: &str,
    keys_from_backup: bool,
) -> Result<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let keys = Keyring::load(config.encryption_keys.as_ref(), &home.vault_key()).map_err(|e| {
        Error::BadRequest(format!(
            "restore: no usable vault key from {keys_label} ({e}), and the backup's database \
             holds vault secrets or data keys; nothing was restored"
        ))
        .because(e)
    })?;
    match keys::mismatch(&keys, uses)? {
        None => Ok(()),
        Some(why) => Err(keys::refuse_restore(keys_label, &why, keys_from_backup)),
    }
}

/// Moves the restored home back aside (into the scratch directory, removed with it) and
/// leaves the empty home as it was; returns `cause`, the failure that made it necessary.
fn undo_rename(root: &Path, aside: &Path, existed: bool, cause: Error) -> Error {
    if let Err(e) = fs::rename(root, aside) {
        tracing::warn!(error = %e, "cannot move the restored home back aside");
        return cause;
    }
    if existed && let Err(e) = fs::create_dir(root) {
        tracing::warn!(error = %e, "cannot recreate the empty home");
    }
    cause
}

fn refuse_non_empty(root: &Path) -> Result<()> {
    match fs::read_dir(root) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::BadRequest(format!(
                    "restore: {} is not empty; restore goes into a new or empty home (set MAESTRA_HOME)",
                    root.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot read {}", root.display()), e)),
    }
}

/// The home `--keys-from` names must hold an audit key, and a vault key unless the vault's
/// keys come from the environment.
fn check_keys_home(root: &Path, config: &Config) -> Result<Home> {
    let root = fs::canonicalize(root)
        .map_err(|e| Error::io(format!("--keys-from {}", root.display()), e))?;
    let h = Home::new(root);
    if !h.audit_key().is_file() {
        return Err(Error::BadRequest(format!(
            "--keys-from: {} has no audit key",
            h.audit_key().display()
        )));
    }
    if config.encryption_keys.is_none() && !h.vault_key().is_file() {
        return Err(Error::BadRequest(format!(
            "--keys-from: {} has no vault key (and MAESTRA_ENCRYPTION_KEY is not set)",
            h.vault_key().display()
        )));
    }
    Ok(h)
}

fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let bytes = Zeroized(
        fs::read(from).map_err(|e| Error::io(format!("cannot read {}", from.display()), e))?,
    );
    crate::home::write_private_atomic(to, &bytes.0)
}

/// Key bytes held only as long as the copy takes.
struct Zeroized(Vec<u8>);
impl Drop for Zeroized {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}
