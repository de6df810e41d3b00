//! The `[cost]` section and `[pricing."MODEL"]` tables (SPEC §2.4): per-user and per-key
//! limits, the output cap assumed when a request sets none, and price overrides, each checked
//! where it is read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::validate::{self, MAX_OUTPUT_TOKENS, MAX_PRICE_PER_MILLION};
use crate::error::Result;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CostFile {
    user_daily_limit: Option<f64>,
    user_monthly_limit: Option<f64>,
    key_daily_limit: Option<f64>,
    key_monthly_limit: Option<f64>,
    max_output_tokens: Option<u64>,
}

/// A `[pricing."MODEL"]` entry: USD per million tokens. Both fields are required, so a
/// half-written entry is an error rather than a free model.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Spending limits beyond the global daily and monthly ones (SPEC §2.4), in USD.
#[derive(Debug, Clone, Default)]
pub struct CostConfig {
    pub user_daily_limit: Option<f64>,
    pub user_monthly_limit: Option<f64>,
    pub key_daily_limit: Option<f64>,
    pub key_monthly_limit: Option<f64>,
    /// Output tokens assumed for the worst case when a request sets no `max_tokens`; the
    /// request is sent upstream with this cap so the reservation really is the worst case.
    pub max_output_tokens: u64,
}

/// Reads the `[cost]` section, naming the setting that is wrong.
pub(super) fn load(file: CostFile) -> Result<CostConfig> {
    Ok(CostConfig {
        user_daily_limit: opt_limit("cost.user_daily_limit", file.user_daily_limit)?,
        user_monthly_limit: opt_limit("cost.user_monthly_limit", file.user_monthly_limit)?,
        key_daily_limit: opt_limit("cost.key_daily_limit", file.key_daily_limit)?,
        key_monthly_limit: opt_limit("cost.key_monthly_limit", file.key_monthly_limit)?,
        max_output_tokens: validate::range(
            "cost.max_output_tokens",
            file.max_output_tokens.unwrap_or(4096),
            1,
            MAX_OUTPUT_TOKENS,
        )?,
    })
}

fn opt_limit(name: &str, v: Option<f64>) -> Result<Option<f64>> {
    v.map(|v| validate::limit(name, v)).transpose()
}

pub(super) fn check_pricing(
    p: BTreeMap<String, PriceConfig>,
) -> Result<BTreeMap<String, PriceConfig>> {
    for (model, price) in &p {
        validate::model_names(&format!("pricing.{model:?}"), model)?;
        for (field, v) in [
            ("input_per_million", price.input_per_million),
            ("output_per_million", price.output_per_million),
        ] {
            validate::money(
                &format!("pricing.{model:?}.{field}"),
                v,
                MAX_PRICE_PER_MILLION,
            )?;
        }
    }
    Ok(p)
}
