//! The stretches of a text where a pattern can match, found by a cheap scan, so that each
//! pattern runs over them instead of the whole text: a pattern's pass costs a few microseconds
//! per 2 kB, and most of what a person writes is prose between the values.
//!
//! Each stretch is widened to the whitespace around it. None of the windowed patterns matches
//! whitespace at its ends, so cut there a stretch gives a pattern the same word boundaries and
//! the same leftmost match as the whole text.

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// How far from a digit a find holding it may reach: an IBAN's country letters and bank code,
/// a NINO's prefix and suffix letter, a phone number's extension. Digits closer than twice
/// this share a stretch, so a card or an IBAN written in groups is searched whole. (An
/// extension written more than this many spaces after its number is not part of the find.)
pub const NEAR_DIGIT: usize = 16;

/// What a link starts with, in any case: a scheme's `://`, or `www.`.
static LINK: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["://", "www."])
        .unwrap_or_else(|e| unreachable!("built-in literals: {e}"))
});

/// Around the digits: where cards, IBANs, national numbers, IPv4 addresses and phone numbers
/// can be.
pub fn around_digits(bytes: &[u8]) -> Vec<Range<usize>> {
    // Digits closer than twice the reach share a span: one span per cluster, not per digit.
    let mut spans = Vec::new();
    let mut cluster: Option<(usize, usize)> = None;
    for (i, b) in bytes.iter().enumerate() {
        if !b.is_ascii_digit() {
            continue;
        }
        cluster = match cluster {
            Some((first, last)) if i - last <= 2 * NEAR_DIGIT => Some((first, i)),
            Some((first, last)) => {
                spans.push(first.saturating_sub(NEAR_DIGIT)..last + NEAR_DIGIT + 1);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((first, last)) = cluster {
        spans.push(first.saturating_sub(NEAR_DIGIT)..last + NEAR_DIGIT + 1);
    }
    widened(bytes, spans)
}

/// Around each `://` and `www.`: the words that hold links.
pub fn around_links(text: &str) -> Vec<Range<usize>> {
    widened(text.as_bytes(), LINK.find_iter(text).map(|m| m.range()))
}

/// Around two colons at most five bytes apart: the words that may hold an IPv6 address
/// (`fe80::1`, `2001:db8:...`), not the colon after `Subject`.
pub fn around_colon_pairs(bytes: &[u8]) -> Vec<Range<usize>> {
    let pairs = memchr::memchr_iter(b':', bytes)
        .filter(|&i| bytes[i + 1..bytes.len().min(i + 6)].contains(&b':'))
        .map(|i| i..i + 1);
    widened(bytes, pairs)
}

/// `spans` (in order of their start) widened to the whitespace around them, overlapping ones
/// joined. Linear: a widening never scans back past the stretch before it, so a long text
/// without whitespace is scanned once, not once per span.
fn widened(bytes: &[u8], spans: impl IntoIterator<Item = Range<usize>>) -> Vec<Range<usize>> {
    let len = bytes.len();
    let mut out: Vec<Range<usize>> = Vec::new();
    for span in spans {
        let (mut start, mut end) = (span.start.min(len), span.end.min(len));
        while end < len && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        if let Some(last) = out.last_mut()
            && start <= last.end
        {
            last.end = last.end.max(end);
            continue;
        }
        let floor = out.last().map_or(0, |l| l.end);
        while start > floor && !bytes[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        out.push(start..end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'t>(text: &'t str, windows: &[Range<usize>]) -> Vec<&'t str> {
        windows.iter().map(|w| &text[w.clone()]).collect()
    }

    #[test]
    fn digits_far_apart_get_stretches_of_their_own_cut_at_whitespace() {
        let prose = "word ".repeat(20);
        let text = format!("a1b {prose}card 4111 1111 1111 1111 {prose}end");
        assert_eq!(
            texts(&text, &around_digits(text.as_bytes())),
            [
                "a1b word word word",
                "word word word card 4111 1111 1111 1111 word word word word"
            ]
        );
        assert!(around_digits(b"no digits here").is_empty());
    }

    #[test]
    fn links_and_colon_pairs() {
        let text = "Subject: see WWW.example.com/a and https://x.test/b?c=d, host fe80::1 at 10:30";
        assert_eq!(
            texts(text, &around_links(text)),
            ["WWW.example.com/a", "https://x.test/b?c=d,"]
        );
        assert_eq!(
            texts(text, &around_colon_pairs(text.as_bytes())),
            ["fe80::1"]
        );
    }

    #[test]
    fn a_long_word_is_one_stretch() {
        let text = "x".repeat(10_000) + &"1x".repeat(5_000) + &" word".repeat(10) + " 7";
        let w = around_digits(text.as_bytes());
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            (w[0].start, &text[w[1].clone()]),
            (0, "word word word word 7")
        );
    }
}
