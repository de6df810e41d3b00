//! Minimisation before a cloud call (SPEC §2.12): personal data out, placeholders in, the
//! originals back in the answer.
//!
//! In the order a call uses it:
//! - `find`         — where personal data lies in a text: patterns, run only where they can
//!   match (`windows`), each checked by its validator (`checks`), the person's own names and
//!   the vault's secrets (`literals`)
//! - `placeholders` — one call's [`Withholding`]: each distinct value becomes `<EMAIL_1>`,
//!   kept in memory for that call only; the whole answer restored
//! - `stream`       — the same restoration over an answer that arrives in pieces: a
//!   placeholder split between pieces is held back until it is whole
//!
//! Nothing here knows about requests or providers: `gateway::pipeline::minimise` applies it to
//! a call, `cli::privacy` shows what it would withhold.

pub mod checks;
pub mod find;
pub mod known;
pub mod literals;
pub mod placeholders;
pub mod stream;
pub mod windows;

use std::fmt;

use serde::Serialize;

pub use crate::config::minimise::Level;
pub use find::{Finder, Found};
pub use literals::Literals;
pub use placeholders::Withholding;
pub use stream::StreamRestorer;

/// A kind of personal data; its name is the placeholder's (`<EMAIL_1>`) and the audit's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Email,
    Phone,
    Card,
    Iban,
    Ip,
    Url,
    Ssn,
    Nino,
    Address,
    Person,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Email,
        Kind::Phone,
        Kind::Card,
        Kind::Iban,
        Kind::Ip,
        Kind::Url,
        Kind::Ssn,
        Kind::Nino,
        Kind::Address,
        Kind::Person,
        Kind::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Card => "CARD",
            Kind::Iban => "IBAN",
            Kind::Ip => "IP",
            Kind::Url => "URL",
            Kind::Ssn => "SSN",
            Kind::Nino => "NINO",
            Kind::Address => "ADDRESS",
            Kind::Person => "PERSON",
            Kind::Secret => "SECRET",
        }
    }

    /// The kind a placeholder's label names, any case (a model may echo `<email_1>`).
    pub fn from_label(label: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(label))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
