//! Conversations and data rights (SPEC §2.5): the seed's format, minimisation before storage,
//! export, deletion and retention; encryption at rest per user (issue 18).

pub mod cipher;
pub mod keys;
pub mod migrate;
pub mod model;
pub mod open;
pub mod redact;
pub mod rights;
pub mod sealed;
