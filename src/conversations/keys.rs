//! Users' data keys in memory: unwrapped once, then cached (zeroed when dropped), so a request
//! does not unwrap a key each time; created on a user's first write; destroyed by forget.
//!
//! Another process (`maestra forget` from the command line, another instance on a shared
//! PostgreSQL) may destroy a key this one holds: every forget changes a generation value in
//! the store's meta table, which each process looks at when the store changes (a commit by
//! any process: `Store::changes`), at most once per [`WATCH_EVERY`], and then drops its whole
//! cache. Until it looks, it may still encrypt a new turn for that user under the
//! destroyed key: that turn is as unreadable as the forgotten ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use rand::RngCore;

use crate::error::Result;
use crate::privsec::datakeys::{self, DataKey};
use crate::privsec::vault::Vault;
use crate::store::{DataKeyRecord, Store};

/// Meta key changed by every forget, so that other processes drop their cached keys.
pub const GENERATION: &str = "data_keys.generation";
/// How often, at most, a process looks for forgets made elsewhere (a busy store commits all the
/// time; one at rest is not looked at).
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Locks that order a user's writes against their forget, striped by user so memory stays
/// fixed whatever the number of users (forgets are rare: a shared stripe costs nothing).
const GATES: usize = 64;

pub struct UserKeys {
    vault: Arc<Vault>,
    /// The undecorated store, where the `data_keys` table is.
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, Arc<DataKey>>>,
    /// Bumped by every forget: a key read from the store before a forget is not cached after it.
    epoch: AtomicU64,
    /// The store's generation value when last looked at.
    seen: Mutex<Option<String>>,
    /// A write holds its user's gate shared from the key lookup until the append returns; a
    /// forget's row delete holds it exclusively. So a turn sealed under a key being destroyed
    /// is either stored before the delete (and deleted with the rest) or looks its key up
    /// after it (a new key: a write made after the forget).
    gates: Vec<tokio::sync::RwLock<()>>,
}

impl UserKeys {
    /// The cache over `store`, with a task that follows forgets made by other processes for as
    /// long as the cache lives.
    pub fn new(vault: Arc<Vault>, store: Arc<dyn Store>) -> Arc<UserKeys> {
        let keys = Arc::new(UserKeys {
            vault,
            store,
            cache: RwLock::default(),
            epoch: AtomicU64::new(0),
            seen: Mutex::new(None),
            gates: (0..GATES).map(|_| tokio::sync::RwLock::new(())).collect(),
        });
        tokio::spawn(watch(Arc::downgrade(&keys)));
        keys
    }

    /// The gate of `user`'s writes and forget (see the field).
    pub fn gate(&self, user: &str) -> &tokio::sync::RwLock<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(user);
        &self.gates[(hash % GATES as u64) as usize]
    }

    fn cached(&self, user: &str) -> Option<Arc<DataKey>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .cloned()
    }

    /// Caches `key` unless a forget happened since `epoch` (when the key was read).
    fn remember(&self, epoch: u64, user: &str, key: DataKey) -> Arc<DataKey> {
        let key = Arc::new(key);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::SeqCst) == epoch {
            cache.insert(user.to_owned(), key.clone());
        }
        key
    }

    /// The user's key, if they have one.
    pub async fn for_read(&self, user: &str) -> Result<Option<Arc<DataKey>>> {
        if let Some(key) = self.cached(user) {
            return Ok(Some(key));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        match self.store.data_key_get(user).await? {
            Some(record) => Ok(Some(self.remember(epoch, user, self.unwrap(&record)?))),
            None => Ok(None),
        }
    }

    /// The user's key, made on their first write.
    pub async fn for_write(&self, user: &str) -> Result<Arc<DataKey>> {
        if let Some(key) = self.cached(user) {
            return Ok(key);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let key = match self.store.data_key_get(user).await? {
            Some(record) => self.unwrap(&record)?,
            None => self.create(user).await?,
        };
        Ok(self.remember(epoch, user, key))
    }

    fn unwrap(&self, record: &DataKeyRecord) -> Result<DataKey> {
        match datakeys::unwrap(&self.vault.keys(), record) {
            Ok(key) => Ok(key),
            // Perhaps re-wrapped by a rotation this process has not seen yet.
            Err(_) => datakeys::unwrap(&*self.vault.current_keys()?, record),
        }
    }

    async fn create(&self, user: &str) -> Result<DataKey> {
        // Never wrap under a key that is not the vault's (another instance's).
        self.vault.verify_key().await?;
        let keys = self.vault.current_keys()?;
        let key = DataKey::generate();
        let record = datakeys::wrap(&keys, user, &key)?;
        let standing = self.store.data_key_insert(&record).await?;
        if standing.wrapped != record.wrapped {
            // Another process made this user's key first: use that one.
            return self.unwrap(&standing);
        }
        // A rotation that began between reading the key file and the insert may have listed
        // the keys to re-wrap before this one: re-wrap it under the new primary here, before
        // the rotation can retire the old.
        let now = self.vault.current_keys()?;
        if now.primary_id() != keys.primary_id() {
            let fresh = datakeys::wrap(&now, user, &key)?;
            self.store
                .data_key_swap(user, &record.wrapped, &fresh.wrapped, &fresh.kek)
                .await?;
        }
        Ok(key)
    }

    /// Destroys the user's key (committed when this returns), drops it from memory and tells
    /// other processes to drop theirs. True if there was one.
    pub async fn destroy(&self, user: &str) -> Result<bool> {
        let existed = self.store.data_key_delete(user).await?;
        self.forget_cached(Some(user));
        let mut token = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut token);
        self.store.meta_set(GENERATION, &hex::encode(token)).await?;
        Ok(existed)
    }

    /// Drops one user's cached key, or every one for `None`.
    fn forget_cached(&self, user: Option<&str>) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match user {
            Some(user) => {
                cache.remove(user);
            }
            None => cache.clear(),
        }
    }

    /// Drops every cached key if a forget happened elsewhere since the last look.
    pub async fn follow_forgets(&self) -> Result<()> {
        let now = self.store.meta_get(GENERATION).await?;
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = *seen != now;
            *seen = now;
            changed
        };
        if changed {
            self.forget_cached(None);
        }
        Ok(())
    }
}

async fn watch(keys: Weak<UserKeys>) {
    let Some(mut changes) = keys.upgrade().map(|k| k.store.changes()) else {
        return;
    };
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if changes.changed().await.is_err() {
            return;
        }
        let Some(keys) = keys.upgrade() else { return };
        if let Err(e) = keys.follow_forgets().await {
            // A store closed or briefly unreachable: the next change looks again.
            tracing::debug!(error = %e, "cannot look for forgotten data keys");
        }
    }
}
