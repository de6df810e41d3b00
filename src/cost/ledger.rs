//! The ledger's vocabulary: what a reservation holds, which limits it is checked against, and
//! what a refusal reports. Amounts are integer micro-USD, so sums over thousands of rows are
//! exact and a limit is never missed by a rounding error.

use serde::Serialize;

/// One millionth of a US dollar.
pub type Micros = i64;

/// The most any amount can be: a charge, a hold, a limit, a running total. One billion USD,
/// far above any real budget, and far enough below `i64::MAX` (about 9,200 times) that the
/// sum of a few capped amounts can never overflow, in Rust or in either database's BIGINT.
/// Every amount that enters the ledger is clamped to `0..=MAX_MICROS` first, so arithmetic
/// on numbers a client, an upstream or a configuration sent can neither wrap around nor turn
/// a SQLite integer column into a float.
pub const MAX_MICROS: Micros = 1_000_000_000_000_000;

/// The longest a paid call may hold its reservation: `server.request_timeout` is at most this,
/// and a stream is cut (and settled on what was counted) when it runs this long.
pub const MAX_CALL_SECS: u64 = 20 * 60;
/// An unsettled reservation older than this no longer counts: its request died with its
/// process. Longer than any call may take ([`MAX_CALL_SECS`]), so a live call's hold is never
/// swept and then settled at nothing.
pub const STALE_AFTER_MS: i64 = 30 * 60 * 1000;
const _: () = assert!((MAX_CALL_SECS as i64) * 1000 < STALE_AFTER_MS);

/// An amount as the ledger may hold it: never negative, never above [`MAX_MICROS`].
pub fn clamp(amount: Micros) -> Micros {
    amount.clamp(0, MAX_MICROS)
}

/// `a + b` in the ledger's range: saturating, then clamped, so it can never wrap.
pub fn add(a: Micros, b: Micros) -> Micros {
    clamp(a.saturating_add(b))
}

/// A USD amount from a configuration or an imported file, or `None` when it is not a finite
/// number in `0..=MAX_MICROS` micro-USD: such a value is refused where it enters, not rounded.
pub fn checked_micros(usd: f64) -> Option<Micros> {
    let micros = (usd * 1_000_000.0).round();
    // The float comparison happens before the cast, so the cast is exact and cannot saturate.
    (micros.is_finite() && (0.0..=MAX_MICROS as f64).contains(&micros)).then_some(micros as Micros)
}

/// A USD amount clamped into the ledger's range (NaN counts as 0): for values already
/// validated where they entered, so a slip elsewhere cannot reach the arithmetic.
pub fn to_micros(usd: f64) -> Micros {
    checked_micros(usd).unwrap_or(if usd > 0.0 { MAX_MICROS } else { 0 })
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

impl Usage {
    /// Whether `amount` more still fits under `limit`. Saturating, so no pair of values can
    /// wrap around into a pass; the limit is clamped like every amount, so what it admits
    /// can always be counted exactly.
    pub fn admits(&self, amount: Micros, limit: Micros) -> bool {
        self.spent
            .saturating_add(self.reserved)
            .saturating_add(amount)
            <= clamp(limit)
    }

    /// Applies a change of spent and held amounts, keeping both in `0..=MAX_MICROS`.
    pub fn apply(&mut self, spent: Micros, reserved: Micros) {
        self.spent = add(self.spent, spent);
        self.reserved = add(self.reserved, reserved);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(i64),
    Exceeded { limit: Limit, usage: Usage },
}

/// The tokens a settled call used, kept beside its charge so a report can show what the
/// money bought. Zero for a call whose usage was never known (charged its whole hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl Tokens {
    /// As a database column holds them: a count past `i64::MAX` (no real call) is capped.
    pub fn columns(self) -> (i64, i64) {
        let col = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (col(self.input), col(self.output))
    }

    /// Read back from the columns; a negative value (written by hand) counts as none.
    pub fn from_columns(input: i64, output: i64) -> Tokens {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Tokens {
            input: count(input),
            output: count(output),
        }
    }
}

/// A settled charge, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub day: String,
    pub model: String,
    pub user_id: Option<String>,
    /// The API key that made the call (cloud mode), by id.
    pub key_id: Option<String>,
    pub spent: Micros,
    pub tokens: Tokens,
    /// A call's charge; false for a day of spend imported from the seed's tracker.
    pub request: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_stay_in_range() {
        assert_eq!(add(MAX_MICROS, MAX_MICROS), MAX_MICROS);
        assert_eq!(add(i64::MAX, i64::MAX), MAX_MICROS);
        assert_eq!(add(5, -10), 0);
        assert_eq!(checked_micros(1.5), Some(1_500_000));
        assert_eq!(checked_micros(-0.01), None);
        assert_eq!(checked_micros(f64::NAN), None);
        assert_eq!(checked_micros(f64::INFINITY), None);
        assert_eq!(checked_micros(1e10), None);
        assert_eq!(to_micros(1e300), MAX_MICROS);
        assert_eq!(to_micros(f64::NAN), 0);
        assert_eq!(to_micros(-5.0), 0);
    }
}
