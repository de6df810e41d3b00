//! Reading the log back: filters over the live file and every rotated day, newest first.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::entry::{Category, StoredEntry};
use super::files::{LogFiles, read_all};
use crate::error::{Error, Result};

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user: Option<String>,
    pub service: Option<String>,
    pub category: Option<Category>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub limit: Option<usize>,
}

impl Filter {
    /// Accepts RFC 3339 or a bare `YYYY-MM-DD` (midnight UTC).
    pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(t);
        }
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s, &fmt)
            .map(|d| d.midnight().assume_utc())
            .map_err(|e| {
                Error::BadRequest(format!("{s:?} is not a time (use RFC 3339 or YYYY-MM-DD)"))
                    .because(e)
            })
    }

    fn matches(&self, e: &StoredEntry) -> bool {
        if self
            .user
            .as_ref()
            .is_some_and(|u| e.user_id.as_ref() != Some(u))
            || self.service.as_ref().is_some_and(|s| &e.service != s)
            || self.category.is_some_and(|c| e.category != c)
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = OffsetDateTime::parse(&e.ts, &Rfc3339) else {
                return false;
            };
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts > u) {
                return false;
            }
        }
        true
    }
}

/// Entries matching `filter`, newest first.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<StoredEntry>> {
    query_matching(path, filter, &|_| true)
}

/// Entries matching `filter` and `keep` (a further condition, such as the result), newest
/// first; the limit counts only those.
pub fn query_matching(
    path: &Path,
    filter: &Filter,
    keep: &dyn Fn(&StoredEntry) -> bool,
) -> Result<Vec<StoredEntry>> {
    let files = LogFiles::new(path);
    let limit = filter.limit.unwrap_or(usize::MAX);
    let since_day = filter.since.map(|s| s.date().to_string());
    let mut sources = vec![files.live()];
    sources.extend(
        files
            .rotated()?
            .into_iter()
            .rev()
            // A file named for a day before `since` holds nothing newer than that day.
            .filter(|r| since_day.as_ref().is_none_or(|d| r.date >= *d))
            .map(|r| r.path),
    );
    let mut out = Vec::new();
    for src in sources {
        let text = read_all(&src)?;
        for line in text.split(|b| *b == b'\n').rev().filter(|l| !l.is_empty()) {
            let Ok(entry) = serde_json::from_slice::<StoredEntry>(line) else {
                continue;
            };
            if filter.matches(&entry) && keep(&entry) {
                out.push(entry);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
