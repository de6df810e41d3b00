//! One call's withholding: each distinct value found becomes a placeholder (`<EMAIL_1>`), the
//! same value the same placeholder wherever it appears in the call, and the map from
//! placeholders back to values lives in this value only — dropped with the call, never
//! stored, logged or shared between calls.
//!
//! Placeholders the request already contains (a user who typed `<EMAIL_1>`) are noted first
//! and never handed out, so restoring cannot turn the user's own text into someone's address.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::{Finder, Kind, Level};
use crate::error::{Error, Result};

/// Most distinct values one call may withhold. Past it the call is refused rather than sent
/// with the rest in the clear (a 1 MB prompt of addresses holds ~40,000).
pub const MAX_VALUES: usize = 100_000;

/// A placeholder as a model may echo it: any case.
pub(super) static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<([A-Za-z]{2,7})_(\d{1,6})>")
        .unwrap_or_else(|e| unreachable!("built-in pattern: {e}"))
});

pub struct Withholding {
    finder: Finder,
    level: Level,
    /// (kind, the value as compared) -> the placeholder's label (`EMAIL_1`).
    labels: HashMap<(Kind, String), String>,
    /// Label -> the value as first written.
    values: HashMap<String, String>,
    next: HashMap<Kind, u32>,
    /// Labels the request itself contains, upper-cased: never handed out.
    taken: HashSet<String>,
    /// Occurrences withheld per kind, for the audit entry.
    counts: BTreeMap<Kind, usize>,
}

impl fmt::Debug for Withholding {
    /// Counts only: the values are the person's data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Withholding")
            .field("level", &self.level)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// How a value is compared: the same card with or without spaces, the same address in any
/// case, is one value and one placeholder.
fn compared(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Card | Kind::Phone | Kind::Iban | Kind::Ssn | Kind::Nino => value
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        Kind::Email | Kind::Person => value.to_lowercase(),
        _ => value.to_string(),
    }
}

impl Withholding {
    pub fn new(finder: Finder, level: Level) -> Withholding {
        Withholding {
            finder,
            level,
            labels: HashMap::new(),
            values: HashMap::new(),
            next: HashMap::new(),
            taken: HashSet::new(),
            counts: BTreeMap::new(),
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Notes the placeholder-like text in one part of the request. Every part is noted before
    /// any is withheld.
    pub fn note(&mut self, text: &str) {
        for c in PLACEHOLDER.captures_iter(text) {
            if let Some(m) = c.get(0) {
                let label = &m.as_str()[1..m.as_str().len() - 1];
                self.taken.insert(label.to_ascii_uppercase());
            }
        }
    }

    /// `text` with every value found replaced by its placeholder.
    pub fn withhold<'t>(&mut self, text: &'t str) -> Result<Cow<'t, str>> {
        self.replace(text, true)
    }

    /// The same for a second copy of text already withheld (a message's joined text beside
    /// its parts): the same placeholders, not counted twice.
    pub fn withhold_copy<'t>(&mut self, text: &'t str) -> Result<Cow<'t, str>> {
        self.replace(text, false)
    }

    fn replace<'t>(&mut self, text: &'t str, count: bool) -> Result<Cow<'t, str>> {
        let found = self.finder.find(text, self.level);
        if found.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.range.start]);
            let value = &text[f.range.clone()];
            let label = self.label(f.kind, value)?;
            out.push('<');
            out.push_str(&label);
            out.push('>');
            if count {
                *self.counts.entry(f.kind).or_default() += 1;
            }
            at = f.range.end;
        }
        out.push_str(&text[at..]);
        Ok(Cow::Owned(out))
    }

    fn label(&mut self, kind: Kind, value: &str) -> Result<String> {
        let key = (kind, compared(kind, value));
        if let Some(label) = self.labels.get(&key) {
            return Ok(label.clone());
        }
        if self.values.len() >= MAX_VALUES {
            return Err(Error::TooLarge(format!(
                "the request holds more than {MAX_VALUES} distinct personal values to withhold \
                 from the cloud; send less at once"
            )));
        }
        let n = self.next.entry(kind).or_insert(0);
        let label = loop {
            *n += 1;
            let label = format!("{kind}_{n}");
            if !self.taken.contains(&label) {
                break label;
            }
        };
        self.labels.insert(key, label.clone());
        self.values.insert(label.clone(), value.to_string());
        Ok(label)
    }

    /// Whether anything was withheld.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Occurrences withheld per kind (never the values), for the audit entry.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.counts.iter().map(|(k, n)| (k.as_str(), *n)).collect()
    }

    /// The value a placeholder stands for, in any case; `None` for one this call did not hand
    /// out (the user's own `<EMAIL_1>`, or a model's invention).
    pub fn value(&self, label: &str) -> Option<&str> {
        // A label the request held is never handed out, so it is never among the values.
        self.values
            .get(&label.to_ascii_uppercase())
            .map(String::as_str)
    }

    /// `text` with this call's placeholders put back.
    pub fn restore<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.restore_with(text, |v, out| out.push_str(v))
    }

    /// The same for JSON text (a function call's arguments): each value escaped as a JSON
    /// string's content, since that is where a model writes a placeholder.
    pub fn restore_json<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.restore_with(text, |v, out| {
            let quoted = serde_json::Value::String(v.to_string()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        })
    }

    fn restore_with<'t>(&self, text: &'t str, put: impl Fn(&str, &mut String)) -> Cow<'t, str> {
        if self.values.is_empty() || !text.contains('<') {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for m in PLACEHOLDER.find_iter(text) {
            let label = &m.as_str()[1..m.as_str().len() - 1];
            if let Some(value) = self.value(label) {
                out.push_str(&text[at..m.start()]);
                put(value, &mut out);
                at = m.end();
            }
        }
        if at == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withholding() -> Withholding {
        Withholding::new(Finder::patterns(), Level::Standard)
    }

    #[test]
    fn one_value_one_placeholder_and_back() {
        let mut w = withholding();
        let text = "Write to ann@example.com, cc bob@example.com, then ANN@example.com again.";
        let out = w.withhold(text).unwrap().into_owned();
        assert_eq!(
            out,
            "Write to <EMAIL_1>, cc <EMAIL_2>, then <EMAIL_1> again."
        );
        assert_eq!(w.counts(), BTreeMap::from([("EMAIL", 3)]));
        assert_eq!(
            w.restore("Sent to <email_2> and <EMAIL_1>."),
            "Sent to bob@example.com and ann@example.com."
        );
        assert!(!format!("{w:?}").contains("example"));
        // A second copy of text already withheld gets the same placeholders, uncounted.
        assert_eq!(w.withhold_copy("bob@example.com").unwrap(), "<EMAIL_2>");
        assert_eq!(w.counts(), BTreeMap::from([("EMAIL", 3)]));
    }

    #[test]
    fn a_placeholder_the_user_typed_is_never_handed_out_or_restored() {
        let mut w = withholding();
        let text = "My template says <EMAIL_1>; my address is ann@example.com";
        w.note(text);
        let out = w.withhold(text).unwrap().into_owned();
        assert_eq!(out, "My template says <EMAIL_1>; my address is <EMAIL_2>");
        assert_eq!(
            w.restore("<EMAIL_1> and <EMAIL_2> and <EMAIL_3>"),
            "<EMAIL_1> and ann@example.com and <EMAIL_3>"
        );
    }

    #[test]
    fn json_arguments_get_escaped_values() {
        let mut w = Withholding::new(
            Finder::new(
                super::super::Literals::names(&["Zoë \"Z\" Quinn"]),
                super::super::Literals::empty(Kind::Secret),
            ),
            Level::Standard,
        );
        w.withhold("ask Zoë \"Z\" Quinn").unwrap();
        assert_eq!(
            w.restore_json(r#"{"to":"<PERSON_1>"}"#),
            r#"{"to":"Zoë \"Z\" Quinn"}"#
        );
    }
}
