//! Private scratch directories (0700) in and beside a home that are removed when dropped, so a
//! failed backup or restore leaves nothing behind.
//!
//! One killed outright cannot clean up, and its directory holds a database copy: erasure must
//! reach it (issue 23, class 4). Each directory holds a lock for its owner's life, so any
//! process can tell a dead run's directory from a live one (a PID alone can be reused), and
//! [`sweep`] removes the dead ones. Its callers run it ([`super::Home::sweep_scratch`]): every
//! command when it loads its context, the server's start, and every forget (command line and
//! API). Key material never lands in one in the clear (see `backup::create`): a crash leaves
//! at most ciphertext and a database copy without its data keys.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::error::{Error, Result};

/// The prefixes of the scratch directories Maestra makes in a home.
const IN_HOME: &[&str] = &[".maestra-backup-", ".maestra-download-"];
/// The lock file a live owner holds.
const LOCK: &str = ".owner.lock";

pub struct WorkDir {
    path: PathBuf,
    _lock: File,
}

impl WorkDir {
    /// Creates `parent/{prefix}{pid}-{random}`, first removing what killed runs left there.
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir> {
        sweep_prefix(parent, prefix);
        let mut r = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let path = parent.join(format!("{prefix}{}-{}", std::process::id(), hex::encode(r)));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))?;
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path.join(LOCK))
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(WorkDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the dead scratch directories of the home at `root`: backups' and downloads' in it,
/// and restores' into it (beside it, `.NAME.restore-*`).
pub fn sweep(root: &Path) {
    for prefix in IN_HOME {
        sweep_prefix(root, prefix);
    }
    if let (Some(parent), Some(name)) = (root.parent(), root.file_name()) {
        let prefix = format!(".{}.restore-", name.to_string_lossy());
        sweep_prefix(parent, &prefix);
    }
}

/// Removes `parent/{prefix}{pid}-*` directories whose owner is gone.
fn sweep_prefix(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) && dead(&entry.path(), pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The owner is gone: its lock is free. A directory without a lock (being created this
/// instant, or made by an older version) is judged by its PID.
fn dead(dir: &Path, pid: u32) -> bool {
    match File::open(dir.join(LOCK)) {
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => pid != std::process::id() && !alive(pid),
    }
}

fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_directory_stays_and_a_dead_one_goes() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("m");
        fs::create_dir(&home).unwrap();
        let live = WorkDir::create(&home, ".maestra-backup-").unwrap();
        // A dead run's: its lock file is there but nobody holds it (PID of this process, so
        // only the lock can tell).
        let dead_dir = home.join(format!(".maestra-backup-{}-dead", std::process::id()));
        fs::create_dir(&dead_dir).unwrap();
        File::create(dead_dir.join(LOCK)).unwrap();
        fs::write(dead_dir.join("copy.db"), b"x").unwrap();
        let restore = t.path().join(format!(".m.restore-{}-dead", u32::MAX - 1));
        fs::create_dir(&restore).unwrap();
        sweep(&home);
        assert!(live.path().is_dir(), "a live run's directory was removed");
        assert!(!dead_dir.exists() && !restore.exists());
        let kept = live.path().to_path_buf();
        drop(live);
        assert!(!kept.exists());
    }
}
