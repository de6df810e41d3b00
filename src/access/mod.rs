//! Access (SPEC §2.6): who may call, and how often.
//!
//! - `keys`      — API keys: generation, storage as hashes, constant-time checks
//! - `ratelimit` — GCRA limits in process or shared through Redis

pub mod keys;
pub mod ratelimit;

use std::sync::Arc;
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
        })
    }
}
