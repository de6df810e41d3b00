//! Where personal data lies in a text. A pattern proposes, a validator decides
//! (`super::checks`): at `standard` only what passes is withheld, at `strict` also what only
//! looks like it. Overlapping finds are settled by a fixed order of kinds (a URL that holds a
//! password is withheld whole; a name inside an e-mail address is the address).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::checks::{self, Phone};
use super::windows;
use super::{Kind, Level, Literals};

/// One value found: where (bytes of the text) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub range: Range<usize>,
    pub kind: Kind,
    /// Passed its validator (or needs none): what `standard` withholds. A find that only
    /// looks like its kind (`strict`) gives way to one that passed where the two overlap.
    pub sure: bool,
}

/// The patterns, the person's names and the vault's secrets: everything a call's text is
/// searched for. Cheap to clone (the automata are shared).
#[derive(Debug, Clone)]
pub struct Finder {
    names: Literals,
    secrets: Literals,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("built-in pattern {pattern}: {e}"))
}

/// Any letters (an internationalised address: `jürgen@bücher.example`), and no word boundary
/// around it: a match is the leftmost, so the local part runs from the first character that
/// may begin it, where a boundary would cut an address that starts with a letter outside ASCII.
/// No bound on a label's length: a bounded repetition of these classes makes the automaton
/// hundreds of times larger (measured: 77 µs against 0.2 µs a pass over 2 kB), and a label
/// too long for DNS is withheld all the same.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"[\p{L}\p{M}\p{N}._%+'\-]+@[\p{L}\p{M}\p{N}\-]+(?:\.[\p{L}\p{M}\p{N}\-]+)*\.\p{L}{2,24}")
});
static URL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)(?-u:\b)(?:(?:https?|ftps?|sftp|ssh|wss?|postgres(?:ql)?|mysql|redis|rediss|mongodb(?:\+srv)?|amqps?)://|www\.)[^\s<>"'`]+"#,
    )
});
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"(?-u:\b)(?:[0-9][ \-]?){11,18}[0-9](?-u:\b)"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)[0-9]{3}([\- ]?)[0-9]{2}[\- ]?[0-9]{4}(?-u:\b)"));
static NINO: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)([A-Z]{2}) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?-u:\b)"));
/// A phone-shaped run: an optional `+` or opening bracket, digits with the separators people
/// write numbers with, an optional extension.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+\(?|\(|(?-u:\b))[0-9][0-9 \-.()/]{4,22}[0-9](?:\s*(?:x|ext\.?|extension)\s*[0-9]{1,6})?(?-u:\b)",
    )
});
/// What a phone-shaped run may really be: a date (`4/18/1960`, `2010-04-22`) or a decimal.
static NOT_PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}$|(?-u:\b)[0-9]{4}-[0-9]{2}-[0-9]{2}(?-u:\b)|^[0-9]+\.[0-9]+$|^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}$",
    )
});
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?")
});
/// A street address as US and UK letters write it: a house number, up to four capitalised
/// words and a street type, then optionally a unit, a town, and a state and ZIP code.
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?-u:\b)[0-9]{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z'.\-]*\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|Terrace|Way|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Trail|Trl|Crescent|Close|Gardens|Plaza|Ridge|Run|Path|Row|Walk|Hill|Park|Point|Port|Pass|Loop|Alley|Mews|Green|Grove|View|Heights|Falls|Crossing|Junction|Mall|Mill|Springs?|Valley|Village|Ville|Via|Meadows?|Oval|Estates?|Fields?|Flats?|Forest|Harbor|Haven|Island|Isle|Knolls?|Lakes?|Landing|Manor|Mount|Orchard|Pines|Rest|Shores?|Station|Summit|Track|Turnpike|Underpass|Vista)(?-u:\b)\.?(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[A-Za-z0-9\-]+)?(?:,?\s+[A-Z][A-Za-z.'\-]*(?:\s[A-Z][A-Za-z.'\-]*){0,3},\s*[A-Z]{2}\s+[0-9]{5}(?:-[0-9]{4})?)?",
    )
});

/// Query parameters whose values are credentials: a URL carrying one is withheld whole.
const TOKEN_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "pass",
    "pwd",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "auth",
    "code",
    "session",
    "sessionid",
];

/// Which kind wins where two finds overlap: earlier in this list. Within one kind, the
/// longer find.
fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Url => 0,
        Kind::Secret => 1,
        Kind::Email => 2,
        Kind::Iban => 3,
        Kind::Card => 4,
        Kind::Ssn => 5,
        Kind::Nino => 6,
        Kind::Ip => 7,
        Kind::Phone => 8,
        Kind::Person => 9,
        Kind::Address => 10,
    }
}

impl Finder {
    pub fn new(names: Literals, secrets: Literals) -> Finder {
        Finder { names, secrets }
    }

    /// Patterns only: no names, no vault secrets.
    pub fn patterns() -> Finder {
        Finder::new(Literals::empty(Kind::Person), Literals::empty(Kind::Secret))
    }

    /// What `level` withholds in `text`, in order, none overlapping.
    pub fn find(&self, text: &str, level: Level) -> Vec<Found> {
        let mut all = Vec::new();
        for range in crate::conversations::redact::secret_spans(text) {
            all.push(Found {
                range,
                kind: Kind::Secret,
                sure: true,
            });
        }
        self.secrets.find(text, &mut all);
        if level >= Level::Standard {
            self.names.find(text, &mut all);
            patterns(text, level, &mut all);
        }
        settle(all)
    }
}

fn push(out: &mut Vec<Found>, range: Range<usize>, kind: Kind) {
    out.push(Found {
        range,
        kind,
        sure: true,
    });
}

/// A find that only looks like its kind (`strict`).
fn push_unsure(out: &mut Vec<Found>, range: Range<usize>, kind: Kind) {
    out.push(Found {
        range,
        kind,
        sure: false,
    });
}

fn patterns(text: &str, level: Level, out: &mut Vec<Found>) {
    let strict = level >= Level::Strict;
    // Each pattern is a pass over the text (a few microseconds per 2 kB), so each runs only
    // where it can match (`windows`): most of a person's message is prose.
    let bytes = text.as_bytes();
    if bytes.contains(&b'@') {
        for m in EMAIL.find_iter(text) {
            push(out, m.range(), Kind::Email);
        }
    }
    for window in windows::around_links(text) {
        urls(text, window, strict, out);
    }
    let digits = windows::around_digits(bytes);
    for window in &digits {
        numbers(text, window.clone(), strict, out);
    }
    // A street address runs from its house number through words, a town and a state to its
    // ZIP code, further than a number's stretch: searched in the whole text, and only one
    // that holds a digit (the pattern skips ahead to its street names quickly).
    if !digits.is_empty() {
        for m in ADDRESS.find_iter(text) {
            push(out, m.range(), Kind::Address);
        }
    }
    for window in windows::around_colon_pairs(bytes) {
        for m in IPV6.find_iter(&text[window.clone()]) {
            let s = m.as_str();
            let groups = s.split(':').filter(|g| !g.is_empty()).count();
            if groups >= 2 && s.parse::<Ipv6Addr>().is_ok() {
                push(
                    out,
                    m.start() + window.start..m.end() + window.start,
                    Kind::Ip,
                );
            }
        }
    }
}

fn urls(whole: &str, window: Range<usize>, strict: bool, out: &mut Vec<Found>) {
    let at = window.start;
    for m in URL.find_iter(&whole[window]) {
        let trimmed = m
            .as_str()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
        if strict || url_carries_credentials(trimmed) {
            push(
                out,
                at + m.start()..at + m.start() + trimmed.len(),
                Kind::Url,
            );
        }
    }
}

/// The kinds made of digits, in `window` of the text: cards, IBANs, national numbers, IPv4
/// addresses, phone numbers.
fn numbers(whole: &str, window: Range<usize>, strict: bool, out: &mut Vec<Found>) {
    let at = window.start;
    let text = &whole[window];
    let shift = |r: Range<usize>| r.start + at..r.end + at;
    for m in CARD.find_iter(text) {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        if checks::card(&digits) {
            push(out, shift(m.range()), Kind::Card);
        } else if strict && (12..=19).contains(&digits.len()) {
            push_unsure(out, shift(m.range()), Kind::Card);
        }
    }
    for m in IBAN.find_iter(text) {
        if let Some(range) = iban(text, m.range()) {
            push(out, shift(range), Kind::Iban);
        } else if strict {
            push_unsure(out, shift(m.range()), Kind::Iban);
        }
    }
    for c in SSN.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        // The separated form is an SSN's own; nine bare digits are anything at `standard`.
        let separated = c.get(1).is_some_and(|s| !s.is_empty());
        if separated && checks::ssn(&digits) {
            push(out, shift(m.range()), Kind::Ssn);
        } else if strict && digits.len() == 9 {
            push_unsure(out, shift(m.range()), Kind::Ssn);
        }
    }
    for c in NINO.captures_iter(text) {
        let (Some(m), Some(prefix)) = (c.get(0), c.get(1)) else {
            continue;
        };
        if checks::nino_prefix(&prefix.as_str().to_ascii_uppercase()) {
            push(out, shift(m.range()), Kind::Nino);
        } else if strict {
            push_unsure(out, shift(m.range()), Kind::Nino);
        }
    }
    for m in IPV4.find_iter(text) {
        if m.as_str().parse::<Ipv4Addr>().is_ok() {
            push(out, shift(m.range()), Kind::Ip);
        }
    }
    // Last of the numbers, and only where no other kind already holds the digits: a phone
    // number's check is the costliest one (a parse per country), and an address, card or
    // IBAN would win the overlap anyway.
    let taken = Taken::of(out);
    for m in PHONE.find_iter(text) {
        if !taken.overlaps(&shift(m.range())) {
            phone(m.as_str(), m.start() + at, strict, out);
        }
    }
}

/// The ranges of the finds so far, to look an overlap up in.
struct Taken(BTreeMap<usize, usize>);

impl Taken {
    /// The sure finds: an unsure one does not keep a phone number from being checked.
    fn of(found: &[Found]) -> Taken {
        Taken(
            found
                .iter()
                .filter(|f| f.sure)
                .map(|f| (f.range.start, f.range.end))
                .collect(),
        )
    }

    fn overlaps(&self, r: &Range<usize>) -> bool {
        self.0
            .range(..r.end)
            .next_back()
            .is_some_and(|(_, end)| *end > r.start)
    }
}

/// A phone candidate at `start`: trimmed of the brackets and dots a sentence puts around it.
fn phone(candidate: &str, start: usize, strict: bool, out: &mut Vec<Found>) {
    let trimmed = candidate.trim_end_matches(['.', ')', ' ', '-', '/']);
    let lead = trimmed.len() - trimmed.trim_start_matches(['(', ' ']).len();
    // "(555) 123" keeps its opening bracket; a stray one before a bare number does not.
    let (from, body) = if trimmed[lead..].contains(')') {
        (0, trimmed)
    } else {
        (lead, &trimmed[lead..])
    };
    if NOT_PHONE.is_match(body) {
        return;
    }
    let digits = body.chars().filter(char::is_ascii_digit).count();
    // A bare run of digits is a phone number only where a plan assigns it; a written one
    // (separators, a `+`) also where it is only possible: made-up numbers are still
    // someone's to the reader, and a false find costs a placeholder, not a leak. Six digits
    // only when written (`87 47 98`, a local number in several plans).
    let written = body.starts_with('+') || body.contains([' ', '-', '.', '(', '/']);
    let least = if written { 6 } else { 7 };
    if !(least..=15).contains(&digits) && !body.contains('x') && !body.contains("ext") {
        return;
    }
    // A written number needs only to be possible somewhere: the first plan that parses it
    // settles it, where a bare one is tried against every plan for one that assigns it.
    let sure = match checks::phone(body, written || strict) {
        Phone::Valid => Some(true),
        Phone::Possible if written => Some(true),
        Phone::Possible if strict => Some(false),
        Phone::No if strict && written && (10..=15).contains(&digits) => Some(false),
        _ => None,
    };
    let range = start + from..start + from + body.len();
    match sure {
        Some(true) => push(out, range, Kind::Phone),
        Some(false) => push_unsure(out, range, Kind::Phone),
        None => {}
    }
}

/// The IBAN a candidate begins with: the longest prefix whose check digits hold (a pattern
/// alone runs on into the next capitalised word).
fn iban(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let candidate = &text[range.clone()];
    let chars: Vec<(usize, char)> = candidate
        .char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .collect();
    let compact: String = chars.iter().map(|(_, c)| *c).collect();
    (15..=compact.len().min(34))
        .rev()
        .find(|&len| checks::iban(&compact[..len]))
        .map(|len| range.start..range.start + chars[len - 1].0 + 1)
}

/// A URL that would hand its reader a way in: a user name or password, or a query parameter
/// that holds a token.
fn url_carries_credentials(text: &str) -> bool {
    // A user or password comes before an `@`, parameters after a `?`: a link with neither has
    // nothing to look for, and most links have neither (parsing one costs more than finding it).
    if !text.contains(['@', '?']) {
        return false;
    }
    let with_scheme = if text.len() >= 4 && text[..4].eq_ignore_ascii_case("www.") {
        format!("https://{text}")
    } else {
        text.to_string()
    };
    let Ok(url) = url::Url::parse(&with_scheme) else {
        return false;
    };
    !url.username().is_empty()
        || url.password().is_some()
        || url.query_pairs().any(|(k, v)| {
            !v.is_empty()
                && TOKEN_PARAMS
                    .iter()
                    .any(|p| k.eq_ignore_ascii_case(p) || k.to_ascii_lowercase().ends_with("token"))
        })
}

/// The finds with overlaps settled: the sure before the unsure, then by [`rank`], then the
/// longer, then the earlier.
fn settle(mut all: Vec<Found>) -> Vec<Found> {
    all.sort_by_key(|f| {
        (
            !f.sure,
            rank(f.kind),
            usize::MAX - f.range.len(),
            f.range.start,
        )
    });
    let mut kept: BTreeMap<usize, Found> = BTreeMap::new();
    for f in all {
        let before = kept.range(..f.range.end).next_back();
        if before.is_some_and(|(_, k)| k.range.end > f.range.start) {
            continue;
        }
        kept.insert(f.range.start, f);
    }
    kept.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, level: Level) -> Vec<(Kind, &str)> {
        Finder::patterns()
            .find(text, level)
            .into_iter()
            .map(|f| (f.kind, &text[f.range]))
            .collect()
    }

    #[test]
    fn each_kind_is_found_with_its_validator() {
        let text = "Mail ann.lee+x@example.co.uk, card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00 Thanks, SSN 078-05-1120, NINO AB 12 34 56 C, \
                    call +44 20 7946 0018, host 192.168.1.20 or fe80::1:2, \
                    https://bob:hunter22@example.com/x and https://example.com/?token=abc.";
        assert_eq!(
            kinds(text, Level::Standard),
            [
                (Kind::Email, "ann.lee+x@example.co.uk"),
                (Kind::Card, "4111 1111 1111 1111"),
                (Kind::Iban, "DE89 3704 0044 0532 0130 00"),
                (Kind::Ssn, "078-05-1120"),
                (Kind::Nino, "AB 12 34 56 C"),
                (Kind::Phone, "+44 20 7946 0018"),
                (Kind::Ip, "192.168.1.20"),
                (Kind::Ip, "fe80::1:2"),
                (Kind::Url, "https://bob:hunter22@example.com/x"),
                (Kind::Url, "https://example.com/?token=abc"),
            ]
        );
    }

    /// A character outside ASCII anywhere in the text changes nothing found (the patterns'
    /// word boundaries are ASCII ones, so the fast engine runs to the end of such a text), and
    /// an address of letters outside ASCII is withheld whole.
    #[test]
    fn text_outside_ascii_is_searched_alike() {
        let text = "Zoë’s card: 4111 1111 1111 1111 — écrire à über@bücher.example \
                    ou jürgen.müller@example.de, “IBAN” DE89 3704 0044 0532 0130 00.";
        assert_eq!(
            kinds(text, Level::Standard),
            [
                (Kind::Card, "4111 1111 1111 1111"),
                (Kind::Email, "über@bücher.example"),
                (Kind::Email, "jürgen.müller@example.de"),
                (Kind::Iban, "DE89 3704 0044 0532 0130 00"),
            ]
        );
    }

    #[test]
    fn what_fails_its_validator_is_withheld_only_when_strict() {
        let text = "order 4111 1111 1111 1112, SSN 666051120, see https://example.com/a";
        let standard: Vec<Kind> = kinds(text, Level::Standard)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert!(
            !standard
                .iter()
                .any(|k| matches!(k, Kind::Card | Kind::Ssn | Kind::Url)),
            "{standard:?}"
        );
        let strict: Vec<Kind> = kinds(text, Level::Strict)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(strict, [Kind::Card, Kind::Ssn, Kind::Url]);
    }

    #[test]
    fn what_passed_its_check_wins_over_what_only_looks_like_another_kind() {
        // Twelve digits are card-shaped to `strict`, but the phone number's plan holds.
        let text = "call +44 20 7946 0018";
        assert_eq!(
            kinds(text, Level::Strict),
            [(Kind::Phone, "+44 20 7946 0018")]
        );
    }

    #[test]
    fn values_far_apart_in_prose_are_all_found() {
        let prose = "word ".repeat(100);
        let text = format!(
            "a1 {prose}card 4111 1111 1111 1111 {prose}at https://u:p@x.test/ {prose}\
             host fe80::1 {prose}12 Baker Street, London, NW 12345"
        );
        assert_eq!(
            kinds(&text, Level::Standard),
            [
                (Kind::Card, "4111 1111 1111 1111"),
                (Kind::Url, "https://u:p@x.test/"),
                (Kind::Ip, "fe80::1"),
                (Kind::Address, "12 Baker Street, London, NW 12345"),
            ]
        );
    }

    #[test]
    fn off_withholds_secrets_only() {
        let text = "ann@example.com key sk-proj-abcdefghijklmnopqrstuvwxyz0123";
        assert_eq!(
            kinds(text, Level::Off),
            [(Kind::Secret, "sk-proj-abcdefghijklmnopqrstuvwxyz0123")]
        );
    }

    #[test]
    fn addresses_names_and_vault_secrets() {
        let finder = Finder::new(
            Literals::names(&["Ann Lee"]),
            Literals::secrets(&["vault-value-42"]),
        );
        let text = "ann lee lives at 221 Baker Street, London; token vault-value-42";
        let found: Vec<(Kind, &str)> = finder
            .find(text, Level::Standard)
            .into_iter()
            .map(|f| (f.kind, &text[f.range]))
            .collect();
        assert_eq!(
            found,
            [
                (Kind::Person, "ann lee"),
                (Kind::Address, "221 Baker Street"),
                (Kind::Secret, "vault-value-42"),
            ]
        );
    }
}
