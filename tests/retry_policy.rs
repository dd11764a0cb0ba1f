//! Property tests of the delay tables: monotone without jitter, capped, jitter within
//! its bounds, retries past the table saturate; and the per-message state's budgets.

use std::time::{Duration, Instant};

use corestream::retry::policy::{
    DELAY_TABLE_LEN, MULTIPLIER_MAX, PolicyParams, RetryPolicy, RetryState, SplitMix64, Strategy,
};
use proptest::prelude::*;

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![Just(Strategy::Fixed), Just(Strategy::Linear), Just(Strategy::Exponential)]
}

prop_compose! {
    fn params()(
        strategy in strategy(),
        initial_ms in 1u64..=60_000,
        extra_ms in 0u64..=3_600_000,
        step_ms in 0u64..=60_000,
        multiplier in 1.0f64..=MULTIPLIER_MAX,
        attempts_max in 1u32..=50,
        jitter in any::<bool>(),
    ) -> PolicyParams {
        PolicyParams {
            strategy,
            delay_initial: Duration::from_millis(initial_ms),
            multiplier,
            delay_step: Duration::from_millis(step_ms),
            delay_max: Duration::from_millis(initial_ms + extra_ms),
            attempts_max,
            elapsed_max: Duration::from_secs(3600),
            jitter,
        }
    }
}

proptest! {
    #[test]
    fn delays_are_monotone_capped_and_start_at_initial(params in params()) {
        let policy = RetryPolicy::build(&params).unwrap();
        prop_assert_eq!(policy.delay(0), params.delay_initial);
        let mut previous = Duration::ZERO;
        for retry in 0..(DELAY_TABLE_LEN as u32 + 8) {
            let delay = policy.delay(retry);
            prop_assert!(delay >= previous, "retry {}: {:?} < {:?}", retry, delay, previous);
            prop_assert!(delay <= params.delay_max, "retry {}: {:?} above cap", retry, delay);
            prop_assert!(delay >= params.delay_initial);
            previous = delay;
        }
    }

    #[test]
    fn delays_follow_the_strategy_until_the_cap(params in params(), retry in 0u32..20) {
        let policy = RetryPolicy::build(&params).unwrap();
        let initial = params.delay_initial.as_secs_f64();
        let uncapped = match params.strategy {
            Strategy::Fixed => initial,
            Strategy::Linear => initial + params.delay_step.as_secs_f64() * f64::from(retry),
            Strategy::Exponential => initial * params.multiplier.powi(retry as i32),
        };
        let expected = uncapped.min(params.delay_max.as_secs_f64());
        let got = policy.delay(retry).as_secs_f64();
        // Each entry is rounded once to whole nanoseconds.
        prop_assert!((got - expected).abs() <= 1e-9 + expected * 1e-12,
            "retry {}: got {} expected {}", retry, got, expected);
    }

    #[test]
    fn retries_past_the_table_saturate_at_its_last_entry(params in params(), retry in DELAY_TABLE_LEN as u32..) {
        let policy = RetryPolicy::build(&params).unwrap();
        prop_assert_eq!(policy.delay(retry), policy.delay(DELAY_TABLE_LEN as u32 - 1));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_delay(params in params(), seed in any::<u64>(), retry in 0u32..100) {
        let params = PolicyParams { jitter: true, ..params };
        let policy = RetryPolicy::build(&params).unwrap();
        let mut rng = SplitMix64::new(seed);
        for _ in 0..16 {
            let jittered = policy.delay_jittered_ns(retry, &mut rng);
            prop_assert!(jittered <= policy.delay_ns(retry));
        }
    }

    #[test]
    fn state_never_exceeds_the_attempt_budget(params in params(), seed in any::<u64>()) {
        let policy = RetryPolicy::build(&params).unwrap();
        let mut rng = SplitMix64::new(seed);
        let start = Instant::now();
        let mut now = start;
        let mut state = RetryState::new(start);
        let mut attempts = 1;
        // The generator as the next call finds it: the call that gives up drew (or
        // not) from this state, so the test can redraw the delay it refused.
        let mut before = rng;
        while let Some(delay) = state.next(&policy, now, &mut rng) {
            attempts += 1;
            now += delay;
            prop_assert!(now - start <= params.elapsed_max, "attempt starts past max_total");
            prop_assert!(attempts <= params.attempts_max);
            before = rng;
        }
        prop_assert_eq!(state.attempts(), attempts);
        // It stopped for a reason: the attempt budget, or a next delay (jittered
        // or not) that would start an attempt past max_total.
        if attempts < params.attempts_max {
            let refused = Duration::from_nanos(policy.delay_jittered_ns(attempts - 1, &mut before));
            prop_assert!(now - start + refused > params.elapsed_max,
                "stopped after {} attempts with {:?} left", attempts, params.elapsed_max - (now - start));
        }
    }
}

#[test]
fn jitter_spreads_over_the_whole_range() {
    let params = PolicyParams { jitter: true, ..PolicyParams::default() };
    let policy = RetryPolicy::build(&params).unwrap();
    let mut rng = SplitMix64::new(42);
    let delay_ns = policy.delay_ns(0);
    let draws: Vec<u64> = (0..1000).map(|_| policy.delay_jittered_ns(0, &mut rng)).collect();
    // Uniform on [0, 2s]: the quarters of the range each get roughly a quarter.
    for quarter in 0..4 {
        let low = delay_ns / 4 * quarter;
        let high = delay_ns / 4 * (quarter + 1);
        let count = draws.iter().filter(|&&d| d >= low && d <= high).count();
        assert!((150..=350).contains(&count), "quarter {quarter}: {count} of 1000");
    }
}
