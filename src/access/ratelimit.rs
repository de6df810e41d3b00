//! Rate limits (SPEC §2.6): GCRA, `requests` per `window`, with a burst of `requests`.
//!
//! In process with `governor` by default; in Redis when `MAESTRA_REDIS_URL` is set, with the
//! whole decision in one Lua script on Redis's own clock, so several instances share one limit
//! exactly. If Redis cannot be reached the request is refused (503): a limiter that fails open
//! is no limiter.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// Allowed, or refused with the seconds until the next request would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { retry_after_secs: u64 },
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request against every bucket in `keys` (e.g. `ip:127.0.0.1`,
    /// `key:ab12cd34ef56`); refused if any of them is empty.
    async fn check(&self, keys: &[String]) -> Result<Decision>;
}

/// The emission interval: one request per `window / requests`.
fn interval(requests: u32, window: Duration) -> Duration {
    (window / requests.max(1)).max(Duration::from_nanos(1))
}

pub struct LocalLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LocalLimiter {
    /// `per_minute` requests a minute, with a burst of as many: a limit fixed in the code.
    pub fn per_minute(per_minute: NonZeroU32) -> LocalLimiter {
        LocalLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        }
    }

    pub fn new(requests: u32, window: Duration) -> Result<LocalLimiter> {
        let burst = NonZeroU32::new(requests).ok_or_else(|| {
            Error::Config("the rate limit must allow at least one request".into())
        })?;
        let quota = Quota::with_period(interval(requests, window))
            .ok_or_else(|| Error::Config("the rate-limit window must be positive".into()))?
            .allow_burst(burst);
        Ok(LocalLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, keys: &[String]) -> Result<Decision> {
        // Forget idle keys now and then, so memory stays bounded by the active clients.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        // governor has no look-ahead, so a bucket checked before a refusing one has spent its
        // token. Last to first: the caller's own key (after its IP in `keys`) is spent first,
        // so a request its key refuses takes nothing from the IP's bucket, which everyone
        // behind that address shares. (The Redis script checks all before spending any.)
        for key in keys.iter().rev() {
            if let Err(not_until) = self.limiter.check_key(key) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Ok(Decision::Deny {
                    retry_after_secs: wait.as_secs_f64().ceil() as u64,
                });
            }
        }
        Ok(Decision::Allow)
    }
}

/// GCRA over every key in one atomic step: all are checked first, and only if all allow is
/// each advanced. ARGV[1]: emission interval (µs), ARGV[2]: burst. Returns {1, 0} when
/// allowed, {0, wait_µs} when not. Time is Redis's, shared by all instances.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allow_at = tat + interval - interval * burst
  if allow_at > now then
    return {0, allow_at - now}
  end
  tats[i] = tat + interval
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tats[i], 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
return {1, 0}
"#;

pub struct RedisLimiter {
    client: redis::Client,
    conn: OnceCell<redis::aio::ConnectionManager>,
    script: redis::Script,
    prefix: String,
    interval_us: u64,
    burst: u32,
}

impl RedisLimiter {
    pub fn new(
        url: &SecretString,
        prefix: &str,
        requests: u32,
        window: Duration,
    ) -> Result<RedisLimiter> {
        // The URL may hold a password: the error names neither.
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| Error::Config("MAESTRA_REDIS_URL is not a valid Redis URL".into()))?;
        Ok(RedisLimiter {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(GCRA),
            prefix: prefix.to_string(),
            interval_us: interval(requests, window).as_micros().max(1) as u64,
            burst: requests,
        })
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager> {
        let unavailable =
            || Error::UpstreamUnavailable("the shared rate limiter (Redis) is unreachable".into());
        let conn = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::aio::ConnectionManager::new(self.client.clone()),
                )
                .await
                .map_err(|_| unavailable())?
                .map_err(|_| unavailable())
            })
            .await?;
        Ok(conn.clone())
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, keys: &[String]) -> Result<Decision> {
        let mut conn = self.conn().await?;
        let mut invocation = self.script.prepare_invoke();
        for key in keys {
            invocation.key(format!("{}rl:{key}", self.prefix));
        }
        invocation.arg(self.interval_us).arg(self.burst);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        let (allowed, wait_us) = tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .map_err(|_| {
                Error::UpstreamUnavailable("the shared rate limiter (Redis) timed out".into())
            })?
            .map_err(|_| {
                Error::UpstreamUnavailable("the shared rate limiter (Redis) failed".into())
            })?;
        Ok(if allowed == 1 {
            Decision::Allow
        } else {
            Decision::Deny {
                retry_after_secs: (wait_us.max(0) as u64).div_ceil(1_000_000),
            }
        })
    }
}

/// Events one surface may report to `POST /api/audit/events` a minute (a burst of as many),
/// in every mode: the client's own rate limit does not apply in local mode.
pub const EVENTS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(299);
/// Bytes of reported events the audit log takes per UTC day, all surfaces together (each
/// counted as its JSON line): the log's disk budget for what clients report.
pub const EVENT_BYTES_PER_DAY: u64 = 64 * 1024 * 1024;

/// A budget of units (bytes) per UTC day, kept by this process: spent by [`DailyBudget::take`],
/// refused once spent until the next day begins.
pub struct DailyBudget {
    limit: u64,
    /// (day number since the epoch, spent that day)
    spent: std::sync::Mutex<(i64, u64)>,
}

impl DailyBudget {
    pub fn new(limit: u64) -> DailyBudget {
        DailyBudget {
            limit,
            spent: std::sync::Mutex::new((0, 0)),
        }
    }

    /// Takes `n` units at `now` (Unix seconds) if today's budget holds them; otherwise takes
    /// nothing and says how long until tomorrow's.
    pub fn take(&self, n: u64, now: i64) -> Decision {
        const DAY: i64 = 86_400;
        let today = now.div_euclid(DAY);
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spent.0 != today {
            *spent = (today, 0);
        }
        if spent.1.saturating_add(n) > self.limit {
            return Decision::Deny {
                retry_after_secs: ((today + 1) * DAY - now).max(1) as u64,
            };
        }
        spent.1 += n;
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_budget_refuses_until_the_next_day() {
        let b = DailyBudget::new(100);
        let noon = 20_000 * 86_400 + 43_200;
        assert_eq!(b.take(60, noon), Decision::Allow);
        assert_eq!(b.take(40, noon + 1), Decision::Allow);
        assert_eq!(
            b.take(1, noon + 2),
            Decision::Deny {
                retry_after_secs: 43_198
            }
        );
        assert_eq!(b.take(100, noon + 43_200), Decision::Allow, "a new day");
    }

    #[tokio::test]
    async fn local_limiter_allows_the_burst_then_refuses_with_a_wait() {
        let l = LocalLimiter::new(3, Duration::from_secs(60)).unwrap();
        let a = ["ip:a".to_string()];
        for _ in 0..3 {
            assert_eq!(l.check(&a).await.unwrap(), Decision::Allow);
        }
        match l.check(&a).await.unwrap() {
            Decision::Deny { retry_after_secs } => assert!((1..=20).contains(&retry_after_secs)),
            Decision::Allow => panic!("over the limit"),
        }
        assert_eq!(
            l.check(&["ip:b".to_string()]).await.unwrap(),
            Decision::Allow,
            "keys are separate"
        );
    }

    /// One key used from two addresses: once the key is spent, a request from the second
    /// address is refused without spending that address's own bucket.
    #[tokio::test]
    async fn a_refusing_key_leaves_the_address_bucket_alone() {
        let l = LocalLimiter::new(1, Duration::from_secs(60)).unwrap();
        let bucket = |b: &str| b.to_string();
        let first = [bucket("ip:a"), bucket("key:k")];
        assert_eq!(l.check(&first).await.unwrap(), Decision::Allow);
        let second = [bucket("ip:b"), bucket("key:k")];
        assert!(matches!(
            l.check(&second).await.unwrap(),
            Decision::Deny { .. }
        ));
        assert_eq!(
            l.check(&[bucket("ip:b")]).await.unwrap(),
            Decision::Allow,
            "the refused request spent the address's token"
        );
    }
}
