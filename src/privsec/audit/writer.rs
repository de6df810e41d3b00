//! The writer: one thread that drains a bounded queue and commits whole batches with a single
//! fsync (group commit). An append is acknowledged only after its batch is on disk.
//!
//! Several processes (the server and a CLI command, say) may append to one log: each batch
//! takes the file lock and re-reads the tail if someone else wrote since, so the chain stays
//! one chain.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::{AtomicU64, Ordering};

use super::chain::{ChainKey, Mark};
use super::entry::{Event, Sealed};
use super::files::{self, Locked, LogFiles};
use crate::error::{Error, Result};

/// The largest number of entries committed under one fsync.
const MAX_BATCH: usize = 4096;
/// How long a batch of queued-only entries waits for company before its fsync.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

fn drain(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

pub(super) struct Pending {
    pub event: Event,
    /// `None` for a queued-only entry: a failure to write it is then counted in `lost`.
    pub ack: Option<oneshot::Sender<std::result::Result<u64, String>>>,
}

/// The action of the entry that records, inside the chain, that the head record was gone
/// when writing resumed. The head is what shows a cut tail; recreating it silently would
/// make a cut tail (with the head deleted too) verify as intact after the next write.
pub(super) const HEAD_LOST_ACTION: &str = "audit.head_missing";

/// What the writer knows about the live file after its last commit.
struct Tail {
    ino: u64,
    len: u64,
    last: Mark,
    live_date: Option<String>,
    /// Why the head could not vouch for `last` ("missing", "unreadable"), when the chain has
    /// entries: the next commit records it before its batch.
    head_lost: Option<&'static str>,
}

/// The head record as found on disk.
enum HeadState {
    Missing,
    Unreadable,
    Valid(Mark),
}

pub(super) struct Writer {
    files: LogFiles,
    key: Arc<ChainKey>,
    /// The server's summary, updated after each commit (see [`super::summary`]).
    summary: Option<super::SharedSummary>,
    live: Option<File>,
    head: Option<File>,
    tail: Option<Tail>,
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(files: LogFiles, key: Arc<ChainKey>) -> Writer {
        Writer {
            files,
            key,
            summary: None,
            live: None,
            head: None,
            tail: None,
            buf: Vec::with_capacity(1 << 20),
        }
    }

    /// Keeps `summary` counting what this writer commits.
    pub fn with_summary(mut self, summary: super::SharedSummary) -> Writer {
        self.summary = Some(summary);
        self
    }

    /// The thread body: block for one entry, take whatever else is queued, commit, acknowledge.
    /// `handled` counts the entries taken off the queue and written or failed, for
    /// [`super::AuditLog::settled`].
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<Pending>,
        lost: Arc<AtomicU64>,
        handled: tokio::sync::watch::Sender<u64>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            drain(&mut rx, &mut batch);
            // Nobody waits on a queued-only batch (fail_closed = false), so let it fill a
            // little: one fsync then covers many requests instead of one each.
            if batch.iter().all(|p| p.ack.is_none()) && batch.len() < MAX_BATCH {
                std::thread::sleep(LINGER);
                drain(&mut rx, &mut batch);
            }
            let result = self.commit(&batch);
            let count = batch.len() as u64;
            if let (Ok(first), Some(summary), Some(tail)) = (&result, &self.summary, &self.tail) {
                summary.add_batch(batch.iter().map(|p| &p.event), *first, &tail.last.hash);
            }
            for (i, p) in batch.drain(..).enumerate() {
                match (p.ack, &result) {
                    (Some(ack), Ok(first_seq)) => {
                        let _ = ack.send(Ok(first_seq + i as u64));
                    }
                    (Some(ack), Err(e)) => {
                        let _ = ack.send(Err(e.to_string()));
                    }
                    (None, Ok(_)) => {}
                    (None, Err(e)) => {
                        lost.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "audit entry could not be written");
                    }
                }
            }
            handled.send_modify(|n| *n += count);
        }
    }

    /// Appends `batch` durably and returns the seq of its first entry.
    pub fn commit(&mut self, batch: &[Pending]) -> Result<u64> {
        let _lock = Locked::acquire(&self.files.lock())?;
        self.sync_tail()?;
        let today = super::entry::now_rfc3339()
            .get(..10)
            .unwrap_or_default()
            .to_string();
        if let Some(tail) = &self.tail
            && tail.live_date.as_deref().is_some_and(|d| d != today)
        {
            self.rotate_locked()?;
            self.sync_tail()?;
        }
        let Some(tail) = self.tail.as_mut() else {
            return Err(Error::Audit("audit log state unavailable".into()));
        };
        let live = self
            .live
            .as_mut()
            .ok_or_else(|| Error::Audit("audit log not open".into()))?;

        self.buf.clear();
        let lost = tail.head_lost.map(|why| {
            Event::new(
                super::entry::Category::Admin,
                "audit",
                HEAD_LOST_ACTION,
                super::entry::Outcome::Failed,
            )
            .detail("head", why)
            .detail("after_seq", tail.last.seq)
        });
        let first_seq = tail.last.seq + 1 + u64::from(lost.is_some());
        let mut last = tail.last.clone();
        for e in lost.iter().chain(batch.iter().map(|p| &p.event)) {
            let start = self.buf.len();
            let sealed = Sealed {
                ts: &e.ts,
                seq: last.seq + 1,
                request_id: &e.request_id,
                user_id: &e.user_id,
                agent_id: &e.agent_id,
                surface_id: &e.surface_id,
                category: e.category,
                service: &e.service,
                action: &e.action,
                result: e.result,
                ip_address: &e.ip_address,
                details: &e.details,
                prev_hash: &last.hash,
            };
            let mut line = serde_json::to_vec(&sealed)
                .map_err(|e| Error::Audit(format!("cannot serialize entry: {e}")).because(e))?;
            let hash = self.key.seal(&mut line);
            self.buf.extend_from_slice(&line);
            self.buf.push(b'\n');
            debug_assert!(self.buf.len() > start);
            last = Mark {
                seq: last.seq + 1,
                hash,
            };
        }

        let written = live.write_all(&self.buf).and_then(|_| live.sync_data());
        if let Err(e) = written {
            // Leave no half batch behind: those entries were never acknowledged.
            let _ = live.set_len(tail.len);
            self.tail = None;
            return Err(Error::io("cannot append to the audit log", e));
        }
        tail.len += self.buf.len() as u64;
        if tail.live_date.is_none() {
            tail.live_date = batch.first().map(|_| today);
        }
        tail.last = last;
        tail.head_lost = None;
        let mark = tail.last.encode(&self.key, "head");
        if self.head.is_none() {
            // Only now, with the loss recorded in the chain, is the head written again.
            let path = self.files.head();
            if !path.exists() {
                let _ = files::write_record(&path, &mark);
            }
            self.head = files::open_record(&path).ok();
        }
        if let Some(head) = self.head.as_mut() {
            // Best effort: a stale head only weakens cut-tail detection, it never breaks a chain.
            let _ = files::overwrite_record(head, &mark);
        }
        Ok(first_seq)
    }

    /// Moves the live file to its dated name and compresses it. Caller holds the lock.
    fn rotate_locked(&mut self) -> Result<()> {
        let date = self
            .tail
            .as_ref()
            .and_then(|t| t.live_date.clone())
            .ok_or_else(|| Error::Audit("nothing to rotate".into()))?;
        self.files.rename_live(&date)?;
        self.live = None;
        self.tail = None;
        self.files.compress_pending()?;
        Ok(())
    }

    /// Rotates now (for `audit rotate`), whatever the date.
    pub fn rotate_now(&mut self) -> Result<bool> {
        let _lock = Locked::acquire(&self.files.lock())?;
        self.sync_tail()?;
        if self.tail.as_ref().is_none_or(|t| t.len == 0) {
            self.files.compress_pending()?;
            return Ok(false);
        }
        self.rotate_locked()?;
        Ok(true)
    }

    /// Brings the cached tail up to date with the file, which another process may have
    /// appended to or rotated. Caller holds the lock.
    fn sync_tail(&mut self) -> Result<()> {
        let live_path = self.files.live();
        let on_disk = std::fs::metadata(&live_path).ok();
        let open_ino = self
            .live
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if on_disk.as_ref().map(|m| m.ino()) != open_ino || self.live.is_none() {
            self.live = Some(files::open_append(&live_path)?);
            self.tail = None;
        }
        let Some(live) = self.live.as_mut() else {
            return Err(Error::Audit("audit log not open".into()));
        };
        let meta = live
            .metadata()
            .map_err(|e| Error::io("cannot stat the audit log", e))?;
        if let Some(t) = &self.tail
            && t.ino == meta.ino()
            && t.len == meta.len()
        {
            return Ok(());
        }
        let (len, last_line, first_line) = read_tail(live)?;
        let head_state = self.read_head();
        let head = match &head_state {
            HeadState::Valid(m) => Some(m.clone()),
            _ => None,
        };
        let from_file = match last_line {
            Some(line) => Some(parse_mark(&line).ok_or_else(|| {
                Error::Audit(format!(
                    "the last line of {} is not a valid audit entry; run `maestra audit verify`",
                    live_path.display()
                ))
            })?),
            None => None,
        };
        // Continue after whichever is further: if the file was cut below the head, the gap
        // stays visible to `audit verify` instead of being papered over.
        let last = match (from_file, head) {
            (Some(f), Some(h)) if h.seq > f.seq => {
                tracing::error!(
                    file_seq = f.seq,
                    head_seq = h.seq,
                    "audit log tail is missing entries; continuing after the recorded head"
                );
                h
            }
            (Some(f), _) => f,
            (None, Some(h)) => h,
            // An empty live file without a head: the chain goes on from the newest rotated
            // day, or the anchor pruning left, or it starts here.
            (None, None) => match self.last_rotated()? {
                Some(m) => m,
                None => self
                    .read_mark(&self.files.anchor(), "anchor")
                    .unwrap_or_else(Mark::genesis),
            },
        };
        let head_lost = match head_state {
            HeadState::Valid(_) => None,
            _ if last == Mark::genesis() => None,
            HeadState::Missing => Some("missing"),
            HeadState::Unreadable => Some("unreadable"),
        };
        if head_lost.is_some() {
            // Whatever handle this process held points at a file that is no longer the head.
            self.head = None;
        } else if matches!(head_state, HeadState::Missing) {
            // A new chain: the head exists, atomically, before the first line does, so a
            // crash after that line can never look like a deleted head.
            files::write_record(&self.files.head(), &last.encode(&self.key, "head"))?;
            self.head = None;
        }
        let live_date =
            first_line.and_then(|l| std::str::from_utf8(l.get(7..17)?).ok().map(str::to_string));
        self.tail = Some(Tail {
            ino: meta.ino(),
            len,
            last,
            live_date,
            head_lost,
        });
        Ok(())
    }

    fn read_head(&self) -> HeadState {
        match std::fs::read_to_string(self.files.head()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HeadState::Missing,
            Err(_) => HeadState::Unreadable,
            Ok(text) => match Mark::decode(&text, &self.key, "head") {
                Some(m) => HeadState::Valid(m),
                None => HeadState::Unreadable,
            },
        }
    }

    /// The last entry of the newest rotated day, if there is one.
    fn last_rotated(&self) -> Result<Option<Mark>> {
        let Some(newest) = self.files.rotated()?.pop() else {
            return Ok(None);
        };
        let text = files::read_all(&newest.path)?;
        Ok(text
            .split(|b| *b == b'\n')
            .rev()
            .find(|l| !l.is_empty())
            .and_then(parse_mark))
    }

    fn read_mark(&self, path: &std::path::Path, label: &str) -> Option<Mark> {
        let text = std::fs::read_to_string(path).ok()?;
        Mark::decode(&text, &self.key, label)
    }
}

/// The live file's length and its last and first complete lines.
type TailLines = (u64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads the first and last complete lines; cuts off a partial last line (an append that was
/// never acknowledged because its process died mid-write). Returns the resulting length.
fn read_tail(f: &mut File) -> Result<TailLines> {
    let ctx = |e| Error::io("cannot read the audit log", e);
    let len = f.metadata().map_err(ctx)?.len();
    if len == 0 {
        return Ok((0, None, None));
    }
    let mut first = vec![0u8; len.min(64) as usize];
    f.seek(SeekFrom::Start(0)).map_err(ctx)?;
    f.read_exact(&mut first).map_err(ctx)?;

    let window = len.min(1 << 20);
    let mut buf = vec![0u8; window as usize];
    f.seek(SeekFrom::Start(len - window)).map_err(ctx)?;
    f.read_exact(&mut buf).map_err(ctx)?;
    let mut end = buf.len();
    let mut new_len = len;
    if buf.last() != Some(&b'\n') {
        let keep = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        new_len = len - (buf.len() - keep) as u64;
        tracing::warn!(
            bytes = len - new_len,
            "dropping a partial, unacknowledged line at the end of the audit log"
        );
        f.set_len(new_len).map_err(ctx)?;
        end = keep;
    }
    if end == 0 {
        return Ok((new_len, None, None));
    }
    let body = &buf[..end - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    Ok((new_len, Some(body[start..].to_vec()), Some(first)))
}

/// The `(seq, hash)` of a sealed line, without a full parse.
pub(super) fn parse_mark(line: &[u8]) -> Option<Mark> {
    let (body, hash) = super::chain::split_sealed(line)?;
    Some(Mark {
        seq: parse_seq(body)?,
        hash: hash.to_string(),
    })
}

/// Lines start `{"ts":"<rfc3339>","seq":N,` — find N.
pub(super) fn parse_seq(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\",\"seq\":";
    let at = body.windows(KEY.len()).take(64).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The `prev_hash` of a sealed body, which is always its last field.
pub(super) fn parse_prev(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b",\"prev_hash\":\"";
    let n = body.len();
    if n < 64 + 1 + KEY.len() || body[n - 1] != b'"' || &body[n - 65 - KEY.len()..n - 65] != KEY {
        return None;
    }
    std::str::from_utf8(&body[n - 65..n - 1]).ok()
}
