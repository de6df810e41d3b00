//! A summary of the log kept beside it (`audit.summary.json`): counts of calls, blocks and
//! bytes, and the time of the newest, per day × agent × category × service × host × result ×
//! block reason × tool called. The privacy center's report reads it instead of the log, so a
//! report over a million entries costs a few thousand rows, not a million parsed lines.
//!
//! The server's writer adds each committed batch to the summary it holds in memory; whatever
//! it did not see (entries from another process, a crash before the file was saved) is caught
//! up by reading only the lines after the summary's `through_seq`. A missing or unreadable
//! summary is rebuilt from the whole log, so it is a cache: never the record itself.
//!
//! A log that is not the one the summary counted (restored from elsewhere, deleted by hand,
//! its `seq` starting over) is noticed by the hash of the last entry counted: catching up
//! must meet that entry, with that hash, before anything newer, or the summary is rebuilt.
//!
//! Names a client chooses (agent or surface ids, service names, tools) cannot grow it without
//! bound: a day keeps at most [`MAX_NAMES`] names per dimension and [`MAX_ROWS`] rows, the most
//! counted, and folds the rest into [`OTHER`] rows, so totals stay exact while a flood of
//! distinct ids (or of their combinations) costs a few thousand rows a day at most. See
//! `bound`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::split_sealed;
use super::entry::{Category, Event, Outcome, called_tool};
use super::files::{LogFiles, read_all};
use super::writer::parse_seq;
use crate::error::{Error, Result};

mod bound;

use bound::DayIndex;
pub use bound::{MAX_NAMES, MAX_ROWS, OTHER};

/// The saved file's format: a file of another version is rebuilt from the log (2: rows name
/// the tool called and keep the time of their newest entry; 3: and count the values
/// minimisation withheld).
const VERSION: u32 = 3;

/// What one summary row counts over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// The agent, else the surface, else `""`.
    pub agent: String,
    pub category: Category,
    pub service: String,
    /// The host egress dialled (`details.host`), `""` when unknown.
    pub host: String,
    pub result: Outcome,
    /// Why a call was blocked (`details.reason`), `""` otherwise.
    pub reason: String,
    /// The tool called, for an entry that is a tool call (see `entry::called_tool`),
    /// `""` for every other entry.
    pub tool: String,
}

impl Key {
    /// Whether the row counts outbound calls (see `entry::is_call`): a `tool` row
    /// only when it counts `tools/call` entries, which are the ones naming a tool.
    pub fn is_call(&self) -> bool {
        self.category.may_be_call() && (self.category != Category::Tool || !self.tool.is_empty())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub entries: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The newest entry's time, Unix seconds (UTC); 0 when no entry's time could be read.
    pub last: i64,
    /// Values withheld from cloud calls (`details.withheld`, summed over its kinds).
    #[serde(default)]
    pub withheld: u64,
}

impl Counts {
    /// Adds `other`'s counts; the newer of the two times is kept.
    pub fn merge(&mut self, other: &Counts) {
        self.entries += other.entries;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.withheld += other.withheld;
        self.last = self.last.max(other.last);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Every entry up to this `seq` is counted.
    pub through_seq: u64,
    /// The chain hash of entry `through_seq`: which log the summary counted.
    pub through_hash: String,
    /// The chain anchor (`audit::prune`'s record of the last entry it removed) when this was
    /// built: a different one means old files are gone, and their counts with them.
    pub anchor: String,
    pub rows: HashMap<Key, Counts>,
    /// Entries were written that this summary did not see: catch up before reading it.
    pub stale: bool,
    /// Changed since it was last saved.
    pub dirty: bool,
    /// Per day, its rows' distinct names and their number (not saved: rebuilt on load).
    days: HashMap<String, DayIndex>,
}

/// The file as saved: rows as flat arrays, so a large summary stays compact.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    through_seq: u64,
    #[serde(default)]
    through_hash: String,
    #[serde(default)]
    anchor: String,
    rows: Vec<(Key, Counts)>,
}

/// The fields of a line the summary needs, borrowed from the line.
#[derive(Deserialize)]
struct Line<'a> {
    ts: &'a str,
    seq: u64,
    #[serde(borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    surface_id: Option<Cow<'a, str>>,
    category: Category,
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(default, borrow)]
    action: Cow<'a, str>,
    result: Outcome,
    #[serde(default, borrow)]
    details: LineDetails<'a>,
}

/// The details the summary counts; the others are skipped unparsed. Each is read leniently: a
/// value of another type (a client may report `"bytes_sent": -1` through
/// `POST /api/audit/events`) counts as absent, exactly as the writer's path
/// ([`Figures::of_event`]) reads it, so a rebuild from the log counts what the writer counted.
#[derive(Deserialize, Default)]
struct LineDetails<'a> {
    #[serde(default, borrow, deserialize_with = "lenient")]
    host: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    tool: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient")]
    bytes_sent: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    bytes_received: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    reported: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    withheld: Option<std::collections::BTreeMap<String, Value>>,
}

/// `Some` when the value has the expected type, `None` for any other value.
fn lenient<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Expected(T),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Either::<T>::deserialize(d)? {
        Either::Expected(v) => Some(v),
        Either::Other(_) => None,
    })
}

/// What an entry adds besides its key fields.
struct Figures<'a> {
    host: &'a str,
    reason: &'a str,
    /// The tool called, `""` when the entry is not a tool call.
    tool: &'a str,
    sent: u64,
    received: u64,
    /// Values withheld from the call, all kinds together.
    withheld: u64,
}

/// The sum of a `withheld` detail's counts (what is not a count adds nothing).
fn withheld_total<'v>(counts: impl Iterator<Item = &'v Value>) -> u64 {
    counts
        .filter_map(Value::as_u64)
        .fold(0, u64::saturating_add)
}

/// Hosts, bytes and tools are what Maestra measured and wrote: an entry a client reported
/// (`details.reported`, `POST /api/audit/events`) is counted, its own claims of them are not.
const NONE: Figures<'static> = Figures {
    host: "",
    reason: "",
    tool: "",
    sent: 0,
    received: 0,
    withheld: 0,
};

impl<'a> Figures<'a> {
    fn of_event(e: &'a Event) -> Figures<'a> {
        let details = &e.details;
        if details.get("reported") == Some(&Value::Bool(true)) {
            return NONE;
        }
        let text = |k: &str| details.get(k).and_then(Value::as_str).unwrap_or_default();
        let num = |k: &str| details.get(k).and_then(Value::as_u64).unwrap_or(0);
        let tool = details.get("tool").and_then(Value::as_str);
        Figures {
            host: text("host"),
            reason: text("reason"),
            tool: called_tool(e.category, &e.action, tool).unwrap_or_default(),
            sent: num("bytes_sent"),
            received: num("bytes_received"),
            withheld: details
                .get("withheld")
                .and_then(Value::as_object)
                .map_or(0, |m| withheld_total(m.values())),
        }
    }

    fn of_line(l: &'a Line<'a>) -> Figures<'a> {
        let d = &l.details;
        if d.reported == Some(true) {
            return NONE;
        }
        let tool = called_tool(l.category, &l.action, d.tool.as_deref());
        Figures {
            host: d.host.as_deref().unwrap_or_default(),
            reason: d.reason.as_deref().unwrap_or_default(),
            tool: tool.unwrap_or_default(),
            sent: d.bytes_sent.unwrap_or(0),
            received: d.bytes_received.unwrap_or(0),
            withheld: d
                .withheld
                .as_ref()
                .map_or(0, |m| withheld_total(m.values())),
        }
    }
}

/// An entry's time in Unix seconds; 0 for a time that is not RFC 3339 (the writer stamps
/// every entry, so only a line edited by hand has one).
fn unix_seconds(ts: &str) -> i64 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map_or(0, time::OffsetDateTime::unix_timestamp)
}

/// Catching up met a log other than the one counted (see the module's docs).
#[derive(Debug)]
struct Replaced;

/// The hash a sealed line ends with, `""` for a line without one.
fn line_hash(line: &[u8]) -> &str {
    split_sealed(line).map_or("", |(_, hash)| hash)
}

/// The summary file beside the live log at `path`.
pub fn summary_path(path: &Path) -> PathBuf {
    let files = LogFiles::new(path);
    let live = files.live();
    let stem = live
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".into());
    files.dir().join(format!("{stem}.summary.json"))
}

impl Summary {
    fn add(
        &mut self,
        ts: &str,
        agent: Option<&str>,
        category: Category,
        service: &str,
        result: Outcome,
        f: Figures<'_>,
    ) {
        let key = Key {
            day: ts.get(..10).unwrap_or_default().to_string(),
            agent: agent.unwrap_or_default().to_string(),
            category,
            service: service.to_string(),
            host: f.host.to_string(),
            result,
            reason: if category == Category::LocalOnlyBlock {
                f.reason.to_string()
            } else {
                String::new()
            },
            tool: f.tool.to_string(),
        };
        let new_row = !self.rows.contains_key(&key);
        let day = new_row.then(|| key.day.clone());
        if new_row {
            self.days.entry(key.day.clone()).or_default().add_row(&key);
        }
        self.rows.entry(key).or_default().merge(&Counts {
            entries: 1,
            bytes_sent: f.sent,
            bytes_received: f.received,
            last: unix_seconds(ts),
            withheld: f.withheld,
        });
        self.dirty = true;
        if let Some(day) = day {
            self.fold_if_grown(&day);
        }
    }

    /// Counts a batch the writer committed, whose first entry got `first_seq` and whose last
    /// one `last_hash`. A batch that does not follow on (another process wrote in between)
    /// marks the summary stale instead.
    pub(super) fn add_batch<'a>(
        &mut self,
        events: impl Iterator<Item = &'a Event>,
        first_seq: u64,
        last_hash: &str,
    ) {
        if self.stale || first_seq != self.through_seq + 1 {
            self.stale = true;
            return;
        }
        let mut seq = self.through_seq;
        for e in events {
            let agent = e.agent_id.as_deref().or(e.surface_id.as_deref());
            let f = Figures::of_event(e);
            self.add(&e.ts, agent, e.category, &e.service, e.result, f);
            seq += 1;
        }
        self.through_seq = seq;
        self.through_hash = last_hash.to_string();
    }

    /// Adds every line of `text` after `through_seq`, skipping older lines without parsing
    /// them. Returns the entries added. `met` says whether entry `through_seq` was met (with
    /// its hash) yet: nothing newer is counted before it is, since a log without it is not
    /// the one this summary counted.
    fn add_lines(&mut self, text: &[u8], met: &mut bool) -> std::result::Result<u64, Replaced> {
        let mut added = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match parse_seq(line) {
                Some(s) if s < self.through_seq => continue,
                Some(s) if s == self.through_seq => {
                    // No hash known (a summary saved before hashes were kept): the entry's
                    // being there is what can be checked, and its hash is known from now on.
                    if self.through_hash.is_empty() {
                        self.through_hash = line_hash(line).to_string();
                    } else if line_hash(line) != self.through_hash {
                        return Err(Replaced);
                    }
                    *met = true;
                    continue;
                }
                None if !*met => continue,
                _ if !*met => return Err(Replaced),
                _ => {}
            }
            let Ok(l) = serde_json::from_slice::<Line<'_>>(line) else {
                continue;
            };
            if l.seq <= self.through_seq {
                continue;
            }
            let agent = l.agent_id.as_deref().or(l.surface_id.as_deref());
            let f = Figures::of_line(&l);
            self.add(l.ts, agent, l.category, &l.service, l.result, f);
            self.through_seq = l.seq;
            self.through_hash = line_hash(line).to_string();
            added += 1;
        }
        Ok(added)
    }

    /// Reads what the summary has not counted yet: the rotated days from its newest day on,
    /// and the live file (all of them for an empty summary). A log that is not the one
    /// counted so far is counted again from its start.
    pub fn catch_up(&mut self, path: &Path) -> Result<u64> {
        match self.try_catch_up(path)? {
            Ok(added) => Ok(added),
            Err(Replaced) => {
                tracing::warn!(
                    through_seq = self.through_seq,
                    "the audit log is not the one the summary counted; rebuilding the summary"
                );
                *self = Summary {
                    anchor: std::mem::take(&mut self.anchor),
                    dirty: true,
                    ..Summary::default()
                };
                let rebuilt = self.try_catch_up(path)?;
                // An empty summary meets no entry it must find first.
                Ok(rebuilt.unwrap_or_default())
            }
        }
    }

    fn try_catch_up(&mut self, path: &Path) -> Result<std::result::Result<u64, Replaced>> {
        let files = LogFiles::new(path);
        let newest = if self.through_seq == 0 {
            None
        } else {
            self.rows.keys().map(|k| k.day.clone()).max()
        };
        // The rotated days from the newest counted on, and the one before it: a file is named
        // by the day its first entry was written, and an entry made just before midnight can
        // be committed just after, so the entry last counted may sit in the day before.
        let rotated = files.rotated()?;
        let before = newest.as_ref().and_then(|d| {
            rotated
                .iter()
                .filter(|r| r.date < *d)
                .map(|r| r.date.clone())
                .max()
        });
        let sources: Vec<PathBuf> = rotated
            .into_iter()
            .filter(|r| {
                newest.as_ref().is_none_or(|d| r.date >= *d) || before.as_ref() == Some(&r.date)
            })
            .map(|r| r.path)
            .collect();
        let mut met = self.through_seq == 0;
        let mut added = 0;
        for src in sources {
            match self.add_lines(&read_all(&src)?, &mut met) {
                Ok(n) => added += n,
                Err(r) => return Ok(Err(r)),
            }
        }
        match self.add_lines(&live_tail(&files.live(), self.through_seq)?, &mut met) {
            Ok(n) => added += n,
            Err(r) => return Ok(Err(r)),
        }
        if !met {
            // The log ends before the last entry counted: it was cut or replaced.
            return Ok(Err(Replaced));
        }
        self.stale = false;
        Ok(Ok(added))
    }

    /// Starts over when retention removed files since this summary was built (the anchor
    /// changed): its rows would still count entries the log no longer holds, and a rebuild
    /// from what is left (once per prune) is the only exact answer, rows being per day.
    pub fn follow_prune(&mut self, path: &Path) {
        let anchor = std::fs::read_to_string(LogFiles::new(path).anchor()).unwrap_or_default();
        if anchor != self.anchor {
            *self = Summary {
                anchor,
                stale: true,
                dirty: true,
                ..Summary::default()
            };
        }
    }

    /// The saved summary, or an empty one when it is missing or unreadable; either way
    /// marked stale, so the first read catches up with (or rebuilds from) the log.
    pub fn load(path: &Path) -> Summary {
        let empty = Summary {
            stale: true,
            ..Summary::default()
        };
        let Ok(bytes) = std::fs::read(summary_path(path)) else {
            return empty;
        };
        match serde_json::from_slice::<Saved>(&bytes) {
            Ok(s) if s.version == VERSION => {
                let rows: HashMap<Key, Counts> = s.rows.into_iter().collect();
                let mut loaded = Summary {
                    through_seq: s.through_seq,
                    through_hash: s.through_hash,
                    anchor: s.anchor,
                    days: Summary::index(&rows),
                    rows,
                    stale: true,
                    dirty: false,
                };
                // A file saved before names (or rows) were bounded.
                loaded.bound();
                loaded
            }
            _ => {
                tracing::warn!("the audit summary is unreadable; rebuilding it from the log");
                empty
            }
        }
    }

    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.bound();
        if !self.dirty {
            return Ok(());
        }
        let saved = Saved {
            version: VERSION,
            through_seq: self.through_seq,
            through_hash: self.through_hash.clone(),
            anchor: self.anchor.clone(),
            rows: self.rows.iter().map(|(k, c)| (k.clone(), *c)).collect(),
        };
        let bytes = serde_json::to_vec(&saved)
            .map_err(|e| Error::Audit(format!("cannot write the audit summary: {e}")).because(e))?;
        crate::home::write_private_atomic(&summary_path(path), &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// The rows of the days `since..=until` (`YYYY-MM-DD`).
    pub fn rows_between<'a>(
        &'a self,
        since: &'a str,
        until: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Counts)> + 'a {
        self.rows
            .iter()
            .filter(move |(k, _)| k.day.as_str() >= since && k.day.as_str() <= until)
    }
}

/// The end of the live file from the last line at or before seq `after` on, read backwards
/// in chunks: catching up after a restart costs what was written since, not the whole day.
fn live_tail(path: &Path, after: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 1 << 20;
    let ctx = |e| Error::io(format!("cannot read {}", path.display()), e);
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ctx(e)),
    };
    let len = f.metadata().map_err(ctx)?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        f.seek(SeekFrom::Start(from)).map_err(ctx)?;
        f.read_exact(&mut chunk).map_err(ctx)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        // The first whole line of what was read: at or before `after`, nothing older is needed.
        let whole = if start == 0 {
            Some(&buf[..])
        } else {
            buf.iter().position(|b| *b == b'\n').map(|p| &buf[p + 1..])
        };
        if let Some(line) = whole.and_then(|w| w.split(|b| *b == b'\n').next())
            && parse_seq(line).is_some_and(|s| s <= after)
        {
            break;
        }
    }
    if start > 0 {
        // Drop the partial line the first chunk began in.
        let cut = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |p| p + 1);
        buf.drain(..cut);
    }
    Ok(buf)
}

/// The summary up to date with the log at `path`: loaded (or rebuilt), caught up, saved.
pub fn current(path: &Path) -> Result<Summary> {
    let mut s = Summary::load(path);
    s.follow_prune(path);
    s.catch_up(path)?;
    s.save(path)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_after_through_seq_only() {
        let mut s = Summary::default();
        let line = |seq: u64, cat: &str, extra: &str| {
            format!(
                r#"{{"ts":"2026-11-30T10:00:00Z","seq":{seq},"request_id":null,"user_id":null,"agent_id":null,"surface_id":"cli","category":"{cat}","service":"openai","action":"core","result":"success","ip_address":null,"details":{{"host":"api.openai.com","bytes_sent":10,"bytes_received":20{extra}}},"prev_hash":"x"}}"#
            )
        };
        let text = [
            line(1, "llm", ""),
            line(2, "llm", ""),
            line(3, "local_only_block", r#","reason":"cloud""#),
        ]
        .join("\n");
        assert_eq!(s.add_lines(text.as_bytes(), &mut true).unwrap(), 3);
        assert_eq!(
            s.add_lines(text.as_bytes(), &mut true).unwrap(),
            0,
            "nothing twice"
        );
        assert_eq!(s.through_seq, 3);
        let total: u64 = s.rows.values().map(|c| c.bytes_sent).sum();
        assert_eq!(total, 30);
        assert!(
            s.rows
                .keys()
                .any(|k| k.reason == "cloud" && k.agent == "cli")
        );
    }

    #[test]
    fn a_reported_entry_counts_but_its_claimed_bytes_do_not() {
        let mut s = Summary::default();
        let line = r#"{"ts":"2026-11-30T10:00:00Z","seq":1,"agent_id":"tool","category":"creative","service":"ffmpeg","result":"success","details":{"bytes_sent":999,"host":"x","reported":true},"prev_hash":"x"}"#;
        assert_eq!(s.add_lines(line.as_bytes(), &mut true).unwrap(), 1);
        let (k, c) = s.rows.iter().next().unwrap();
        assert_eq!((c.entries, c.bytes_sent, k.host.as_str()), (1, 0, ""));
    }

    /// A client's details of the wrong type (`POST /api/audit/events` takes any) neither drop
    /// the entry from a rebuild nor count differently from the writer's path.
    #[test]
    fn details_of_the_wrong_type_count_as_absent() {
        let mut s = Summary::default();
        let line = r#"{"ts":"2026-11-30T10:00:00Z","seq":1,"agent_id":"tool","category":"creative","service":"ffmpeg","action":"GET /x","result":"success","details":{"bytes_sent":-1,"bytes_received":1.5,"host":5,"reason":[],"tool":7,"reported":"yes"},"prev_hash":"x"}"#;
        assert_eq!(s.add_lines(line.as_bytes(), &mut true).unwrap(), 1);
        let (k, c) = s.rows.iter().next().unwrap();
        assert_eq!((c.entries, c.bytes_sent, c.bytes_received), (1, 0, 0));
        assert_eq!(
            (k.host.as_str(), k.reason.as_str(), k.tool.as_str()),
            ("", "", "")
        );
        let mut e = Event::new(Category::Creative, "ffmpeg", "GET /x", Outcome::Success);
        e.details =
            serde_json::from_str(r#"{"bytes_sent":-1,"bytes_received":1.5,"host":5,"tool":7}"#)
                .unwrap();
        let f = Figures::of_event(&e);
        assert_eq!((f.sent, f.received, f.host, f.tool), (0, 0, "", ""));
    }

    /// The entry as a line of the log: what the writer stores, with a `seq` (the chain's
    /// fields play no part in counting).
    fn as_line(e: &Event, seq: u64) -> String {
        let mut v = serde_json::to_value(e).unwrap();
        v["seq"] = seq.into();
        v["prev_hash"] = "x".into();
        v.to_string()
    }

    fn at(ts: &str, e: Event) -> Event {
        Event {
            ts: ts.to_string(),
            ..e
        }
    }

    /// Every kind of entry that names a tool, or could be taken for a tool call, and some
    /// that must not be.
    fn tool_entries() -> Vec<Event> {
        let t = |ts: &str, cat, service: &str, action: &str, result| {
            at(ts, Event::new(cat, service, action, result))
        };
        use Category::{Admin, Llm, LocalOnlyBlock, Smarthome, Tool};
        use Outcome::{Blocked, Failed, Success};
        let call = "tools/call get_current_time";
        vec![
            t("2026-11-30T10:00:00Z", Tool, "time", call, Success)
                .detail("tool", "get_current_time"),
            // Nanoseconds, as the writer stamps them: the newest of the row.
            t(
                "2026-11-30T10:05:07.123456789Z",
                Tool,
                "time",
                call,
                Success,
            )
            .detail("tool", "get_current_time"),
            t("2026-11-30T09:00:00Z", Tool, "time", call, Failed)
                .detail("tool", "get_current_time"),
            t(
                "2026-11-30T09:30:00Z",
                LocalOnlyBlock,
                "web",
                "tools/call fetch",
                Blocked,
            )
            .detail("tool", "fetch")
            .detail("reason", "cloud"),
            // Events about tools, not calls.
            t(
                "2026-11-30T11:00:00Z",
                Tool,
                "time",
                "tools/pin get_current_time",
                Success,
            )
            .detail("tool", "get_current_time"),
            t(
                "2026-11-30T11:00:00Z",
                Tool,
                "notes",
                "tools/changed add_note",
                Blocked,
            )
            .detail("tool", "add_note"),
            t(
                "2026-11-30T11:00:00Z",
                Tool,
                "time",
                "tools/restart",
                Success,
            ),
            t(
                "2026-11-30T08:00:00Z",
                Tool,
                "mcp",
                "tools/call (unknown tool)",
                Failed,
            ),
            // A service tool: the proxy's request names it, and so does a refusal.
            t(
                "2026-11-30T12:00:00Z",
                Smarthome,
                "hue",
                "PUT /lights/{id}/state",
                Success,
            )
            .surface("mcp")
            .detail("tool", "set_light"),
            t(
                "2026-11-30T12:30:00Z",
                Smarthome,
                "hue",
                "tools/call set_light",
                Failed,
            ),
            // A client's report and a REST call are not tool calls, whatever their details say.
            t(
                "2026-11-30T13:00:00Z",
                Smarthome,
                "hue",
                "lights.on",
                Success,
            )
            .detail("tool", "fake")
            .detail("reported", true),
            t(
                "2026-11-30T13:00:00Z",
                Smarthome,
                "hue",
                "GET /lights",
                Success,
            )
            .detail("tool", 5),
            t("2026-11-30T13:00:00Z", Llm, "openai", "core", Success),
            t(
                "2026-11-30T13:00:00Z",
                Admin,
                "maestra",
                "tools/call x",
                Success,
            ),
        ]
    }

    #[test]
    fn tool_calls_are_counted_per_tool_and_other_tool_events_are_not() {
        let entries = tool_entries();
        let text: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| as_line(e, i as u64 + 1))
            .collect();
        let mut s = Summary::default();
        assert_eq!(
            s.add_lines(text.join("\n").as_bytes(), &mut true).unwrap(),
            entries.len() as u64
        );
        let mut tools: HashMap<(&str, &str, Outcome), (u64, i64)> = HashMap::new();
        for (k, c) in &s.rows {
            if !k.tool.is_empty() {
                let t = tools.entry((&k.service, &k.tool, k.result)).or_default();
                t.0 += c.entries;
                t.1 = t.1.max(c.last);
            }
        }
        let secs = |ts: &str| unix_seconds(ts);
        let expected: HashMap<(&str, &str, Outcome), (u64, i64)> = [
            (
                ("time", "get_current_time", Outcome::Success),
                (2, secs("2026-11-30T10:05:07Z")),
            ),
            (
                ("time", "get_current_time", Outcome::Failed),
                (1, secs("2026-11-30T09:00:00Z")),
            ),
            (
                ("web", "fetch", Outcome::Blocked),
                (1, secs("2026-11-30T09:30:00Z")),
            ),
            (
                ("mcp", "(unknown tool)", Outcome::Failed),
                (1, secs("2026-11-30T08:00:00Z")),
            ),
            (
                ("hue", "set_light", Outcome::Success),
                (1, secs("2026-11-30T12:00:00Z")),
            ),
            (
                ("hue", "set_light", Outcome::Failed),
                (1, secs("2026-11-30T12:30:00Z")),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(tools, expected);
        // A row is a call exactly when its entries are; pins, changes and restarts are not.
        for (i, e) in entries.iter().enumerate() {
            let mut one = Summary::default();
            one.add_lines(as_line(e, i as u64 + 1).as_bytes(), &mut true)
                .unwrap();
            let k = one.rows.keys().next().unwrap();
            assert_eq!(
                k.is_call(),
                e.is_call(),
                "{}: {}",
                e.category as u8,
                e.action
            );
        }
        let calls: u64 = s
            .rows
            .iter()
            .filter(|(k, _)| k.is_call())
            .map(|(_, c)| c.entries)
            .sum();
        assert_eq!(
            calls,
            entries.len() as u64 - 4,
            "pin, changed, restart, admin"
        );
    }

    /// The writer's path (each committed batch, [`Figures::of_event`]) and a rebuild from the
    /// log's lines ([`Figures::of_line`]) count the same rows, tools and times included.
    #[test]
    fn the_writer_and_a_rebuild_count_the_same() {
        let mut entries = tool_entries();
        let mut odd = Event::new(Category::Creative, "ffmpeg", "GET /x", Outcome::Success);
        odd.details = serde_json::from_str(
            r#"{"bytes_sent":-1,"bytes_received":1.5,"host":5,"tool":7,"reported":"yes"}"#,
        )
        .unwrap();
        entries.push(odd);
        entries.push(
            Event::new(Category::Media, "sonos", "POST /play", Outcome::Success)
                .detail("host", "192.168.1.9")
                .detail("bytes_sent", 12)
                .detail("bytes_received", 34)
                .agent("kitchen"),
        );
        entries.push(
            Event::new(
                Category::Llm,
                "openai",
                "chat.completions",
                Outcome::Success,
            )
            .detail(
                "withheld",
                serde_json::json!({"EMAIL": 2, "PHONE": 1, "X": "no"}),
            ),
        );
        let mut written = Summary::default();
        written.add_batch(entries.iter(), 1, "h");
        let text: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| as_line(e, i as u64 + 1))
            .collect();
        let mut rebuilt = Summary::default();
        rebuilt
            .add_lines(text.join("\n").as_bytes(), &mut true)
            .unwrap();
        assert_eq!(written.rows, rebuilt.rows);
        assert_eq!(written.through_seq, rebuilt.through_seq);
        assert!(written.rows.keys().any(|k| k.tool == "set_light"));
        // The withheld counts add up, whichever path read them; what is not a count adds 0.
        let withheld: u64 = written.rows.values().map(|c| c.withheld).sum();
        assert_eq!(withheld, 3);
    }

    /// A summary saved by an older version (rows without tools or times) is not read: it is
    /// rebuilt from the log, which names them.
    #[test]
    fn an_older_summary_file_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let old = r#"{"version":1,"through_seq":1,"through_hash":"","anchor":"","rows":[[{"day":"2026-11-30","agent":"","category":"tool","service":"time","host":"","result":"success","reason":""},{"entries":1,"bytes_sent":0,"bytes_received":0}]]}"#;
        std::fs::write(summary_path(&log), old).unwrap();
        let line = as_line(&tool_entries()[0], 1);
        std::fs::write(&log, format!("{line}\n")).unwrap();
        let s = current(&log).unwrap();
        let (k, c) = s.rows.iter().next().unwrap();
        assert_eq!((k.tool.as_str(), c.entries), ("get_current_time", 1));
        assert_eq!(c.last, unix_seconds("2026-11-30T10:00:00Z"));
        let saved: Value =
            serde_json::from_slice(&std::fs::read(summary_path(&log)).unwrap()).unwrap();
        assert_eq!(saved["version"], VERSION);
    }

    #[test]
    fn the_tail_reads_back_only_as_far_as_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = String::new();
        for seq in 1..=40_000u64 {
            text.push_str(&format!(
                r#"{{"ts":"2026-11-30T10:00:00Z","seq":{seq},"category":"llm","service":"s","result":"success","details":{{}},"prev_hash":"x"}}"#
            ));
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        let all = live_tail(&path, 0).unwrap();
        assert_eq!(all.len(), text.len());
        let tail = live_tail(&path, 39_990).unwrap();
        assert!(
            tail.len() < text.len() && tail.len() >= 10 * 100,
            "{}",
            tail.len()
        );
        let mut s = Summary {
            through_seq: 39_990,
            ..Summary::default()
        };
        assert_eq!(s.add_lines(&tail, &mut true).unwrap(), 10);
        assert!(
            live_tail(&dir.path().join("none.log"), 0)
                .unwrap()
                .is_empty()
        );
    }
}
