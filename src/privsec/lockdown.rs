//! Lockdown's state in the store (seed 002 §8, incident response): the flags every instance
//! sharing the store follows, and what engaging and lifting a lockdown write. The command line
//! (`maestra lockdown`), the privacy center's API and a running server's watch (`app`) all use
//! these, so none of them needs another's module.

use crate::error::Result;
use crate::store::{Store, now_unix};

/// The store flag a running server watches: set (by `maestra lockdown`, or the page's
/// local-only switch), it forces local-only mode on.
pub const LOCKDOWN_FLAG: &str = "lockdown.local_only";
/// Set by a lockdown only, cleared only by `maestra lockdown --lift` (a local command): while
/// it is there a running server refuses the credential lockdown cannot revoke (the static
/// `MAESTRA_API_KEY`) and the API cannot turn local-only off. Apart from [`LOCKDOWN_FLAG`]
/// because the page's local-only switch sets that one too, and must not lock anyone out.
pub const LOCKDOWN_ENGAGED: &str = "lockdown.engaged";

/// What every lockdown does first, from the command line or the privacy center: the flags that
/// lock every instance sharing the store, then every API key revoked. Returns how many keys
/// were revoked. (The vault key rotation that follows differs: the command runs it, a server
/// runs it as a job.)
pub async fn engage_lockdown(store: &dyn Store) -> Result<u64> {
    store.meta_set(LOCKDOWN_ENGAGED, "true").await?;
    store.meta_set(LOCKDOWN_FLAG, "true").await?;
    store.api_keys_revoke_all(now_unix()).await
}

/// `maestra lockdown --lift`: local-only follows the configuration again and the static key is
/// accepted again (revoked keys stay revoked). The lock goes last, so a half-done lift leaves
/// the door shut.
pub async fn lift_lockdown(store: &dyn Store) -> Result<()> {
    store.meta_delete(LOCKDOWN_FLAG).await?;
    store.meta_delete(LOCKDOWN_ENGAGED).await
}

/// Local-only mode and lockdown as they are in force: the one reading of the configuration
/// and the store's flags that `maestra doctor`, `maestra guard status` and a running server's
/// watch all make, so none of them can say otherwise than another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeState {
    /// `local_only = true` (or `MAESTRA_LOCAL_ONLY`) in the configuration.
    pub configured: bool,
    /// Switched on in the privacy center (the store's [`LOCKDOWN_FLAG`] with no lockdown).
    pub switched: bool,
    /// A lockdown is engaged ([`LOCKDOWN_ENGAGED`]): it forces local-only mode on.
    pub lockdown: bool,
}

impl RuntimeState {
    /// Reads the store's flags; `store` is `None` where there is no store yet (a fresh home),
    /// which holds no flag.
    pub async fn read(configured: bool, store: Option<&dyn Store>) -> Result<RuntimeState> {
        let Some(store) = store else {
            return Ok(RuntimeState {
                configured,
                ..RuntimeState::default()
            });
        };
        let lockdown = store.meta_get(LOCKDOWN_ENGAGED).await?.is_some();
        let flag = store.meta_get(LOCKDOWN_FLAG).await?.is_some();
        Ok(RuntimeState {
            configured,
            switched: flag && !lockdown,
            lockdown,
        })
    }

    /// Whether local-only mode is in force: configuration, page switch or lockdown.
    pub fn local_only(&self) -> bool {
        self.configured || self.switched || self.lockdown
    }

    /// Why local-only mode is on, every cause named; `None` when it is off.
    pub fn why(&self) -> Option<String> {
        let mut causes = Vec::new();
        if self.lockdown {
            causes.push("a lockdown is engaged (lift it with `maestra lockdown --lift`)");
        }
        if self.switched {
            causes.push("switched on in the privacy center");
        }
        if self.configured {
            causes.push("set in the configuration (local_only = true / MAESTRA_LOCAL_ONLY)");
        }
        (!causes.is_empty()).then(|| causes.join("; "))
    }

    /// One line for people: `on (why)` or `off`.
    pub fn describe(&self) -> String {
        match self.why() {
            Some(why) => format!("on ({why})"),
            None => "off".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_named_and_a_page_switch_is_no_lockdown() {
        let off = RuntimeState::default();
        assert!(!off.local_only() && off.describe() == "off");
        let page = RuntimeState {
            switched: true,
            ..RuntimeState::default()
        };
        assert!(page.local_only());
        let why = page.why().unwrap();
        assert!(
            why.contains("privacy center") && !why.contains("lockdown"),
            "{why}"
        );
        let locked = RuntimeState {
            lockdown: true,
            configured: true,
            ..RuntimeState::default()
        };
        let why = locked.why().unwrap();
        assert!(
            why.contains("lockdown") && why.contains("configuration"),
            "{why}"
        );
        assert!(!why.contains("privacy center"), "{why}");
    }
}
