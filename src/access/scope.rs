//! What an API key may do (issue 15). A key belongs to a user (an admin key may belong to no
//! one) and carries one scope; every route names the scope it needs.

use serde::Serialize;

/// A key's scope, from least to most: each one can do everything the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Read-only views of the key's user's own data and spend.
    Read,
    /// The chat endpoints, the user's own conversations (including delete), the personal
    /// services the key allows, and reporting local tool actions to the audit log.
    Assistant,
    /// Everything, for every user: the audit log, the vault, lockdown, other users' data.
    Admin,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Assistant => "assistant",
            KeyScope::Admin => "admin",
        }
    }

    /// A stored scope; an unknown one (never written by this code) grants nothing beyond read.
    pub fn parse(text: &str) -> Option<KeyScope> {
        match text {
            "read" => Some(KeyScope::Read),
            "assistant" => Some(KeyScope::Assistant),
            "admin" => Some(KeyScope::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
