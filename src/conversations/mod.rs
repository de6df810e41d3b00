//! Conversations and data rights (SPEC §2.5): the seed's format, minimisation before storage,
//! export, deletion and retention.

pub mod model;
pub mod redact;
pub mod rights;
