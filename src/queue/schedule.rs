//! The retry schedule: exponential backoff, lifetime, delay warnings.
//!
//! Owns the arithmetic of when to try again and when to give up
//! (mta-semantics C.2). It is pure: every answer is computed from times
//! the caller passes in (unix seconds) and a per-recipient seed for the
//! jitter, so tests never sleep and the same entry gets the same times
//! after a restart. It never reads a clock and never touches the disk.

use std::time::Duration;

/// The retry policy of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Delay after the first failed attempt (mta-semantics C.2: 5 min, as
    /// Postfix's `minimal_backoff_time`).
    pub min_backoff: Duration,
    /// Longest delay between attempts (C.2: capped at 60 min).
    pub max_backoff: Duration,
    /// Each further failure multiplies the delay by this (C.2: doubles).
    pub factor: u32,
    /// Each delay is moved by up to this many percent either way, so
    /// messages deferred together do not all retry in the same second
    /// (C.2: ±10 %).
    pub jitter_percent: u32,
    /// After this long in the queue a temporary failure becomes permanent
    /// and is bounced (C.2: 5 days, sendmail `Timeout.queuereturn`,
    /// Postfix `maximal_queue_lifetime`).
    pub max_lifetime: Duration,
    /// Send one `Action: delayed` DSN once a message has waited this long;
    /// `None` sends none (B.9: optional; Postfix's default is off).
    pub delay_warning: Option<Duration>,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            min_backoff: Duration::from_secs(300),
            max_backoff: Duration::from_secs(3600),
            factor: 2,
            jitter_percent: 10,
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            delay_warning: None,
        }
    }
}

/// A schedule that makes no sense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The minimal backoff is zero: a failing host would be hammered.
    #[error("queue schedule: minimal backoff must be at least one second")]
    ZeroBackoff,
    /// `max_backoff < min_backoff`.
    #[error("queue schedule: maximal backoff is shorter than the minimal backoff")]
    MaxBelowMin,
    /// The factor is zero.
    #[error("queue schedule: backoff factor must be at least 1")]
    ZeroFactor,
    /// The jitter is 50 % or more.
    #[error("queue schedule: jitter must be below 50 percent")]
    Jitter,
    /// The lifetime is zero.
    #[error("queue schedule: lifetime must be at least one second")]
    ZeroLifetime,
}

impl Schedule {
    /// Checks the settings; call it before starting a runner.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.min_backoff.as_secs() == 0 {
            return Err(ScheduleError::ZeroBackoff);
        }
        if self.max_backoff < self.min_backoff {
            return Err(ScheduleError::MaxBelowMin);
        }
        if self.factor == 0 {
            return Err(ScheduleError::ZeroFactor);
        }
        if self.jitter_percent >= 50 {
            return Err(ScheduleError::Jitter);
        }
        if self.max_lifetime.as_secs() == 0 {
            return Err(ScheduleError::ZeroLifetime);
        }
        Ok(())
    }

    /// The delay after the `attempts`-th failed attempt (from 1), before
    /// jitter: `min * factor^(attempts-1)`, capped at `max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let min = self.min_backoff.as_secs();
        let max = self.max_backoff.as_secs();
        let mut d = min;
        for _ in 1..attempts.max(1) {
            d = d.saturating_mul(u64::from(self.factor));
            if d >= max {
                break;
            }
        }
        Duration::from_secs(d.min(max))
    }

    /// The delay with jitter applied from `seed`; never below one second.
    pub fn jittered(&self, attempts: u32, seed: u64) -> Duration {
        let d = self.backoff(attempts).as_secs() as i64;
        let j = i64::from(self.jitter_percent.min(49));
        if j == 0 {
            return Duration::from_secs(d.max(1) as u64);
        }
        // splitmix64 of seed and attempt: stable, well spread.
        let mut z = seed ^ u64::from(attempts).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let percent = (z % (2 * j as u64 + 1)) as i64 - j;
        Duration::from_secs((d + d * percent / 100).max(1) as u64)
    }

    /// When to try again after the `attempts`-th failure at `now`, for a
    /// message that arrived at `arrival`; `None` once the lifetime has run
    /// out (give up and bounce). The last retry is moved to the end of
    /// the lifetime rather than past it, so a message is always tried once
    /// more just before it expires.
    pub fn next_retry(&self, arrival: i64, attempts: u32, now: i64, seed: u64) -> Option<i64> {
        if self.expired(arrival, now) {
            return None;
        }
        let next = now.saturating_add(self.jittered(attempts, seed).as_secs() as i64);
        Some(next.min(self.expiry(arrival)))
    }

    /// When a message that arrived at `arrival` expires.
    pub fn expiry(&self, arrival: i64) -> i64 {
        arrival.saturating_add(self.max_lifetime.as_secs() as i64)
    }

    /// Whether a message that arrived at `arrival` has been queued for its
    /// whole lifetime at `now`.
    pub fn expired(&self, arrival: i64, now: i64) -> bool {
        now >= self.expiry(arrival)
    }

    /// Whether a delay warning is due at `now` (the caller keeps track of
    /// whether one was sent).
    pub fn should_warn(&self, arrival: i64, now: i64) -> bool {
        self.delay_warning
            .is_some_and(|w| now >= arrival.saturating_add(w.as_secs() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> Schedule {
        Schedule {
            jitter_percent: 0,
            ..Schedule::default()
        }
    }

    /// mta-semantics C.2: 5, 10, 20, 40, then 60 minutes.
    #[test]
    fn default_backoff_doubles_to_the_cap() {
        let s = no_jitter();
        let want = [300, 600, 1200, 2400, 3600, 3600, 3600];
        let got: Vec<u64> = (1..=7).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(got, want);
        assert_eq!(s.backoff(u32::MAX).as_secs(), 3600, "no overflow");
    }

    #[test]
    fn configurable_factor_and_bounds() {
        let s = Schedule {
            min_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(1000),
            factor: 3,
            ..no_jitter()
        };
        let got: Vec<u64> = (1..=5).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(got, [60, 180, 540, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_deterministic() {
        let s = Schedule::default();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..500u64 {
            let d = s.jittered(1, seed).as_secs();
            assert!((270..=330).contains(&d), "{d}");
            assert_eq!(d, s.jittered(1, seed).as_secs());
            seen.insert(d);
        }
        assert!(seen.len() > 20, "jitter spreads: {seen:?}");
    }

    #[test]
    fn last_retry_lands_on_the_expiry_then_gives_up() {
        let s = no_jitter();
        let end = s.expiry(1000);
        assert_eq!(end, 1000 + 5 * 24 * 3600);
        assert_eq!(s.next_retry(1000, 9, 1000, 0), Some(1000 + 3600));
        assert_eq!(s.next_retry(1000, 9, end - 10, 0), Some(end));
        assert_eq!(s.next_retry(1000, 9, end, 0), None);
        assert!(!s.expired(1000, end - 1));
        assert!(s.expired(1000, end));
    }

    #[test]
    fn delay_warning_is_off_by_default() {
        let s = Schedule::default();
        assert!(!s.should_warn(0, 10 * 24 * 3600));
        let s = Schedule {
            delay_warning: Some(Duration::from_secs(4 * 3600)),
            ..s
        };
        assert!(!s.should_warn(0, 4 * 3600 - 1));
        assert!(s.should_warn(0, 4 * 3600));
    }

    #[test]
    fn validate_refuses_nonsense() {
        let d = Schedule::default;
        let cases = [
            (d(), Ok(())),
            (
                Schedule {
                    min_backoff: Duration::ZERO,
                    ..d()
                },
                Err(ScheduleError::ZeroBackoff),
            ),
            (
                Schedule {
                    max_backoff: Duration::from_secs(1),
                    ..d()
                },
                Err(ScheduleError::MaxBelowMin),
            ),
            (
                Schedule { factor: 0, ..d() },
                Err(ScheduleError::ZeroFactor),
            ),
            (
                Schedule {
                    jitter_percent: 50,
                    ..d()
                },
                Err(ScheduleError::Jitter),
            ),
            (
                Schedule {
                    max_lifetime: Duration::ZERO,
                    ..d()
                },
                Err(ScheduleError::ZeroLifetime),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.validate(), want, "{s:?}");
        }
    }
}
