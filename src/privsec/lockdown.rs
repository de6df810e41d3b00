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
