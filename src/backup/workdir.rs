//! Private scratch directories (0700) that are removed when dropped, so a failed backup or
//! restore leaves nothing behind; one killed outright leaves a `.maestra-backup-*` or
//! `.NAME.restore-*` directory that the next run of the same command removes.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::error::{Error, Result};

pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `parent/{prefix}{pid}-{random}`, first removing what killed runs left there
    /// (their process is gone).
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir> {
        sweep(parent, prefix);
        let mut r = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let path = parent.join(format!("{prefix}{}-{}", std::process::id(), hex::encode(r)));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))?;
        Ok(WorkDir { path })
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

/// Removes `parent/{prefix}{pid}-*` directories whose process no longer runs.
fn sweep(parent: &Path, prefix: &str) {
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
        if pid != std::process::id() && !alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
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
