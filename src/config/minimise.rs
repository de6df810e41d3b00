//! Minimisation before a cloud call (SPEC §2.12): how much each cloud provider's calls
//! withhold, `[providers.openai] minimise = "strict"` (or `MAESTRA_OPENAI_MINIMISE`). Local
//! models are never minimised: nothing leaves the machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Lookup;
use crate::error::{Error, Result};

/// How much is withheld. Ordered: a request may move only up (`X-Maestra-Minimise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing withheld but secrets (the vault's, and anything shaped like an API key).
    Off,
    /// Values that pass their validator (a card that passes Luhn, a phone number valid in
    /// its country...), URLs that carry credentials or tokens, street addresses, the
    /// person's names, secrets.
    #[default]
    Standard,
    /// Also what only looks like personal data (a card-shaped number that fails Luhn, a
    /// phone-shaped one no numbering plan has), and every URL.
    Strict,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Standard => "standard",
            Level::Strict => "strict",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Level, Error> {
        match s {
            "off" => Ok(Level::Off),
            "standard" => Ok(Level::Standard),
            "strict" => Ok(Level::Strict),
            other => Err(Error::BadRequest(format!(
                "minimise level {:?} is not one of off, standard, strict",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// `[providers.NAME]`: settings of one cloud provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderFile {
    minimise: Option<String>,
}

/// `[providers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProvidersFile {
    #[serde(default)]
    openai: ProviderFile,
    #[serde(default)]
    anthropic: ProviderFile,
}

/// What each cloud provider's calls withhold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Minimise {
    pub openai: Level,
    pub anthropic: Level,
}

fn level(e: &Lookup<'_>, env: &str, file: Option<String>, key: &str) -> Result<Level> {
    match e.get(&[env]).or(file) {
        None => Ok(Level::default()),
        Some(v) => v
            .parse()
            .map_err(|_| Error::Config(format!("{key} ({env}) must be off, standard or strict"))),
    }
}

pub(super) fn load(e: &Lookup<'_>, file: ProvidersFile) -> Result<Minimise> {
    let openai = level(
        e,
        "MAESTRA_OPENAI_MINIMISE",
        file.openai.minimise,
        "providers.openai.minimise",
    );
    let anthropic = level(
        e,
        "MAESTRA_ANTHROPIC_MINIMISE",
        file.anthropic.minimise,
        "providers.anthropic.minimise",
    );
    super::report(&[openai.as_ref().err(), anthropic.as_ref().err()])?;
    Ok(Minimise {
        openai: openai?,
        anthropic: anthropic?,
    })
}
