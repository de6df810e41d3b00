//! Access (SPEC §2.6): who may call, and how often.
//!
//! - `keys`      — API keys: generation, storage as hashes, constant-time checks
//! - `scope`     — what a key may do: read, assistant, admin
//! - `network`   — the client address behind trusted proxies; the address allow-list
//! - `ratelimit` — GCRA limits in process or shared through Redis
//! - `refusals`  — the audit budget for refusals anyone can cause without a key

pub mod keys;
pub mod network;
pub mod ratelimit;
pub mod refusals;
pub mod scope;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{Config, Mode};
use crate::error::Result;
use crate::store::Store;
use ratelimit::{LocalLimiter, RateLimiter, RedisLimiter};

/// The auth and rate-limit stages' state, built once at start.
pub struct Access {
    pub mode: Mode,
    pub static_key: Option<SecretString>,
    pub store: Arc<dyn Store>,
    /// Present in cloud mode only: the seed limits cloud deployments; a local single-user
    /// server is not throttled.
    pub limiter: Option<Box<dyn RateLimiter>>,
    pub cors_origins: Vec<String>,
    /// Audit budget for unauthenticated refusals.
    pub refusals: refusals::RefusalBudget,
    /// A lockdown is on (followed from the store by `app`): lockdown cannot revoke the static
    /// key, so while it lasts the static key is refused instead.
    locked_down: AtomicBool,
}

impl Access {
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Result<Access> {
        let window = Duration::from_secs(config.rate_limit_window);
        let limiter: Option<Box<dyn RateLimiter>> = match (config.mode, &config.redis_url) {
            (Mode::Local, _) => None,
            (Mode::Cloud, Some(url)) => Some(Box::new(RedisLimiter::new(
                url,
                &config.redis_prefix,
                config.rate_limit_requests,
                window,
            )?)),
            (Mode::Cloud, None) => Some(Box::new(LocalLimiter::new(
                config.rate_limit_requests,
                window,
            )?)),
        };
        Ok(Access {
            mode: config.mode,
            static_key: config.api_key.clone(),
            store,
            limiter,
            cors_origins: config.cors_origins.clone(),
            refusals: refusals::RefusalBudget::default(),
            locked_down: AtomicBool::new(false),
        })
    }

    pub fn locked_down(&self) -> bool {
        self.locked_down.load(Ordering::SeqCst)
    }

    /// Returns whether it changed.
    pub fn set_locked_down(&self, on: bool) -> bool {
        self.locked_down.swap(on, Ordering::SeqCst) != on
    }
}

/// The rate-limit bucket of a client address. An IPv6 client usually holds a whole /64 and
/// could otherwise mint a fresh bucket (and a fresh allowance, and a new limiter entry) per
/// request; so IPv6 addresses share their /64's bucket. IPv4-mapped addresses count as IPv4.
pub fn client_bucket(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "ip:unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64() {
        let b = |s: &str| client_bucket(Some(s.parse().unwrap()));
        assert_eq!(b("2001:db8:1:2::1"), b("2001:db8:1:2:ffff::9"));
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
        assert_eq!(b("::ffff:10.0.0.1"), b("10.0.0.1"));
        assert_eq!(b("127.0.0.1"), "ip:127.0.0.1");
    }
}
