//! The pricing table: USD per million input and output tokens, built in and overridable with
//! `[pricing."MODEL"]` tables in `maestra.toml` (an override wins over a built-in entry).
//!
//! Models are matched by the longest known prefix, so dated snapshots (`gpt-4o-mini-2024-07-18`)
//! price like their family. An unknown cloud model has no price: [`Pricing::check`] refuses it
//! (400 `unpriced_model`) before anything is reserved or sent. Should one reach [`Pricing::cost`]
//! anyway, it is priced at the most expensive known rate: a guardrail that guesses low is not
//! a guardrail.

use std::collections::BTreeMap;

use super::ledger::{MAX_MICROS, Micros};
use crate::config::PriceConfig;
use crate::error::{Error, Result};
use crate::providers::{Provider, Usage};

/// A price in integer nano-USD per token (USD per million tokens × 1,000), so that cost
/// arithmetic is exact integer arithmetic and a price cannot be NaN, negative or infinite.
/// A thousandth of a dollar per million tokens is finer than any published price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input_nanos_per_token: u64,
    pub output_nanos_per_token: u64,
}

/// The highest price accepted: one million USD per million tokens (a dollar a token).
pub const MAX_USD_PER_MILLION: f64 = 1_000_000.0;

/// USD per million tokens as nano-USD per token, rounded up (a guardrail never under-counts);
/// `None` when it is not a finite number in `0..=MAX_USD_PER_MILLION`.
pub fn checked_nanos(usd_per_million: f64) -> Option<u64> {
    let nanos = (usd_per_million * 1_000.0).ceil();
    (usd_per_million.is_finite() && (0.0..=MAX_USD_PER_MILLION * 1_000.0).contains(&nanos))
        // In range and finite, so the cast is exact.
        .then_some(nanos as u64)
}

/// A configured price, already validated where the configuration was read; anything that
/// slipped through is priced at the maximum rather than free.
fn nanos(usd_per_million: f64) -> u64 {
    checked_nanos(usd_per_million).unwrap_or((MAX_USD_PER_MILLION * 1_000.0) as u64)
}

const fn p(input_per_million_thousandths: u64, output_per_million_thousandths: u64) -> Price {
    Price {
        input_nanos_per_token: input_per_million_thousandths,
        output_nanos_per_token: output_per_million_thousandths,
    }
}

/// Built-in prices in thousandths of a USD per million tokens (`p(150, 600)`: $0.15 / $0.60).
const TABLE: &[(&str, Price)] = &[
    ("gpt-4o-mini", p(150, 600)),
    ("gpt-4o", p(2500, 10000)),
    ("gpt-4.1-nano", p(100, 400)),
    ("gpt-4.1-mini", p(400, 1600)),
    ("gpt-4.1", p(2000, 8000)),
    ("gpt-4-turbo", p(10000, 30000)),
    ("gpt-3.5-turbo", p(500, 1500)),
    ("o1-mini", p(1100, 4400)),
    ("o1", p(15000, 60000)),
    ("o3-mini", p(1100, 4400)),
    ("o3", p(2000, 8000)),
    ("o4-mini", p(1100, 4400)),
    ("claude-3-5-haiku", p(800, 4000)),
    ("claude-3-haiku", p(250, 1250)),
    ("claude-haiku-4", p(1000, 5000)),
    ("claude-3-5-sonnet", p(3000, 15000)),
    ("claude-3-7-sonnet", p(3000, 15000)),
    ("claude-sonnet-4", p(3000, 15000)),
    ("claude-opus-4", p(15000, 75000)),
    ("claude-3-opus", p(15000, 75000)),
    // Embeddings have no output.
    ("text-embedding-3-small", p(20, 0)),
    ("text-embedding-3-large", p(130, 0)),
    ("text-embedding-ada-002", p(100, 0)),
];

/// The built-in table with the configuration's entries on top.
#[derive(Debug, Clone)]
pub struct Pricing {
    entries: Vec<(String, Price)>,
    fallback: Price,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing::new(&BTreeMap::new())
    }
}

impl Pricing {
    pub fn new(overrides: &BTreeMap<String, PriceConfig>) -> Pricing {
        let mut entries: Vec<(String, Price)> = TABLE
            .iter()
            .filter(|(name, _)| !overrides.contains_key(*name))
            .map(|(name, price)| (name.to_string(), *price))
            .collect();
        entries.extend(overrides.iter().map(|(name, c)| {
            let price = p(nanos(c.input_per_million), nanos(c.output_per_million));
            (name.clone(), price)
        }));
        let fallback = entries.iter().fold(p(0, 0), |acc, (_, x)| {
            p(
                acc.input_nanos_per_token.max(x.input_nanos_per_token),
                acc.output_nanos_per_token.max(x.output_nanos_per_token),
            )
        });
        Pricing { entries, fallback }
    }

    /// The known price of a model on a provider: local models are free, a cloud model needs
    /// a table entry (longest prefix wins); `None` when it has none.
    pub fn known(&self, provider: Provider, model: &str) -> Option<Price> {
        if provider == Provider::Local {
            return Some(p(0, 0));
        }
        self.entries
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| *price)
    }

    /// Refuses a paid model the table does not price (built in or `[pricing."MODEL"]`).
    pub fn check(&self, provider: Provider, model: &str) -> Result<()> {
        match self.known(provider, model) {
            Some(_) => Ok(()),
            None => Err(Error::UnpricedModel(model.to_string())),
        }
    }

    /// The price of a model on a provider; the most expensive known rate for one the table
    /// does not know (which [`Pricing::check`] refuses before any call).
    pub fn price(&self, provider: Provider, model: &str) -> Price {
        self.known(provider, model).unwrap_or(self.fallback)
    }

    /// What `usage` costs, in micro-USD, rounded up: a guardrail never under-counts. Exact
    /// integer arithmetic in 128 bits (tokens < 2^64 times nanos < 2^30 cannot overflow),
    /// capped at [`MAX_MICROS`], so no token count from a client or an upstream can wrap.
    pub fn cost(&self, provider: Provider, model: &str, usage: Usage) -> Micros {
        let price = self.price(provider, model);
        let nanos = u128::from(usage.prompt_tokens) * u128::from(price.input_nanos_per_token)
            + u128::from(usage.completion_tokens) * u128::from(price.output_nanos_per_token);
        let micros = nanos.div_ceil(1_000).min(MAX_MICROS as u128);
        Micros::try_from(micros).unwrap_or(MAX_MICROS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_local_is_free() {
        let t = Pricing::default();
        assert_eq!(
            t.price(Provider::OpenAi, "gpt-4o-mini-2024-07-18"),
            p(150, 600)
        );
        assert_eq!(
            t.price(Provider::OpenAi, "gpt-4o-2024-08-06"),
            p(2_500, 10_000)
        );
        assert_eq!(t.price(Provider::Local, "gpt-4o"), p(0, 0));
        assert_eq!(t.price(Provider::OpenAi, "gpt-9-ultra"), p(15_000, 75_000));
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
        };
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", u), 750_000);
        // Embeddings: input only, $0.02 / $0.13 / $0.10 per million.
        let million_in = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
        };
        for (model, micros) in [
            ("text-embedding-3-small", 20_000),
            ("text-embedding-3-large", 130_000),
            ("text-embedding-ada-002", 100_000),
        ] {
            assert_eq!(
                t.cost(Provider::OpenAi, model, million_in),
                micros,
                "{model}"
            );
        }
    }

    #[test]
    fn unknown_paid_models_are_refused_and_local_ones_are_free() {
        let t = Pricing::default();
        let e = t.check(Provider::OpenAi, "gpt-9-ultra").unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "unpriced_model"));
        let msg = e.to_string();
        assert!(msg.contains("gpt-9-ultra"), "{msg}");
        assert!(msg.contains("[pricing.\"gpt-9-ultra\"]"), "{msg}");
        assert!(msg.contains("input_per_million"), "{msg}");
        assert!(msg.contains("maestra.toml"), "{msg}");
        assert!(t.check(Provider::Anthropic, "claude-9").is_err());
        assert!(t.check(Provider::OpenAi, "gpt-4o-mini-2024-07-18").is_ok());
        assert!(t.check(Provider::Local, "anything-at-all").is_ok());
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-9-ultra".to_string(),
            PriceConfig {
                input_per_million: 1.0,
                output_per_million: 2.0,
            },
        );
        assert!(
            Pricing::new(&o)
                .check(Provider::OpenAi, "gpt-9-ultra")
                .is_ok()
        );
    }

    #[test]
    fn overrides_win_and_add_models() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-4o-mini".to_string(),
            PriceConfig {
                input_per_million: 0.0,
                output_per_million: 1000.0,
            },
        );
        let t = Pricing::new(&o);
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
        };
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", u), 5000);
        assert_eq!(t.price(Provider::OpenAi, "gpt-4o"), p(2_500, 10_000));
    }

    #[test]
    fn any_token_count_costs_at_most_the_cap() {
        let t = Pricing::default();
        let u = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
        };
        assert_eq!(t.cost(Provider::OpenAi, "o1", u), MAX_MICROS);
        let one = Usage {
            prompt_tokens: 0,
            completion_tokens: 1,
        };
        // 0.60 USD per million output tokens: 0.6 micro-USD, rounded up.
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", one), 1);
    }

    #[test]
    fn prices_outside_the_range_are_refused() {
        assert_eq!(checked_nanos(0.15), Some(150));
        assert_eq!(checked_nanos(0.0001), Some(1));
        assert_eq!(checked_nanos(-1.0), None);
        assert_eq!(checked_nanos(f64::NAN), None);
        assert_eq!(checked_nanos(f64::INFINITY), None);
        assert_eq!(checked_nanos(2e6), None);
        assert_eq!(checked_nanos(1e6), Some(1_000_000_000));
    }
}
