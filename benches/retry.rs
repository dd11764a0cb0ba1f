//! Instruction counts of the retry hot paths: the text categoriser against the
//! background document's lowercase-then-`contains` approach on the same pattern table,
//! the delay-table lookup, the per-message retry state, one counter event and the
//! circuit breaker's admission check.
//!
//! Hard limits (Callgrind Ir; DHAT total blocks = 0 for everything but the baseline)
//! are in the code; measured figures are in benches/README.md.
//! Run: `cargo bench --no-default-features --bench retry`.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use corestream::retry::breaker::{Admission, BreakerConfig, CircuitBreaker};
use corestream::retry::category::{ErrorCategory, categorize_text, text_patterns};
use corestream::retry::counters::{CounterSink, Outcome, RETRY_COUNTERS, RetryEvent};
use corestream::retry::policy::{PolicyParams, RetryPolicy, RetryState, SplitMix64};
use gungraun::{
    Callgrind, Dhat, DhatMetric, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};

/// A short librdkafka message.
const SHORT: &str = "Local: Queue full";
/// The lowest-priority category (network): the baseline tries every pattern before.
const NETWORK: &str = "Connection refused (os error 111) while sending to 10.0.0.7:9092";
/// An error chain as `Display`ed by rdkafka whose match is the highest-priority
/// pattern, near the end: the baseline's first `contains` succeeds.
const TOO_LARGE: &str = "KafkaError (Message production error: MessageSizeTooLarge \
                       (Broker: Message size too large))";
/// No pattern matches: the whole text is scanned.
const NO_MATCH: &str = "the sink returned an unexpected status 7 while writing record \
                        1234 of batch 56 for partition 3 of the orders stream";

fn no_alloc_and_at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default().hard_limits([(DhatMetric::TotalBlocks, 0)]));
    config
}

/// Callgrind cap; DHAT runs too (no limit) so the baseline's allocations are reported.
fn at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default());
    config
}

/// The background document's way: lowercase (one allocation), then `contains` for
/// each pattern in priority order.
fn lowercase_contains(text: &str) -> ErrorCategory {
    let lower = text.to_lowercase();
    for (pattern, category) in text_patterns() {
        if lower.contains(pattern) {
            return *category;
        }
    }
    ErrorCategory::Unknown
}

/// Checks both categorisers agree, and on the expected answer, before measuring.
fn checked_text(text: &'static str) -> &'static str {
    let expected = match text {
        SHORT => ErrorCategory::Throttled,
        NETWORK => ErrorCategory::Network,
        TOO_LARGE => ErrorCategory::MessageTooLarge,
        NO_MATCH => ErrorCategory::Unknown,
        other => panic!("no expected category for {other:?}"),
    };
    assert_eq!(categorize_text(text), expected);
    assert_eq!(lowercase_contains(text), expected);
    text
}

#[library_benchmark]
#[bench::short(args = (SHORT), setup = checked_text, config = no_alloc_and_at_most(550))]
#[bench::network(args = (NETWORK), setup = checked_text, config = no_alloc_and_at_most(2300))]
#[bench::too_large(args = (TOO_LARGE), setup = checked_text, config = no_alloc_and_at_most(2500))]
#[bench::no_match(args = (NO_MATCH), setup = checked_text, config = no_alloc_and_at_most(4500))]
fn categorize(text: &str) -> ErrorCategory {
    black_box(categorize_text(black_box(text)))
}

#[library_benchmark]
#[bench::short(args = (SHORT), setup = checked_text, config = at_most(8500))]
#[bench::network(args = (NETWORK), setup = checked_text, config = at_most(8500))]
#[bench::too_large(args = (TOO_LARGE), setup = checked_text, config = at_most(1000))]
#[bench::no_match(args = (NO_MATCH), setup = checked_text, config = at_most(13500))]
fn categorize_lowercase_contains(text: &str) -> ErrorCategory {
    black_box(lowercase_contains(black_box(text)))
}

/// Setup values are leaked so that the measured call gets a reference and does not
/// copy (or drop) them: only the call itself is counted.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn default_policy(retry: u32) -> (&'static RetryPolicy, u32) {
    let policy = RetryPolicy::build(&PolicyParams::default()).expect("default policy");
    assert_eq!(policy.delay(0), Duration::from_secs(2));
    assert_eq!(policy.delay(1000), Duration::from_secs(120));
    (leak(policy), retry)
}

#[library_benchmark]
#[bench::first(args = (0), setup = default_policy, config = no_alloc_and_at_most(40))]
#[bench::past_the_table(args = (1000), setup = default_policy, config = no_alloc_and_at_most(40))]
fn delay_lookup((policy, retry): (&RetryPolicy, u32)) -> Duration {
    black_box(black_box(policy).delay(black_box(retry)))
}

fn jittered_policy(retry: u32) -> (&'static RetryPolicy, u32) {
    let params = PolicyParams { jitter: true, ..PolicyParams::default() };
    (leak(RetryPolicy::build(&params).expect("jittered policy")), retry)
}

#[library_benchmark]
#[bench::third(args = (2), setup = jittered_policy, config = no_alloc_and_at_most(60))]
fn delay_jittered((policy, retry): (&RetryPolicy, u32)) -> u64 {
    let mut rng = SplitMix64::new(black_box(7));
    black_box(black_box(policy).delay_jittered_ns(black_box(retry), &mut rng))
}

fn state_setup(_: ()) -> (&'static RetryPolicy, RetryState, Instant) {
    let (policy, _) = default_policy(0);
    let now = Instant::now();
    (policy, RetryState::new(now), now)
}

#[library_benchmark]
#[bench::next(args = (()), setup = state_setup, config = no_alloc_and_at_most(170))]
fn retry_state_next(
    (policy, mut state, now): (&RetryPolicy, RetryState, Instant),
) -> Option<Duration> {
    let mut rng = SplitMix64::new(1);
    black_box(state.next(black_box(policy), black_box(now), &mut rng))
}

/// A single-writer slot array as the engine's per-worker shard will be.
struct Slots([Cell<u64>; RETRY_COUNTERS]);

impl CounterSink for Slots {
    #[inline]
    fn add(&self, index: usize, n: u64) {
        let slot = &self.0[index];
        slot.set(slot.get() + n);
    }
}

fn slots(_: ()) -> &'static Slots {
    leak(Slots(std::array::from_fn(|_| Cell::new(0))))
}

#[library_benchmark]
#[bench::one(args = (()), setup = slots, config = no_alloc_and_at_most(25))]
fn counter_event(slots: &Slots) -> u64 {
    RetryEvent::new(black_box(ErrorCategory::Network), black_box(Outcome::Attempt))
        .record(black_box(slots));
    slots.0[4].get()
}

fn closed_breaker(_: ()) -> (&'static mut CircuitBreaker, Instant) {
    let breaker = CircuitBreaker::new(BreakerConfig::default()).expect("default breaker");
    (Box::leak(Box::new(breaker)), Instant::now())
}

#[library_benchmark]
#[bench::closed(args = (()), setup = closed_breaker, config = no_alloc_and_at_most(40))]
fn breaker_admit((breaker, now): (&mut CircuitBreaker, Instant)) -> Admission {
    black_box(breaker.admit(black_box(now)))
}

library_benchmark_group!(
    name = retry,
    benchmarks = [
        categorize,
        categorize_lowercase_contains,
        delay_lookup,
        delay_jittered,
        retry_state_next,
        counter_event,
        breaker_admit
    ]
);

main!(library_benchmark_groups = retry);
