//! The store as the server and the commands that read conversations use it: the configured
//! backend, its vault key checked, any plaintext left from before encryption sealed, and
//! conversations encrypted per user on top ([`SealedStore`]).

use std::sync::Arc;

use super::keys::UserKeys;
use super::migrate::{self, Progress};
use super::sealed::SealedStore;
use crate::context::Context;
use crate::error::Result;
use crate::privsec::vault::Vault;
use crate::store::Store;

/// An opened store and the vault over the same database.
pub struct Opened {
    /// Conversations sealed on the way in, opened on the way out.
    pub store: Arc<dyn Store>,
    /// The vault, on the undecorated store (it only uses secrets and meta).
    pub vault: Arc<Vault>,
}

/// Opens the configured store. Refuses, before writing anything, a vault key that is not the
/// database's; then seals plaintext conversation content (once, resumable).
pub async fn open(ctx: &Context, progress: Progress<'_>) -> Result<Opened> {
    ctx.ensure_vault_key()?;
    let raw = ctx.store().await?;
    let vault = Arc::new(Vault::new(ctx.keyring()?, raw.clone()));
    let store = seal(raw, vault.clone(), progress).await?;
    Ok(Opened { store, vault })
}

/// `raw` with conversations encrypted under keys wrapped by `vault`'s key, after checking
/// that key and sealing what plaintext `raw` still holds.
pub async fn seal(
    raw: Arc<dyn Store>,
    vault: Arc<Vault>,
    progress: Progress<'_>,
) -> Result<Arc<dyn Store>> {
    vault.verify_key().await?;
    let keys = UserKeys::new(vault, raw.clone());
    migrate::seal_plaintext(raw.as_ref(), &keys, progress).await?;
    Ok(Arc::new(SealedStore::new(raw, keys)))
}
