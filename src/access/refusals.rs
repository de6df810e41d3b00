//! A budget for the audit entries of refusals that anyone can cause without a key: a bad or
//! missing key, a foreign `Host` or `Origin`, an address over its rate limit before it showed
//! a valid key. One entry each would let an unauthenticated client grow the audit log (and
//! its disk) as fast as it can send; so each window records at most [`REFUSAL_BURST`] of
//! them, counts the rest by reason, and one summary entry reports the count when the window
//! ends. The `access_refusals` metric still counts every one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusal entries recorded per window before the rest are only counted.
pub const REFUSAL_BURST: u32 = 30;
/// The budget's window.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// What to do with one refusal's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Record,
    /// Count it; the first suppression of a window says when its summary is due.
    Suppress { summary_at: Option<Instant> },
}

/// Suppressed refusals of one window, by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub by_reason: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u32,
    suppressed: BTreeMap<&'static str, u64>,
}

/// The per-instance budget. Reasons are `&'static str` from a fixed set, so the counts map
/// holds a handful of keys whatever clients send.
#[derive(Debug)]
pub struct RefusalBudget {
    burst: u32,
    window: Duration,
    state: Mutex<Window>,
}

impl RefusalBudget {
    pub fn new(burst: u32, window: Duration) -> RefusalBudget {
        RefusalBudget {
            burst,
            window,
            state: Mutex::new(Window {
                started: Instant::now(),
                recorded: 0,
                suppressed: BTreeMap::new(),
            }),
        }
    }

    /// Counts one refusal at `now`. A window that has ended starts a new one; its own
    /// suppressed counts stay for [`RefusalBudget::take_summary`].
    pub fn admit(&self, reason: &'static str, now: Instant) -> Verdict {
        let Ok(mut w) = self.state.lock() else {
            return Verdict::Record;
        };
        if now.saturating_duration_since(w.started) >= self.window && w.suppressed.is_empty() {
            w.started = now;
            w.recorded = 0;
        }
        if w.recorded < self.burst {
            w.recorded += 1;
            return Verdict::Record;
        }
        let first = w.suppressed.is_empty();
        *w.suppressed.entry(reason).or_insert(0) += 1;
        Verdict::Suppress {
            summary_at: first.then(|| w.started + self.window),
        }
    }

    /// The suppressed counts, and a fresh window for the refusals after them.
    pub fn take_summary(&self, now: Instant) -> Option<Summary> {
        let mut w = self.state.lock().ok()?;
        if w.suppressed.is_empty() {
            return None;
        }
        let by_reason = std::mem::take(&mut w.suppressed);
        w.started = now;
        w.recorded = 0;
        Some(Summary {
            total: by_reason.values().sum(),
            by_reason,
        })
    }
}

impl Default for RefusalBudget {
    fn default() -> Self {
        RefusalBudget::new(REFUSAL_BURST, REFUSAL_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_recorded_up_to_the_burst_then_summarised() {
        let b = RefusalBudget::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.admit("bad_key", t0), Verdict::Record);
        }
        let first = b.admit("bad_key", t0);
        assert_eq!(
            first,
            Verdict::Suppress {
                summary_at: Some(b.state.lock().unwrap().started + Duration::from_secs(60))
            }
        );
        for _ in 0..996 {
            assert!(matches!(
                b.admit("bad_key", t0),
                Verdict::Suppress { summary_at: None }
            ));
        }
        assert!(matches!(
            b.admit("foreign_host", t0),
            Verdict::Suppress { summary_at: None }
        ));
        let s = b.take_summary(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(s.total, 998);
        assert_eq!(s.by_reason["bad_key"], 997);
        assert_eq!(s.by_reason["foreign_host"], 1);
        assert_eq!(b.take_summary(t0), None, "a summary is taken once");
        // The next window records again.
        assert_eq!(
            b.admit("bad_key", t0 + Duration::from_secs(61)),
            Verdict::Record
        );
    }

    #[test]
    fn a_quiet_window_resets_the_budget() {
        let b = RefusalBudget::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(b.admit("bad_key", t0), Verdict::Record);
        assert_eq!(
            b.admit("bad_key", t0 + Duration::from_secs(11)),
            Verdict::Record
        );
    }
}
