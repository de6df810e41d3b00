//! Names as devices announce them are untrusted: anyone on the network can announce anything,
//! and a name reaches a terminal, the JSON, the page and the person's decisions.

/// The longest name kept, in characters: DNS-SD instance names are at most 63 bytes and UPnP
/// friendly names are meant to be shorter than 64 characters; a longer one is cut, not
/// believed.
pub const MAX_NAME_CHARS: usize = 64;

/// `raw` with control and format characters (terminal escapes, bidirectional overrides,
/// zero-width characters) and markup characters (`<`, `>`) removed, whitespace runs made one
/// space, trimmed, and cut to [`MAX_NAME_CHARS`]. A device name never needs any of them, and
/// without them no reader (a terminal, a log viewer, a page that forgot to escape) can take a
/// name for a command or markup.
pub fn clean_name(raw: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_format(c) || c == '<' || c == '>' {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out.chars()
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Unicode's invisible format characters a name could hide behind (Cf: zero-width,
/// bidirectional marks, overrides and isolates, the BOM, soft hyphen, tags).
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_format_and_markup_characters_go() {
        assert_eq!(
            clean_name("  Living\x1b[31m <b>Room</b>\u{202E}\r\n Hue "),
            "Living[31m bRoom/b Hue"
        );
        assert_eq!(clean_name("\u{0}\u{7f}"), "");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
        assert_eq!(clean_name("Küche 2"), "Küche 2");
    }
}
