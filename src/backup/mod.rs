//! Encrypted backups (issue 18): `maestra backup create | verify | restore`.
//!
//! A backup is two encrypted files in a directory or under an `s3://bucket/prefix`:
//! `data.mxb`, a tar archive of the database snapshot, the audit log, the configuration and
//! (only `--with-keys`) the key files and data keys; and `manifest.mxb`, written last, with
//! every file's SHA-256, the audit chain's head and the data file's own hash. Both are sealed
//! under one backup key (argon2id from a passphrase or a key file), so whoever holds the files
//! learns nothing but their sizes.
//!
//! Layout:
//! - `crypt`    — key derivation and the STREAM seal/open of one file
//! - `keys`     — whether a database opens with the vault keys it is to be used with
//! - `manifest` — what the manifest says, and the paths inside a backup
//! - `pack`     — the tar archive through the seal, hashed both ways
//! - `location` — directory or S3 (`object_store`): where the two files go
//! - `create`   — gathering a consistent copy and committing it
//! - `open`     — reading a backup back: manifest, then every byte checked
//! - `restore`  — into an empty home, assembled aside and renamed into place
//! - `postgres` — `pg_dump` / `psql` for the shared store
//! - `redact`   — the configuration's copy without its secrets (no `--with-keys`)
//!
//! Scratch directories (and the sweep of those a killed run left) are the home's:
//! `crate::home::scratch`.

pub mod connector;
mod create;
pub mod crypt;
mod keys;
pub mod location;
pub mod manifest;
mod open;
mod pack;
mod postgres;
mod redact;
mod restore;

pub use create::{Created, create};
pub use crypt::KeySource;
pub use keys::KeyUse;
pub use location::{Location, S3Settings};
pub use open::{Opened, open};
pub use restore::{Restored, restore};
