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

/// Who a request acts as, once the auth stage has looked at it: the key's identity and what it
/// may do. Local mode is one person on loopback with no key: a local principal, allowed
/// everything, acting for whichever user a request names.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: Option<String>,
    /// The key's name (`maestra keys create NAME`), which names its `/v1` calls in the audit
    /// log; `None` for no key and for the static key, which has no name.
    pub key_name: Option<String>,
    /// `None` before the auth stage: allowed nothing.
    pub scope: Option<KeyScope>,
    pub user_id: Option<String>,
    /// Personal services the key may call; `None`: every configured one.
    pub services: Option<Vec<String>>,
}

impl Principal {
    /// Nobody yet: no route that needs a scope lets it through.
    pub fn anonymous() -> Principal {
        Principal {
            key_id: None,
            key_name: None,
            scope: None,
            user_id: None,
            services: None,
        }
    }

    /// The person at the keyboard in local mode.
    pub fn local() -> Principal {
        Principal {
            scope: Some(KeyScope::Admin),
            ..Principal::anonymous()
        }
    }

    /// The seed's single static `MAESTRA_API_KEY`: an admin key of no user.
    pub fn static_key() -> Principal {
        Principal {
            key_id: Some("static".into()),
            ..Principal::local()
        }
    }

    pub fn allows(&self, need: KeyScope) -> bool {
        self.scope.is_some_and(|s| s >= need)
    }

    /// The user a request acts for, given the one it names (if any). An admin acts for the
    /// named user, or none (every user, where a route lists); any other key acts for its own
    /// user only: naming none means its own, naming another is an error the caller audits.
    pub fn user_for(&self, named: Option<&str>) -> std::result::Result<Option<String>, String> {
        if self.allows(KeyScope::Admin) {
            return Ok(named.map(str::to_owned));
        }
        match (&self.user_id, named) {
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(own), Some(n)) if n == own => Ok(Some(own.clone())),
            (Some(own), Some(_)) => Err(format!(
                "this API key acts for user {own:?} and cannot act for another user"
            )),
            (None, _) => Err("this API key belongs to no user".into()),
        }
    }

    /// Whether the key may call the personal service `name`.
    pub fn may_call(&self, name: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: KeyScope, user: Option<&str>) -> Principal {
        Principal {
            key_id: Some("k".into()),
            key_name: Some("laptop".into()),
            scope: Some(scope),
            user_id: user.map(Into::into),
            services: Some(vec!["hue".into()]),
        }
    }

    #[test]
    fn a_key_acts_for_its_own_user_only() {
        let ann = key(KeyScope::Assistant, Some("ann"));
        assert_eq!(ann.user_for(None), Ok(Some("ann".into())));
        assert_eq!(ann.user_for(Some("ann")), Ok(Some("ann".into())));
        assert!(ann.user_for(Some("bob")).is_err());
        assert!(key(KeyScope::Read, None).user_for(None).is_err());
        let admin = key(KeyScope::Admin, None);
        assert_eq!(admin.user_for(Some("bob")), Ok(Some("bob".into())));
        assert_eq!(admin.user_for(None), Ok(None));
        assert!(ann.may_call("hue") && !ann.may_call("spotify"));
        assert!(!Principal::anonymous().allows(KeyScope::Read));
        assert!(Principal::local().allows(KeyScope::Admin));
        assert!(ann.allows(KeyScope::Read) && !ann.allows(KeyScope::Admin));
    }
}
