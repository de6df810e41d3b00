//! The pricing table: USD per million input and output tokens, built in and overridable with
//! `[pricing."MODEL"]` tables in `maestra.toml` (an override wins over a built-in entry).
//!
//! Models are matched by the longest known prefix, so dated snapshots (`gpt-4o-mini-2024-07-18`)
//! price like their family. An unknown cloud model is priced at the most expensive known rate:
//! a guardrail that guesses low is not a guardrail.

use std::collections::BTreeMap;

use super::ledger::Micros;
use crate::config::PriceConfig;
use crate::providers::{Provider, Usage};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

const fn p(input_per_million: f64, output_per_million: f64) -> Price {
    Price {
        input_per_million,
        output_per_million,
    }
}

const TABLE: &[(&str, Price)] = &[
    ("gpt-4o-mini", p(0.15, 0.60)),
    ("gpt-4o", p(2.50, 10.00)),
    ("gpt-4.1-nano", p(0.10, 0.40)),
    ("gpt-4.1-mini", p(0.40, 1.60)),
    ("gpt-4.1", p(2.00, 8.00)),
    ("gpt-4-turbo", p(10.00, 30.00)),
    ("gpt-3.5-turbo", p(0.50, 1.50)),
    ("o1-mini", p(1.10, 4.40)),
    ("o1", p(15.00, 60.00)),
    ("o3-mini", p(1.10, 4.40)),
    ("o3", p(2.00, 8.00)),
    ("o4-mini", p(1.10, 4.40)),
    ("claude-3-5-haiku", p(0.80, 4.00)),
    ("claude-3-haiku", p(0.25, 1.25)),
    ("claude-haiku-4", p(1.00, 5.00)),
    ("claude-3-5-sonnet", p(3.00, 15.00)),
    ("claude-3-7-sonnet", p(3.00, 15.00)),
    ("claude-sonnet-4", p(3.00, 15.00)),
    ("claude-opus-4", p(15.00, 75.00)),
    ("claude-3-opus", p(15.00, 75.00)),
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
        entries.extend(
            overrides
                .iter()
                .map(|(name, c)| (name.clone(), p(c.input_per_million, c.output_per_million))),
        );
        let fallback = entries.iter().fold(p(0.0, 0.0), |acc, (_, x)| {
            p(
                acc.input_per_million.max(x.input_per_million),
                acc.output_per_million.max(x.output_per_million),
            )
        });
        Pricing { entries, fallback }
    }

    /// The price of a model on a provider.
    pub fn price(&self, provider: Provider, model: &str) -> Price {
        if provider == Provider::Local {
            return p(0.0, 0.0);
        }
        self.entries
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.fallback, |(_, price)| *price)
    }

    /// What `usage` costs, in micro-USD, rounded up: a guardrail never under-counts.
    pub fn cost(&self, provider: Provider, model: &str, usage: Usage) -> Micros {
        let price = self.price(provider, model);
        // USD per million tokens is exactly micro-USD per token.
        (usage.prompt_tokens as f64 * price.input_per_million
            + usage.completion_tokens as f64 * price.output_per_million)
            .ceil() as Micros
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
            p(0.15, 0.60)
        );
        assert_eq!(
            t.price(Provider::OpenAi, "gpt-4o-2024-08-06"),
            p(2.50, 10.00)
        );
        assert_eq!(t.price(Provider::Local, "gpt-4o"), p(0.0, 0.0));
        assert_eq!(t.price(Provider::OpenAi, "gpt-9-ultra"), p(15.00, 75.00));
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
        };
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", u), 750_000);
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
        assert_eq!(t.price(Provider::OpenAi, "gpt-4o"), p(2.50, 10.00));
    }
}
