//! `maestra backup create`: gathers a consistent copy of everything into a private scratch
//! directory in the home, packs and seals it into the destination's `data.mxb`, and commits
//! `manifest.mxb` last. Keys and the configuration are held in memory, never in the scratch
//! directory (issue 23, class 4): a run killed at any point leaves there only the database
//! copy without its data keys, the audit log's copy and sealed data, and the next start or
//! forget removes even that (`crate::home::scratch`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::crypt::{BackupKey, KeySource, Role, SealWriter};
use super::keys::{self, KeyUse};
use super::location::{self, Bucket, DATA, Location, MANIFEST, S3Settings};
use super::manifest::{AuditHead, Backend, FORMAT, Manifest, paths};
use super::pack::{self, Source, Staged};
use super::postgres;
use super::redact;
use crate::context::{Context, DB_URL_SETTING};
use crate::error::{Error, Result};
use crate::home::WorkDir;
use crate::privsec::audit::{self, ChainKey, LogFiles};
use crate::privsec::guard::check_configured_peer;
use crate::privsec::keyring::{self, Keyring};
use crate::store::sqlite_snapshot;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// What was written, for the command's summary.
#[derive(Debug)]
pub struct Created {
    pub manifest: Manifest,
    /// How many data keys the embedded store's snapshot left out (`None`: PostgreSQL, whose
    /// dump leaves out the table's rows without counting them).
    pub data_keys_left_out: Option<u64>,
    /// Secret settings left out of the configuration's copy (none with `--with-keys`).
    pub config_secrets_removed: Vec<String>,
}

pub async fn create(
    ctx: &Context,
    to: &Location,
    source: &KeySource,
    with_keys: bool,
    s3: &S3Settings,
) -> Result<Created> {
    // Refuse an unusable destination before any work.
    let bucket = match to {
        Location::Dir(dir) => {
            prepare_dir(dir)?;
            None
        }
        Location::S3 { bucket, prefix } => {
            let b = Bucket::connect(bucket, prefix, s3)?;
            if b.exists(MANIFEST).await? {
                return Err(Error::BadRequest(format!(
                    "backup: {} already holds a backup; choose another prefix",
                    to.describe()
                )));
            }
            Some(b)
        }
    };
    let key = derive_blocking(source).await?;

    let work = WorkDir::create(&ctx.home.root, ".maestra-backup-")?;
    let w = work.path().to_path_buf();
    let mut staged = Vec::new();

    // The database as of one moment, without its data keys; `--with-keys`, the vault key file
    // copied before it and checked to open it.
    let db = copy_database(ctx, &w, with_keys).await?;
    let (backend, data_keys_left_out) = (db.backend, db.data_keys_left_out);
    staged.extend(db.staged);

    let audit_head = copy_audit_log(ctx, &w, &mut staged)?;

    let config_secrets_removed = copy_config(ctx, with_keys, &mut staged)?;
    if with_keys {
        copy_key_file(paths::AUDIT_KEY, &ctx.home.audit_key(), &mut staged)?;
    }

    // Pack and seal: to a temporary name in the destination directory, or a scratch file that
    // is then uploaded whole.
    let sealed_local = match to {
        Location::Dir(dir) => location::partial_name(&dir.join(DATA)),
        Location::S3 { .. } => w.join(DATA),
    };
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&sealed_local)
        .map_err(|e| Error::io(format!("cannot create {}", sealed_local.display()), e))?;
    let (packed, key) = tokio::task::spawn_blocking(move || {
        let packed = pack::pack(&staged, &key, out);
        (packed, key)
    })
    .await
    .map_err(|e| Error::Store(format!("backup task failed: {e}")).because(e))?;
    let packed = match packed {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&sealed_local);
            return Err(e);
        }
    };

    let manifest = Manifest {
        format: FORMAT,
        created_at: now_rfc3339(),
        maestra_version: env!("CARGO_PKG_VERSION").to_string(),
        backend,
        with_keys,
        files: packed.files,
        audit_head,
        data_size: packed.data_size,
        data_sha256: packed.data_sha256,
    };
    let sealed_manifest = seal_small(&key, Role::Manifest, &manifest.to_json()?)?;

    match (to, bucket) {
        (Location::Dir(dir), _) => {
            location::rename_durably(&sealed_local, &dir.join(DATA))?;
            stop_here_if_asked();
            // Last: only now is there a backup that verify accepts.
            location::commit_file(&dir.join(MANIFEST), &sealed_manifest)?;
        }
        (Location::S3 { .. }, Some(b)) => {
            b.upload(DATA, &sealed_local).await?;
            // Only if absent: of two backups racing to one prefix, one commits, one fails.
            b.put_new(MANIFEST, sealed_manifest).await?;
        }
        (Location::S3 { .. }, None) => {
            return Err(Error::Store("backup: the bucket was not connected".into()));
        }
    }
    drop(work);
    Ok(Created {
        manifest,
        data_keys_left_out,
        config_secrets_removed,
    })
}

/// The configuration file, in memory: as it is with `--with-keys`, else without its secrets
/// (a backup carries no key unless asked). Returns the settings removed.
fn copy_config(ctx: &Context, with_keys: bool, staged: &mut Vec<Staged>) -> Result<Vec<String>> {
    let file = &ctx.config.config_file;
    if !file.is_file() {
        return Ok(Vec::new());
    }
    let bytes = Zeroizing::new(
        fs::read(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?,
    );
    if with_keys {
        staged.push(in_memory(paths::CONFIG, bytes));
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::Config(format!(
            "backup: {} is not UTF-8, so its secrets cannot be removed; no backup was made",
            file.display()
        ))
        .because(e)
    })?;
    let r = redact::redact(text)?;
    staged.push(in_memory(
        paths::CONFIG,
        Zeroizing::new(r.text.as_bytes().to_vec()),
    ));
    Ok(r.removed)
}

fn in_memory(path: &str, bytes: Zeroizing<Vec<u8>>) -> Staged {
    Staged {
        path: path.to_string(),
        source: Source::Memory(bytes),
    }
}

/// The database part of a backup, and (`--with-keys`) the vault key file that opens it.
struct DatabaseCopy {
    backend: Backend,
    data_keys_left_out: Option<u64>,
    staged: Vec<Staged>,
}

/// Copies the database, and `--with-keys` the vault key file first. A rotation that finishes
/// between the two (the key file then keeps only the new key) would leave a backup whose keys
/// do not open its own database yet passes `verify`: so the copy is checked against the copied
/// keys, taken once more if a rotation moved under it, and refused if it moves again.
async fn copy_database(ctx: &Context, w: &Path, with_keys: bool) -> Result<DatabaseCopy> {
    let mut attempt = 1;
    loop {
        let dir = w.join(format!("database-{attempt}"));
        fs::create_dir(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let (copy, uses) = copy_database_once(ctx, &dir, with_keys).await?;
        let Some(uses) = uses else {
            return Ok(copy);
        };
        let why = match copied_keyring(ctx, &copy) {
            Ok(keys) => keys::mismatch(&keys, &uses)?,
            Err(_) if uses.is_empty() => None,
            Err(e) => Some(format!("no usable vault key: {e}")),
        };
        let Some(why) = why else {
            return Ok(copy);
        };
        if attempt == 2 {
            return Err(Error::BadRequest(format!(
                "backup: the vault key does not open the database snapshot ({why}); a vault key \
                 rotation is probably running: run the backup again once it has finished. No \
                 backup was made."
            )));
        }
        eprintln!("warning: the vault key changed during the backup (a rotation?); copying again");
        fs::remove_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
        attempt += 1;
    }
}

/// The vault keys the copy goes with: the environment's, else the key file's copy.
fn copied_keyring(ctx: &Context, copy: &DatabaseCopy) -> Result<Keyring> {
    if let Some(keys) = &ctx.config.encryption_keys {
        return Keyring::parse(keys, keyring::KeySource::Environment);
    }
    let bytes = copy.staged.iter().find_map(|s| match &s.source {
        Source::Memory(b) if s.path == paths::VAULT_KEY => Some(b),
        _ => None,
    });
    let Some(bytes) = bytes else {
        return Err(Error::Vault(format!(
            "{} not found",
            ctx.home.vault_key().display()
        )));
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Vault("the vault key file is not UTF-8".into()).because(e))?;
    Keyring::parse(
        &SecretString::from(text.to_string()),
        keyring::KeySource::File(ctx.home.vault_key()),
    )
}

/// One attempt of [`copy_database`]; `--with-keys`, also what in the copy the vault key locks.
async fn copy_database_once(
    ctx: &Context,
    dir: &Path,
    with_keys: bool,
) -> Result<(DatabaseCopy, Option<KeyUse>)> {
    let mut staged = Vec::new();
    if with_keys {
        // Before the snapshot: a key file newer than the data may lack the key that opens it.
        copy_key_file(paths::VAULT_KEY, &ctx.home.vault_key(), &mut staged)?;
    }
    if ctx.config.uses_postgres() {
        let url = ctx.config.db_url.as_ref().ok_or_else(|| {
            Error::Config("MAESTRA_CLOUD_STORAGE=postgresql needs MAESTRA_DB_URL".into())
        })?;
        check_configured_peer(ctx.config.local_only, DB_URL_SETTING, url.expose_secret()).await?;
        let mut snapshot = postgres::Snapshot::take(url).await?;
        let dump = dir.join("postgres.sql");
        snapshot
            .dump(url, &dump, postgres::Part::DataWithoutKeys)
            .await?;
        staged.push(staged_file(paths::POSTGRES_DUMP, dump));
        let mut uses = None;
        if with_keys {
            let keys = dir.join("data_keys.sql");
            snapshot
                .dump(url, &keys, postgres::Part::DataKeysOnly)
                .await?;
            staged.push(take_into_memory(paths::DATA_KEYS_POSTGRES, &keys)?);
            uses = Some(snapshot.key_use().await?);
        }
        snapshot.close().await?;
        let copy = DatabaseCopy {
            backend: Backend::Postgresql,
            data_keys_left_out: None,
            staged,
        };
        return Ok((copy, uses));
    }
    let db = dir.join("maestra.db");
    let keys = dir.join("data_keys.db");
    let left_out =
        sqlite_snapshot::snapshot_into(&ctx.home.db(), &db, with_keys.then_some(keys.as_path()))
            .await?;
    staged.push(staged_file(paths::SQLITE_DB, db.clone()));
    let mut uses = None;
    if with_keys {
        // The copy's check value and secrets; its data keys are in their own file.
        let mut found = sqlite_snapshot::key_use(&db).await?;
        if keys.exists() {
            found.keks = sqlite_snapshot::key_use(&keys).await?.keks;
            staged.push(take_into_memory(paths::DATA_KEYS_SQLITE, &keys)?);
        }
        uses = Some(found);
    }
    let copy = DatabaseCopy {
        backend: Backend::Sqlite,
        data_keys_left_out: Some(left_out),
        staged,
    };
    Ok((copy, uses))
}

/// Reads a key file into the backup, in memory only (a crash must not leave a key in the
/// scratch directory), or warns that it is not there (keys given in the environment are the
/// user's to keep).
fn copy_key_file(inside: &str, local: &Path, staged: &mut Vec<Staged>) -> Result<()> {
    if !local.is_file() {
        eprintln!(
            "warning: {} not found; it is not in the backup (keys from the environment must be kept apart)",
            local.display()
        );
        return Ok(());
    }
    let bytes = Zeroizing::new(
        fs::read(local).map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?,
    );
    staged.push(in_memory(inside, bytes));
    Ok(())
}

/// Moves a file of data keys the snapshot had to write out into memory and removes it (and
/// any journal SQLite left beside it) at once, so the scratch directory holds the keys only
/// for that moment; a crash inside it is what the sweep of every start and forget is for.
fn take_into_memory(inside: &str, file: &Path) -> Result<Staged> {
    let bytes = Zeroizing::new(
        fs::read(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?,
    );
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("cannot remove {}", file.display()), e)),
        }
    }
    Ok(in_memory(inside, bytes))
}

/// Fault injection for `tests/backup.rs`: with `MAESTRA_BACKUP_FAULT=before-manifest` the
/// process dies (SIGABRT: no destructor, no clean-up, like `kill -9`) between the data file's
/// rename and the manifest's commit, the one moment a test cannot reliably hit from outside.
fn stop_here_if_asked() {
    if std::env::var_os("MAESTRA_BACKUP_FAULT").is_some_and(|v| v == "before-manifest") {
        std::process::abort();
    }
}

/// A destination directory must be new or empty; the leftovers of a killed run (`.*.partial`,
/// or a data file whose manifest was never committed: no backup) are removed.
fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        crate::home::restrict_umask();
        return fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e));
    }
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
    let mut partial = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let unfinished = name == DATA && !dir.join(MANIFEST).exists();
        if (name.starts_with('.') && name.ends_with(".partial")) || unfinished {
            partial.push(entry.path());
        } else {
            return Err(Error::BadRequest(format!(
                "backup: {} is not empty; a backup goes into a new or empty directory",
                dir.display()
            )));
        }
    }
    for p in partial {
        fs::remove_file(&p).map_err(|e| Error::io(format!("cannot remove {}", p.display()), e))?;
    }
    Ok(())
}

/// Argon2id takes a noticeable moment: off the async threads.
pub(super) async fn derive_blocking(source: &KeySource) -> Result<BackupKey> {
    tokio::task::block_in_place(|| BackupKey::derive_new(source))
}

fn staged_file(path: &str, local: PathBuf) -> Staged {
    Staged {
        path: path.to_string(),
        source: Source::File(local),
    }
}

fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let mut src =
        File::open(from).map_err(|e| Error::io(format!("cannot read {}", from.display()), e))?;
    let mut dst = location::create_private(to)?;
    std::io::copy(&mut src, &mut dst)
        .and_then(|_| dst.sync_all())
        .map_err(|e| Error::io(format!("cannot copy {}", from.display()), e))?;
    Ok(())
}

/// Copies the audit log's files under its cross-process lock (the one every writer takes to
/// append or rotate), so the copy is one consistent chain with its head, and checks the copy.
fn copy_audit_log(ctx: &Context, w: &Path, staged: &mut Vec<Staged>) -> Result<Option<AuditHead>> {
    let files = LogFiles::new(&ctx.config.audit.path);
    if !files.any_exist()? {
        return Ok(None);
    }
    let dir = w.join("audit");
    fs::create_dir(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    {
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(files.lock())
            .map_err(|e| Error::io("cannot open the audit log's lock", e))?;
        lock.lock()
            .map_err(|e| Error::io("cannot lock the audit log", e))?;
        let mut sources: Vec<PathBuf> = files.rotated()?.into_iter().map(|r| r.path).collect();
        sources.extend([files.live(), files.head(), files.anchor()]);
        for src in sources.into_iter().filter(|p| p.is_file()) {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let copy = dir.join(&name);
            copy_private(&src, &copy)?;
            staged.push(staged_file(&format!("{}/{name}", paths::AUDIT_DIR), copy));
        }
        let _ = lock.unlock();
    }
    let key = ChainKey::load(&ctx.home.audit_key())?;
    let live_name = files
        .live()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit.log".into());
    let report = audit::verify(&dir.join(live_name), &key)?;
    if let Some(problem) = report.problem {
        return Err(Error::Audit(format!(
            "the audit log does not verify, so no backup was made ({problem}); see `maestra audit verify`"
        )));
    }
    Ok(report.last.map(|(seq, hash)| AuditHead { seq, hash }))
}

/// Seals a small buffer (the manifest) whole.
pub(super) fn seal_small(key: &BackupKey, role: Role, plain: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut w = SealWriter::new(key, role, Vec::new())?;
    w.write_all(plain)
        .map_err(|e| Error::io("cannot seal the manifest", e))?;
    w.finish()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
