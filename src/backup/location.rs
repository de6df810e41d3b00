//! Where a backup is: a directory, or an S3-compatible bucket (`s3://bucket/prefix`, through
//! the `object_store` crate). Either way a backup is two files, `data.mxb` then
//! `manifest.mxb`, both encrypted; their names say nothing about what is inside. The bucket is
//! reached through egress like every other outbound call (`backup::connector`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use secrecy::{ExposeSecret, SecretString};

use super::connector::{self, GuardedConnector};
use crate::config::BackupConfig;
use crate::error::{Error, Result};

pub const DATA: &str = "data.mxb";
pub const MANIFEST: &str = "manifest.mxb";
/// A manifest is a few KiB; anything far larger is not one.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket[/prefix]`, or else a directory path.
    pub fn parse(text: &str) -> Result<Location> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.is_empty() {
                return Err(Error::BadRequest("backup: empty destination".into()));
            }
            return Ok(Location::Dir(PathBuf::from(text)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::BadRequest(format!(
                "backup: {text:?} names no bucket (s3://bucket/prefix)"
            )));
        }
        let prefix = prefix.trim_matches('/').to_string();
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Location::Dir(d) => d.display().to_string(),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// Credentials and endpoint for an S3 location: `[backup]` first, the `AWS_*` variables over
/// it (as `object_store`'s `from_env` reads them), the secret key from the vault when
/// neither the environment nor anything else gives one.
pub struct S3Settings {
    pub config: BackupConfig,
    pub vault_secret: Option<SecretString>,
    /// Every request to the bucket goes through egress (local-only, lockdown, byte counts).
    pub connector: GuardedConnector,
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Bucket {
    pub fn connect(bucket: &str, prefix: &str, s: &S3Settings) -> Result<Bucket> {
        let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
        let c = &s.config;
        if let Some(v) = &c.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &c.region {
            b = b.with_region(v);
        }
        if let Some(v) = &c.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &s.vault_secret {
            b = b.with_secret_access_key(v.expose_secret());
        }
        b = b
            .with_allow_http(c.allow_http)
            .with_http_connector(s.connector.clone());
        // `vars_os`: a variable that is not UTF-8 (anyone's, not only `AWS_*`) must not
        // panic; an `AWS_*` one that is not is refused by name.
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with("AWS_")) else {
                continue;
            };
            let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
                continue;
            };
            let value = value
                .into_string()
                // Dropped on purpose: the rejected value is the setting itself, perhaps a secret key.
                .map_err(|_| Error::Config(format!("backup: {name} is not valid UTF-8")))?;
            b = b.with_config(key, value);
        }
        let store = b.build().map_err(|e| {
            Error::Config(format!("backup: cannot use the S3 destination: {e}")).because(e)
        })?;
        Ok(Bucket {
            store: Arc::new(store),
            prefix: prefix.to_string(),
        })
    }

    fn path(&self, name: &str) -> Result<ObjectPath> {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        ObjectPath::parse(&full)
            .map_err(|e| Error::BadRequest(format!("backup: bad S3 prefix: {e}")).because(e))
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        match self.store.head(&self.path(name)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3_error("cannot reach the bucket", e)),
        }
    }

    /// Uploads a local file in parts; the object appears only when the upload completes, so
    /// an interrupted one leaves nothing under `name`. On any error the upload is aborted, so
    /// its parts do not linger in the bucket (a process killed outright cannot abort: the
    /// README's lifecycle rule removes those).
    pub async fn upload(&self, name: &str, local: &Path) -> Result<()> {
        let upload = self
            .store
            .put_multipart(&self.path(name)?)
            .await
            .map_err(|e| s3_error("cannot start the upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        match send_parts(&mut writer, local).await {
            Ok(()) => writer
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| s3_error("upload failed", e)),
            Err(e) => {
                writer.abort().await.ok();
                Err(e)
            }
        }
    }

    /// Writes an object only if there is none under `name` yet (a conditional put,
    /// `If-None-Match: *`): of two backups committing to one prefix at once, one fails.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let opts = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(&self.path(name)?, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::BadRequest(format!(
                "backup: another backup was committed to the same prefix meanwhile ({name} \
                 exists); this one was not: choose another prefix"
            ))),
            Err(e) => Err(s3_error("upload failed", e)),
        }
    }

    /// Streams an object to a new local file.
    pub async fn download(&self, name: &str, local: &Path) -> Result<()> {
        let got = self
            .store
            .get(&self.path(name)?)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => not_found(name),
                e => s3_error("cannot download", e),
            })?;
        let mut out = create_private(local)?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| s3_error("download failed", e))?;
            out.write_all(&chunk)
                .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
        }
        Ok(())
    }

    pub async fn get_small(&self, name: &str) -> Result<Vec<u8>> {
        let got = self
            .store
            .get(&self.path(name)?)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => not_found(name),
                e => s3_error("cannot download", e),
            })?;
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(Error::BadRequest(format!(
                "backup: {name} is too large to be a manifest"
            )));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| s3_error("download failed", e))?;
        Ok(bytes.to_vec())
    }
}

/// Feeds the file at `local` to `writer`, part by part, at most a few parts in flight.
async fn send_parts(writer: &mut WriteMultipart, local: &Path) -> Result<()> {
    let mut file =
        File::open(local).map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
    let mut buf = vec![0u8; PART];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
        if n == 0 {
            return Ok(());
        }
        writer
            .wait_for_capacity(4)
            .await
            .map_err(|e| s3_error("upload failed", e))?;
        writer.write(&buf[..n]);
    }
}

fn s3_error(what: &str, e: object_store::Error) -> Error {
    // The guard's refusal is itself the answer (403-like, audited as a block by the caller).
    if let Some(blocked) = connector::blocked(&e) {
        return blocked;
    }
    Error::io(format!("backup: {what}"), std::io::Error::other(e))
}

pub fn not_found(name: &str) -> Error {
    if name == MANIFEST {
        Error::BadRequest(
            "backup: no manifest: not a backup, or an unfinished one (interrupted before it was committed)"
                .into(),
        )
    } else {
        Error::BadRequest(format!("backup: {name} is missing"))
    }
}

/// Reads a local manifest file, refusing one too large to be one.
pub fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(MANIFEST));
        }
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::BadRequest(
            "backup: the manifest is too large to be one".into(),
        ));
    }
    Ok(bytes)
}

pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))
}

/// Writes `bytes` to `path` through a temporary name, synced, so `path` appears whole or not
/// at all; then syncs the directory so the rename itself survives a power cut.
pub fn commit_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_name(path);
    {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    }
    rename_durably(&tmp, path)
}

/// `dir/.NAME.partial`: where a file is written before it is committed under its name.
pub fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(format!("cannot write {}", to.display()), e))?;
    if let Some(dir) = to.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directories_and_buckets() {
        assert_eq!(
            Location::parse("/b/x").unwrap(),
            Location::Dir(PathBuf::from("/b/x"))
        );
        assert_eq!(
            Location::parse("s3://bk/a/b/").unwrap(),
            Location::S3 {
                bucket: "bk".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3://bk").unwrap(),
            Location::S3 {
                bucket: "bk".into(),
                prefix: String::new()
            }
        );
        assert!(Location::parse("s3:///p").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn commits_whole_files_only() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(MANIFEST);
        commit_file(&p, b"abc").unwrap();
        assert_eq!(read_small(&p).unwrap(), b"abc");
        assert!(!partial_name(&p).exists());
        assert!(create_private(&p).is_err(), "never overwrites");
        let missing = read_small(&t.path().join("none")).unwrap_err().to_string();
        assert!(missing.contains("unfinished"), "{missing}");
    }
}
