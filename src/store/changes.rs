//! Notices commits to the database, this process's or another's (`maestra lockdown`, a forget
//! from the command line), without a timer: every commit in WAL mode appends to the
//! `-wal` file beside the database, and the kernel reports that (inotify, through the `notify`
//! crate) to a thread that sleeps until it does. So a server at rest is not woken at all.
//!
//! The directory is watched rather than the file, since SQLite removes the log when the last
//! connection closes and makes a new one on the next write. Only the log's events count: the
//! database file itself is written by checkpoints, which are not news, and the audit log lives
//! in a directory of its own.
//!
//! Where the kernel refuses a watch (inotify's per-user limit reached), the store falls back to
//! counting a change once a second, as it polled before, and says so in the log. PostgreSQL's
//! store counts one once a second too: its changes come from other machines, and listening for
//! them (LISTEN/NOTIFY) is not built yet.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::watch;

/// How often a change is assumed where none can be noticed.
const EVERY_SECOND: Duration = Duration::from_secs(1);

/// A counter that grows when the store may have changed; its receivers wake on each growth.
pub struct Changes {
    sender: watch::Sender<u64>,
    _source: Source,
}

impl Changes {
    /// Commits to the SQLite database at `db`, noticed as the module says.
    pub fn of_sqlite(db: &Path) -> Changes {
        let (sender, _) = watch::channel(0);
        let source = watch_log(db, sender.clone());
        Changes {
            sender,
            _source: source,
        }
    }

    /// A change assumed once a second.
    pub fn ticking() -> Changes {
        let (sender, _) = watch::channel(0);
        let source = tick(sender.clone());
        Changes {
            sender,
            _source: source,
        }
    }

    /// A receiver that wakes on the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
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

/// Starts noticing commits to the database at `db`: the counter in `sender` grows by one per
/// notice.
fn watch_log(db: &Path, sender: watch::Sender<u64>) -> Source {
    let log = log_name(db);
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let tx = sender.clone();
    let watched = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let news = matches!(
            event.kind,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
        ) && event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(log.as_os_str()));
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

/// The name of the write-ahead log SQLite keeps beside `db`.
fn log_name(db: &Path) -> OsString {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
    use std::str::FromStr;

    /// A commit made on another connection (as another process makes one) wakes a receiver,
    /// through the kernel's notice, not a timer.
    #[tokio::test]
    async fn a_commit_elsewhere_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("maestra.db");
        let changes = Changes::of_sqlite(&db);
        assert!(matches!(changes._source, Source::Watch { .. }));
        let mut seen = changes.subscribe();
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut other = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut other)
            .await
            .unwrap();
        // A hang guard only: the notice comes as the commit lands.
        tokio::time::timeout(Duration::from_secs(60), seen.changed())
            .await
            .expect("no notice of the commit")
            .unwrap();
    }
}
