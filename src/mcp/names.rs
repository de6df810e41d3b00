//! Tool names across servers: `SERVER__tool`, so two servers' tools of one name stay apart
//! and every call names the server it goes to.

use crate::config::mcp::SEPARATOR;

/// The longest tool name MCP allows (2025-11-25, "Tool names").
pub const MAX_TOOL_NAME: usize = 128;

pub fn join(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// The server and the tool a namespaced name stands for. The server's name has no
/// separator in it (the configuration refuses one), so the first separator ends it.
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once(SEPARATOR)
        .filter(|(s, t)| !s.is_empty() && !t.is_empty())
}

/// Whether a tool name is one MCP allows: 1-128 of letters, digits, `_`, `-` and `.`.
pub fn valid_tool(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_odd_ones_are_refused() {
        assert_eq!(join("git", "git_status"), "git__git_status");
        assert_eq!(split("git__git_status"), Some(("git", "git_status")));
        assert_eq!(split("git__a__b"), Some(("git", "a__b")));
        assert_eq!(split("__x"), None);
        assert_eq!(split("x__"), None);
        assert_eq!(split("plain"), None);
        assert!(valid_tool("a.b-c_d"));
        assert!(!valid_tool("a b"));
        assert!(!valid_tool(&"a".repeat(129)));
    }
}
