//! Sink failures end to end: a fault-injecting sink behind the engine's resilient
//! wrapper. Every test checks that each input ends delivered or dead-lettered
//! exactly once (or, for fail-fast, that the engine stops with a clear error), that
//! order per key holds through retries, and what the counters say.

mod failure_support;

use std::sync::atomic::Ordering;

use corestream::metrics::Counter;
use corestream::retry::ErrorCategory;
use corestream::retry::counters::Outcome;
use corestream::sink::dead_letter::Stage;

use failure_support::{Fault, Plan, assert_settled_exactly_once, resilience, run_with};

const COUNT: u64 = 5_000;

#[test]
fn fails_n_times_then_delivers_everything_in_order() {
    let plan = Plan::new(Fault::Fail(ErrorCategory::Network, "connection reset by peer"), 5);
    let (result, dead) = run_with(&plan, 2, COUNT, resilience(10, 1000));
    let report = result.expect("transient failures are retried");
    let delivered = plan.delivered.lock().unwrap().clone();
    let dead = dead.0.lock().unwrap().clone();
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    assert_settled_exactly_once(COUNT, &delivered, &dead);
    let s = &report.snapshot;
    assert_eq!(s.retry(ErrorCategory::Network, Outcome::Attempt), 5, "one per failed write");
    let successes = s.retry(ErrorCategory::Network, Outcome::Success);
    assert!((1..=5).contains(&successes), "each failed write later succeeded: {successes}");
    assert_eq!(s.retry(ErrorCategory::Network, Outcome::GaveUp), 0);
    assert_eq!(s.get(Counter::SinkRetries), 5);
    assert_eq!(s.get(Counter::SinkDeadLettered), 0);
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked), "every batch acknowledged");
}

#[test]
fn fails_forever_dead_letters_every_message_with_category_reason_attempts_and_position() {
    let plan = Plan::new(Fault::Fail(ErrorCategory::Throttled, "Local: Queue full"), u64::MAX);
    let (result, dead) = run_with(&plan, 2, COUNT, resilience(3, 1000));
    let report = result.expect("giving up is not an engine failure");
    let delivered = plan.delivered.lock().unwrap().clone();
    let dead = dead.0.lock().unwrap().clone();
    assert!(delivered.is_empty());
    assert_settled_exactly_once(COUNT, &delivered, &dead);
    for d in &dead {
        assert_eq!(d.category, ErrorCategory::Throttled);
        assert_eq!(d.stage, Stage::Sink);
        assert_eq!(d.attempts, 3, "attempts_max");
        assert!(
            d.reason.contains("Queue full") && d.reason.contains("gave up after 3"),
            "{}",
            d.reason
        );
        assert!(!d.payload.is_empty() && !d.key.is_empty());
    }
    let s = &report.snapshot;
    assert_eq!(s.get(Counter::SinkDeadLettered), COUNT);
    assert_eq!(s.get(Counter::DeadLettered), COUNT);
    assert_eq!(s.retry(ErrorCategory::Throttled, Outcome::DeadLettered), COUNT);
    let gave_up = s.retry(ErrorCategory::Throttled, Outcome::GaveUp);
    assert_eq!(s.retry(ErrorCategory::Throttled, Outcome::Attempt), 3 * gave_up);
    assert_eq!(plan.calls.load(Ordering::Relaxed), 3 * gave_up, "every attempt reached the sink");
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked));
}

#[test]
fn each_category_takes_its_action() {
    use ErrorCategory::*;
    for category in ErrorCategory::ALL {
        let plan = Plan::new(Fault::Fail(category, "injected"), u64::MAX);
        let (result, dead) = run_with(&plan, 2, 300, resilience(2, 1000));
        let dead = dead.0.lock().unwrap().clone();
        match category {
            Auth | Configuration => {
                let err = result.expect_err("fail_fast stops the engine").to_string();
                assert!(err.contains(category.name()) && err.contains("fail_fast"), "{err}");
                assert!(err.contains("injected"), "{err}");
                assert!(dead.is_empty(), "fail_fast dead-letters nothing");
            }
            MessageTooLarge | Serialization => {
                let report = result.expect("dead_letter is not an engine failure");
                assert_settled_exactly_once(300, &plan.delivered.lock().unwrap(), &dead);
                assert!(dead.iter().all(|d| d.attempts == 1 && d.category == category));
                assert_eq!(report.snapshot.retry(category, Outcome::DeadLettered), 300);
                assert_eq!(
                    report.snapshot.retry(category, Outcome::GaveUp),
                    0,
                    "no retry to give up"
                );
            }
            TopicMissing | Network | Timeout | Throttled | Unknown => {
                let report = result.expect("retry, then dead-letter");
                assert_settled_exactly_once(300, &plan.delivered.lock().unwrap(), &dead);
                assert!(dead.iter().all(|d| d.attempts == 2 && d.category == category));
                assert_eq!(report.snapshot.retry(category, Outcome::DeadLettered), 300);
            }
        }
    }
}

#[test]
fn an_unknown_error_is_categorised_from_its_text() {
    let plan =
        Plan::new(Fault::Fail(ErrorCategory::Unknown, "Broker: Unknown topic or partition"), 2);
    let (result, _dead) = run_with(&plan, 1, 500, resilience(5, 1000));
    let report = result.unwrap();
    assert_eq!(report.snapshot.retry(ErrorCategory::TopicMissing, Outcome::Attempt), 2);
    assert_eq!(report.snapshot.retry(ErrorCategory::Unknown, Outcome::Attempt), 0);
    assert_eq!(plan.delivered.lock().unwrap().len(), 500);
}

#[test]
fn a_panicking_sink_is_caught_and_retried_as_unknown() {
    let plan = Plan::new(Fault::Panic, 3);
    let (result, dead) = run_with(&plan, 2, COUNT, resilience(10, 1000));
    let report = result.expect("panics are caught");
    let delivered = plan.delivered.lock().unwrap().clone();
    assert_settled_exactly_once(COUNT, &delivered, &dead.0.lock().unwrap());
    assert_eq!(report.snapshot.retry(ErrorCategory::Unknown, Outcome::Attempt), 3);
}

#[test]
fn a_sink_that_always_panics_has_everything_dead_lettered() {
    let plan = Plan::new(Fault::Panic, u64::MAX);
    let (result, dead) = run_with(&plan, 1, 400, resilience(2, 1000));
    result.expect("panics are errors of category unknown, retried then dead-lettered");
    let dead = dead.0.lock().unwrap().clone();
    assert_settled_exactly_once(400, &plan.delivered.lock().unwrap(), &dead);
    assert!(dead.iter().all(|d| d.category == ErrorCategory::Unknown));
    assert!(
        dead[0].reason.contains("sink panicked during write: injected sink panic"),
        "{}",
        dead[0].reason
    );
}

#[test]
fn the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it() {
    // One worker, so the sequence is deterministic: failures 1 and 2 open the
    // breaker; each later attempt is a half-open probe; probes 3..=6 fail (each
    // re-opens it), probe 7 succeeds and closes it.
    let plan = Plan::new(Fault::Fail(ErrorCategory::Network, "connection refused"), 6);
    let (result, dead) = run_with(&plan, 1, 1_000, resilience(20, 2));
    let report = result.unwrap();
    assert_settled_exactly_once(1_000, &plan.delivered.lock().unwrap(), &dead.0.lock().unwrap());
    assert_eq!(report.snapshot.get(Counter::BreakerOpened), 5);
    assert_eq!(report.snapshot.retry(ErrorCategory::Network, Outcome::Attempt), 6);
    assert_eq!(report.snapshot.retry(ErrorCategory::Network, Outcome::Success), 1);
}

#[test]
fn fail_fast_stops_a_two_worker_engine_with_a_clear_error() {
    let plan = Plan::new(Fault::Fail(ErrorCategory::Auth, "SASL authentication failed"), u64::MAX);
    let (result, dead) = run_with(&plan, 2, 200_000, resilience(10, 1000));
    let err = result.expect_err("must stop").to_string();
    assert!(err.contains("SASL authentication failed"), "{err}");
    assert!(err.contains("auth errors are set to fail_fast"), "{err}");
    assert!(dead.0.lock().unwrap().is_empty());
}
