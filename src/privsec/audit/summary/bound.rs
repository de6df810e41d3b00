//! What keeps the summary bounded whatever names clients choose.
//!
//! A day keeps at most [`MAX_NAMES`] names per dimension (agent, service, host, tool), the
//! most counted, the rest renamed [`OTHER`]. That alone still allows [`MAX_NAMES`]⁴ rows a day
//! (a row is agent × service × host × tool × category × result), so a day also keeps at most
//! [`MAX_ROWS`] rows: the least counted are merged into rows whose agent, service, host and
//! tool are all [`OTHER`] (a row that named no tool keeps naming none), one per category,
//! result, block reason and whether a tool was called, so every total a report shows (calls,
//! blocks by reason, bytes, tool calls, per day) stays exact. Folding waits until a day holds
//! twice a limit, so it is cheap; what a report or the saved file sees is folded to the limit.
//!
//! An empty name (no agent, no host, not a tool call) is an absence, not a name: it is neither
//! counted towards a limit nor ever renamed, so folding never turns an entry into a tool call.

use std::collections::{HashMap, HashSet};

use super::{Counts, Key, Summary};

/// Distinct names a day keeps per dimension (agent, service, host, tool); the rest are folded
/// into [`OTHER`].
pub const MAX_NAMES: usize = 200;
/// Rows a day keeps, the folded ones included: beyond it the least counted rows are merged
/// into all-[`OTHER`] rows.
pub const MAX_ROWS: usize = 2_000;
/// The name of what was folded. It cannot be mistaken for a real name: agent and surface ids
/// and service names are tokens checked where they enter (`POST /api/audit/events`, the
/// `x-maestra-*` headers, the core API), where `(` is refused; hosts are counted only from
/// entries Maestra wrote itself (what egress dialled: a reported entry's `details.host` is not
/// counted), and a reported `details.host` is checked as such a token too; tools are counted
/// only from entries Maestra wrote, named as MCP allows (letters, digits, `_ - .`) or by one of
/// one of the two names Maestra itself writes for a call it could not name, `(unknown tool)`
/// and `(not a tool name)`.
pub const OTHER: &str = "(other)";
/// The dimensions bounded: agent, service, host, tool.
pub(super) const DIMENSIONS: usize = 4;

/// What the summary knows of one day's rows without walking them (not saved: rebuilt on
/// load).
#[derive(Debug, Clone, Default)]
pub(super) struct DayIndex {
    /// The distinct names of each dimension, without `""` and [`OTHER`], which no limit counts.
    names: [HashSet<String>; DIMENSIONS],
    rows: usize,
}

impl DayIndex {
    /// Counts a row that is new to the day.
    pub(super) fn add_row(&mut self, key: &Key) {
        for (set, name) in self.names.iter_mut().zip(key.names()) {
            if counted(name) {
                set.insert(name.clone());
            }
        }
        self.rows += 1;
    }

    /// Whether the day holds more than `names` names in some dimension or more than `rows`
    /// rows.
    fn over(&self, names: usize, rows: usize) -> bool {
        self.rows > rows || self.names.iter().any(|set| set.len() > names)
    }
}

/// Whether a name counts towards a limit: not an absence, not what was folded already.
fn counted(name: &str) -> bool {
    !name.is_empty() && name != OTHER
}

impl Key {
    fn name_mut(&mut self, dimension: usize) -> &mut String {
        match dimension {
            0 => &mut self.agent,
            1 => &mut self.service,
            2 => &mut self.host,
            _ => &mut self.tool,
        }
    }

    fn names(&self) -> [&String; DIMENSIONS] {
        [&self.agent, &self.service, &self.host, &self.tool]
    }

    /// The row this one is merged into when rows are folded: a tool call stays one.
    fn folded(&self) -> Key {
        Key {
            agent: OTHER.to_string(),
            service: OTHER.to_string(),
            host: OTHER.to_string(),
            tool: if self.tool.is_empty() {
                String::new()
            } else {
                OTHER.to_string()
            },
            ..self.clone()
        }
    }
}

impl Summary {
    /// Folds `day` if a row just added took it past twice a limit.
    pub(super) fn fold_if_grown(&mut self, day: &str) {
        if self
            .days
            .get(day)
            .is_some_and(|d| d.over(2 * MAX_NAMES, 2 * MAX_ROWS))
        {
            self.fold_day(day);
        }
    }

    /// Folds every day over a limit down to it: what a report or the saved file sees.
    pub fn bound(&mut self) {
        let days: Vec<String> = self
            .days
            .iter()
            .filter(|(_, d)| d.over(MAX_NAMES, MAX_ROWS))
            .map(|(day, _)| day.clone())
            .collect();
        for day in days {
            self.fold_day(&day);
        }
    }

    /// Keeps a day's [`MAX_NAMES`] most counted names of each dimension, renaming the others
    /// [`OTHER`], then its [`MAX_ROWS`] most counted rows, merging the others into all-[`OTHER`]
    /// rows. Counts are added, never dropped.
    fn fold_day(&mut self, day: &str) {
        let mut rows: Vec<(Key, Counts)> = self.rows.extract_if(|k, _| k.day == day).collect();
        for dim in 0..DIMENSIONS {
            let mut totals: HashMap<&str, u64> = HashMap::new();
            for (k, c) in &rows {
                let name = k.names()[dim].as_str();
                if counted(name) {
                    *totals.entry(name).or_default() += c.entries;
                }
            }
            if totals.len() <= MAX_NAMES {
                continue;
            }
            let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let kept: HashSet<String> = ranked
                .into_iter()
                .take(MAX_NAMES)
                .map(|(n, _)| n.to_string())
                .collect();
            for (k, _) in &mut rows {
                let name = k.name_mut(dim);
                if counted(name) && !kept.contains(name.as_str()) {
                    *name = OTHER.to_string();
                }
            }
        }
        let mut merged: HashMap<Key, Counts> = HashMap::with_capacity(rows.len());
        for (k, c) in rows {
            merge(&mut merged, k, &c);
        }
        let merged = fold_rows(merged);
        let mut index = DayIndex::default();
        for (k, c) in merged {
            index.add_row(&k);
            self.rows.insert(k, c);
        }
        self.days.insert(day.to_string(), index);
        self.dirty = true;
    }

    /// The per-day index of `rows`, for a summary read from its file.
    pub(super) fn index(rows: &HashMap<Key, Counts>) -> HashMap<String, DayIndex> {
        let mut days: HashMap<String, DayIndex> = HashMap::new();
        for k in rows.keys() {
            days.entry(k.day.clone()).or_default().add_row(k);
        }
        days
    }
}

fn merge(rows: &mut HashMap<Key, Counts>, k: Key, c: &Counts) {
    rows.entry(k).or_default().merge(c);
}

/// One day's rows, at most [`MAX_ROWS`] of them: the most counted are kept and the others
/// merged into their [`Key::folded`] rows, which count towards the limit too.
fn fold_rows(rows: HashMap<Key, Counts>) -> HashMap<Key, Counts> {
    if rows.len() <= MAX_ROWS {
        return rows;
    }
    let mut ranked: Vec<(Key, Counts)> = rows.into_iter().collect();
    // Most counted first; ties in a fixed order, so the same entries fold the same way.
    ranked.sort_by(|(a, x), (b, y)| {
        y.entries
            .cmp(&x.entries)
            .then_with(|| a.names().cmp(&b.names()))
            .then_with(|| {
                (a.category as u8, a.result as u8).cmp(&(b.category as u8, b.result as u8))
            })
            .then_with(|| a.reason.cmp(&b.reason))
    });
    // Keep as many as leave room for the folded rows the rest need (a few: one per
    // category, result, reason and tool-call-or-not among them).
    let mut keep = MAX_ROWS;
    loop {
        let kept: HashSet<&Key> = ranked[..keep].iter().map(|(k, _)| k).collect();
        let needed: HashSet<Key> = ranked[keep..]
            .iter()
            .map(|(k, _)| k.folded())
            .filter(|f| !kept.contains(f))
            .collect();
        // (Keeping none is as far as it goes: more folded rows than the limit would take
        // over 2,000 distinct block reasons, which Maestra does not have.)
        if keep + needed.len() <= MAX_ROWS || keep == 0 {
            break;
        }
        keep = MAX_ROWS.saturating_sub(needed.len()).min(keep - 1);
    }
    let rest = ranked.split_off(keep);
    let mut out: HashMap<Key, Counts> = ranked.into_iter().collect();
    for (k, c) in rest {
        merge(&mut out, k.folded(), &c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Figures;
    use super::*;
    use crate::privsec::audit::{Category, Outcome};

    fn add(s: &mut Summary, agent: &str, service: &str, host: &str) {
        add_call(s, agent, service, host, "");
    }

    /// An entry of `tool` (a tool call; none when `""`).
    fn add_call(s: &mut Summary, agent: &str, service: &str, host: &str, tool: &str) {
        let f = Figures {
            host,
            reason: "",
            tool,
            sent: 1,
            received: 0,
            withheld: 0,
        };
        let ts = "2026-11-30T10:00:00Z";
        let category = if tool.is_empty() {
            Category::Creative
        } else {
            Category::Tool
        };
        s.add(ts, Some(agent), category, service, Outcome::Success, f);
    }

    /// 5,000 distinct agent ids and a busy one: at most `MAX_NAMES` names and `(other)` are
    /// kept, the busy one among them, and every entry is still counted.
    #[test]
    fn distinct_names_are_bounded_and_totals_kept() {
        let mut s = Summary::default();
        for _ in 0..50 {
            add(&mut s, "busy", "ffmpeg", "h");
        }
        for i in 0..5_000 {
            add(&mut s, &format!("agent-{i}"), "ffmpeg", &format!("h{i}"));
            let most = s.days.values().map(|d| d.names[0].len()).max().unwrap_or(0);
            assert!(most <= 2 * MAX_NAMES + 1, "{most} names held at {i}");
        }
        s.bound();
        let agents: HashSet<&str> = s.rows.keys().map(|k| k.agent.as_str()).collect();
        let hosts: HashSet<&str> = s.rows.keys().map(|k| k.host.as_str()).collect();
        assert!(agents.len() <= MAX_NAMES + 1, "{}", agents.len());
        assert!(hosts.len() <= MAX_NAMES + 1, "{}", hosts.len());
        assert!(s.rows.len() <= (MAX_NAMES + 1) * 2, "{}", s.rows.len());
        assert!(agents.contains("busy") && agents.contains(OTHER));
        let total: u64 = s.rows.values().map(|c| c.entries).sum();
        let sent: u64 = s.rows.values().map(|c| c.bytes_sent).sum();
        assert_eq!((total, sent), (5_050, 5_050));
        // Saved and loaded, the same.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        s.dirty = true;
        s.save(&log).unwrap();
        let back = Summary::load(&log);
        assert_eq!(back.rows.len(), s.rows.len());
    }

    /// Names within the limit per dimension can still combine into 200³ rows: 200 agents × 40
    /// hosts × 2 services here (16,000 combinations, no dimension over `MAX_NAMES`). A day
    /// holds at most `MAX_ROWS` rows, the folded ones included, at most twice that between
    /// folds, the busiest rows are kept as they are, and every total is exact.
    #[test]
    fn rows_are_bounded_when_names_are_not_many() {
        let mut s = Summary::default();
        for _ in 0..30 {
            add(&mut s, "agent-000", "ffmpeg", "h-busy");
        }
        let (mut entries, mut peak) = (30u64, 0);
        for host in 0..40 {
            for agent in 0..200 {
                for service in ["ffmpeg", "sox"] {
                    add(
                        &mut s,
                        &format!("agent-{agent:03}"),
                        service,
                        &format!("h{host}"),
                    );
                    entries += 1;
                    peak = peak.max(s.rows.len());
                }
            }
        }
        assert!(peak <= 2 * MAX_ROWS + 1, "{peak} rows held between folds");
        s.bound();
        let rows = s.rows.len();
        println!(
            "16,030 entries in 16,001 combinations: {rows} rows, at most {peak} between folds"
        );
        assert!(rows <= MAX_ROWS, "{rows} rows");
        assert!(rows >= MAX_ROWS / 2, "{rows} rows: folding keeps what fits");
        let total: u64 = s.rows.values().map(|c| c.entries).sum();
        let sent: u64 = s.rows.values().map(|c| c.bytes_sent).sum();
        assert_eq!((total, sent), (entries, entries));
        let busy = Key {
            day: "2026-11-30".into(),
            agent: "agent-000".into(),
            category: Category::Creative,
            service: "ffmpeg".into(),
            host: "h-busy".into(),
            result: Outcome::Success,
            reason: String::new(),
            tool: String::new(),
        };
        assert_eq!(
            s.rows.get(&busy).map(|c| c.entries),
            Some(30),
            "the busiest row is kept"
        );
        let other = s.rows.get(&busy.folded()).map_or(0, |c| c.entries);
        assert!(other > 0, "the rest are in the (other) row");
        // The same after saving and loading, and a loaded summary that is over is folded.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        s.dirty = true;
        s.save(&log).unwrap();
        assert_eq!(Summary::load(&log).rows.len(), rows);
    }

    /// Rows of several categories and results fold into one (other) row each, and the day
    /// still holds no more than `MAX_ROWS` rows with them.
    #[test]
    fn folded_rows_keep_their_category_and_result() {
        let mut rows = HashMap::new();
        let categories = [Category::Creative, Category::Media, Category::Llm];
        let results = [Outcome::Success, Outcome::Failed];
        for i in 0..3 * MAX_ROWS {
            let k = Key {
                day: "2026-11-30".into(),
                agent: format!("a{i}"),
                category: categories[i % 3],
                service: "s".into(),
                host: String::new(),
                result: results[i % 2],
                reason: String::new(),
                tool: String::new(),
            };
            rows.insert(
                k,
                Counts {
                    entries: 1 + (i % 7) as u64,
                    ..Counts::default()
                },
            );
        }
        let before: u64 = rows.values().map(|c| c.entries).sum();
        let folded = fold_rows(rows);
        assert!(folded.len() <= MAX_ROWS, "{}", folded.len());
        assert_eq!(folded.values().map(|c| c.entries).sum::<u64>(), before);
        let others = folded.keys().filter(|k| k.agent == OTHER).count();
        assert_eq!(others, 6, "one per category and result");
    }

    /// A tool server offering 5,000 tools, each called: a day keeps at most `MAX_NAMES` tool
    /// names and `(other)`, every call is still counted as a tool call, and the entries that
    /// called no tool (most of a day's) are never folded into one: absence is not a name.
    #[test]
    fn tool_names_are_bounded_and_an_entry_without_one_never_gains_one() {
        let mut s = Summary::default();
        for _ in 0..30 {
            add_call(&mut s, "a", "time", "", "get_current_time");
        }
        for i in 0..5_000 {
            add_call(&mut s, "a", "flood", "", &format!("tool_{i}"));
            // Entries of no tool and of many hosts, in between.
            add(&mut s, "a", "ffmpeg", &format!("h{}", i % 300));
        }
        s.bound();
        let tools: HashSet<&str> = s.rows.keys().map(|k| k.tool.as_str()).collect();
        assert!(tools.len() <= MAX_NAMES + 2, "{}", tools.len());
        assert!(tools.contains("get_current_time") && tools.contains(OTHER));
        let called = |s: &Summary| -> u64 {
            s.rows
                .iter()
                .filter(|(k, _)| !k.tool.is_empty())
                .map(|(_, c)| c.entries)
                .sum()
        };
        assert_eq!(called(&s), 5_030);
        for (k, _) in s.rows.iter().filter(|(k, _)| k.service == "ffmpeg") {
            assert_eq!(k.tool, "", "{k:?}");
        }
        // Rows folded past `MAX_ROWS` keep whether they were tool calls, and their times.
        let mut rows = HashMap::new();
        for i in 0..3 * MAX_ROWS {
            let k = Key {
                day: "2026-11-30".into(),
                agent: format!("a{i}"),
                category: Category::Tool,
                service: "s".into(),
                host: String::new(),
                result: Outcome::Success,
                reason: String::new(),
                tool: if i % 2 == 0 {
                    "t".into()
                } else {
                    String::new()
                },
            };
            let c = Counts {
                entries: 1,
                last: i as i64,
                ..Counts::default()
            };
            rows.insert(k, c);
        }
        let folded = fold_rows(rows);
        let with_tool: u64 = folded
            .iter()
            .filter(|(k, _)| !k.tool.is_empty())
            .map(|(_, c)| c.entries)
            .sum();
        assert_eq!(with_tool, (3 * MAX_ROWS / 2) as u64);
        let newest = folded.values().map(|c| c.last).max();
        assert_eq!(newest, Some(3 * MAX_ROWS as i64 - 1));
        assert!(folded.keys().any(|k| k.agent == OTHER && k.tool.is_empty()));
        assert!(folded.keys().any(|k| k.agent == OTHER && k.tool == OTHER));
    }
}
