//! One server per home (SPEC §6): `maestra serve` holds an exclusive lock on
//! `$MAESTRA_HOME/serve.lock` for its whole life, and says in it who it is (PID, address).
//!
//! Why: an embedded server checks cost limits against totals it keeps in memory and chains the
//! home's audit log; two on one home would each serve the whole limit and split one chain.
//! With PostgreSQL the ledger is shared, but the audit log is still the home's, so the lock is
//! per home there too: several instances need several homes.
//!
//! The lock is the kernel's (`flock` through `File::try_lock`), not the file's existence: it
//! goes with its process however that process ends (SIGKILL included), and a stale file left
//! behind locks nothing. Command-line writes to what a running server keeps in memory take the
//! same lock, so they are refused while a server runs, and a server is refused while they run.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::home::Home;

/// The lock file's name in the home.
pub const FILE: &str = "serve.lock";

/// Who holds the home, as written in the lock file.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    /// The `maestra` command: `serve`, `import`.
    command: String,
    /// The address a server listens on, once bound.
    #[serde(default)]
    addr: Option<String>,
}

/// The home, held by this process until dropped.
#[derive(Debug)]
pub struct HomeLock {
    file: File,
    command: String,
}

impl HomeLock {
    /// Takes the home for `maestra COMMAND`, or refuses with one line naming the holder.
    pub fn acquire(home: &Home, command: &str) -> Result<HomeLock> {
        let path = home.root.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(in_use(home, &path, command)),
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {}", path.display()), e));
            }
        }
        let lock = HomeLock {
            file,
            command: command.to_string(),
        };
        lock.write(None)?;
        Ok(lock)
    }

    /// Records the address the server listens on, for the refusal of the next one.
    pub fn serving(&self, addr: SocketAddr) -> Result<()> {
        self.write(Some(addr.to_string()))
    }

    /// Written in place then cut to length, so a reader never finds the file empty.
    fn write(&self, addr: Option<String>) -> Result<()> {
        let holder = Holder {
            pid: std::process::id(),
            command: self.command.clone(),
            addr,
        };
        let mut text =
            serde_json::to_vec(&holder).map_err(|e| Error::Store(e.to_string()).because(e))?;
        text.push(b'\n');
        let write = || -> std::io::Result<()> {
            self.file.write_all_at(&text, 0)?;
            self.file.set_len(text.len() as u64)
        };
        write().map_err(|e| Error::io(format!("cannot write the home's {FILE}"), e))
    }
}

/// Who holds the home now, in words (`maestra serve` (pid N, listening on ADDR)), or `None`
/// when nothing does. Reads without taking the lock for more than an instant: a free lock is
/// taken and released at once (by closing the file), a held one is only described.
pub fn holder(home: &Home) -> Option<String> {
    let path = home.root.join(FILE);
    let file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(describe(&path)),
        Err(TryLockError::Error(_)) => None,
    }
}

fn describe(path: &Path) -> String {
    let holder = std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice::<Holder>(t.trim_ascii()).ok());
    match &holder {
        Some(Holder {
            pid,
            command,
            addr: Some(addr),
        }) => format!("`maestra {command}` (pid {pid}, listening on {addr})"),
        Some(Holder { pid, command, .. }) => format!("`maestra {command}` (pid {pid})"),
        None => "another maestra process".to_string(),
    }
}

/// The refusal: who holds the home, and what to do about it.
fn in_use(home: &Home, path: &Path, command: &str) -> Error {
    let who = describe(path);
    let advice = if command == "serve" {
        "one server per home: stop it first, or give this one its own MAESTRA_HOME".to_string()
    } else if command == "mcp" {
        "point the MCP client at that server's /mcp (streamable HTTP) instead of launching \
         `maestra mcp`, or stop the server"
            .to_string()
    } else {
        format!(
            "`maestra {command}` changes what a running server keeps in memory: stop it, then \
             run this again"
        )
    };
    Error::HomeInUse(format!(
        "{} is in use by {who}; {advice}",
        home.root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_home_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let lock = HomeLock::acquire(&home, "serve").unwrap();
        lock.serving("127.0.0.1:4321".parse().unwrap()).unwrap();
        let e = HomeLock::acquire(&home, "serve").unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            e.contains(&format!("pid {pid}, listening on 127.0.0.1:4321")),
            "{e}"
        );
        let e = HomeLock::acquire(&home, "import").unwrap_err().to_string();
        assert!(
            e.contains("`maestra import` changes") && e.contains("stop it"),
            "{e}"
        );
        assert!(holder(&home).is_some_and(|h| h.contains(&format!("pid {pid}"))));
        drop(lock);
        assert_eq!(holder(&home), None);
        HomeLock::acquire(&home, "import").unwrap();
    }
}
