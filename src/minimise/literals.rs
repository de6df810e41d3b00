//! Values known in advance: the person's names (`maestra privacy names`) and the vault's
//! secrets. One Aho-Corasick automaton per list finds them all in one pass, whatever the list's
//! length.

use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::Kind;

/// Shortest secret looked for: a shorter vault value (a PIN, a port) would match ordinary
/// text and withhold it for nothing.
pub const MIN_SECRET_LEN: usize = 8;
/// Shortest name looked for ("Al" would match every "al" word).
pub const MIN_NAME_LEN: usize = 2;

/// A list of literal values of one kind, matched as whole words.
#[derive(Clone)]
pub struct Literals {
    kind: Kind,
    matcher: Option<AhoCorasick>,
    count: usize,
}

impl fmt::Debug for Literals {
    /// Counts only: the values are names and secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Literals({}, {} values)", self.kind, self.count)
    }
}

impl Literals {
    pub fn empty(kind: Kind) -> Literals {
        Literals {
            kind,
            matcher: None,
            count: 0,
        }
    }

    /// Names, matched whatever their case ("alice" is Alice).
    pub fn names<S: AsRef<str>>(names: &[S]) -> Literals {
        Literals::build(Kind::Person, names, MIN_NAME_LEN, true)
    }

    /// Secrets, matched exactly.
    pub fn secrets<S: AsRef<str>>(secrets: &[S]) -> Literals {
        Literals::build(Kind::Secret, secrets, MIN_SECRET_LEN, false)
    }

    fn build<S: AsRef<str>>(kind: Kind, values: &[S], min: usize, fold: bool) -> Literals {
        let kept: Vec<&str> = values
            .iter()
            .map(|v| v.as_ref().trim())
            .filter(|v| v.chars().count() >= min)
            .collect();
        if kept.is_empty() {
            return Literals::empty(kind);
        }
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(fold)
            .build(&kept)
            .ok();
        Literals {
            kind,
            count: if matcher.is_some() { kept.len() } else { 0 },
            matcher,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every whole-word occurrence in `text`, as byte ranges.
    pub fn find(&self, text: &str, out: &mut Vec<super::Found>) {
        let Some(m) = &self.matcher else { return };
        for hit in m.find_iter(text) {
            let (start, end) = (hit.start(), hit.end());
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            // A secret is withheld wherever it appears; a name only as a word of its own
            // ("Ann" in "Annual" is not Ann).
            let word = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
            if self.kind == Kind::Secret || (word(before) && word(after)) {
                out.push(super::Found {
                    range: start..end,
                    kind: self.kind,
                    sure: true,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_words_in_any_case() {
        let l = Literals::names(&["Ann Lee", "Bo"]);
        let mut out = Vec::new();
        l.find("ann lee met Annual Bo, bo!", &mut out);
        let found: Vec<_> = out.iter().map(|f| f.range.clone()).collect();
        assert_eq!(found, [0..7, 19..21, 23..25]);
        assert_eq!(format!("{l:?}"), "Literals(PERSON, 2 values)");
    }

    #[test]
    fn short_secrets_are_not_looked_for() {
        let l = Literals::secrets(&["1234", "s3cr3t-v4lue"]);
        let mut out = Vec::new();
        l.find("pin 1234 key xs3cr3t-v4luex", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].range, 14..26);
    }
}
