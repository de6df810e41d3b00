//! Data minimisation before storage (SPEC §2.5): secrets in messages become
//! `[REDACTED:<kind>]`, and a surface's file contents are dropped, keeping only the file path.
//!
//! Redaction runs on what is *stored*; the model still sees the message as the user wrote it.
//! Patterns are deliberately broad: a false positive costs a few stored characters, a false
//! negative leaves a credential in a database file.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde_json::{Map, Value};

struct Pattern {
    kind: &'static str,
    re: Regex,
    /// Capture group kept in front of the marker (e.g. `password=`), or 0 for none.
    keep: usize,
    /// Text the match consumed after the secret that goes back after the marker.
    suffix: &'static str,
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |kind, re: &str, keep| Pattern {
        kind,
        re: Regex::new(re).unwrap_or_else(|e| unreachable!("built-in pattern {kind}: {e}")),
        keep,
        suffix: if kind == "password" { "@" } else { "" },
    };
    vec![
        p(
            "private_key",
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            0,
        ),
        p("anthropic_key", r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{16,}", 0),
        p(
            "openai_key",
            r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
            0,
        ),
        p(
            "aws_access_key",
            r"(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
            0,
        ),
        p(
            "github_token",
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
            0,
        ),
        p("slack_token", r"(?-u:\b)xox[abeprs]-[A-Za-z0-9\-]{10,}", 0),
        p("google_api_key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}", 0),
        p(
            "stripe_key",
            r"(?-u:\b)[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}",
            0,
        ),
        p(
            "fernet_token",
            r"(?-u:\b)gAAAAA[A-Za-z0-9_\-]{40,}={0,2}",
            0,
        ),
        p(
            "jwt",
            r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            0,
        ),
        p(
            "password",
            r"(?-u:\b)([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@",
            1,
        ),
        p(
            "bearer_token",
            r"(?i)((?-u:\b)bearer\s+)[A-Za-z0-9._~+/\-]{12,}=*",
            1,
        ),
        p(
            "credential",
            r#"(?i)((?-u:\b)(?:password|passwd|pwd|secret|client_secret|api[_\-]?key|access[_\-]?token|refresh[_\-]?token|auth[_\-]?token)(?-u:\b)["']?\s*[:=]\s*["']?)[^\s"',;]{4,}"#,
            1,
        ),
    ]
});

/// All the patterns in one automaton: which of them match at all, in one pass over the text
/// (most texts hold no secret, and then no pattern runs on its own).
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(PATTERNS.iter().map(|p| p.re.as_str()))
        .unwrap_or_else(|e| unreachable!("built-in patterns: {e}"))
});

/// The text with every recognised secret replaced by `[REDACTED:<kind>]`.
/// NUL characters are dropped too: PostgreSQL text cannot hold them, and both stores must
/// accept the same input.
pub fn redact(text: &str) -> String {
    let mut out = text.replace('\0', "");
    let present = ANY.matches(&out);
    if !present.matched_any() {
        return out;
    }
    for (i, p) in PATTERNS.iter().enumerate() {
        // A pattern that matched before an earlier one replaced text may match no more.
        if !present.matched(i) || !p.re.is_match(&out) {
            continue;
        }
        let marker = format!("[REDACTED:{}]", p.kind);
        out =
            p.re.replace_all(&out, |c: &regex::Captures<'_>| {
                let kept = if p.keep > 0 {
                    c.get(p.keep).map_or("", |m| m.as_str())
                } else {
                    ""
                };
                format!("{kept}{marker}{}", p.suffix)
            })
            .into_owned();
    }
    out
}

/// Where each recognised secret lies in `text` (byte ranges, the secret alone: a kept prefix
/// such as `password=` is not part of it). What minimisation withholds from a cloud call
/// (`crate::minimise`), from the same patterns as [`redact`] so the two never disagree on
/// what a secret is.
pub fn secret_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    for i in ANY.matches(text).iter() {
        let p = &PATTERNS[i];
        for c in p.re.captures_iter(text) {
            let Some(whole) = c.get(0) else { continue };
            let start = match p.keep {
                0 => whole.start(),
                k => c.get(k).map_or(whole.start(), |m| m.end()),
            };
            let end = whole.end() - p.suffix.len();
            if start < end {
                spans.push(start..end);
            }
        }
    }
    spans
}

/// Keys of a surface context that may be stored: references, never contents.
const KEPT_CONTEXT_KEYS: &[&str] = &[
    "file_path",
    "path",
    "language",
    "url",
    "title",
    "app",
    "line",
    "column",
];

/// What of a surface's context is stored: only reference-like keys, each redacted; file
/// contents, selections and anything unrecognised are dropped.
pub fn minimise_context(context: &Value) -> Option<Value> {
    let obj = context.as_object()?;
    let kept: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| KEPT_CONTEXT_KEYS.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), Value::String(redact(s)))),
            Value::Number(_) | Value::Bool(_) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_with_their_kind() {
        let cases = [
            ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "openai_key"),
            ("sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic_key"),
            ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github_token"),
            ("xoxb-1234567890-abcdefghij", "slack_token"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "private_key",
            ),
            ("postgres://bob:hunter2@db.local/x", "password"),
            ("Authorization: Bearer abcdef0123456789xyz", "bearer_token"),
            ("my password: hunter2hunter2", "credential"),
            ("api_key=\"0123456789abcdef\"", "credential"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
            ),
        ];
        for (text, kind) in cases {
            let out = redact(text);
            assert!(
                out.contains(&format!("[REDACTED:{kind}]")),
                "{text} -> {out}"
            );
        }
        assert_eq!(
            redact("postgres://bob:hunter2@db.local/x"),
            "postgres://bob:[REDACTED:password]@db.local/x"
        );
        assert!(!redact("my password: hunter2hunter2").contains("hunter2"));
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "Play some jazz on the kitchen Sonos and dim the lights to 30%. \
                    See https://example.com/docs?page=2 and ask-me-later.";
        assert_eq!(redact(text), text);
    }

    #[test]
    fn file_contents_are_dropped_paths_kept() {
        let ctx = serde_json::json!({
            "file_path": "/home/me/notes.md",
            "file_content": "TOP SECRET PLANS",
            "selection": "more text",
            "line": 12
        });
        let kept = minimise_context(&ctx).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"file_path": "/home/me/notes.md", "line": 12})
        );
        assert!(minimise_context(&serde_json::json!({"content": "x"})).is_none());
    }
}
