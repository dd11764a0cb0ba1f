//! What happens when a sink fails: retry, circuit breaker, dead-letter, fail fast.
//!
//! [`ResilientSinkFactory`] wraps any [`SinkFactory`]; the engine puts it around
//! every sink, so each worker's sink is a [`ResilientSink`] around the real one:
//!
//! ```text
//! worker ──write_batch──► ResilientSink ──(breaker admits)──► inner sink
//!                           │  Err / panic                        │
//!                           ▼                                     │
//!          category (SinkError.category, else the text) ──► Action
//!            retry:       sleep the policy's table delay, try again (the worker
//!                         takes no input meanwhile: its ring fills, the source waits)
//!            dead_letter: the batch (and whatever the sink held) → dead-letter sink
//!            fail_fast:   return the error: the worker stops, the engine stops
//!          policy gave up ──► dead-letter every output not yet durable, release
//!                              the ticket, go on with the next batch
//! ```
//!
//! The success path is the inner call plus a breaker-state check: no clock read, no
//! allocation, nothing per message. Everything else is `#[cold]`.
//!
//! Accounting: every output ends acknowledged as delivered (the inner sink released
//! its ticket), deduplicated, or dead-lettered (`Counter::SinkDeadLettered`, and per
//! category in the retry outcome slots). The retry outcome slots count sink
//! *operations* for `attempt` (one failed write, flush or close), `success` (an
//! operation that succeeded after failing) and `gave_up`, and *messages* for
//! `dead_lettered`. A fail-fast error stops the engine without acknowledging the
//! batch, so its input is replayed after a restart; nothing is lost.
//!
//! Panics of the inner sink are caught (`catch_unwind`) and handled as errors of
//! category `unknown`. Timeouts are the inner sink's business: a synchronous call
//! cannot be cancelled from outside, so the sinks that block (file, stdout) time
//! their own system calls on an I/O thread (see [`super::writer`]) and report
//! [`ErrorCategory::Timeout`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use super::{Sink, SinkCounts, SinkError, SinkFactory, Undelivered};
use crate::ack::{Acker, Ticket};
use crate::message::{Message, Meta, Output};
use crate::metrics::{Counter, ShardedCounters};
use crate::retry::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
use crate::retry::category::categorize_text;
use crate::retry::counters::{Outcome, RetryEvent};
use crate::retry::policy::PolicyParams;
use crate::retry::{Action, ActionTable, ErrorCategory, RetryPolicy, RetryState, SplitMix64};
use std::sync::Arc;

/// Seed of each worker's jitter generator (xored with the worker index), so
/// workers that fail together do not retry in lockstep.
const JITTER_SEED: u64 = 0x5EED_C0DE_0000_0001;

/// How a sink's failures are handled: the retry policy (delay table and budgets),
/// the action per error category, and the circuit breaker. Built once; copied into
/// each worker's sink.
#[derive(Clone, Debug)]
pub struct Resilience {
    pub policy: RetryPolicy,
    pub actions: ActionTable,
    pub breaker: BreakerConfig,
}

impl Default for Resilience {
    /// The built-in defaults: exponential 2s ×1.5 capped at 120s, 10 attempts, 5 min
    /// in all; the default action table; a breaker that opens after 5 consecutive
    /// failures for 30s.
    fn default() -> Self {
        Resilience {
            policy: RetryPolicy::build(&PolicyParams::default())
                .expect("the default retry parameters are valid"),
            actions: ActionTable::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

impl Resilience {
    /// The effective `[retry]` settings (defaults < environment < config file) and a
    /// breaker configuration.
    pub fn from_retry(retry: &crate::retry::env::EffectiveRetry, breaker: BreakerConfig) -> Self {
        Resilience { policy: retry.policy().clone(), actions: retry.action_table(), breaker }
    }
}

/// Wraps a [`SinkFactory`] so that each sink it opens retries, trips its breaker,
/// dead-letters and counts (see the module documentation).
pub struct ResilientSinkFactory {
    inner: Arc<dyn SinkFactory>,
    resilience: Resilience,
    dead_letter: Arc<dyn DeadLetter>,
    counters: Arc<ShardedCounters>,
}

impl ResilientSinkFactory {
    /// `counters` must have a shard per worker: sink `w` writes shard `w` (from
    /// worker `w`'s thread only, so the single-writer rule holds).
    pub fn new(
        inner: Arc<dyn SinkFactory>,
        resilience: Resilience,
        dead_letter: Arc<dyn DeadLetter>,
        counters: Arc<ShardedCounters>,
    ) -> Result<Self, SinkError> {
        CircuitBreaker::new(resilience.breaker)
            .map_err(|e| SinkError::new(ErrorCategory::Configuration, e.to_string()))?;
        Ok(ResilientSinkFactory { inner, resilience, dead_letter, counters })
    }
}

impl SinkFactory for ResilientSinkFactory {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn open(&self, worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        if worker >= self.counters.shards() {
            return Err(SinkError::new(
                ErrorCategory::Configuration,
                format!("no counter shard for worker {worker}"),
            ));
        }
        let inner = self.inner.open(worker, acker.clone())?;
        let breaker = CircuitBreaker::new(self.resilience.breaker)
            .map_err(|e| SinkError::new(ErrorCategory::Configuration, e.to_string()))?;
        Ok(Box::new(ResilientSink {
            inner,
            breaker,
            policy: self.resilience.policy.clone(),
            actions: self.resilience.actions,
            rng: SplitMix64::new(JITTER_SEED ^ worker as u64),
            acker,
            dead_letter: self.dead_letter.clone(),
            counters: self.counters.clone(),
            worker,
            description: self.inner.describe(),
        }))
    }
}

/// The operation being retried.
#[derive(Clone, Copy)]
enum Operation<'b, 'o> {
    Write { outputs: &'b [Output<'o>], inputs: &'b [Message<'o>], ticket: Ticket },
    Flush,
    Idle,
    Close,
}

impl Operation<'_, '_> {
    fn name(&self) -> &'static str {
        match self {
            Operation::Write { .. } => "write",
            Operation::Flush | Operation::Idle => "flush",
            Operation::Close => "close",
        }
    }
}

/// One worker's sink with failure handling around the real one.
pub struct ResilientSink {
    inner: Box<dyn Sink>,
    breaker: CircuitBreaker,
    policy: RetryPolicy,
    actions: ActionTable,
    rng: SplitMix64,
    acker: Acker,
    dead_letter: Arc<dyn DeadLetter>,
    counters: Arc<ShardedCounters>,
    worker: usize,
    description: String,
}

/// The category of a sink error: the sink's own when it has one, else from its text.
fn categorize(error: &SinkError) -> ErrorCategory {
    match error.category {
        ErrorCategory::Unknown => categorize_text(&error.message),
        known => known,
    }
}

/// A caught panic as a sink error of category `unknown`.
#[cold]
fn panic_error(payload: Box<dyn std::any::Any + Send>, operation: &str) -> SinkError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string());
    SinkError::new(ErrorCategory::Unknown, format!("sink panicked during {operation}: {text}"))
}

impl ResilientSink {
    /// One call of the inner sink, panics caught. `Ok(true)`: nothing held (idle).
    #[inline]
    fn attempt(&mut self, operation: Operation<'_, '_>) -> Result<bool, SinkError> {
        let inner = &mut self.inner;
        let result = catch_unwind(AssertUnwindSafe(|| match operation {
            Operation::Write { outputs, inputs, ticket } => {
                inner.write_batch(outputs, inputs, ticket).map(|()| true)
            }
            Operation::Flush => inner.flush().map(|()| true),
            Operation::Idle => inner.idle(),
            Operation::Close => inner.close().map(|()| true),
        }));
        match result {
            Ok(result) => result,
            Err(payload) => Err(panic_error(payload, operation.name())),
        }
    }

    /// Runs `operation`: straight through while the breaker is closed and the call
    /// succeeds; otherwise the cold retry path.
    #[inline]
    fn run(&mut self, operation: Operation<'_, '_>) -> Result<bool, SinkError> {
        if let BreakerState::Closed { failures } = self.breaker.state() {
            match self.attempt(operation) {
                Ok(held_nothing) => {
                    if failures != 0 {
                        self.breaker.on_success();
                    }
                    self.publish_sink_counts();
                    return Ok(held_nothing);
                }
                Err(error) => return self.recover(operation, Some(error)),
            }
        }
        self.recover(operation, None)
    }

    /// Adds what the inner sink counted itself (deduplicated outputs) to the shard.
    #[inline]
    fn publish_sink_counts(&mut self) {
        let SinkCounts { deduplicated } = self.inner.take_counts();
        if deduplicated != 0 {
            self.counters.shard(self.worker).add(Counter::Deduplicated, deduplicated);
        }
    }

    /// Publishes whether the breaker is closed (the `BreakerOpen` gauge, read by
    /// `/ready` and `/metrics`). Cold: only the retry path changes the state (the
    /// fast path's success resets a failure count, never an open breaker).
    fn publish_breaker(&self) {
        let open = !matches!(self.breaker.state(), BreakerState::Closed { .. });
        self.counters.shard(self.worker).set_slot(Counter::BreakerOpen as usize, u64::from(open));
    }

    fn record(&self, category: ErrorCategory, outcome: Outcome) {
        RetryEvent::new(category, outcome).record(self.counters.shard(self.worker));
    }

    /// The retry loop: categorise, act, back off by the table, respect the breaker,
    /// give up into the dead-letter sink. Bounded by the policy's attempt and total
    /// time budgets (the breaker's waits count against the total time).
    #[cold]
    #[inline(never)]
    fn recover(
        &mut self,
        operation: Operation<'_, '_>,
        mut error: Option<SinkError>,
    ) -> Result<bool, SinkError> {
        let started = Instant::now();
        let mut retry = RetryState::new(started);
        let mut failed_attempts = 0u32;
        // Category and message of the last failure (for the dead-letter reason).
        let mut last: (ErrorCategory, String) =
            (ErrorCategory::Unknown, "circuit breaker open".to_string());
        loop {
            if let Some(e) = error.take() {
                let category = categorize(&e);
                failed_attempts += 1;
                self.record(category, Outcome::Attempt);
                let opened_before = self.breaker.opened_count();
                self.breaker.on_failure(Instant::now());
                if self.breaker.opened_count() != opened_before {
                    self.counters.shard(self.worker).add(Counter::BreakerOpened, 1);
                }
                self.publish_breaker();
                last = (category, e.message);
                match self.actions.action(category) {
                    Action::FailFast => {
                        self.record(category, Outcome::GaveUp);
                        return Err(SinkError::new(
                            category,
                            format!(
                                "{}: {} failed: {} ({category} errors are set to fail_fast: the \
                                 pipeline stops; unacknowledged input is replayed from the checkpoint)",
                                self.description,
                                operation.name(),
                                last.1
                            ),
                        ));
                    }
                    Action::DeadLetter => {
                        return self.give_up(operation, category, &last.1, failed_attempts);
                    }
                    Action::Retry => {
                        match retry.next(&self.policy, Instant::now(), &mut self.rng) {
                            Some(delay) => {
                                self.counters.shard(self.worker).add(Counter::SinkRetries, 1);
                                std::thread::sleep(delay);
                            }
                            None => {
                                self.record(category, Outcome::GaveUp);
                                let reason = format!(
                                    "{} (gave up after {failed_attempts} attempts)",
                                    last.1
                                );
                                return self.give_up(operation, category, &reason, failed_attempts);
                            }
                        }
                    }
                }
            }
            match self.breaker.admit(Instant::now()) {
                Admission::Allowed | Admission::Probe => match self.attempt(operation) {
                    Ok(held_nothing) => {
                        self.breaker.on_success();
                        self.publish_breaker();
                        if failed_attempts > 0 {
                            self.record(last.0, Outcome::Success);
                        }
                        self.publish_sink_counts();
                        return Ok(held_nothing);
                    }
                    Err(e) => error = Some(e),
                },
                Admission::Rejected { retry_in } => {
                    // The breaker is open: do not touch the sink. Waiting does not use
                    // an attempt, but counts against the policy's total time.
                    if started.elapsed() + retry_in > self.policy.elapsed_max() {
                        self.record(last.0, Outcome::GaveUp);
                        let reason = format!(
                            "{} (circuit breaker open; gave up after {} of retrying)",
                            last.1,
                            crate::parse::duration::DisplayDuration(started.elapsed())
                        );
                        return self.give_up(operation, last.0, &reason, failed_attempts);
                    }
                    std::thread::sleep(retry_in);
                }
                Admission::ProbeInFlight => {
                    // Only one thread uses this breaker and every probe's result is
                    // reported before the next admission, so this cannot happen; wait
                    // a table delay rather than spin if it ever does.
                    std::thread::sleep(Duration::from_nanos(self.policy.delay_ns(0)));
                }
            }
        }
    }

    /// The policy gave up (or the category's action is `dead_letter`): every output
    /// the sink still holds and, for a write, every output of the batch goes to the
    /// dead-letter sink; then the batch's ticket is released. If the dead-letter sink
    /// fails, nothing is acknowledged and the error stops the engine (the input is
    /// replayed after a restart).
    #[cold]
    fn give_up(
        &mut self,
        operation: Operation<'_, '_>,
        category: ErrorCategory,
        reason: &str,
        attempts: u32,
    ) -> Result<bool, SinkError> {
        let dead_letter = self.dead_letter.clone();
        let mut sent = 0u64;
        let mut failure: Option<SinkError> = None;
        let mut send = |meta: Meta, key: &[u8], payload: &[u8]| -> bool {
            if failure.is_some() {
                return false;
            }
            let record = DeadLetterRecord {
                category,
                stage: Stage::Sink,
                reason,
                attempts,
                partition: meta.partition,
                position: meta.position,
                key,
                payload,
            };
            match dead_letter.send(&record) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        };
        let inner = &mut self.inner;
        let abandoned = catch_unwind(AssertUnwindSafe(|| {
            inner.abandon(&mut |u: &Undelivered<'_>| send(u.meta, u.key, u.payload));
        }));
        let mut all_sent = abandoned.is_ok();
        if let Operation::Write { outputs, inputs, ticket } = operation {
            for output in outputs {
                let meta = inputs.get(output.input as usize).map_or(Meta::default(), |m| m.meta);
                all_sent &= send(meta, output.key, output.payload);
            }
            if all_sent {
                // Hand the ticket back through the sink as an empty batch, so a sink
                // that releases its tickets as a consecutive range keeps the range
                // whole; an empty write must not fail, but if it does, release here.
                let inner = &mut self.inner;
                let handed = catch_unwind(AssertUnwindSafe(|| inner.write_batch(&[], &[], ticket)));
                if !matches!(handed, Ok(Ok(()))) {
                    self.acker.done(ticket);
                }
            }
        }
        let shard = self.counters.shard(self.worker);
        shard.add(Counter::SinkDeadLettered, sent);
        shard.add(Counter::DeadLettered, sent);
        RetryEvent::new(category, Outcome::DeadLettered).record_n(shard, sent);
        if let Err(payload) = abandoned {
            return Err(panic_error(payload, "abandon"));
        }
        if let Some(e) = failure {
            return Err(SinkError::new(
                e.category,
                format!(
                    "{}: {reason}; and the dead-letter sink failed too ({e}): stopping without \
                     acknowledging the batch, so it is replayed after a restart",
                    self.description
                ),
            ));
        }
        if let Operation::Close = operation {
            // What the sink held is dead-lettered; closing now only releases it.
            self.attempt(Operation::Close)?;
        }
        Ok(true)
    }

    /// The breaker's state (for tests and stats).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl Sink for ResilientSink {
    #[inline]
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        self.write_batch(outputs, &[], ticket)
    }

    #[inline]
    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        self.run(Operation::Write { outputs, inputs, ticket }).map(|_| ())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.run(Operation::Flush).map(|_| ())
    }

    fn idle(&mut self) -> Result<bool, SinkError> {
        self.run(Operation::Idle)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.run(Operation::Close).map(|_| ())
    }

    fn abandon(&mut self, dead_letter: &mut dyn FnMut(&Undelivered<'_>) -> bool) {
        self.inner.abandon(dead_letter);
    }

    fn take_counts(&mut self) -> SinkCounts {
        // Already published to the worker's shard after each operation.
        SinkCounts::default()
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests {
    use super::*;
    use crate::ack::{AckQueue, Watermarks};
    use crate::metrics::counters::CATEGORY_BASE;
    use crate::retry::counters::retry_counter_index;
    use parking_lot::Mutex;

    /// A sink that fails per a script, then succeeds; releases tickets at once.
    struct Scripted {
        script: Arc<Mutex<Vec<Option<SinkError>>>>,
        acker: Acker,
        calls: Arc<Mutex<u32>>,
        delivered: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Sink for Scripted {
        fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
            if outputs.is_empty() {
                // The contract: an empty batch only hands over its ticket.
                self.acker.done(ticket);
                return Ok(());
            }
            *self.calls.lock() += 1;
            let next = {
                let mut script = self.script.lock();
                if script.is_empty() { None } else { script.remove(0) }
            };
            if let Some(e) = next {
                return Err(e);
            }
            self.delivered.lock().extend(outputs.iter().map(|o| o.payload.to_vec()));
            self.acker.done(ticket);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    struct ScriptedFactory {
        script: Arc<Mutex<Vec<Option<SinkError>>>>,
        calls: Arc<Mutex<u32>>,
        delivered: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl SinkFactory for ScriptedFactory {
        fn describe(&self) -> String {
            "scripted".into()
        }
        fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
            Ok(Box::new(Scripted {
                script: self.script.clone(),
                acker,
                calls: self.calls.clone(),
                delivered: self.delivered.clone(),
            }))
        }
    }

    /// (category, attempts, position, payload) of each dead-lettered output.
    type DeadRecord = (ErrorCategory, u32, u64, Vec<u8>);

    #[derive(Default)]
    struct Collect(Mutex<Vec<DeadRecord>>);

    impl DeadLetter for Collect {
        fn send(&self, r: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
            assert_eq!(r.stage, Stage::Sink);
            self.0.lock().push((r.category, r.attempts, r.position, r.payload.to_vec()));
            Ok(())
        }
        fn describe(&self) -> String {
            "collect".into()
        }
    }

    struct Setup {
        sink: Box<dyn Sink>,
        queue: AckQueue,
        calls: Arc<Mutex<u32>>,
        delivered: Arc<Mutex<Vec<Vec<u8>>>>,
        dead: Arc<Collect>,
        counters: Arc<ShardedCounters>,
    }

    fn setup(script: Vec<Option<SinkError>>, attempts_max: u32, breaker_failures: u32) -> Setup {
        let params = PolicyParams {
            delay_initial: Duration::from_micros(10),
            delay_max: Duration::from_micros(100),
            attempts_max,
            ..PolicyParams::default()
        };
        let resilience = Resilience {
            policy: RetryPolicy::build(&params).unwrap(),
            actions: ActionTable::default(),
            breaker: BreakerConfig {
                failures_to_open: breaker_failures,
                cool_down: Duration::from_micros(200),
            },
        };
        let calls = Arc::new(Mutex::new(0));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let inner = Arc::new(ScriptedFactory {
            script: Arc::new(Mutex::new(script)),
            calls: calls.clone(),
            delivered: delivered.clone(),
        });
        let dead = Arc::new(Collect::default());
        let counters = Arc::new(ShardedCounters::new(1));
        let factory =
            ResilientSinkFactory::new(inner, resilience, dead.clone(), counters.clone()).unwrap();
        let queue = AckQueue::with_capacity(8, Arc::new(Watermarks::new(1)));
        let sink = factory.open(0, queue.acker()).unwrap();
        Setup { sink, queue, calls, delivered, dead, counters }
    }

    fn slot(counters: &ShardedCounters, category: ErrorCategory, outcome: Outcome) -> u64 {
        counters.sum_slot(CATEGORY_BASE + retry_counter_index(category, outcome))
    }

    fn batch() -> ([Message<'static>; 2], [Output<'static>; 2]) {
        let inputs = [
            Message {
                payload: b"a",
                meta: Meta { position: 10, ..Meta::default() },
                ..Default::default()
            },
            Message {
                payload: b"b",
                meta: Meta { position: 11, ..Meta::default() },
                ..Default::default()
            },
        ];
        let outputs = [
            Output { input: 0, payload: b"A", ..Default::default() },
            Output { input: 1, payload: b"B", ..Default::default() },
        ];
        (inputs, outputs)
    }

    fn network() -> Option<SinkError> {
        Some(SinkError::new(ErrorCategory::Unknown, "Connection reset by peer"))
    }

    #[test]
    fn transient_failures_are_retried_until_delivered() {
        let mut s = setup(vec![network(), network()], 5, 100);
        let (inputs, outputs) = batch();
        let mut b = s.queue.builder();
        b.note(0, 11);
        let ticket = s.queue.issue(b);
        s.sink.write_batch(&outputs, &inputs, ticket).unwrap();
        assert_eq!(*s.calls.lock(), 3);
        assert_eq!(s.delivered.lock().len(), 2);
        assert_eq!(s.queue.poll(), 1, "the inner sink released the ticket");
        assert_eq!(slot(&s.counters, ErrorCategory::Network, Outcome::Attempt), 2, "from the text");
        assert_eq!(slot(&s.counters, ErrorCategory::Network, Outcome::Success), 1);
        assert_eq!(s.counters.sum(Counter::SinkRetries), 2);
        assert!(s.dead.0.lock().is_empty());
    }

    #[test]
    fn exhausted_policy_dead_letters_the_batch_with_positions_and_releases_it() {
        let mut s = setup((0..10).map(|_| network()).collect(), 3, 100);
        let (inputs, outputs) = batch();
        let ticket = s.queue.issue(s.queue.builder());
        s.sink.write_batch(&outputs, &inputs, ticket).unwrap();
        assert_eq!(*s.calls.lock(), 3, "attempts_max 3");
        let dead = s.dead.0.lock().clone();
        assert_eq!(
            dead,
            vec![
                (ErrorCategory::Network, 3, 10, b"A".to_vec()),
                (ErrorCategory::Network, 3, 11, b"B".to_vec())
            ]
        );
        assert_eq!(s.queue.poll(), 1, "the wrapper released the ticket");
        assert_eq!(slot(&s.counters, ErrorCategory::Network, Outcome::GaveUp), 1);
        assert_eq!(slot(&s.counters, ErrorCategory::Network, Outcome::DeadLettered), 2);
        assert_eq!(s.counters.sum(Counter::SinkDeadLettered), 2);
        assert_eq!(s.counters.sum(Counter::DeadLettered), 2);
    }

    #[test]
    fn fail_fast_category_stops_with_a_clear_error_and_keeps_the_ticket() {
        let mut s = setup(vec![Some(SinkError::new(ErrorCategory::Auth, "SASL denied"))], 5, 100);
        let (inputs, outputs) = batch();
        let ticket = s.queue.issue(s.queue.builder());
        let err = s.sink.write_batch(&outputs, &inputs, ticket).unwrap_err();
        assert_eq!(err.category, ErrorCategory::Auth);
        assert!(err.message.contains("SASL denied") && err.message.contains("fail_fast"), "{err}");
        assert_eq!(*s.calls.lock(), 1, "no retry");
        assert_eq!(s.queue.poll(), 0, "not acknowledged: replayed after a restart");
        assert!(s.dead.0.lock().is_empty());
    }

    #[test]
    fn dead_letter_category_goes_to_the_dead_letter_sink_at_once() {
        let too_large = SinkError::new(ErrorCategory::MessageTooLarge, "record too large");
        let mut s = setup(vec![Some(too_large)], 5, 100);
        let (inputs, outputs) = batch();
        let ticket = s.queue.issue(s.queue.builder());
        s.sink.write_batch(&outputs, &inputs, ticket).unwrap();
        assert_eq!(*s.calls.lock(), 1);
        let dead = s.dead.0.lock();
        assert_eq!(dead.len(), 2);
        assert!(dead.iter().all(|d| d.0 == ErrorCategory::MessageTooLarge && d.1 == 1));
        assert_eq!(s.queue.poll(), 1);
    }

    #[test]
    fn a_panicking_sink_is_an_unknown_error_and_is_retried() {
        struct Panics {
            left: u32,
            acker: Acker,
        }
        impl Sink for Panics {
            fn write(&mut self, _o: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
                if self.left > 0 {
                    self.left -= 1;
                    panic!("injected sink panic");
                }
                self.acker.done(ticket);
                Ok(())
            }
            fn flush(&mut self) -> Result<(), SinkError> {
                Ok(())
            }
        }
        struct PanicsFactory;
        impl SinkFactory for PanicsFactory {
            fn describe(&self) -> String {
                "panics".into()
            }
            fn open(&self, _w: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
                Ok(Box::new(Panics { left: 2, acker }))
            }
        }
        let counters = Arc::new(ShardedCounters::new(1));
        let resilience = Resilience {
            policy: RetryPolicy::build(&PolicyParams {
                delay_initial: Duration::from_micros(10),
                ..PolicyParams::default()
            })
            .unwrap(),
            ..Resilience::default()
        };
        let factory = ResilientSinkFactory::new(
            Arc::new(PanicsFactory),
            resilience,
            Arc::new(Collect::default()),
            counters.clone(),
        )
        .unwrap();
        let mut queue = AckQueue::with_capacity(4, Arc::new(Watermarks::new(1)));
        let mut sink = factory.open(0, queue.acker()).unwrap();
        let ticket = queue.issue(queue.builder());
        sink.write_batch(&[], &[], ticket).unwrap();
        assert_eq!(queue.poll(), 1);
        assert_eq!(slot(&counters, ErrorCategory::Unknown, Outcome::Attempt), 2);
        assert_eq!(slot(&counters, ErrorCategory::Unknown, Outcome::Success), 1);
    }

    #[test]
    fn open_breaker_keeps_the_sink_untouched_until_the_probe() {
        // Opens after 2 consecutive failures; 4 failures scripted, then success.
        let mut s = setup(vec![network(), network(), network(), network()], 10, 2);
        let (inputs, outputs) = batch();
        let ticket = s.queue.issue(s.queue.builder());
        s.sink.write_batch(&outputs, &inputs, ticket).unwrap();
        // Calls: 2 failures open it; each later call is a half-open probe (two more
        // failures, each re-opening it), the fifth succeeds. While open, the wrapper
        // waits without calling the sink.
        assert_eq!(*s.calls.lock(), 5);
        assert_eq!(
            s.counters.sum(Counter::BreakerOpened),
            3,
            "opened once, re-opened by 2 failed probes"
        );
        assert_eq!(s.delivered.lock().len(), 2);
        assert_eq!(slot(&s.counters, ErrorCategory::Network, Outcome::Attempt), 4);
    }
}
