//! Where a message is processed: the pinned worker loop.
//!
//! ```text
//! loop:
//!   batch  = ring.read_batch(batch_records)        // one acquire load
//!   inputs = decode batch into the arena           // borrowed views, no copies
//!   processor.process(inputs, emit)                // outputs/failures in the arena
//!   dead-letter the failures                       // rare path
//!   sink.write(outputs, ticket)                    // sink copies, acks later
//!   latency += now - ingest per input              // one clock read per batch
//!   release the batch; reset the arena             // one release store
//! when the ring is empty: flush the sink, publish metrics, wait (table-driven)
//! when the ring is closed and empty: close the sink, wait for the last acks, exit
//! ```
//!
//! Everything a batch needs was allocated when the worker started (arena chunk,
//! ticket table, histogram, sink buffer), so steady state makes no heap allocation.

pub mod batch_size;
pub mod pin;

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use crate::ack::{AckQueue, Ticket};
use crate::message::{Message, Output};
use crate::metrics::{Counter, LatencyRecorder, LocalCounts, ShardedCounters, clock};
use crate::processor::{Emit, Failure, Processor};
use crate::retry::ErrorCategory;
use crate::ring::{Consumer, ReadBatch};
use crate::sink::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use crate::sink::{Sink, SinkError};
use crate::wait::{WaitStep, Waiter};
use std::sync::Arc;

pub use batch_size::{BatchSizer, BatchSizing};
pub use pin::{Pinned, Placement};

/// Everything a worker owns, assembled by the engine.
pub struct Worker {
    pub index: usize,
    /// How many workers the engine runs (for the placement decision).
    pub workers: usize,
    pub consumer: Consumer,
    pub processor: Box<dyn Processor>,
    pub sink: Box<dyn Sink>,
    pub acks: AckQueue,
    pub dead_letter: Arc<dyn DeadLetter>,
    pub counters: Arc<ShardedCounters>,
    pub latency: LatencyRecorder,
    pub batch_records: usize,
    /// Watermarks per worker (keyless/key-hash routing) or per partition (Kafka).
    pub watermark_per_worker: bool,
    pub placement: Placement,
    /// The bump arena batches are decoded into, allocated by the engine at start.
    pub arena: Bump,
    /// Adaptive batch size around `batch_records`; `None`: fixed.
    pub batch_sizing: Option<BatchSizing>,
}

/// Why a worker stopped early.
#[derive(Debug)]
pub enum WorkerError {
    Sink(SinkError),
    /// A message the processor chain failed could not be dead-lettered: the batch
    /// is left unacknowledged (read again after a restart) and the worker stops.
    DeadLetter {
        position: u64,
        error: SinkError,
    },
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Sink(e) => write!(f, "sink failed: {e}"),
            WorkerError::DeadLetter { position, error } => write!(
                f,
                "the dead-letter sink failed for the message at position {position} ({error}): \
                 stopping without acknowledging its batch, so it is read again after a restart"
            ),
        }
    }
}

impl std::error::Error for WorkerError {}

/// What a worker reports when it stops.
#[derive(Clone, Copy, Debug)]
pub struct WorkerReport {
    pub index: usize,
    pub pinned: Pinned,
}

/// What one batch amounted to (for the counters).
struct BatchOutcome {
    inputs: usize,
    input_bytes: usize,
    outputs: usize,
    output_bytes: usize,
    filtered: usize,
    failed: usize,
    /// Broken processor contract: outputs or failures naming an input outside the
    /// batch, failures for inputs already emitted (see [`Core::contract_broken`]).
    bugs: usize,
}

/// The worker minus its ring consumer (so a batch can borrow the consumer while
/// the rest is used mutably).
struct Core {
    index: usize,
    processor: Box<dyn Processor>,
    sink: Box<dyn Sink>,
    acks: AckQueue,
    dead_letter: Arc<dyn DeadLetter>,
    counters: Arc<ShardedCounters>,
    latency: LatencyRecorder,
    batch_records: usize,
    watermark_per_worker: bool,
    /// Records per batch now (fixed at `batch_records`, or adaptive).
    sizer: BatchSizer,
    /// A processor bug was logged (once per worker; later ones are only counted).
    bug_logged: bool,
}

impl Worker {
    /// Runs until the ring is closed and drained; then flushes and waits for the
    /// last acknowledgements.
    pub fn run(self) -> Result<WorkerReport, WorkerError> {
        let Worker {
            index,
            workers,
            consumer,
            processor,
            sink,
            acks,
            dead_letter,
            counters,
            latency,
            batch_records,
            watermark_per_worker,
            placement,
            arena,
            batch_sizing,
        } = self;
        let pinned = pin::pin_current(index, workers, placement);
        crate::wait::warm_up_thread();
        let core = Core {
            index,
            processor,
            sink,
            acks,
            dead_letter,
            counters,
            latency,
            batch_records,
            watermark_per_worker,
            sizer: match batch_sizing {
                Some(sizing) => BatchSizer::adaptive(batch_records, sizing),
                None => BatchSizer::fixed(batch_records),
            },
            bug_logged: false,
        };
        core.run(consumer, arena)?;
        Ok(WorkerReport { index, pinned })
    }
}

impl Core {
    fn run(mut self, mut consumer: Consumer, mut arena: Bump) -> Result<(), WorkerError> {
        let mut waiter = Waiter::default();
        let mut local = LocalCounts::default();
        let mut idle_flushed = true;
        self.publish_batch_size();
        loop {
            if !self.acks.has_room() {
                self.wait_for_acks(&mut local)?;
            }
            let batch = consumer.read_batch(self.sizer.records());
            if batch.is_empty() {
                drop(batch);
                if !idle_flushed {
                    // Out of input: make everything durable now (or when a sink's
                    // linger time is up: `idle` says whether it still holds data, and
                    // is asked again on every idle wake-up), so an idle engine holds
                    // nothing back and its checkpoint catches up.
                    idle_flushed = self.sink.idle().map_err(WorkerError::Sink)?;
                    local.add(Counter::BatchesAcked, self.acks.poll());
                    self.latency.maybe_publish(u64::MAX);
                    local.publish(self.counters.shard(self.index));
                }
                if consumer.is_finished() {
                    break;
                }
                // Counted straight into the shard (single writer, two relaxed
                // accesses): an idle worker's parks show up without a batch.
                let step = match waiter.next_step() {
                    WaitStep::Spin { .. } => Counter::WaitSpins,
                    WaitStep::Yield => Counter::WaitYields,
                    WaitStep::Park { .. } => Counter::WaitParks,
                };
                self.counters.shard(self.index).add(step, 1);
                consumer.wait_for_data(&mut waiter);
                continue;
            }
            waiter.reset();
            idle_flushed = false;
            if self.sizer.is_adaptive() {
                let started_ns = clock::now_ns();
                let records = self.step(batch, &mut arena, &mut local)?;
                if self.sizer.observe(records, clock::now_ns().saturating_sub(started_ns)) {
                    self.publish_batch_size();
                }
            } else {
                self.step(batch, &mut arena, &mut local)?;
            }
        }
        self.sink.close().map_err(WorkerError::Sink)?;
        self.drain_acks(&mut local);
        self.latency.publish_final();
        local.publish(self.counters.shard(self.index));
        Ok(())
    }

    /// Publishes the current batch size (a gauge) in the worker's shard.
    #[cold]
    fn publish_batch_size(&self) {
        self.counters
            .shard(self.index)
            .set_slot(Counter::BatchRecordsCurrent as usize, self.sizer.records() as u64);
    }

    /// Processes one non-empty batch end to end and publishes its counts.
    #[inline]
    fn step(
        &mut self,
        batch: ReadBatch<'_>,
        arena: &mut Bump,
        local: &mut LocalCounts,
    ) -> Result<usize, WorkerError> {
        let outcome = self.process_batch(&batch, arena)?;
        drop(batch);
        arena.reset();
        local.add(Counter::Batches, 1);
        local.add(Counter::MessagesIn, outcome.inputs as u64);
        local.add(Counter::BytesIn, outcome.input_bytes as u64);
        local.add(Counter::Outputs, outcome.outputs as u64);
        local.add(Counter::OutputBytes, outcome.output_bytes as u64);
        local.add(Counter::Filtered, outcome.filtered as u64);
        local.add(Counter::ProcessorFailed, outcome.failed as u64);
        local.add(Counter::DeadLettered, outcome.failed as u64);
        local.add(Counter::ProcessorBugs, outcome.bugs as u64);
        local.add(Counter::BatchesAcked, self.acks.poll());
        // State counts (src/state/): the processor's own, once per batch.
        self.processor.publish_counts(local);
        local.publish(self.counters.shard(self.index));
        Ok(outcome.inputs)
    }

    /// One batch: decode, process, dead-letter failures, hand to the sink, time.
    #[inline]
    fn process_batch<'a>(
        &mut self,
        batch: &'a ReadBatch<'_>,
        arena: &'a Bump,
    ) -> Result<BatchOutcome, WorkerError> {
        let mut inputs: BumpVec<'a, Message<'a>> =
            BumpVec::with_capacity_in(self.sizer.records(), arena);
        let mut builder = self.acks.builder();
        let mut input_bytes = 0usize;
        while let Some(message) = batch.peek() {
            let slot =
                if self.watermark_per_worker { self.index as u32 } else { message.meta.partition };
            if !builder.note(slot, message.meta.position) {
                break; // too many partitions in one ticket: the rest waits for the next batch
            }
            batch.advance();
            input_bytes += message.payload.len();
            inputs.push(message);
        }
        let mut outputs: BumpVec<'a, Output<'a>> = BumpVec::with_capacity_in(inputs.len(), arena);
        let mut failures: BumpVec<'a, Failure<'a>> = BumpVec::new_in(arena);
        {
            let mut emit = Emit::new(arena, &mut outputs, &mut failures);
            self.processor.process(&inputs, &mut emit);
        }
        // Settle every input exactly once: emitted, failed (dead-lettered) or filtered.
        let mut settled: BumpVec<'a, bool> =
            BumpVec::from_iter_in(inputs.iter().map(|_| false), arena);
        let mut emitted_inputs = 0usize;
        let mut output_bytes = 0usize;
        let mut out_of_range = 0usize;
        for output in outputs.iter() {
            output_bytes += output.payload.len();
            match settled.get_mut(output.input as usize) {
                Some(flag) if !*flag => {
                    *flag = true;
                    emitted_inputs += 1;
                }
                Some(_) => {}
                None => out_of_range += 1,
            }
        }
        let mut failed = 0usize;
        let mut bugs = out_of_range;
        for failure in failures.iter() {
            let Some(message) = inputs.get(failure.input as usize) else {
                bugs += 1;
                out_of_range += 1;
                continue;
            };
            if settled[failure.input as usize] {
                // Emitted (or failed) already: the first decision stands, the
                // contradiction counts.
                bugs += 1;
                continue;
            }
            settled[failure.input as usize] = true;
            failed += 1;
            self.dead_letter_input(message, failure)?;
        }
        if bugs > 0 {
            failed += self.contract_broken(&inputs, &mut outputs, &settled, bugs, out_of_range)?;
            output_bytes = outputs.iter().map(|o| o.payload.len()).sum();
        }
        let ticket: Ticket = self.acks.issue(builder);
        if let Err(e) = self.sink.write_batch(&outputs, &inputs, ticket) {
            // The engine's sink is a `sink::resilient::ResilientSink`: it has retried,
            // dead-lettered or decided to fail fast already; what reaches here stops
            // the worker.
            return Err(WorkerError::Sink(e));
        }
        let now_ns = clock::now_ns();
        for message in inputs.iter() {
            self.latency.record(now_ns.saturating_sub(message.meta.ingest_ns));
        }
        self.latency.maybe_publish(now_ns);
        Ok(BatchOutcome {
            inputs: inputs.len(),
            input_bytes,
            outputs: outputs.len(),
            output_bytes,
            filtered: inputs.len() - emitted_inputs - failed,
            failed,
            bugs,
        })
    }

    /// The processor broke its contract in this batch (`bugs` times): an output or
    /// failure named an input outside the batch (`out_of_range` of them), or failed
    /// an input it had emitted. Visible, never silent: counted
    /// (`Counter::ProcessorBugs`), logged once per worker with the processor's
    /// name, asserted in debug builds. Outputs naming no input are dropped (the
    /// sink could not settle them); when indices were out of range, the inputs no
    /// output or failure settled cannot be told apart from the ones meant, so they
    /// are dead-lettered rather than called filtered. Returns how many were.
    #[cold]
    #[inline(never)]
    fn contract_broken<'a>(
        &mut self,
        inputs: &[Message<'a>],
        outputs: &mut BumpVec<'a, Output<'a>>,
        settled: &[bool],
        bugs: usize,
        out_of_range: usize,
    ) -> Result<usize, WorkerError> {
        debug_assert!(
            false,
            "processor {} broke its contract: {bugs} outputs or failures name no input of \
             the batch or fail an emitted one",
            self.processor.name()
        );
        if !self.bug_logged {
            self.bug_logged = true;
            eprintln!(
                "corestream: worker {}: processor {} broke its contract in a batch of {}: {} \
                 output(s) or failure(s) name no input of the batch, {} fail an input already \
                 settled; counted as processor_bugs, unsettled inputs are dead-lettered \
                 (logged once per worker)",
                self.index,
                self.processor.name(),
                inputs.len(),
                out_of_range,
                bugs - out_of_range
            );
        }
        if out_of_range == 0 {
            return Ok(0);
        }
        let n = inputs.len();
        outputs.retain(|o| (o.input as usize) < n);
        let mut dead_lettered = 0;
        for (message, _) in inputs.iter().zip(settled).filter(|(_, settled)| !**settled) {
            let failure = Failure {
                input: 0,
                category: ErrorCategory::Unknown,
                reason: "processor bug: an output or failure of this batch named an input \
                         outside it; this input was not settled",
            };
            self.dead_letter_input(message, &failure)?;
            dead_lettered += 1;
        }
        Ok(dead_lettered)
    }

    #[cold]
    fn dead_letter_input(
        &self,
        message: &Message<'_>,
        failure: &Failure<'_>,
    ) -> Result<(), WorkerError> {
        let record = DeadLetterRecord {
            category: failure.category,
            stage: Stage::Processor,
            reason: failure.reason,
            attempts: 1,
            partition: message.meta.partition,
            position: message.meta.position,
            key: message.key,
            payload: message.payload,
        };
        self.dead_letter
            .send(&record)
            .map_err(|error| WorkerError::DeadLetter { position: message.meta.position, error })
    }

    /// The ticket queue is full: flush so synchronous sinks release, then wait for
    /// asynchronous acknowledgements.
    #[cold]
    fn wait_for_acks(&mut self, local: &mut LocalCounts) -> Result<(), WorkerError> {
        local.add(Counter::AckWaits, 1);
        self.sink.flush().map_err(WorkerError::Sink)?;
        let mut waiter = Waiter::default();
        loop {
            local.add(Counter::BatchesAcked, self.acks.poll());
            if self.acks.has_room() {
                return Ok(());
            }
            sleep_step(&mut waiter);
        }
    }

    /// Shutdown: wait until every batch is acknowledged (bounded: sinks time out
    /// their own deliveries; see the failure handling in `retry`).
    fn drain_acks(&mut self, local: &mut LocalCounts) {
        let mut waiter = Waiter::default();
        loop {
            local.add(Counter::BatchesAcked, self.acks.poll());
            if self.acks.in_flight() == 0 {
                return;
            }
            sleep_step(&mut waiter);
        }
    }
}

/// One step of waiting for something with no wake-up cell (acknowledgements):
/// spin and yield per the table, then sleep 100 µs at a time.
fn sleep_step(waiter: &mut Waiter) {
    if waiter.is_idle() {
        std::thread::sleep(std::time::Duration::from_micros(100));
    } else {
        waiter.wait(&crate::wait::WaitCell::new(), || false);
    }
}

/// A worker driven by hand on the calling thread, for instruction-count benchmarks
/// and tests of the per-batch path (the same code the worker thread runs).
#[doc(hidden)]
pub struct Harness {
    core: Core,
    consumer: Consumer,
    arena: Bump,
    local: LocalCounts,
}

impl Harness {
    /// A worker with `processor`, a null sink and a log dead-letter, reading a ring
    /// of `ring_bytes`; returns it and the ring's producer.
    pub fn new(
        processor: Box<dyn Processor>,
        ring_bytes: usize,
        batch_records: usize,
    ) -> (Harness, crate::ring::Producer) {
        use crate::sink::SinkFactory;
        let (producer, consumer) = crate::ring::ring(ring_bytes).expect("valid ring size");
        let watermarks = Arc::new(crate::ack::Watermarks::new(1));
        let acks = AckQueue::new(watermarks);
        let sink =
            crate::sink::null::NullSinkFactory.open(0, acks.acker()).expect("null sink opens");
        let core = Core {
            index: 0,
            processor,
            sink,
            acks,
            dead_letter: Arc::new(crate::sink::dead_letter::LogDeadLetter::default()),
            counters: Arc::new(ShardedCounters::new(1)),
            latency: LatencyRecorder::new(crate::metrics::LatencyShared::default()),
            batch_records,
            watermark_per_worker: true,
            sizer: BatchSizer::fixed(batch_records),
            bug_logged: false,
        };
        let harness = Harness {
            core,
            consumer,
            arena: Bump::with_capacity(crate::limits::ARENA_BYTES_INITIAL),
            local: LocalCounts::default(),
        };
        (harness, producer)
    }

    /// Processes one batch of what is in the ring; returns the messages processed.
    #[inline(never)]
    pub fn run_batch(&mut self) -> usize {
        let batch = self.consumer.read_batch(self.core.batch_records);
        if batch.is_empty() {
            return 0;
        }
        self.core.step(batch, &mut self.arena, &mut self.local).expect("null sink never fails")
    }

    /// Messages processed so far.
    pub fn messages(&self) -> u64 {
        self.core.counters.sum(Counter::MessagesIn)
    }
}
