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
            // Dropped on purpose: the URL may hold the Redis password, and its parse error may quote it.
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
/// in every mode: the client's own rate limit does not apply in local mode. The surface is a
/// name the client chooses, so this only keeps one honest tool from crowding out the others;
/// the limits below are what hold a client that rotates names.
pub const EVENTS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(299);
/// Events one client address (an IPv6 /64, as [`crate::access::client_bucket`] counts it) and
/// one API key may each report a minute, whatever surface or agent names the events carry.
/// Twice one surface's rate, so a client with a few tools is not held back by it.
pub const EVENTS_PER_MINUTE_PER_CLIENT: NonZeroU32 = NonZeroU32::MIN.saturating_add(599);
/// Events all clients together may report a minute. In local mode every client is 127.0.0.1
/// and elsewhere a client may hold many addresses and keys: this is the bound that holds
/// whoever sends, about 5.5 MB of log a minute at most (1,200 events of the largest size).
pub const EVENTS_PER_MINUTE_ALL: NonZeroU32 = NonZeroU32::MIN.saturating_add(1_199);

/// Surfaces that get a daily share of their own: the first to report keep it as long as they
/// report at least once a UTC day, so a flood under new names finds no free share to take.
pub const BUDGET_SURFACES: usize = 15;
/// Bytes of reported events each of the [`BUDGET_SURFACES`] may add to the log a UTC day
/// (each event counted as its JSON line): about 7,000 events of a typical size.
pub const SURFACE_BYTES_PER_DAY: u64 = 4 * 1024 * 1024;
/// Bytes a UTC day that every other name shares: small, since this is what a flood of new
/// names spends, and spending it takes nothing from the surfaces with a share of their own.
pub const OTHER_SURFACES_BYTES_PER_DAY: u64 = 1024 * 1024;
/// The audit log's disk budget for what clients report, a UTC day: every share together
/// (61 MiB).
pub const EVENT_BYTES_PER_DAY: u64 =
    BUDGET_SURFACES as u64 * SURFACE_BYTES_PER_DAY + OTHER_SURFACES_BYTES_PER_DAY;

/// Bucket keys at which the idle ones (full again, so the same as absent) are dropped.
const MAX_IDLE_BUCKETS: usize = 10_000;

/// GCRA over buckets of different rates, each `per_minute` a minute with a burst of as many,
/// kept by this process. A request names several buckets (its address, its key, everyone's,
/// its surface's) and is allowed only if every one of them has room; only then is each spent.
/// So a request one bucket refuses takes nothing from the others (governor has no
/// look-ahead, hence this). Memory: a bucket is dropped once full again (at most a minute
/// after its last use), and only allowed requests make new ones, so a bucket every request
/// names (the audit intake's [`EVENTS_PER_MINUTE_ALL`]) bounds how many there are.
#[derive(Default)]
pub struct Buckets {
    /// Per bucket, its theoretical arrival time: the bucket is full when it is not after now.
    tats: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Buckets {
    /// Counts one request against every `(key, per_minute)` at `now`, or against none of them
    /// and says how long until the first that refuses (in `buckets`' order) has room.
    pub fn check(&self, buckets: &[(String, NonZeroU32)], now: std::time::Instant) -> Decision {
        let mut tats = self
            .tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tats.len() > MAX_IDLE_BUCKETS {
            tats.retain(|_, tat| *tat > now);
        }
        let mut next = Vec::with_capacity(buckets.len());
        for (key, per_minute) in buckets {
            let emission = interval(per_minute.get(), Duration::from_secs(60));
            let tat = tats.get(key).copied().filter(|t| *t > now).unwrap_or(now);
            // Room while the bucket is less than a burst ahead of now.
            let ahead = tat - now;
            let tolerance = emission * (per_minute.get() - 1);
            if ahead > tolerance {
                let wait = ahead - tolerance;
                return Decision::Deny {
                    retry_after_secs: (wait.as_secs_f64().ceil() as u64).max(1),
                };
            }
            next.push(tat + emission);
        }
        for ((key, _), tat) in buckets.iter().zip(next) {
            tats.insert(key.clone(), tat);
        }
        Decision::Allow
    }
}

/// A share of [`SurfaceBudgets`] that is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSpent {
    /// The surface's own share (else the one every other name shares).
    pub own: bool,
    /// Seconds until the next UTC day, when every share is whole again.
    pub retry_after_secs: u64,
}

/// The daily disk budget for reported events, in shares: each of the first
/// [`BUDGET_SURFACES`] surfaces to report has [`SURFACE_BYTES_PER_DAY`] of its own, and every
/// other name shares [`OTHER_SURFACES_BYTES_PER_DAY`]. A flood under new names can spend only
/// that last share; the surfaces that were reporting keep theirs. A surface keeps its share
/// into the next day if it reported during the day that ended, so shares are not handed out
/// afresh at midnight to whoever sends first; one idle for a whole day gives its share up.
/// Kept by this process: a restart hands the shares out again, in order of first report.
#[derive(Default)]
pub struct SurfaceBudgets {
    state: std::sync::Mutex<Shares>,
}

#[derive(Default)]
struct Shares {
    /// The UTC day (days since the epoch) the figures below are for.
    day: i64,
    /// Per surface with a share: (bytes spent today, the last day it reported).
    surfaces: std::collections::HashMap<String, (u64, i64)>,
    /// Bytes spent today by every other name.
    other: u64,
}

impl SurfaceBudgets {
    /// Takes `n` bytes from `surface`'s share at `now` (Unix seconds), if it holds them;
    /// otherwise takes nothing and says which share is spent.
    pub fn take(&self, surface: &str, n: u64, now: i64) -> std::result::Result<(), ShareSpent> {
        const DAY: i64 = 86_400;
        let today = now.div_euclid(DAY);
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.day != today {
            // Who reported during the day that ended keeps a share; every share is whole.
            s.surfaces.retain(|_, (_, last)| *last >= today - 1);
            for (spent, _) in s.surfaces.values_mut() {
                *spent = 0;
            }
            s.other = 0;
            s.day = today;
        }
        if !s.surfaces.contains_key(surface) && s.surfaces.len() < BUDGET_SURFACES {
            s.surfaces.insert(surface.to_string(), (0, today));
        }
        let spent = ShareSpent {
            own: s.surfaces.contains_key(surface),
            retry_after_secs: ((today + 1) * DAY - now).max(1) as u64,
        };
        let (used, limit) = match s.surfaces.get_mut(surface) {
            Some((used, last)) => {
                *last = today;
                (used, SURFACE_BYTES_PER_DAY)
            }
            None => (&mut s.other, OTHER_SURFACES_BYTES_PER_DAY),
        };
        if used.saturating_add(n) > limit {
            return Err(spent);
        }
        *used += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 20_000 * 86_400 + 43_200;

    /// A flood under new names spends only the share they have together; the surfaces that
    /// were reporting keep theirs, and every share is whole again the next day.
    #[test]
    fn new_names_beyond_the_kept_surfaces_share_one_small_share() {
        let b = SurfaceBudgets::default();
        assert_eq!(b.take("editor", 100, NOON), Ok(()));
        let mut flood = 0;
        let refused = loop {
            flood += 1;
            if let Err(e) = b.take(&format!("flood-{flood}"), 4096, NOON + 1) {
                break e;
            }
        };
        assert_eq!(
            refused,
            ShareSpent {
                own: false,
                retry_after_secs: 43_199
            }
        );
        let other = (OTHER_SURFACES_BYTES_PER_DAY / 4096) as usize;
        assert_eq!(
            flood,
            BUDGET_SURFACES - 1 + other + 1,
            "slots, then the shared share"
        );
        assert_eq!(
            b.take("editor", SURFACE_BYTES_PER_DAY - 100, NOON + 2),
            Ok(())
        );
        assert_eq!(
            b.take("editor", 1, NOON + 3),
            Err(ShareSpent {
                own: true,
                retry_after_secs: 43_197
            })
        );
        assert_eq!(
            b.take("flood-99999", 4096, NOON + 86_400),
            Ok(()),
            "a new day"
        );
        assert_eq!(b.take("editor", 4096, NOON + 86_400), Ok(()));
    }

    /// A surface that reported yesterday keeps its share today, before any new name can take
    /// it; one idle for a whole day gives it up.
    #[test]
    fn shares_follow_yesterdays_surfaces_into_today() {
        let b = SurfaceBudgets::default();
        for i in 0..BUDGET_SURFACES {
            assert_eq!(b.take(&format!("s{i}"), 10, NOON), Ok(()));
        }
        // Tomorrow a flood under new names comes first: the shares are still s0..s14's.
        let tomorrow = NOON + 86_400;
        assert_eq!(
            b.take("new", OTHER_SURFACES_BYTES_PER_DAY, tomorrow),
            Ok(())
        );
        assert!(b.take("new-2", 1, tomorrow).is_err_and(|e| !e.own));
        assert_eq!(b.take("s3", SURFACE_BYTES_PER_DAY, tomorrow), Ok(()));
        // Only s3 reported tomorrow; the day after, the others' shares are free again.
        let later = tomorrow + 86_400;
        assert_eq!(
            b.take("newer", SURFACE_BYTES_PER_DAY, later),
            Ok(()),
            "own share"
        );
        assert!(
            b.take("s3", SURFACE_BYTES_PER_DAY + 1, later)
                .is_err_and(|e| e.own)
        );
    }

    /// Every bucket is checked before any is spent: a request one refuses takes nothing from
    /// the others, and the per-bucket rates are each their own.
    #[test]
    fn buckets_are_spent_all_or_none() {
        let b = Buckets::default();
        let now = std::time::Instant::now();
        let n = |v: u32| NonZeroU32::new(v).unwrap();
        let req = |surface: &str| vec![("all".to_string(), n(3)), (surface.to_string(), n(1))];
        assert_eq!(b.check(&req("a"), now), Decision::Allow);
        // `a` is spent; the refused request leaves `all` two tokens.
        assert!(matches!(
            b.check(&req("a"), now),
            Decision::Deny {
                retry_after_secs: 60
            }
        ));
        assert!(matches!(b.check(&req("a"), now), Decision::Deny { .. }));
        assert_eq!(b.check(&req("b"), now), Decision::Allow);
        assert_eq!(b.check(&req("c"), now), Decision::Allow);
        // Now `all` is spent, whatever the name.
        match b.check(&req("d"), now) {
            Decision::Deny { retry_after_secs } => assert_eq!(retry_after_secs, 20),
            Decision::Allow => panic!("a new name past the shared cap"),
        }
        let later = now + Duration::from_secs(20);
        assert_eq!(b.check(&req("d"), later), Decision::Allow, "refilled");
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
