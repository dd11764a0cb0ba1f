//! Retry policies: a delay table computed once, looked up per attempt.
//!
//! A [`RetryPolicy`] is built from [`PolicyParams`] at start-up (this may fail with a
//! [`PolicyError`]). Building computes [`DELAY_TABLE_LEN`] delays; afterwards
//! [`RetryPolicy::delay`] is an array index — no power, no float, no allocation per
//! attempt. Retries past the table saturate at its last entry, which is the cap as
//! soon as the growth reaches it within the table (always, for the defaults).
//!
//! Per message (or per sink write) a [`RetryState`] of 24 bytes counts attempts and
//! remembers when the first one started; [`RetryState::next`] returns the delay before
//! the next attempt, or `None` when the attempt or total-time budget is spent. Full
//! jitter draws from a caller-owned [`SplitMix64`] so the worker keeps one generator
//! and no state is shared between threads.

use std::fmt;
use std::time::{Duration, Instant};

use super::sourced::{Source, Sourced, Sources};

/// Delays precomputed per policy. Exponential growth from the default 2s by x1.5
/// reaches the 120s cap at retry 11; 64 entries cover any multiplier >= 1.1 from 1ms
/// to a 2-minute cap, and cost 512 bytes per policy (u64 nanoseconds).
pub const DELAY_TABLE_LEN: usize = 64;

/// Largest multiplier accepted: x16 per retry already reaches an hour from 1 ms in
/// six steps; anything larger is a typo.
pub const MULTIPLIER_MAX: f64 = 16.0;

/// Most attempts (first try included) a policy may allow. A worker stops taking input
/// while one message retries, so the budget must stay finite; 10 000 attempts at the
/// default 120 s cap is about two weeks.
pub const ATTEMPTS_MAX_LIMIT: u32 = 10_000;

/// Longest total retry time a policy may allow (7 days).
pub const ELAPSED_MAX_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest single delay (cap) a policy may use (1 day).
pub const DELAY_MAX_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Default: exponential, as in the background retry document.
pub const STRATEGY_DEFAULT: Strategy = Strategy::Exponential;
/// Default first delay: 2 s, so a transient failure is retried quickly.
pub const DELAY_INITIAL_DEFAULT: Duration = Duration::from_secs(2);
/// Default exponential multiplier: x1.5 ("gentler backoff" than x2).
pub const MULTIPLIER_DEFAULT: f64 = 1.5;
/// Default linear step, used only by [`Strategy::Linear`]: equal to the initial delay.
pub const DELAY_STEP_DEFAULT: Duration = Duration::from_secs(2);
/// Default cap on one delay: 120 s.
pub const DELAY_MAX_DEFAULT: Duration = Duration::from_secs(120);
/// Default attempt budget (first try included): with the default delays the tenth
/// attempt starts about 3.5 minutes after the first.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 10;
/// Default total retry time: 5 minutes from the first attempt.
pub const ELAPSED_MAX_DEFAULT: Duration = Duration::from_secs(300);
/// Default: full jitter off (deterministic delays).
pub const JITTER_DEFAULT: bool = false;

const _: () = assert!(DELAY_TABLE_LEN >= 2 && DELAY_TABLE_LEN <= u8::MAX as usize);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT >= 1 && ATTEMPTS_MAX_DEFAULT <= ATTEMPTS_MAX_LIMIT);
const _: () = assert!(DELAY_INITIAL_DEFAULT.as_nanos() <= DELAY_MAX_DEFAULT.as_nanos());
const _: () = assert!(DELAY_MAX_LIMIT.as_nanos() < u64::MAX as u128);
const _: () = assert!(ELAPSED_MAX_LIMIT.as_nanos() < u64::MAX as u128);
// The sizes the documentation states (x86-64: `Instant` is 16 bytes).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<RetryPolicy>() <= 608 && size_of::<RetryState>() <= 24);

/// How the delay grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every delay equals the initial delay.
    Fixed,
    /// `initial + step × n`, capped.
    Linear,
    /// `initial × multiplier^n`, capped.
    Exponential,
}

impl Strategy {
    /// The spelling used in configuration and environment values.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Fixed => "fixed",
            Strategy::Linear => "linear",
            Strategy::Exponential => "exponential",
        }
    }

    /// Parses `fixed`, `linear` or `exponential` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Strategy> {
        [Strategy::Fixed, Strategy::Linear, Strategy::Exponential]
            .into_iter()
            .find(|strategy| strategy.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a policy is built from. [`PolicyParams::default`] is the built-in
/// default (exponential, 2 s, x1.5, 120 s cap).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyParams {
    pub strategy: Strategy,
    /// First delay (before the second attempt).
    pub delay_initial: Duration,
    /// Exponential growth per retry, in `1.0..=MULTIPLIER_MAX`.
    pub multiplier: f64,
    /// Linear growth per retry.
    pub delay_step: Duration,
    /// Cap on any single delay, in `delay_initial..=DELAY_MAX_LIMIT`.
    pub delay_max: Duration,
    /// Attempts allowed in total, the first included, in `1..=ATTEMPTS_MAX_LIMIT`.
    pub attempts_max: u32,
    /// Time from the start of the first attempt after which no attempt starts, in
    /// `(0, ELAPSED_MAX_LIMIT]`.
    pub elapsed_max: Duration,
    /// Full jitter: each delay is drawn uniformly from `[0, delay]`.
    pub jitter: bool,
}

impl Default for PolicyParams {
    fn default() -> Self {
        PolicyParams {
            strategy: STRATEGY_DEFAULT,
            delay_initial: DELAY_INITIAL_DEFAULT,
            multiplier: MULTIPLIER_DEFAULT,
            delay_step: DELAY_STEP_DEFAULT,
            delay_max: DELAY_MAX_DEFAULT,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            elapsed_max: ELAPSED_MAX_DEFAULT,
            jitter: JITTER_DEFAULT,
        }
    }
}

/// A policy that cannot be built. Holds the offending values with their sources so
/// the message says where to fix it.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyError {
    /// The multiplier is below 1, above [`MULTIPLIER_MAX`] or not a number.
    Multiplier(Sourced<f64>),
    /// The initial delay is zero.
    InitialZero(Sourced<Duration>),
    /// The cap is above [`DELAY_MAX_LIMIT`].
    MaxTooLarge(Sourced<Duration>),
    /// The initial delay is larger than the cap.
    InitialAboveMax { initial: Sourced<Duration>, max: Sourced<Duration> },
    /// `attempts_max` is 0 or above [`ATTEMPTS_MAX_LIMIT`].
    Attempts(Sourced<u32>),
    /// `elapsed_max` is 0 or above [`ELAPSED_MAX_LIMIT`].
    Elapsed(Sourced<Duration>),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::parse::duration::DisplayDuration as D;
        match self {
            PolicyError::Multiplier(m) => write!(
                f,
                "retry multiplier {} (from {}) must be a number from 1 to {MULTIPLIER_MAX}",
                m.value, m.source
            ),
            PolicyError::InitialZero(d) => {
                write!(f, "retry initial delay (from {}) must be more than 0s", d.source)
            }
            PolicyError::MaxTooLarge(d) => write!(
                f,
                "retry max delay {} (from {}) must be at most {}",
                D(d.value),
                d.source,
                D(DELAY_MAX_LIMIT)
            ),
            PolicyError::InitialAboveMax { initial, max } => write!(
                f,
                "retry initial delay {} (from {}) is larger than the max delay {} (from {})",
                D(initial.value),
                initial.source,
                D(max.value),
                max.source
            ),
            PolicyError::Attempts(n) => write!(
                f,
                "retry max attempts {} (from {}) must be from 1 to {ATTEMPTS_MAX_LIMIT}",
                n.value, n.source
            ),
            PolicyError::Elapsed(d) => write!(
                f,
                "retry max total time {} (from {}) must be more than 0s and at most {}",
                D(d.value),
                d.source,
                D(ELAPSED_MAX_LIMIT)
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    /// Where the values at fault came from, the first most to blame (for
    /// `InitialAboveMax`, the initial delay, then the cap).
    pub fn sources(&self) -> Vec<Source> {
        match self {
            PolicyError::Multiplier(v) => vec![v.source],
            PolicyError::InitialZero(v) | PolicyError::MaxTooLarge(v) | PolicyError::Elapsed(v) => {
                vec![v.source]
            }
            PolicyError::InitialAboveMax { initial, max } => vec![initial.source, max.source],
            PolicyError::Attempts(v) => vec![v.source],
        }
    }

    /// What to write instead.
    pub fn hint(&self) -> String {
        use crate::parse::duration::DisplayDuration as D;
        match self {
            PolicyError::Multiplier(_) => {
                format!("a multiplier from 1 to {MULTIPLIER_MAX}, e.g. 1.5")
            }
            PolicyError::InitialZero(_) => "an initial delay such as \"2s\"".to_string(),
            PolicyError::MaxTooLarge(_) => format!("a cap of at most {}", D(DELAY_MAX_LIMIT)),
            PolicyError::InitialAboveMax { max, .. } => {
                format!(
                    "make the initial delay at most the cap ({}), or raise the cap",
                    D(max.value)
                )
            }
            PolicyError::Attempts(_) => format!("from 1 to {ATTEMPTS_MAX_LIMIT} attempts"),
            PolicyError::Elapsed(_) => format!("at most {}", D(ELAPSED_MAX_LIMIT)),
        }
    }
}

/// A built policy: the delay table and the budgets. 608 bytes; build once, share by
/// reference (it is read-only after build).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// `delays_ns[n]` is the delay before retry `n` (0-based), already capped; non-
    /// decreasing; every entry in `1..=delay_max`.
    delays_ns: [u64; DELAY_TABLE_LEN],
    attempts_max: u32,
    elapsed_max_ns: u64,
    jitter: bool,
    params: PolicyParams,
}

impl RetryPolicy {
    /// Validates `params` and computes the delay table. Values carry their source only
    /// for error messages; use [`RetryPolicy::build_sourced`] to keep provenance.
    pub fn build(params: &PolicyParams) -> Result<RetryPolicy, PolicyError> {
        let default = Source::Default;
        Self::build_sourced(params, &Sources::all(default))
    }

    /// As [`RetryPolicy::build`], naming each value's source in errors.
    pub fn build_sourced(
        params: &PolicyParams,
        sources: &Sources,
    ) -> Result<RetryPolicy, PolicyError> {
        fn sourced<T>(value: T, source: Source) -> Sourced<T> {
            Sourced { value, source }
        }
        let multiplier = params.multiplier;
        // `!(a <= x && x <= b)` also refuses NaN.
        if !((1.0..=MULTIPLIER_MAX).contains(&multiplier)) {
            return Err(PolicyError::Multiplier(sourced(multiplier, sources.multiplier)));
        }
        if params.delay_initial.is_zero() {
            return Err(PolicyError::InitialZero(sourced(params.delay_initial, sources.initial)));
        }
        if params.delay_max > DELAY_MAX_LIMIT {
            return Err(PolicyError::MaxTooLarge(sourced(params.delay_max, sources.max)));
        }
        if params.delay_initial > params.delay_max {
            return Err(PolicyError::InitialAboveMax {
                initial: sourced(params.delay_initial, sources.initial),
                max: sourced(params.delay_max, sources.max),
            });
        }
        if !(1..=ATTEMPTS_MAX_LIMIT).contains(&params.attempts_max) {
            return Err(PolicyError::Attempts(sourced(params.attempts_max, sources.attempts_max)));
        }
        if params.elapsed_max.is_zero() || params.elapsed_max > ELAPSED_MAX_LIMIT {
            return Err(PolicyError::Elapsed(sourced(params.elapsed_max, sources.elapsed_max)));
        }
        // Both below DELAY_MAX_LIMIT (checked above), so they fit u64 nanoseconds.
        let initial_ns = params.delay_initial.as_nanos() as u64;
        let max_ns = params.delay_max.as_nanos() as u64;
        let step_ns = u64::try_from(params.delay_step.as_nanos()).unwrap_or(u64::MAX);
        let mut delays_ns = [0u64; DELAY_TABLE_LEN];
        let mut previous_ns = initial_ns;
        for (retry, slot) in delays_ns.iter_mut().enumerate() {
            let delay_ns = match params.strategy {
                Strategy::Fixed => initial_ns,
                Strategy::Linear => initial_ns.saturating_add(step_ns.saturating_mul(retry as u64)),
                // Once per entry at build time, so a float power is fine here; each
                // entry is rounded once (no error carried from step to step). `as`
                // saturates on overflow.
                Strategy::Exponential => {
                    (initial_ns as f64 * multiplier.powi(retry as i32)).round() as u64
                }
            };
            // Capped, and never below the previous entry despite float rounding.
            *slot = delay_ns.min(max_ns).max(previous_ns);
            previous_ns = *slot;
        }
        Ok(RetryPolicy {
            delays_ns,
            attempts_max: params.attempts_max,
            elapsed_max_ns: params.elapsed_max.as_nanos() as u64,
            jitter: params.jitter,
            params: *params,
        })
    }

    /// The delay before retry `retry` (0-based: `delay(0)` follows the first failure).
    /// A table lookup; retries past the table get its last entry.
    #[inline]
    pub fn delay(&self, retry: u32) -> Duration {
        Duration::from_nanos(self.delay_ns(retry))
    }

    /// [`RetryPolicy::delay`] in nanoseconds.
    #[inline]
    pub fn delay_ns(&self, retry: u32) -> u64 {
        let index = (retry as usize).min(DELAY_TABLE_LEN - 1);
        self.delays_ns[index]
    }

    /// The delay before retry `retry`, with full jitter if the policy has it: uniform
    /// in `[0, delay]`, drawn from `rng`.
    #[inline]
    pub fn delay_jittered_ns(&self, retry: u32, rng: &mut SplitMix64) -> u64 {
        let delay_ns = self.delay_ns(retry);
        if self.jitter { rng.below_or_equal(delay_ns) } else { delay_ns }
    }

    /// Attempts allowed in total, the first included.
    pub fn attempts_max(&self) -> u32 {
        self.attempts_max
    }

    /// Time after the first attempt's start past which no attempt starts.
    pub fn elapsed_max(&self) -> Duration {
        Duration::from_nanos(self.elapsed_max_ns)
    }

    /// Whether delays are jittered.
    pub fn jitter(&self) -> bool {
        self.jitter
    }

    /// The parameters the policy was built from.
    pub fn params(&self) -> &PolicyParams {
        &self.params
    }

    /// The precomputed table, in nanoseconds.
    pub fn delays_ns(&self) -> &[u64; DELAY_TABLE_LEN] {
        &self.delays_ns
    }
}

/// One message's (or one sink write's) progress through a policy: 24 bytes, no
/// allocation, owned by the worker handling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryState {
    started: Instant,
    /// Attempts made so far (the first included), `1..=attempts_max`.
    attempts: u32,
}

impl RetryState {
    /// State for a message whose first attempt started at `now`.
    pub fn new(now: Instant) -> RetryState {
        RetryState { started: now, attempts: 1 }
    }

    /// Attempts made so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a failed attempt: the delay before the next one, or `None` when the
    /// policy gives up — the attempt budget is spent, or the next attempt would start
    /// more than `elapsed_max` after the first. Counts the next attempt as made.
    #[inline]
    pub fn next(
        &mut self,
        policy: &RetryPolicy,
        now: Instant,
        rng: &mut SplitMix64,
    ) -> Option<Duration> {
        debug_assert!(self.attempts >= 1 && self.attempts <= policy.attempts_max);
        if self.attempts >= policy.attempts_max {
            return None;
        }
        let delay_ns = policy.delay_jittered_ns(self.attempts - 1, rng);
        let elapsed_ns = u64::try_from(now.saturating_duration_since(self.started).as_nanos())
            .unwrap_or(u64::MAX);
        if elapsed_ns.saturating_add(delay_ns) > policy.elapsed_max_ns {
            return None;
        }
        self.attempts += 1;
        Some(Duration::from_nanos(delay_ns))
    }
}

/// A tiny, fast pseudo-random generator (Steele, Lea and Flood's SplitMix64, as used
/// to seed xoshiro): one add, three xor-shift-multiplies per draw. Not for secrets;
/// here it only spreads retries apart. Each worker owns one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound]` by a widening multiply (Lemire), no division. The bias
    /// is below `bound / 2^64`, far under a nanosecond for any delay.
    #[inline]
    pub fn below_or_equal(&mut self, bound: u64) -> u64 {
        let range = u128::from(bound) + 1;
        ((u128::from(self.next_u64()) * range) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn default_policy_is_exponential_2s_x1_5_capped_at_120s() {
        let policy = RetryPolicy::build(&PolicyParams::default()).unwrap();
        let expected_ms = [2000, 3000, 4500, 6750, 10_125, 15_188, 22_781, 34_172, 51_258, 76_887];
        for (retry, ms) in expected_ms.iter().enumerate() {
            let got = policy.delay(retry as u32).as_millis() as u64;
            assert!(got.abs_diff(*ms) <= 1, "retry {retry}: {got} ms, expected {ms}");
        }
        assert_eq!(policy.delay(10), Duration::from_nanos(115_330_078_125));
        assert_eq!(policy.delay(11), secs(120));
        assert_eq!(policy.delay(u32::MAX), secs(120));
    }

    #[test]
    fn fixed_and_linear_tables() {
        let fixed = PolicyParams { strategy: Strategy::Fixed, ..PolicyParams::default() };
        let policy = RetryPolicy::build(&fixed).unwrap();
        assert!(policy.delays_ns().iter().all(|&d| d == 2_000_000_000));
        let linear = PolicyParams {
            strategy: Strategy::Linear,
            delay_initial: secs(1),
            delay_step: secs(5),
            delay_max: secs(30),
            ..PolicyParams::default()
        };
        let policy = RetryPolicy::build(&linear).unwrap();
        let got: Vec<u64> = (0..9).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(got, [1, 6, 11, 16, 21, 26, 30, 30, 30]);
    }

    #[test]
    fn invalid_params_are_refused_with_a_message() {
        let base = PolicyParams::default();
        let cases: Vec<(PolicyParams, &str)> = vec![
            (
                PolicyParams { multiplier: 0.5, ..base },
                "retry multiplier 0.5 (from default) must be a number from 1 to 16",
            ),
            (
                PolicyParams { multiplier: f64::NAN, ..base },
                "retry multiplier NaN (from default) must be a number from 1 to 16",
            ),
            (
                PolicyParams { delay_initial: Duration::ZERO, ..base },
                "retry initial delay (from default) must be more than 0s",
            ),
            (
                PolicyParams { delay_max: secs(2 * 86_400), ..base },
                "retry max delay 2d (from default) must be at most 1d",
            ),
            (
                PolicyParams { delay_initial: secs(300), ..base },
                "retry initial delay 5m (from default) is larger than the max delay 2m (from default)",
            ),
            (
                PolicyParams { attempts_max: 0, ..base },
                "retry max attempts 0 (from default) must be from 1 to 10000",
            ),
            (
                PolicyParams { elapsed_max: Duration::ZERO, ..base },
                "retry max total time 0s (from default) must be more than 0s and at most 7d",
            ),
        ];
        for (params, message) in cases {
            let err = RetryPolicy::build(&params).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn state_gives_up_after_max_attempts() {
        let params = PolicyParams { attempts_max: 3, ..PolicyParams::default() };
        let policy = RetryPolicy::build(&params).unwrap();
        let start = Instant::now();
        let mut rng = SplitMix64::new(1);
        let mut state = RetryState::new(start);
        assert_eq!(state.next(&policy, start, &mut rng), Some(secs(2)));
        assert_eq!(state.next(&policy, start + secs(2), &mut rng), Some(secs(3)));
        assert_eq!(state.attempts(), 3);
        assert_eq!(state.next(&policy, start + secs(5), &mut rng), None);
        assert_eq!(state.next(&policy, start + secs(5), &mut rng), None);
    }

    #[test]
    fn state_gives_up_when_the_next_attempt_would_pass_the_total_time() {
        let params = PolicyParams { elapsed_max: secs(10), ..PolicyParams::default() };
        let policy = RetryPolicy::build(&params).unwrap();
        let start = Instant::now();
        let mut rng = SplitMix64::new(1);
        let mut state = RetryState::new(start);
        assert_eq!(state.next(&policy, start, &mut rng), Some(secs(2))); // at 2s
        assert_eq!(state.next(&policy, start + secs(2), &mut rng), Some(secs(3))); // at 5s
        // 5s + 4.5s = 9.5s <= 10s.
        assert_eq!(
            state.next(&policy, start + secs(5), &mut rng),
            Some(Duration::from_millis(4500))
        );
        // 9.5s + 6.75s > 10s.
        assert_eq!(state.next(&policy, start + Duration::from_millis(9500), &mut rng), None);
    }

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // First outputs of SplitMix64 seeded with 1234567 (from the reference C code).
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn below_or_equal_reaches_both_bounds_for_tiny_ranges() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 3];
        for _ in 0..1000 {
            seen[rng.below_or_equal(2) as usize] = true;
        }
        assert_eq!(seen, [true, true, true]);
        assert_eq!(rng.below_or_equal(0), 0);
    }
}
