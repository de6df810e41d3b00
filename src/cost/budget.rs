//! The cost guardrail stage (SPEC §2.4): reserve the worst case before a call goes upstream,
//! settle to the real usage after, release on failure.
//!
//! Because the reservation is checked and recorded in one serialised store transaction, N
//! concurrent requests can never together pass a limit, on one instance or on many sharing
//! PostgreSQL. Free (local) calls skip the ledger entirely.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use time::{Date, OffsetDateTime, Time};

use super::ledger::{
    Limit, Micros, Period, Reservation, ReserveOutcome, STALE_AFTER_MS, Scope, Tokens, to_micros,
    to_usd,
};
use super::pricing::Pricing;
use crate::config::{Config, CostConfig};
pub use crate::error::CostLimitExceeded;
use crate::error::{Error, Result};
use crate::providers::{ChatRequest, Route, Usage};
use crate::store::Ledger;

/// A warning is logged once a day when spend passes this share of the daily limit.
const WARN_SHARE: f64 = 0.8;

/// A reservation held while a call is in flight. Settle or release it.
#[derive(Debug)]
#[must_use]
pub struct Hold {
    id: Option<i64>,
    pub reserved: Micros,
    /// The usage the reservation was priced on: the most tokens a settlement records.
    bound: Usage,
}

pub struct Budget {
    store: Arc<dyn Ledger>,
    pricing: Pricing,
    daily: Micros,
    monthly: Micros,
    cost: CostConfig,
    warned_on: Mutex<Option<String>>,
}

fn day_month(now: OffsetDateTime) -> (String, String) {
    let d = now.date();
    (
        format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
        format!("{:04}-{:02}", d.year(), d.month() as u8),
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// When the current period ends, UTC.
pub fn resets_at(period: Period, now: OffsetDateTime) -> String {
    let d = now.date();
    let next = match period {
        Period::Daily => d.next_day(),
        Period::Monthly => {
            let (y, m) = if d.month() == time::Month::December {
                (d.year() + 1, time::Month::January)
            } else {
                (d.year(), d.month().next())
            };
            Date::from_calendar_date(y, m, 1).ok()
        }
    };
    next.map(|n| rfc3339(n.with_time(Time::MIDNIGHT).assume_utc()))
        .unwrap_or_default()
}

impl Budget {
    pub fn new(config: &Config, store: Arc<dyn Ledger>) -> Budget {
        Budget {
            store,
            pricing: Pricing::new(&config.pricing),
            daily: to_micros(config.daily_cost_limit),
            monthly: to_micros(config.monthly_cost_limit),
            cost: config.cost.clone(),
            warned_on: Mutex::new(None),
        }
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The request as it goes upstream: with an output cap, so the worst case is a real bound.
    fn capped(&self, req: &ChatRequest) -> ChatRequest {
        let mut req = req.clone();
        req.max_tokens = Some(req.max_tokens.unwrap_or(self.cost.max_output_tokens));
        req
    }

    /// The most a (capped) request can use: see [`ChatRequest::usage_bound`].
    fn worst_case(&self, route: &Route, req: &ChatRequest) -> Usage {
        req.usage_bound(route, self.cost.max_output_tokens)
    }

    fn limits(&self, user: Option<&str>, key: Option<&str>) -> Vec<Limit> {
        let mut out = vec![
            Limit {
                scope: Scope::Global,
                period: Period::Daily,
                limit: self.daily,
            },
            Limit {
                scope: Scope::Global,
                period: Period::Monthly,
                limit: self.monthly,
            },
        ];
        let scoped = [
            (
                user.map(|u| Scope::User(u.into())),
                self.cost.user_daily_limit,
                Period::Daily,
            ),
            (
                user.map(|u| Scope::User(u.into())),
                self.cost.user_monthly_limit,
                Period::Monthly,
            ),
            (
                key.map(|k| Scope::Key(k.into())),
                self.cost.key_daily_limit,
                Period::Daily,
            ),
            (
                key.map(|k| Scope::Key(k.into())),
                self.cost.key_monthly_limit,
                Period::Monthly,
            ),
        ];
        for (scope, limit, period) in scoped {
            if let (Some(scope), Some(limit)) = (scope, limit) {
                out.push(Limit {
                    scope,
                    period,
                    limit: to_micros(limit),
                });
            }
        }
        out
    }

    /// Reserves the worst case of a chat request, or refuses it (see [`Budget::reserve_bound`]).
    /// Returns the request to send: capped to `max_output_tokens` when it costs money, as
    /// asked when it is free.
    pub async fn reserve(
        &self,
        route: &Route,
        req: &ChatRequest,
        user: Option<&str>,
        key: Option<&str>,
    ) -> Result<(ChatRequest, Hold)> {
        self.pricing.check(route.provider, &route.model)?;
        let capped = self.capped(req);
        let hold = self
            .reserve_bound(route, self.worst_case(route, &capped), user, key)
            .await?;
        Ok((
            if hold.reserved == 0 {
                req.clone()
            } else {
                capped
            },
            hold,
        ))
    }

    /// Reserves `bound`, the most a call's usage can be, priced for its route, or refuses it:
    /// a 400 `unpriced_model` for a paid model the pricing table does not know, a 402 over a
    /// limit. Every kind of paid call (chat, embeddings) comes through here.
    pub async fn reserve_bound(
        &self,
        route: &Route,
        bound: Usage,
        user: Option<&str>,
        key: Option<&str>,
    ) -> Result<Hold> {
        // A paid model without a price cannot be bounded: refused before anything is held.
        self.pricing.check(route.provider, &route.model)?;
        let amount = self.pricing.cost(route.provider, &route.model, bound);
        if amount == 0 {
            return Ok(Hold {
                id: None,
                reserved: 0,
                bound,
            });
        }
        let now = OffsetDateTime::now_utc();
        let (day, month) = day_month(now);
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let r = Reservation {
            day: &day,
            month: &month,
            user_id: user,
            key_id: key,
            model: &route.model,
            provider: route.provider.service(),
            amount,
            now_ms,
            stale_before_ms: now_ms - STALE_AFTER_MS,
        };
        match self.store.cost_reserve(&r, &self.limits(user, key)).await? {
            ReserveOutcome::Reserved(id) => Ok(Hold {
                id: Some(id),
                reserved: amount,
                bound,
            }),
            ReserveOutcome::Exceeded { limit, usage } => {
                Err(Error::CostLimit(Box::new(CostLimitExceeded {
                    period: limit.period,
                    scope: limit.scope,
                    limit_usd: to_usd(limit.limit),
                    spent_usd: to_usd(usage.spent),
                    reserved_usd: to_usd(usage.reserved),
                    resets_at: resets_at(limit.period, now),
                })))
            }
        }
    }

    /// Charges the real usage and returns the charge in micro-USD, the one figure every answer,
    /// audit entry and stored message reports: never more than the hold, as the ledger
    /// records it (a usage report above the worst case cannot take a scope past its limit).
    pub async fn settle(&self, hold: Hold, route: &Route, usage: Usage) -> Result<Micros> {
        let cost = self.pricing.cost(route.provider, &route.model, usage);
        let Some(id) = hold.id else {
            return Ok(cost);
        };
        let charged = cost.min(hold.reserved);
        if charged < cost {
            tracing::warn!(
                model = %route.model,
                "a reported usage costs more than its reservation; charged the reservation"
            );
        }
        self.store
            .cost_settle(id, charged, recorded_tokens(hold.bound, usage))
            .await?;
        self.warn_near_limit().await;
        Ok(charged)
    }

    /// Charges the whole reservation (a call whose usage will never be known) and returns it.
    pub async fn settle_reserved(&self, hold: Hold) -> Result<Micros> {
        let Some(id) = hold.id else {
            return Ok(0);
        };
        // The usage is unknown: no tokens are recorded beside the charge.
        self.store
            .cost_settle(id, hold.reserved, Tokens::default())
            .await?;
        self.warn_near_limit().await;
        Ok(hold.reserved)
    }

    /// Gives a failed call's reservation back.
    pub async fn release(&self, hold: Hold) {
        if let Some(id) = hold.id
            && let Err(e) = self.store.cost_release(id).await
        {
            // The reservation goes stale and stops counting after STALE_AFTER_MS.
            tracing::error!(error = %e, "could not release a cost reservation");
        }
    }

    async fn warn_near_limit(&self) {
        let now = OffsetDateTime::now_utc();
        let (day, _) = day_month(now);
        if self
            .warned_on
            .lock()
            .map(|w| w.as_deref() == Some(day.as_str()))
            .unwrap_or(true)
        {
            return;
        }
        if let Ok(u) = self.store.cost_usage(&Scope::Global, &day).await
            && u.spent as f64 >= WARN_SHARE * self.daily as f64
        {
            tracing::warn!(
                spent_usd = to_usd(u.spent),
                limit_usd = to_usd(self.daily),
                "daily cost is at 80% of its limit or more"
            );
            if let Ok(mut w) = self.warned_on.lock() {
                *w = Some(day);
            }
        }
    }

    /// `{"daily": {spent_usd, reserved_usd, limit_usd, resets_at}, "monthly": {...}}`.
    pub async fn status(&self) -> Result<Value> {
        let now = OffsetDateTime::now_utc();
        let (day, month) = day_month(now);
        let d = self.store.cost_usage(&Scope::Global, &day).await?;
        let m = self.store.cost_usage(&Scope::Global, &month).await?;
        let part = |u: super::ledger::Usage, limit: Micros, period| {
            json!({"spent_usd": to_usd(u.spent), "reserved_usd": to_usd(u.reserved),
                   "limit_usd": to_usd(limit), "resets_at": resets_at(period, now)})
        };
        Ok(json!({
            "daily": part(d, self.daily, Period::Daily),
            "monthly": part(m, self.monthly, Period::Monthly),
        }))
    }

    /// The same for one user: what that user spent and holds, against the per-user limits
    /// (`limit_usd` null where none is set). What a user's own key may see of spend.
    pub async fn user_status(&self, user: &str) -> Result<Value> {
        let mut v = self
            .scoped_status(
                &Scope::User(user.to_string()),
                self.cost.user_daily_limit,
                self.cost.user_monthly_limit,
            )
            .await?;
        v["user_id"] = json!(user);
        Ok(v)
    }

    /// The same for one API key (by id), against the per-key limits.
    pub async fn key_status(&self, key_id: &str) -> Result<Value> {
        self.scoped_status(
            &Scope::Key(key_id.to_string()),
            self.cost.key_daily_limit,
            self.cost.key_monthly_limit,
        )
        .await
    }

    /// Whether a per-user (`user`) or per-key limit is set: only then do reports show each
    /// user's or key's standing against one.
    pub fn has_limits(&self, user: bool) -> bool {
        let (d, m) = if user {
            (self.cost.user_daily_limit, self.cost.user_monthly_limit)
        } else {
            (self.cost.key_daily_limit, self.cost.key_monthly_limit)
        };
        d.is_some() || m.is_some()
    }

    async fn scoped_status(
        &self,
        scope: &Scope,
        daily: Option<f64>,
        monthly: Option<f64>,
    ) -> Result<Value> {
        let now = OffsetDateTime::now_utc();
        let (day, month) = day_month(now);
        let d = self.store.cost_usage(scope, &day).await?;
        let m = self.store.cost_usage(scope, &month).await?;
        let part = |u: super::ledger::Usage, limit: Option<f64>, period| {
            json!({"spent_usd": to_usd(u.spent), "reserved_usd": to_usd(u.reserved),
                   "limit_usd": limit.map(|l| to_usd(to_micros(l))),
                   "resets_at": resets_at(period, now)})
        };
        Ok(json!({
            "daily": part(d, daily, Period::Daily),
            "monthly": part(m, monthly, Period::Monthly),
        }))
    }
}

/// The tokens recorded beside a charge: the reported usage, each side at most the bound the
/// reservation was priced on. A report above the worst case (or an invalid one, which stands
/// in as [`crate::providers::chat::MAX_REPORTED_TOKENS`]) is charged the hold, and the spend
/// page then shows the tokens that hold paid for, not a count no call could have used.
fn recorded_tokens(bound: Usage, usage: Usage) -> Tokens {
    Tokens {
        input: usage.prompt_tokens.min(bound.prompt_tokens),
        output: usage.completion_tokens.min(bound.completion_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_tokens_never_pass_the_bound() {
        let bound = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
        };
        let bad = Usage {
            prompt_tokens: 100_000_000,
            completion_tokens: 100_000_000,
        };
        let t = recorded_tokens(bound, bad);
        assert_eq!((t.input, t.output), (1_000, 500));
        let fair = Usage {
            prompt_tokens: 40,
            completion_tokens: 7,
        };
        let t = recorded_tokens(bound, fair);
        assert_eq!((t.input, t.output), (40, 7));
    }

    #[test]
    fn periods_reset_at_utc_boundaries() {
        let t = time::macros::datetime!(2025-12-31 23:59:59 UTC);
        assert_eq!(resets_at(Period::Daily, t), "2026-01-01T00:00:00Z");
        assert_eq!(resets_at(Period::Monthly, t), "2026-01-01T00:00:00Z");
        let t = time::macros::datetime!(2026-02-10 00:00:00 UTC);
        assert_eq!(resets_at(Period::Monthly, t), "2026-03-01T00:00:00Z");
        assert_eq!(day_month(t), ("2026-02-10".into(), "2026-02".into()));
    }
}
