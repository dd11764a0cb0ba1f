//! Where a message is read: sources, and the [`Ingest`] that routes their messages
//! into the workers' rings.
//!
//! A source runs on its own thread. It reads (a file, stdin, a generator, Kafka),
//! and for each message calls [`Ingest::push`], which picks the worker (same key →
//! same worker; a Kafka partition → always the same worker), stamps the ingest time,
//! and writes the record into that worker's ring. Records are published once per
//! batch ([`Ingest::flush`], or every `batch_records` per ring). When a ring is full
//! the source waits on it, table-driven: backpressure reaches the input, memory stays
//! bounded. A record that can never fit (longer than `record_bytes_max`) is
//! dead-lettered with its position, and reading goes on.

pub mod file;
pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod pressure;
pub mod progress;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ack::Watermarks;
use crate::message::Message;
use crate::metrics::clock;
use crate::metrics::{Counter, LocalCounts, ShardedCounters};
use crate::retry::ErrorCategory;
use crate::ring::{Producer, PushError};
use crate::sink::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use crate::wait::Waiter;
use std::sync::Arc;

use pressure::{GateChange, MemoryGate};
use progress::Progress;

/// How messages are assigned to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// By a hash of the key when the message has one (per-key order holds);
    /// keyless messages go round-robin in runs of `batch_records` (no order is
    /// promised between them). Acknowledgement watermarks are kept per worker.
    KeyHash,
    /// By source partition (`partition % workers`), so a partition always goes to
    /// one worker and its order holds (Kafka). Watermarks are kept per partition.
    Partition,
}

/// A source failure that stops the engine.
#[derive(Debug)]
pub struct SourceError {
    pub message: String,
}

impl SourceError {
    pub fn new(message: impl Into<String>) -> Self {
        SourceError { message: message.into() }
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

/// A message source, run on the engine's source thread.
pub trait Source: Send {
    /// One line for logs and `validate`.
    fn describe(&self) -> String;

    /// How this source's messages must be routed.
    fn routing(&self) -> Routing {
        Routing::KeyHash
    }

    /// True when the source checkpoints a single-partition position and so needs
    /// [`Ingest::settled`] (the engine then remembers the order of runs sent to
    /// workers). Sources that do not checkpoint save that bookkeeping.
    fn tracks_progress(&self) -> bool {
        false
    }

    /// Reads until the input ends or [`Ingest::stop_requested`] turns true, pushing
    /// every message through `ingest`. Checkpoints as it goes, if it can.
    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError>;

    /// Called after every worker drained its ring and every batch was acknowledged:
    /// write the final checkpoint / commit.
    fn finish(&mut self, _ingest: &mut Ingest) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Why a push did not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum IngestError {
    /// The worker that owns this message stopped (it failed); nothing can be
    /// delivered to it any more.
    WorkerGone { worker: usize },
    /// A message the source had to dead-letter could not be written to the
    /// dead-letter sink either. It is not settled, so a checkpoint or offset commit
    /// never passes it: the run stops and a restart reads it again.
    DeadLetterFailed { position: u64, reason: String },
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::WorkerGone { worker } => {
                write!(f, "worker {worker} stopped; its ring is closed")
            }
            IngestError::DeadLetterFailed { position, reason } => write!(
                f,
                "the message at position {position} had to be dead-lettered and the \
                 dead-letter sink failed ({reason}): stopping without settling it, so it \
                 is read again after a restart"
            ),
        }
    }
}

impl std::error::Error for IngestError {}

/// What [`Ingest::try_push`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Written into its worker's ring.
    Written,
    /// Too large for a ring: dead-lettered and counted; it is settled.
    Rejected,
    /// The worker's ring has no room now; nothing was written or counted. The
    /// staged records of that ring were published, so the worker can drain it.
    Full { worker: usize },
}

/// Settings of an [`Ingest`].
#[derive(Clone, Copy, Debug)]
pub struct IngestSettings {
    /// Publish a ring after this many staged records.
    pub batch_records: usize,
    /// Payloads longer than this are dead-lettered instead of written.
    pub record_bytes_max: usize,
    /// Resident bytes at which intake pauses (see [`pressure`]); `None`: off.
    pub memory_limit: Option<u64>,
    pub routing: Routing,
    /// Keep the ordered list of runs needed to compute a contiguous checkpoint
    /// for a single-partition source (file).
    pub track_progress: bool,
}

/// The source side of the engine: routing, ring writes, waiting, counting.
pub struct Ingest {
    producers: Vec<Producer>,
    settings: IngestSettings,
    /// Round-robin state for keyless messages: current worker and records left.
    round_robin_worker: usize,
    round_robin_left: usize,
    /// Engine clock read at the first push after a flush: the ingest time stamped
    /// on the messages of one source batch (one clock read per batch).
    now_ns: u64,
    /// True after a flush: the next push reads the clock.
    clock_stale: bool,
    waiter: Waiter,
    stop: Arc<AtomicBool>,
    counters: Arc<ShardedCounters>,
    shard: usize,
    local: LocalCounts,
    dead_letter: Arc<dyn DeadLetter>,
    watermarks: Arc<Watermarks>,
    progress: Option<Progress>,
    /// The memory-pressure gate, when `memory_limit` is set.
    memory: Option<MemoryGate>,
    closed: bool,
}

/// Everything an [`Ingest`] is built from (the engine assembles it).
pub struct IngestParts {
    pub producers: Vec<Producer>,
    pub settings: IngestSettings,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<ShardedCounters>,
    pub shard: usize,
    pub dead_letter: Arc<dyn DeadLetter>,
    pub watermarks: Arc<Watermarks>,
}

impl Ingest {
    pub fn new(parts: IngestParts) -> Self {
        assert!(!parts.producers.is_empty(), "an ingest needs at least one ring");
        let progress = parts.settings.track_progress.then(Progress::new);
        let memory = parts.settings.memory_limit.and_then(|limit| {
            let gate = MemoryGate::new(limit);
            if gate.is_none() {
                eprintln!(
                    "corestream: engine.memory_limit is ignored: this system has no \
                     /proc/self/statm to read resident memory from"
                );
            }
            gate
        });
        Ingest {
            producers: parts.producers,
            settings: parts.settings,
            round_robin_worker: 0,
            round_robin_left: parts.settings.batch_records,
            now_ns: 0,
            clock_stale: true,
            waiter: Waiter::default(),
            stop: parts.stop,
            counters: parts.counters,
            shard: parts.shard,
            local: LocalCounts::default(),
            dead_letter: parts.dead_letter,
            watermarks: parts.watermarks,
            progress,
            memory,
            closed: false,
        }
    }

    /// Number of workers (rings).
    pub fn workers(&self) -> usize {
        self.producers.len()
    }

    /// True once shutdown was requested: stop reading new input and return from
    /// `run`; what was already pushed is still processed and acknowledged.
    #[inline]
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The worker a message goes to.
    #[inline]
    fn route(&mut self, message: &Message<'_>) -> usize {
        let workers = self.producers.len();
        match self.settings.routing {
            Routing::Partition => message.meta.partition as usize % workers,
            Routing::KeyHash if !message.key.is_empty() => {
                (hash_key(message.key) % workers as u64) as usize
            }
            Routing::KeyHash => {
                if self.round_robin_left == 0 {
                    self.round_robin_worker = (self.round_robin_worker + 1) % workers;
                    self.round_robin_left = self.settings.batch_records;
                }
                self.round_robin_left -= 1;
                self.round_robin_worker
            }
        }
    }

    /// Writes one message into its worker's ring, waiting while the ring is full.
    /// `message.meta.ingest_ns` is set here. A payload over `record_bytes_max` is
    /// dead-lettered and counted, and `Ok` is returned: reading goes on (unless the
    /// dead-letter sink fails: [`IngestError::DeadLetterFailed`]).
    #[inline]
    pub fn push(&mut self, message: &Message<'_>) -> Result<(), IngestError> {
        self.push_parts(message, &[])
    }

    /// [`Ingest::push`] with the payload gathered from several parts.
    #[inline]
    pub fn push_parts(
        &mut self,
        message: &Message<'_>,
        more_payload: &[&[u8]],
    ) -> Result<(), IngestError> {
        let payload_bytes =
            message.payload.len() + more_payload.iter().map(|p| p.len()).sum::<usize>();
        if payload_bytes > self.settings.record_bytes_max {
            return self.reject_too_large(message, payload_bytes);
        }
        let worker = self.route(message);
        if self.progress.as_ref().is_some_and(Progress::is_full) {
            self.wait_for_progress_room();
        }
        if self.clock_stale {
            // The batch starts now (a rate-limited source may have slept since the
            // last flush: that time is not the message's latency).
            self.now_ns = clock::now_ns();
            self.clock_stale = false;
        }
        let mut record = *message;
        record.meta.ingest_ns = self.now_ns;
        loop {
            match self.producers[worker].write_parts(&record, more_payload) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    self.local.add(Counter::SourceRingFullWaits, 1);
                    let frame = crate::ring::frame::frame_len_for(
                        record.key.len(),
                        record.headers.encoded().len(),
                        payload_bytes,
                    )
                    .unwrap_or(usize::MAX);
                    self.producers[worker].wait_for_space(frame, &mut self.waiter);
                }
                Err(PushError::Closed) => return Err(IngestError::WorkerGone { worker }),
                Err(PushError::TooLarge(_)) => {
                    return self.reject_too_large(message, payload_bytes);
                }
            }
        }
        self.waiter.reset();
        self.local.add(Counter::Ingested, 1);
        self.local.add(Counter::IngestedBytes, payload_bytes as u64);
        if let Some(progress) = &mut self.progress {
            progress.pushed(worker, message.meta.position);
        }
        if self.producers[worker].staged() >= self.settings.batch_records {
            self.producers[worker].commit();
        }
        Ok(())
    }

    /// Like [`Ingest::push`], but never waits: when the worker's ring is full it
    /// returns [`Pushed::Full`] and the caller decides (the Kafka source pauses the
    /// partition and keeps the message until the ring drains).
    #[inline]
    pub fn try_push(&mut self, message: &Message<'_>) -> Result<Pushed, IngestError> {
        let payload_bytes = message.payload.len();
        if payload_bytes > self.settings.record_bytes_max {
            self.reject_too_large(message, payload_bytes)?;
            return Ok(Pushed::Rejected);
        }
        let worker = self.route(message);
        if self.progress.as_ref().is_some_and(Progress::is_full) {
            self.wait_for_progress_room();
        }
        if self.clock_stale {
            // The batch starts now (see `push_parts`).
            self.now_ns = clock::now_ns();
            self.clock_stale = false;
        }
        let mut record = *message;
        record.meta.ingest_ns = self.now_ns;
        match self.producers[worker].write(&record) {
            Ok(()) => {}
            Err(PushError::Full) => {
                self.local.add(Counter::SourceRingFullWaits, 1);
                self.producers[worker].commit();
                return Ok(Pushed::Full { worker });
            }
            Err(PushError::Closed) => return Err(IngestError::WorkerGone { worker }),
            Err(PushError::TooLarge(_)) => {
                self.reject_too_large(message, payload_bytes)?;
                return Ok(Pushed::Rejected);
            }
        }
        self.local.add(Counter::Ingested, 1);
        self.local.add(Counter::IngestedBytes, payload_bytes as u64);
        if let Some(progress) = &mut self.progress {
            progress.pushed(worker, message.meta.position);
        }
        if self.producers[worker].staged() >= self.settings.batch_records {
            self.producers[worker].commit();
        }
        Ok(Pushed::Written)
    }

    /// True while intake is paused for memory ([`pressure`]): the source reads no
    /// new input until it turns false (file and stdin sleep
    /// [`pressure::MEMORY_SAMPLE_INTERVAL`] between checks, Kafka pauses its
    /// partitions and keeps polling). Samples resident memory every
    /// [`pressure::MEMORY_SAMPLE_INTERVAL`] (every
    /// [`pressure::MEMORY_SAMPLE_INTERVAL_NEAR`] close to the limit), else reads the
    /// clock only; without a `memory_limit`, one branch. On a change, what is staged
    /// is published, so the workers can drain it.
    #[inline]
    pub fn memory_paused(&mut self) -> bool {
        let Some(gate) = &mut self.memory else { return false };
        let change = gate.check();
        let paused = gate.is_paused();
        if change != GateChange::None {
            self.memory_changed(change);
        }
        paused
    }

    #[cold]
    fn memory_changed(&mut self, change: GateChange) {
        let shard = self.counters.shard(self.shard);
        match change {
            GateChange::None => {}
            GateChange::Paused => {
                self.local.add(Counter::IntakePauses, 1);
                shard.set_slot(Counter::IntakePaused as usize, 1);
            }
            GateChange::Resumed { paused_for } => {
                let micros = u64::try_from(paused_for.as_micros()).unwrap_or(u64::MAX);
                self.local.add(Counter::IntakePausedMicros, micros);
                shard.set_slot(Counter::IntakePaused as usize, 0);
            }
        }
        self.flush();
    }

    /// Waits until the oldest remembered run is acknowledged (bounded memory).
    #[cold]
    fn wait_for_progress_room(&mut self) {
        self.flush();
        let mut waiter = Waiter::default();
        loop {
            let watermarks = &self.watermarks;
            let Some(progress) = self.progress.as_mut() else { return };
            progress.settled(watermarks);
            if !progress.is_full() {
                return;
            }
            // No wake-up cell for acknowledgements: spin, yield, then sleep briefly.
            if waiter.is_idle() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            } else {
                waiter.wait(&crate::wait::WaitCell::new(), || false);
            }
        }
    }

    #[cold]
    fn reject_too_large(
        &mut self,
        message: &Message<'_>,
        payload_bytes: usize,
    ) -> Result<(), IngestError> {
        let mut reason_buffer = [0u8; 96];
        let reason =
            format_reason(&mut reason_buffer, payload_bytes, self.settings.record_bytes_max);
        self.reject(message, ErrorCategory::MessageTooLarge, reason)
    }

    /// Adds to one of the source's counters (published at the next flush).
    #[inline]
    pub fn count(&mut self, counter: Counter, n: u64) {
        self.local.add(counter, n);
    }

    /// Dead-letters a message the source cannot put into a ring, with a reason.
    /// The position then counts as settled (it is in no ring). When the dead-letter
    /// sink fails, nothing is settled or counted and the error stops the source: a
    /// message is delivered or dead-lettered, never dropped.
    pub fn reject(
        &mut self,
        message: &Message<'_>,
        category: ErrorCategory,
        reason: &str,
    ) -> Result<(), IngestError> {
        let record = DeadLetterRecord {
            category,
            stage: Stage::Source,
            reason,
            attempts: 0,
            partition: message.meta.partition,
            position: message.meta.position,
            key: message.key,
            payload: message.payload,
        };
        if let Err(e) = self.dead_letter.send(&record) {
            return Err(IngestError::DeadLetterFailed {
                position: record.position,
                reason: e.to_string(),
            });
        }
        // Counted in as well: every input is in "messages in" once, so that
        // in = out-inputs + filtered + dead-lettered holds for the run.
        self.local.add(Counter::MessagesIn, 1);
        self.local.add(Counter::SourceRejected, 1);
        self.local.add(Counter::DeadLettered, 1);
        if let Some(progress) = &mut self.progress {
            progress.skipped(message.meta.position);
        }
        Ok(())
    }

    /// Publishes every ring, refreshes the ingest clock, publishes the counters.
    /// Call after each read of input (one source batch).
    #[inline]
    pub fn flush(&mut self) {
        for producer in &mut self.producers {
            producer.commit();
        }
        self.clock_stale = true;
        self.local.publish(self.counters.shard(self.shard));
    }

    /// The acknowledged watermarks (per partition or per worker, see [`Routing`]).
    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    /// For a tracked single-partition source: the position before which every
    /// message is settled (delivered, filtered or dead-lettered), and how far the
    /// source has read. `None` when progress is not tracked.
    pub fn settled(&mut self) -> Option<(u64, u64)> {
        let watermarks = &self.watermarks;
        self.progress.as_mut().map(|p| p.settled(watermarks))
    }

    /// Sets the starting point of progress tracking (a resumed file's offset).
    pub fn resume_from(&mut self, position: u64) {
        if let Some(progress) = &mut self.progress {
            progress.skipped(position);
        }
    }

    /// Closes every ring: workers drain what is left and stop. A pause for memory
    /// in progress ends here (and its time is counted).
    pub fn close(&mut self) {
        if let Some(gate) = &mut self.memory
            && let Some(paused_for) = gate.end_pause()
        {
            self.memory_changed(GateChange::Resumed { paused_for });
        }
        self.flush();
        self.producers.clear();
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// "payload of N bytes exceeds record_bytes_max M" without allocating.
fn format_reason(buffer: &mut [u8; 96], payload_bytes: usize, limit: usize) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = write!(cursor, "payload of {payload_bytes} bytes exceeds record_bytes_max {limit}");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buffer[..len]).unwrap_or("payload exceeds record_bytes_max")
}

/// Key hash for routing: FxHash-style multiply-rotate over 8-byte words. Not
/// cryptographic; stable across runs and platforms (little-endian words), so a key
/// maps to the same worker every time for a given worker count.
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    // Final avalanche so `% workers` uses well-mixed low bits.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_stable_and_spreads() {
        assert_eq!(hash_key(b"c-000123"), hash_key(b"c-000123"));
        assert_ne!(hash_key(b"c-000123"), hash_key(b"c-000124"));
        let mut buckets = [0u32; 4];
        for i in 0..4000 {
            let key = format!("c-{i:06}");
            buckets[(hash_key(key.as_bytes()) % 4) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 800), "{buckets:?}");
    }

    #[test]
    fn reason_is_formatted_without_allocation() {
        let mut buffer = [0u8; 96];
        assert_eq!(
            format_reason(&mut buffer, 10, 5),
            "payload of 10 bytes exceeds record_bytes_max 5"
        );
    }
}
