//! `$MAESTRA_HOME`: its layout, its permissions and its creation (SPEC §1).
//!
//! Everything Maestra keeps is under one directory that only the user can read (0700, files
//! 0600). A home that has become group- or world-readable is refused rather than used, because
//! the vault key in it would already be exposed; `--fix` tightens it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod scratch;

pub use scratch::WorkDir;

/// Paths inside a Maestra home.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn vault_key(&self) -> PathBuf {
        self.keys_dir().join("vault.key")
    }
    pub fn audit_key(&self) -> PathBuf {
        self.keys_dir().join("audit.key")
    }
    /// The Unix sockets of the tool programs' network sandboxes (`mcp::sandbox`).
    pub fn sandbox_dir(&self) -> PathBuf {
        self.root.join("sandbox")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("maestra.db")
    }
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    /// Removes the scratch directories dead backup and restore runs left in (and beside) the
    /// home: every command and the server run it when they open a home, and every forget
    /// after it (issue 23, class 4). Live runs' directories stay.
    pub fn sweep_scratch(&self) {
        scratch::sweep(&self.root);
    }

    /// The directories that must be private.
    fn dirs(&self) -> [PathBuf; 3] {
        [self.root.clone(), self.keys_dir(), self.logs_dir()]
    }

    /// Creates the directory tree (0700). Idempotent; refuses an existing tree that is not
    /// private unless `fix` is set, in which case it is tightened.
    pub fn create_dirs(&self, fix: bool) -> Result<()> {
        restrict_umask();
        for dir in self.dirs() {
            if !dir.exists() {
                fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                set_mode(&dir, 0o700)?;
            }
        }
        self.check_permissions(fix)?;
        Ok(())
    }

    /// Every directory must be 0700-or-tighter and every file in it 0600-or-tighter.
    pub fn check_permissions(&self, fix: bool) -> Result<()> {
        for dir in self.dirs() {
            if dir.exists() {
                check_private(&dir, 0o700, fix)?;
                let entries = fs::read_dir(&dir)
                    .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_file() {
                        check_private(&path, 0o600, fix)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Lists the paths that are too open, for `doctor`.
    pub fn loose_paths(&self) -> Vec<PathBuf> {
        let mut loose = Vec::new();
        for dir in self.dirs() {
            if mode_of(&dir).is_some_and(|m| m & 0o077 != 0) {
                loose.push(dir.clone());
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.is_file() && mode_of(&p).is_some_and(|m| m & 0o077 != 0) {
                        loose.push(p);
                    }
                }
            }
        }
        loose
    }
}

/// Creates `dir` (and its parents) if need be and makes it private (0700): what is in it is
/// for this user alone, whatever the umask was.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    set_mode(dir, 0o700)
}

/// Files Maestra creates after this call are private even before their mode is set.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))
}

fn check_private(path: &Path, wanted: u32, fix: bool) -> Result<()> {
    let Some(mode) = mode_of(path) else {
        return Ok(());
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if fix {
        return set_mode(path, wanted);
    }
    Err(Error::Permissions {
        path: path.to_path_buf(),
        reason: format!(
            "mode {mode:04o} lets other users read it; run `maestra init --fix` or chmod {wanted:o} it"
        ),
    })
}

/// Writes `contents` to a new private file atomically (temp file, fsync, rename), so a crash
/// leaves either the old file or the new one, never half of one.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let ctx = |what: &str| format!("cannot {what} {}", path.display());
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(ctx("write"), e))?;
        f.write_all(contents)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(ctx("write"), e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(ctx("replace"), e))?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a key file, refusing one that other users could read.
pub fn read_private(path: &Path) -> Result<String> {
    check_private(path, 0o600, false)?;
    fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_tree_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("h"));
        home.create_dirs(false).unwrap();
        home.create_dirs(false).unwrap();
        assert_eq!(mode_of(&home.root), Some(0o700));
        assert_eq!(mode_of(&home.keys_dir()), Some(0o700));
    }

    #[test]
    fn refuses_world_readable_home_unless_fixed() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("h"));
        home.create_dirs(false).unwrap();
        set_mode(&home.root, 0o755).unwrap();
        let err = home.create_dirs(false).unwrap_err();
        assert!(matches!(err, Error::Permissions { .. }), "{err}");
        home.create_dirs(true).unwrap();
        assert_eq!(mode_of(&home.root), Some(0o700));
    }

    #[test]
    fn atomic_write_is_private() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k");
        write_private_atomic(&p, b"x").unwrap();
        assert_eq!(mode_of(&p), Some(0o600));
        assert_eq!(read_private(&p).unwrap(), "x");
        set_mode(&p, 0o644).unwrap();
        assert!(read_private(&p).is_err());
    }
}
