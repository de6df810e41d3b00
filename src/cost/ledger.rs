//! The ledger's vocabulary: what a reservation holds, which limits it is checked against, and
//! what a refusal reports. Amounts are integer micro-USD, so sums over thousands of rows are
//! exact and a limit is never missed by a rounding error.

use serde::Serialize;

/// One millionth of a US dollar.
pub type Micros = i64;

pub fn to_micros(usd: f64) -> Micros {
    (usd * 1_000_000.0).round() as Micros
}

pub fn to_usd(m: Micros) -> f64 {
    m as f64 / 1_000_000.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Monthly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", content = "id", rename_all = "lowercase")]
pub enum Scope {
    Global,
    User(String),
    Key(String),
}

/// A limit a reservation must fit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub scope: Scope,
    pub period: Period,
    pub limit: Micros,
}

/// A worst-case hold taken before a call goes upstream.
#[derive(Debug, Clone)]
pub struct Reservation<'a> {
    /// `YYYY-MM-DD` and `YYYY-MM`, UTC.
    pub day: &'a str,
    pub month: &'a str,
    pub user_id: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub model: &'a str,
    pub provider: &'a str,
    pub amount: Micros,
    pub now_ms: i64,
    /// Unsettled reservations created before this are ignored: their request died.
    pub stale_before_ms: i64,
}

/// Spent and held amounts of one scope and period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub spent: Micros,
    pub reserved: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(i64),
    Exceeded { limit: Limit, usage: Usage },
}

/// A settled charge, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub day: String,
    pub model: String,
    pub user_id: Option<String>,
    pub spent: Micros,
}
