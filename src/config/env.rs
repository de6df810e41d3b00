//! Where settings come from besides the file: an injectable environment, so parsing is
//! tested with a plain map and never touches the real process environment.

use std::collections::HashMap;

use secrecy::SecretString;

use crate::error::{Error, Result};

/// Where environment variables come from.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// Environment lookups over a list of names, first one set wins (Maestra's name, then the seed's).
pub(super) struct Lookup<'a>(pub(super) &'a dyn EnvSource);

impl Lookup<'_> {
    pub(super) fn get(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.0.var(n))
    }

    fn named(&self, names: &[&str]) -> Option<(String, String)> {
        names
            .iter()
            .find_map(|n| self.0.var(n).map(|v| ((*n).to_string(), v)))
    }

    pub(super) fn secret(&self, names: &[&str]) -> Option<SecretString> {
        self.get(names).map(SecretString::from)
    }

    pub(super) fn bool(&self, names: &[&str]) -> Result<Option<bool>> {
        let Some((name, v)) = self.named(names) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::Config(format!(
                "{name} must be true or false, not {v:?}"
            ))),
        }
    }

    pub(super) fn num<T: std::str::FromStr>(&self, names: &[&str]) -> Result<Option<T>> {
        let Some((name, v)) = self.named(names) else {
            return Ok(None);
        };
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Config(format!("{name} must be a number, not {v:?}")))
    }
}
