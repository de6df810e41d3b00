//! The audit log's files: the live log, its rotated `.gz` days, and the small records beside
//! them (lock, head, anchor). Rotation and pruning are crash-safe: a file is renamed before it
//! is compressed, and the compressed copy replaces it atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LogFiles {
    dir: PathBuf,
    stem: String,
}

/// A rotated day: `audit.YYYY-MM-DD[.N].log[.gz]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub path: PathBuf,
    pub date: String,
    pub n: u32,
    pub compressed: bool,
}

impl LogFiles {
    pub fn new(live: &Path) -> LogFiles {
        let dir = live
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit.log".into());
        let stem = name.strip_suffix(".log").unwrap_or(&name).to_string();
        LogFiles { dir, stem }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn live(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.stem))
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.stem))
    }
    pub fn head(&self) -> PathBuf {
        self.dir.join(format!("{}.head", self.stem))
    }
    pub fn anchor(&self) -> PathBuf {
        self.dir.join(format!("{}.anchor", self.stem))
    }

    /// Whether any file of the log is there: live, rotated, head or anchor.
    pub fn any_exist(&self) -> Result<bool> {
        Ok(self.live().exists()
            || self.head().exists()
            || self.anchor().exists()
            || !self.rotated()?.is_empty())
    }

    /// Rotated files, oldest first. An uncompressed leftover and its `.gz` both count once.
    pub fn rotated(&self) -> Result<Vec<Rotated>> {
        let mut out: Vec<Rotated> = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("cannot list {}", self.dir.display()), e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(r) = self.parse_rotated(&name) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| (&a.date, a.n, !a.compressed).cmp(&(&b.date, b.n, !b.compressed)));
        // Prefer the compressed copy when a crash left both.
        out.dedup_by(|later, earlier| {
            later.date == earlier.date && later.n == earlier.n && {
                if later.compressed && !earlier.compressed {
                    std::mem::swap(later, earlier);
                }
                true
            }
        });
        Ok(out)
    }

    fn parse_rotated(&self, name: &str) -> Option<Rotated> {
        let rest = name.strip_prefix(&self.stem)?.strip_prefix('.')?;
        let (rest, compressed) = match rest.strip_suffix(".log.gz") {
            Some(r) => (r, true),
            None => (rest.strip_suffix(".log")?, false),
        };
        let (date, n) = match rest.split_once('.') {
            Some((d, n)) => (d, n.parse().ok()?),
            None => (rest, 0),
        };
        time::Date::parse(
            date,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        Some(Rotated {
            path: self.dir.join(name),
            date: date.to_string(),
            n,
            compressed,
        })
    }

    /// Renames the live file to the next free name for `date`. Caller holds the lock.
    pub fn rename_live(&self, date: &str) -> Result<PathBuf> {
        let taken = self.rotated()?;
        let n = (0u32..)
            .find(|n| !taken.iter().any(|r| r.date == date && r.n == *n))
            .unwrap_or(0);
        let name = if n == 0 {
            format!("{}.{date}.log", self.stem)
        } else {
            format!("{}.{date}.{n}.log", self.stem)
        };
        let target = self.dir.join(name);
        fs::rename(self.live(), &target)
            .map_err(|e| Error::io(format!("cannot rotate {}", self.live().display()), e))?;
        sync_dir(&self.dir);
        Ok(target)
    }

    /// Compresses every renamed-but-uncompressed day; finishes a run a crash interrupted.
    pub fn compress_pending(&self) -> Result<usize> {
        let mut done = 0;
        for r in self.rotated()? {
            if r.compressed {
                // A leftover plain copy whose .gz already landed.
                let plain = r.path.with_extension("");
                if plain.exists() {
                    let _ = fs::remove_file(&plain);
                }
                continue;
            }
            let gz = r.path.with_extension("log.gz");
            let tmp = r.path.with_extension("log.gz.tmp");
            let ctx = |e| Error::io(format!("cannot compress {}", r.path.display()), e);
            let mut input = File::open(&r.path).map_err(ctx)?;
            let out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(ctx)?;
            let mut enc = GzEncoder::new(out, Compression::default());
            std::io::copy(&mut input, &mut enc).map_err(ctx)?;
            let out = enc.finish().map_err(ctx)?;
            out.sync_all().map_err(ctx)?;
            fs::rename(&tmp, &gz).map_err(ctx)?;
            sync_dir(&self.dir);
            fs::remove_file(&r.path).map_err(ctx)?;
            done += 1;
        }
        Ok(done)
    }
}

/// A file's whole text, decompressed if it is a `.gz`.
pub fn read_all(path: &Path) -> Result<Vec<u8>> {
    let ctx = |e| Error::io(format!("cannot read {}", path.display()), e);
    let mut buf = Vec::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(buf),
        Err(e) => return Err(ctx(e)),
    };
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_to_end(&mut buf).map_err(ctx)?;
    } else {
        let mut file = file;
        file.read_to_end(&mut buf).map_err(ctx)?;
    }
    Ok(buf)
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Opens (creating, 0600) a file for appending.
pub fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
}

/// Opens (creating, 0600) a small record file for in-place rewrites. Not in append mode: on
/// Linux a positioned write to an O_APPEND file still lands at the end.
pub fn open_record(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
}

/// Holds the cross-process lock on the log for the life of the guard.
pub struct Locked(File);

impl Locked {
    pub fn acquire(path: &Path) -> Result<Locked> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        f.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(Locked(f))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Writes a small record file atomically.
pub fn write_record(path: &Path, text: &str) -> Result<()> {
    crate::home::write_private_atomic(path, text.as_bytes())
}

/// Overwrites a record file in place; cheap enough for every batch, and [`super::chain::Mark`]
/// is fixed-width so a rewrite never leaves a longer old tail behind.
pub fn overwrite_record(file: &mut File, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(text.as_bytes(), 0)?;
    file.set_len(text.len() as u64)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_order() {
        let t = tempfile::tempdir().unwrap();
        let f = LogFiles::new(&t.path().join("audit.log"));
        for n in [
            "audit.2026-01-02.log.gz",
            "audit.2026-01-01.log.gz",
            "audit.2026-01-02.1.log",
            "audit.2026-01-02.1.log.gz",
            "audit.log",
            "audit.head",
            "other.2026-01-01.log.gz",
            "audit.notadate.log.gz",
        ] {
            fs::write(t.path().join(n), b"").unwrap();
        }
        let r = f.rotated().unwrap();
        let names: Vec<_> = r
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "audit.2026-01-01.log.gz",
                "audit.2026-01-02.log.gz",
                "audit.2026-01-02.1.log.gz"
            ]
        );
    }

    #[test]
    fn rename_then_compress() {
        let t = tempfile::tempdir().unwrap();
        let f = LogFiles::new(&t.path().join("audit.log"));
        fs::write(f.live(), b"line\n").unwrap();
        f.rename_live("2026-03-04").unwrap();
        fs::write(f.live(), b"again\n").unwrap();
        f.rename_live("2026-03-04").unwrap();
        assert_eq!(f.compress_pending().unwrap(), 2);
        let r = f.rotated().unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.compressed));
        assert_eq!(read_all(&r[0].path).unwrap(), b"line\n");
        assert_eq!(read_all(&r[1].path).unwrap(), b"again\n");
    }
}
