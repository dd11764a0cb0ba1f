//! The circuit breaker of one sink.
//!
//! ```text
//!            N consecutive failures              cool-down elapsed: one probe
//!  Closed ─────────────────────────────▶ Open ─────────────────────────────▶ HalfOpen
//!    ▲  ▲                                 ▲                                     │
//!    │  └─ success resets the count       └──────────── probe failed ───────────┤
//!    └──────────────────────────────────────────────── probe succeeded ─────────┘
//! ```
//!
//! While open, writes are refused without touching the sink, so a dead sink costs
//! no timeouts; the worker holds its batch (backpressure) and asks again later.
//! Half-open admits exactly one probe; everything else waits for its result.
//!
//! Time is the caller's `now: Instant`, so tests drive it without sleeping.
//!
//! A breaker belongs to one sink of one worker thread and is only touched by that
//! thread: it is a plain struct with `&mut self` methods, no atomics and no locks.
//! (If it is ever shared between threads it must move to `crate::sync` and get a loom
//! model in `loom-tests/`.)

use std::fmt;
use std::time::{Duration, Instant};

/// Default consecutive failures that open the breaker: enough to ride out one
/// leader election (a few failed writes) without tripping.
pub const BREAKER_FAILURES_DEFAULT: u32 = 5;
/// Default time the breaker stays open before a probe.
pub const BREAKER_COOL_DOWN_DEFAULT: Duration = Duration::from_secs(30);
/// Most consecutive failures the threshold may be set to (a typo guard).
pub const BREAKER_FAILURES_LIMIT: u32 = 1_000_000;
/// Longest cool-down accepted (1 hour).
pub const BREAKER_COOL_DOWN_LIMIT: Duration = Duration::from_secs(3600);

const _: () =
    assert!(BREAKER_FAILURES_DEFAULT >= 1 && BREAKER_FAILURES_DEFAULT <= BREAKER_FAILURES_LIMIT);

/// When the breaker opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker, in `1..=BREAKER_FAILURES_LIMIT`.
    pub failures_to_open: u32,
    /// Time from opening to the probe, in `(0, BREAKER_COOL_DOWN_LIMIT]`.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: BREAKER_FAILURES_DEFAULT,
            cool_down: BREAKER_COOL_DOWN_DEFAULT,
        }
    }
}

/// A breaker configuration out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerConfigError {
    Failures(u32),
    CoolDown(Duration),
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::parse::duration::DisplayDuration as D;
        match self {
            BreakerConfigError::Failures(n) => write!(
                f,
                "circuit breaker failures_to_open {n} must be from 1 to {BREAKER_FAILURES_LIMIT}"
            ),
            BreakerConfigError::CoolDown(d) => write!(
                f,
                "circuit breaker cool_down {} must be more than 0s and at most {}",
                D(*d),
                D(BREAKER_COOL_DOWN_LIMIT)
            ),
        }
    }
}

impl std::error::Error for BreakerConfigError {}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Writes go through. `failures` consecutive failures so far, `< failures_to_open`.
    Closed { failures: u32 },
    /// Writes are refused until `until`.
    Open { until: Instant },
    /// One probe is in flight; its result closes or re-opens the breaker.
    HalfOpen,
}

/// The answer to "may I write now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: write.
    Allowed,
    /// Cool-down over: write this one as the probe and report its result.
    Probe,
    /// Open: do not write; ask again in `retry_in`.
    Rejected { retry_in: Duration },
    /// Half-open with the probe in flight: wait for its result.
    ProbeInFlight,
}

/// The circuit breaker of one sink (see the module documentation).
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Times the breaker opened (closed → open and half-open → open), for stats.
    opened_count: u64,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, BreakerConfigError> {
        if !(1..=BREAKER_FAILURES_LIMIT).contains(&config.failures_to_open) {
            return Err(BreakerConfigError::Failures(config.failures_to_open));
        }
        if config.cool_down.is_zero() || config.cool_down > BREAKER_COOL_DOWN_LIMIT {
            return Err(BreakerConfigError::CoolDown(config.cool_down));
        }
        Ok(CircuitBreaker { config, state: BreakerState::Closed { failures: 0 }, opened_count: 0 })
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn opened_count(&self) -> u64 {
        self.opened_count
    }

    /// Whether a write may start at `now`. Moves open → half-open when the cool-down
    /// is over (and hands out the single probe).
    #[inline]
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::Open { until } => {
                if now >= until {
                    self.state = BreakerState::HalfOpen;
                    Admission::Probe
                } else {
                    Admission::Rejected { retry_in: until - now }
                }
            }
            BreakerState::HalfOpen => Admission::ProbeInFlight,
        }
    }

    /// A write admitted earlier succeeded. Closes a half-open breaker and resets the
    /// failure count; a late success while open is ignored (the probe decides).
    #[inline]
    pub fn on_success(&mut self) {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen => {
                self.state = BreakerState::Closed { failures: 0 };
            }
            BreakerState::Open { .. } => {}
        }
    }

    /// A write admitted earlier failed at `now`. Opens the breaker after
    /// `failures_to_open` consecutive failures, or at once if it was the probe; a late
    /// failure while open does not extend the cool-down.
    #[inline]
    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.config.failures_to_open {
                    self.open(now);
                } else {
                    self.state = BreakerState::Closed { failures };
                }
            }
            BreakerState::HalfOpen => self.open(now),
            BreakerState::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open { until: now + self.config.cool_down };
        self.opened_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures_to_open: u32, cool_down_s: u64) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failures_to_open,
            cool_down: Duration::from_secs(cool_down_s),
        })
        .unwrap()
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = breaker(3, 10);
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success(); // resets the count
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        assert_eq!(b.admit(t0), Admission::Allowed);
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Open { until: t0 + Duration::from_secs(10) });
        assert_eq!(b.opened_count(), 1);
    }

    #[test]
    fn open_refuses_until_the_cool_down_then_admits_one_probe() {
        let t0 = Instant::now();
        let mut b = breaker(1, 10);
        b.on_failure(t0);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)),
            Admission::Rejected { retry_in: Duration::from_secs(6) }
        );
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(t0 + Duration::from_secs(11)), Admission::ProbeInFlight);
    }

    #[test]
    fn successful_probe_closes() {
        let t0 = Instant::now();
        let mut b = breaker(1, 10);
        b.on_failure(t0);
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admission::Probe);
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admission::Allowed);
    }

    #[test]
    fn failed_probe_reopens_for_a_new_cool_down() {
        let t0 = Instant::now();
        let mut b = breaker(2, 10);
        b.on_failure(t0);
        b.on_failure(t0);
        let t1 = t0 + Duration::from_secs(12);
        assert_eq!(b.admit(t1), Admission::Probe);
        b.on_failure(t1);
        assert_eq!(b.state(), BreakerState::Open { until: t1 + Duration::from_secs(10) });
        assert_eq!(b.opened_count(), 2);
    }

    #[test]
    fn late_results_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = breaker(1, 10);
        b.on_failure(t0);
        let open = b.state();
        b.on_success();
        b.on_failure(t0 + Duration::from_secs(5));
        assert_eq!(b.state(), open);
    }

    #[test]
    fn bad_config_is_refused_with_a_message() {
        let err =
            CircuitBreaker::new(BreakerConfig { failures_to_open: 0, ..BreakerConfig::default() })
                .unwrap_err();
        assert_eq!(err.to_string(), "circuit breaker failures_to_open 0 must be from 1 to 1000000");
        let err = CircuitBreaker::new(BreakerConfig {
            cool_down: Duration::ZERO,
            ..BreakerConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "circuit breaker cool_down 0s must be more than 0s and at most 1h"
        );
    }
}
