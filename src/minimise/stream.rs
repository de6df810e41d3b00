//! Restoration over an answer that arrives in pieces. A model streams `<EMA`, `IL_1>` as two
//! deltas as readily as one: the tail of a piece that could still become a placeholder is held
//! back (at most [`MAX_HELD`] bytes) until the next piece settles it, so the client never
//! sees half a placeholder, nor a value half restored.

use std::sync::LazyLock;

use regex::Regex;

use super::Withholding;

/// The longest text that can still become a placeholder: `<`, a 7-letter kind, `_`, six
/// digits.
pub const MAX_HELD: usize = 15;

/// What a placeholder can begin with.
static OPEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^<[A-Za-z]{0,7}(?:_\d{0,6})?$")
        .unwrap_or_else(|e| unreachable!("built-in pattern: {e}"))
});

/// One stream of text (a choice's content, or one function call's arguments).
#[derive(Debug, Default)]
pub struct StreamRestorer {
    held: String,
    /// Values go back JSON-escaped (function-call arguments).
    json: bool,
}

impl StreamRestorer {
    pub fn new(json: bool) -> StreamRestorer {
        StreamRestorer {
            held: String::new(),
            json,
        }
    }

    /// What of `piece` (after what was held) can go to the client now, restored.
    pub fn push(&mut self, w: &Withholding, piece: &str) -> String {
        self.held.push_str(piece);
        let cut = match self.held.rfind('<') {
            Some(i) if OPEN.is_match(&self.held[i..]) => i,
            _ => self.held.len(),
        };
        let rest = self.held.split_off(cut);
        let ready = std::mem::replace(&mut self.held, rest);
        self.restore(w, &ready)
    }

    /// The rest, at the end of the stream: what was held was not a placeholder after all.
    pub fn finish(&mut self, w: &Withholding) -> String {
        let ready = std::mem::take(&mut self.held);
        self.restore(w, &ready)
    }

    fn restore(&self, w: &Withholding, text: &str) -> String {
        if self.json {
            w.restore_json(text).into_owned()
        } else {
            w.restore(text).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minimise::{Finder, Level};

    #[test]
    fn a_placeholder_split_anywhere_comes_out_whole() {
        let mut w = Withholding::new(Finder::patterns(), Level::Standard);
        let sent = w.withhold("mail ann@example.com now").unwrap().into_owned();
        assert_eq!(sent, "mail <EMAIL_1> now");
        let answer = "Wrote to <EMAIL_1>, not <EMAIL_9> or <b>.";
        for split in 0..answer.len() {
            for second in split..answer.len() {
                let mut r = StreamRestorer::new(false);
                let mut got = String::new();
                for piece in [&answer[..split], &answer[split..second], &answer[second..]] {
                    let out = r.push(&w, piece);
                    // Never a piece that ends in what could still be a placeholder.
                    let tail = out.rfind('<').map(|i| &out[i..]);
                    assert!(!tail.is_some_and(|t| OPEN.is_match(t)), "{out:?}");
                    got.push_str(&out);
                }
                got.push_str(&r.finish(&w));
                assert_eq!(got, "Wrote to ann@example.com, not <EMAIL_9> or <b>.");
            }
        }
    }
}
