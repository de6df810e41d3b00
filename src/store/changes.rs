//! Tells a process when the store's `meta` facts or vault secrets may have changed, its own
//! writes or another process's (`maestra lockdown`, a forget or a `vault put` from the command
//! line), without a timer, so a server at rest is not woken to look.
//!
//! The embedded store: every `meta` write (and every secret put or deleted) also rewrites a
//! small marker file in a directory of its own beside the database (`<db>-changes/meta`,
//! holding nothing but a counter), and the
//! kernel reports that (inotify, through the `notify` crate) to a thread that sleeps until it
//! does. The marker, not the database's log, is watched: the log is written by every request,
//! and its notices would wake that thread on each one. Its directory is watched rather than the
//! file, so a marker made after the watch began, or replaced, is still seen; it is a directory
//! of its own because the kernel reports every file of a watched directory.
//!
//! Where the kernel refuses a watch (inotify's per-user limit reached), the store falls back to
//! counting a change once a second, as it polled before, and says so in the log. PostgreSQL's
//! store counts one once a second too: its changes come from other machines, and listening for
//! them (LISTEN/NOTIFY) is not built yet.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::watch;

/// How often a change is assumed where none can be noticed.
const EVERY_SECOND: Duration = Duration::from_secs(1);

/// A counter that grows when the store's `meta` facts may have changed; its receivers wake on
/// each growth.
pub struct Changes {
    sender: watch::Sender<u64>,
    /// The SQLite store's marker (see the module doc); none for PostgreSQL.
    marker: Option<PathBuf>,
    /// What the marker held when this process last wrote or read it (see [`Changes::catch_up`]).
    seen: Mutex<Vec<u8>>,
    /// The marker, kept open for [`Changes::catch_up`]: reading an open file raises no event
    /// the watch listens for, where opening it would wake the watching thread each time.
    reader: Mutex<Option<std::fs::File>>,
    _source: Source,
}

impl Changes {
    /// The SQLite database at `db`, noticed through its marker.
    pub fn of_sqlite(db: &Path) -> Changes {
        let (sender, _) = watch::channel(0);
        let marker = marker_path(db);
        if let Some(dir) = marker.parent() {
            // Private like the rest of the home; one that exists is used as it is.
            let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
        }
        let source = watch_marker(&marker, sender.clone());
        Changes {
            sender,
            marker: Some(marker),
            seen: Mutex::new(Vec::new()),
            reader: Mutex::new(None),
            _source: source,
        }
    }

    /// A change assumed once a second.
    pub fn ticking() -> Changes {
        let (sender, _) = watch::channel(0);
        let source = tick(sender.clone());
        Changes {
            sender,
            marker: None,
            seen: Mutex::new(Vec::new()),
            reader: Mutex::new(None),
            _source: source,
        }
    }

    /// A receiver that wakes on the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// Says that this process changed a `meta` fact or a secret: to itself at once, and to the other
    /// processes on the database through the marker. Best effort: a marker that cannot be
    /// written leaves the others to notice on their next change (and is logged).
    pub fn announce(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
        let Some(marker) = &self.marker else { return };
        // Random, so that two processes' writes never leave the same bytes behind: a reader
        // that compares contents (`catch_up`) must see every write as a change.
        let content = rand::random::<[u8; 16]>().to_vec();
        let written = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(marker)
            .and_then(|mut f| f.write_all(&content));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = content;
        if let Err(e) = written {
            tracing::warn!(error = %e, marker = %marker.display(), "cannot tell other processes of a change");
        }
    }
}

impl Changes {
    /// Counts a change now if the marker changed since this process last wrote or read it,
    /// without waiting for the kernel's notice: for a caller that must not act on what it knew
    /// before another process's write returned (minimisation, before a cloud call, must know
    /// every vault secret). One read of the marker, kept open; nothing for PostgreSQL, which
    /// has no marker.
    pub fn catch_up(&self) {
        let Some(marker) = &self.marker else { return };
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.is_none() {
            // Until some process has announced a change, there is no marker to read.
            *reader = std::fs::File::open(marker).ok();
        }
        let Some(file) = reader.as_ref() else { return };
        // Writers truncate and rewrite the marker in place, so the open file shows each write.
        let mut buf = [0u8; 64];
        let Ok(n) = std::os::unix::fs::FileExt::read_at(file, &mut buf, 0) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.as_slice() != &buf[..n] {
            *seen = buf[..n].to_vec();
            self.sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// What keeps the notices coming: the watch, or a ticking task.
enum Source {
    Watch { _watcher: RecommendedWatcher },
    Tick(tokio::task::JoinHandle<()>),
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Tick(task) = self {
            task.abort();
        }
    }
}

/// Starts noticing writes of `marker`: the counter in `sender` grows by one per notice.
fn watch_marker(marker: &Path, sender: watch::Sender<u64>) -> Source {
    let name: OsString = marker.file_name().unwrap_or_default().to_os_string();
    let dir = marker.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tx = sender.clone();
    let watched = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let news = matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_))
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
        if news {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    match watched {
        Ok(w) => Source::Watch { _watcher: w },
        Err(e) => {
            tracing::warn!(
                error = %e,
                dir = %dir.display(),
                "cannot watch the database for changes; looking once a second instead \
                 (raise fs.inotify.max_user_watches or max_user_instances to stop this)"
            );
            tick(sender)
        }
    }
}

fn tick(sender: watch::Sender<u64>) -> Source {
    Source::Tick(tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY_SECOND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }))
}

/// The marker of `db`, in its own directory beside it.
fn marker_path(db: &Path) -> PathBuf {
    let mut dir = db.as_os_str().to_os_string();
    dir.push("-changes");
    PathBuf::from(dir).join("meta")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process's announcement (here: a second `Changes` on the same database, as the
    /// command line's store is) wakes a receiver, through the kernel's notice, not a timer.
    #[tokio::test]
    async fn an_announcement_elsewhere_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("maestra.db");
        let server = Changes::of_sqlite(&db);
        assert!(matches!(server._source, Source::Watch { .. }));
        let mut seen = server.subscribe();
        let command = Changes::of_sqlite(&db);
        command.announce();
        // A hang guard only: the notice comes as the marker is written.
        tokio::time::timeout(Duration::from_secs(60), seen.changed())
            .await
            .expect("no notice of the announcement")
            .unwrap();
        // Read back at once, without the notice: another write is a change, a re-read is not.
        let mut after = server.subscribe();
        after.borrow_and_update();
        command.announce();
        server.catch_up();
        assert!(after.has_changed().unwrap());
        after.borrow_and_update();
        server.catch_up();
        assert!(!after.has_changed().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(marker_path(&db)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
