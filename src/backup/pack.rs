//! The data file: the backup's files in a tar archive (the `tar` crate), sealed as one stream,
//! hashed on the way in and checked on the way out, in constant memory.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::crypt::{BackupKey, OpenReader, Role, SealWriter};
use super::manifest::{FileEntry, Manifest};
use crate::error::{Error, Result};

/// Counts and hashes what passes through.
pub struct Hashing<T> {
    inner: T,
    hash: Sha256,
    len: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    /// The byte count and the hex SHA-256 of what passed, and the inner value.
    pub fn finish(self) -> (u64, String, T) {
        (self.len, hex::encode(self.hash.finalize()), self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hash.update(&out[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A file to put in the backup: its path inside, and where it is now.
pub struct Staged {
    pub path: String,
    pub source: Source,
}

/// Where a staged file's bytes are.
pub enum Source {
    /// A file in the scratch directory (a database snapshot, the audit log's copy).
    File(PathBuf),
    /// Bytes that never touch the scratch directory: key material and the configuration
    /// (small), which a crash must not leave behind (issue 23, class 4).
    Memory(Zeroizing<Vec<u8>>),
}

/// What packing produced: the entries for the manifest and the encrypted file's size and hash.
pub struct Packed {
    pub files: Vec<FileEntry>,
    pub data_size: u64,
    pub data_sha256: String,
}

/// Writes `files` into `out` (a new file), sealed under `key`, and syncs it to disk.
pub fn pack(files: &[Staged], key: &BackupKey, out: File) -> Result<Packed> {
    let io_err = |e| Error::io("cannot write the backup", e);
    let sealed = SealWriter::new(key, Role::Data, Hashing::new(BufWriter::new(out)))?;
    let mut tar = tar::Builder::new(sealed);
    let mut entries = Vec::with_capacity(files.len());
    for f in files {
        let (size, reader): (u64, Box<dyn Read + '_>) = match &f.source {
            Source::File(local) => {
                let file = File::open(local)
                    .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
                let size = file
                    .metadata()
                    .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?
                    .len();
                (size, Box::new(file))
            }
            Source::Memory(bytes) => (bytes.len() as u64, Box::new(bytes.as_slice())),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        let mut reader = Hashing::new(reader.take(size));
        tar.append_data(&mut header, &f.path, &mut reader)
            .map_err(io_err)?;
        let (len, sha256, _) = reader.finish();
        if len != size {
            return Err(Error::Store(format!(
                "{} changed while it was being backed up",
                f.path
            )));
        }
        entries.push(FileEntry {
            path: f.path.clone(),
            size,
            sha256,
        });
    }
    let sealed = tar.into_inner().map_err(io_err)?;
    let hashing = sealed.finish()?;
    let (data_size, data_sha256, buffered) = hashing.finish();
    let out = buffered
        .into_inner()
        .map_err(|e| Error::io("cannot write the backup", e.into_error()))?;
    out.sync_all().map_err(io_err)?;
    Ok(Packed {
        files: entries,
        data_size,
        data_sha256,
    })
}

/// Opens the data file `data`, checking every file against `manifest`; with `dest`, writes
/// each file under it (new private files, never outside it). Every byte of the stream is
/// authenticated and every hash compared before this returns `Ok`.
pub fn unpack(
    key: &BackupKey,
    manifest: &Manifest,
    data: impl Read,
    dest: Option<&Path>,
) -> Result<()> {
    let mut hashed = Hashing::new(data);
    let header = super::crypt::read_header(&mut hashed)?;
    let bad = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData => Error::BadRequest(format!("backup: {e}")).because(e),
        _ => Error::BadRequest(format!("backup: the data file is damaged: {e}")).because(e),
    };
    let mut opened = OpenReader::new(key, Role::Data, header, &mut hashed)?;
    let mut seen = HashSet::new();
    {
        let mut archive = tar::Archive::new(&mut opened);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let Some(expected) = manifest.file(&path) else {
                return Err(Error::BadRequest(format!(
                    "backup: the data holds a file the manifest does not list: {path}"
                )));
            };
            if !seen.insert(path.clone()) {
                return Err(Error::BadRequest(format!("backup: {path} is in it twice")));
            }
            let target = match dest {
                Some(dir) => Some(safe_join(dir, &path)?),
                None => None,
            };
            let sink: Box<dyn Write> = match &target {
                Some(t) => Box::new(BufWriter::new(create_private(t)?)),
                None => Box::new(io::sink()),
            };
            let mut out = Hashing::new(sink);
            io::copy(&mut entry, &mut out).map_err(bad)?;
            let (size, sha256, mut sink) = out.finish();
            sink.flush()
                .map_err(|e| Error::io("cannot write the restored files", e))?;
            if size != expected.size || sha256 != expected.sha256 {
                return Err(Error::BadRequest(format!(
                    "backup: {path} does not match its SHA-256 in the manifest"
                )));
            }
        }
    }
    // The tar's end marker may come before the stream's end: read on, so the last chunk (and
    // with it a cut or extended tail) is authenticated too.
    io::copy(&mut opened, &mut io::sink()).map_err(bad)?;
    drop(opened);
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.path)) {
        return Err(Error::BadRequest(format!(
            "backup: {} is listed in the manifest but missing from the data",
            missing.path
        )));
    }
    let (size, sha256, _) = hashed.finish();
    if size != manifest.data_size || sha256 != manifest.data_sha256 {
        return Err(Error::BadRequest(
            "backup: the data file is not the one this manifest was written for".into(),
        ));
    }
    Ok(())
}

/// `dir/path` for a path from a backup: relative, plain names only (no `..`, no root), and
/// written the one way (no `.` or empty segment that `Path` would quietly normalise away).
fn safe_join(dir: &Path, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path);
    let plain_segments = path
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !plain_segments || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::BadRequest(format!(
            "backup: refusing a file path that leaves the restore directory: {path:?}"
        )));
    }
    let target = dir.join(rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    Ok(target)
}

fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path from a backup is joined only when it is plain names below the restore directory.
    #[test]
    fn archive_paths_cannot_leave_the_restore_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("unpacked");
        for bad in [
            "",
            "../escape",
            "audit/../../escape",
            "/etc/passwd",
            "./database/maestra.db",
            "database/./maestra.db",
            "database/..",
            "database//maestra.db",
            "database/",
        ] {
            let err = safe_join(&dir, bad).unwrap_err().to_string();
            assert!(
                err.contains("leaves the restore directory"),
                "{bad:?}: {err}"
            );
        }
        assert!(!dir.exists(), "a refused path created a directory");
        let ok = safe_join(&dir, "audit/audit.log.1").unwrap();
        assert_eq!(ok, dir.join("audit/audit.log.1"));
        assert!(dir.join("audit").is_dir());
    }
}
