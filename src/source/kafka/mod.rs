//! The Kafka source: one consumer-group member whose partitions map to workers.
//!
//! ```text
//! librdkafka fetchers ──► consumer queue (prefetch ≤ queued_max_messages_kbytes)
//!        │ rd_kafka_consume_batch_queue: up to POLL_BATCH_MAX message pointers
//!        ▼
//! source thread: per message: (topic, partition) → dense slot → worker = slot % workers
//!        │ copy key, payload, headers, timestamp, slot, offset into the ring
//!        │ ring full → keep the message, pause its partition; resume once drained
//!        ▼
//! workers → sink → acknowledgements → Watermarks[slot]
//!        │
//!        ▼
//! commit offset = acknowledged + 1 per partition: by count, by time, when idle,
//! on revoke (synchronously, after the revoked partitions drained) and at shutdown
//! ```
//!
//! **Partition → worker.** Each assigned (topic, partition) gets a dense slot id
//! below [`PARTITIONS_MAX`]; the engine routes `slot % workers`, so a partition
//! always goes to one worker and its order holds through the processor and the
//! sink. The slot is also the watermark index the workers advance.
//!
//! **No per-message allocation.** Messages are read in batches with
//! `rd_kafka_consume_batch_queue` into a pointer array allocated at start; key,
//! payload, headers (re-encoded into a fixed buffer) and metadata are copied
//! straight into the ring and the librdkafka message is released at once. Offsets
//! are committed through C partition lists built from names allocated at
//! assignment. librdkafka's own allocations (message structs, fetch buffers) use the
//! C allocator; the Rust heap sees nothing per message (`tests/kafka_zero_alloc.rs`).
//!
//! **Bounded memory.** librdkafka prefetches at most `queued_max_messages_kbytes`
//! (default 16 MiB, one fetch may overshoot it). A message whose worker ring is full
//! is held in a fixed list of [`HELD_MESSAGES_MAX`] and pushed first, in partition
//! order, when the ring drains; messages of its partition that arrive meanwhile queue
//! behind it. While other workers have room, the partition is also paused
//! (`rd_kafka_pause_partitions`: librdkafka drops what it prefetched for it and
//! refetches from the next offset on resume), so a slow worker never holds up the
//! partitions of the others; it is resumed when its held messages are in the ring.
//! When every worker is full, pausing would only make librdkafka drop and refetch:
//! the held list fills, the source stops polling, librdkafka's queue fills and its
//! fetching stops — backpressure without a refetch.
//!
//! **librdkafka settings corestream chooses** (all overridable in `properties`
//! except the managed ones): `auto.offset.reset = earliest` (a new group reads
//! everything), `fetch.queue.backoff.ms = 10` (librdkafka's 1 s turned every full
//! ring into a second-long stall), `fetch.wait.max.ms = 100` (brokers that hold every
//! fetch for the full wait capped throughput at 500 ms), `partition.assignment.strategy
//! = cooperative-sticky` (a revoke's commit is accepted); managed: `group.id`,
//! `enable.auto.commit = false`, `enable.auto.offset.store = false`,
//! `queued.max.messages.kbytes` (from the config key). Figures in
//! `benches/README.md`, section "Kafka".
//!
//! **Offsets (at-least-once).** A partition's offset is committed only up to the
//! contiguous prefix of messages acknowledged by the sink or dead-lettered (see
//! [`crate::ack`]). Commits are asynchronous while running, one out at a time, and
//! due when `commit_every_messages` settled messages wait uncommitted, when
//! `commit_interval` has passed, when a partition has settled messages and was
//! never committed, and whenever a poll comes back empty (waiting [`SETTLE_WAIT`]
//! while pushed messages are uncommitted, [`IDLE_WAIT`] when all are). A revoke
//! waits (at most [`REVOKE_WAIT_MAX`]) until the revoked partitions' messages are
//! acknowledged, then commits synchronously before giving them up, so the next
//! owner starts where this one stopped. Shutdown commits synchronously after the
//! workers drained.
//!
//! **Replay window after a crash.** What was delivered but not yet committed is
//! read again (at-least-once: duplicates, never a gap). The window is at most
//! `commit_every_messages` settled messages (or `commit_interval` of traffic,
//! whichever is less), plus what settles during one commit round trip, plus what
//! the sink has delivered whose delivery report has not come back yet. Measured
//! (`benches/kafka_replay.rs`, 200k orders, 16 partitions, kill -9 in the middle):
//! at the defaults 2 000 / 100 ms, 0-4.6 % of the outputs are delivered twice,
//! against 26 % at the former 100 000 / 1 s.
//!
//! | commit_every_messages | commit_interval | replay after a crash (at most, plus in flight) | use |
//! |---|---|---|---|
//! | 1 | 100ms | what settles in one commit round trip | every duplicate costs (payments) |
//! | 2 000 (default) | 100ms (default) | 2 000 messages or 100 ms | most production |
//! | 100 000 | 1s | 100 000 messages or 1 s | fewer broker writes, idempotent consumers downstream |
//! | 10 000 000 | 10s | 10 s of traffic | analytics, replay is cheap |
//!
//! Unlike a synchronous checkpoint store, a Kafka commit is one asynchronous request
//! carrying every partition and only one is out at a time, so committing often costs
//! broker writes (at most one per round trip), not pipeline throughput: the measured
//! effect is in `benches/README.md` (section "Kafka").
//!
//! **Rebalance and scale-out.** Several corestream processes with the same `group`
//! split the partitions. A revoked partition is drained and committed before it is
//! released (above); held messages of a revoked partition are dropped unacked, so the
//! next owner reads them. If a revoke cannot drain in time (a stuck sink), what is
//! acknowledged is committed and the rest is replayed by the next owner — duplicates,
//! never a loss; such a partition gets a fresh slot if it comes back while its old
//! messages are still in flight, so the watermarks never move backwards. A partition
//! that comes back to this consumer starts at the later of the group's committed
//! offset and its own acknowledged progress (a broker may refuse commits during a
//! rebalance), and any pause left on it is cleared (librdkafka keeps an application
//! pause across assignments).
//! Both the eager and the cooperative protocols are supported; the default is
//! cooperative (`partition.assignment.strategy = cooperative-sticky`, see
//! [`ASSIGNMENT_STRATEGY_DEFAULT`]), under which a clean join or leave replays
//! nothing (`tests/kafka.rs`, two engines in one group).

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::pressure::MEMORY_SAMPLE_INTERVAL;
use super::{Ingest, Pushed, Routing, Source, SourceError};
use crate::ack::PARTITIONS_MAX;
use crate::kafka::native::{self, KafkaCode};
use crate::kafka::{KafkaSourceSpec, admin};
use crate::limits::{HEADERS_BYTES_MAX, WORKERS_MAX};
use crate::retry::{Action, ActionTable, ErrorCategory, RetryPolicy};
use crate::sync::atomic::{AtomicU64, Ordering};

mod commit;
mod consumer;
mod held;
mod message;
mod rebalance;
mod slots;

use consumer::Consumer;
use held::Held;
use message::{destroy, encode_headers, view};
use slots::{SlotState, TopicEntry};

/// Most messages taken from librdkafka per poll: one ring publish and one clock
/// read per poll batch. The pointer array (8 KiB) is allocated at start.
pub const POLL_BATCH_MAX: usize = 1024;
/// How long an idle poll waits for the first message. Also the period of idle
/// commits and of stop checks while idle.
pub const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Wait of an empty poll while pushed messages are not yet committed: their
/// acknowledgements arrive from the sink meanwhile, and each such poll that comes
/// back empty commits what settled (one commit out at a time), so the commit
/// follows the last deliveries within a few milliseconds instead of an
/// [`IDLE_WAIT`].
pub const SETTLE_WAIT: Duration = Duration::from_millis(5);
/// Wait of a poll while messages are held back (a worker's ring is full).
pub const HELD_WAIT: Duration = Duration::from_millis(1);
/// Messages kept back while their worker's ring is full: four poll batches
/// (32 KiB of pointers). When the list is nearly full the source stops polling
/// and waits for the rings to drain.
pub const HELD_MESSAGES_MAX: usize = 4 * POLL_BATCH_MAX;
/// Longest wait, on revoke, for the revoked partitions' messages to be acknowledged
/// before committing what is acknowledged (the rest is replayed by the next owner).
/// Well under librdkafka's default `max.poll.interval.ms` (300 s).
pub const REVOKE_WAIT_MAX: Duration = Duration::from_secs(10);
/// librdkafka's `fetch.queue.backoff.ms` default for corestream's consumer: how
/// long fetching pauses once the prefetch bound is reached. librdkafka's 1000 ms
/// turns every full ring (backpressure) into a second-long stall; 10 ms resumes
/// fetching soon after the rings drain, at the cost of a few more wake-ups.
pub const FETCH_QUEUE_BACKOFF_MS_DEFAULT: &str = "10";
/// librdkafka's `fetch.wait.max.ms` default for corestream's consumer: the longest
/// a broker may hold a fetch open. librdkafka's 500 ms is harmless against Kafka
/// (it answers as soon as there is data) but caps throughput against brokers that
/// hold every fetch for the full wait (tansu 0.6: ~100k msg/s at 500 ms, ~240k at
/// 100 ms, ~1M at 10 ms; see benches/README.md). 100 ms costs an idle consumer 10
/// empty fetches a second per broker instead of 2.
pub const FETCH_WAIT_MAX_MS_DEFAULT: &str = "100";
/// Longest wait for the answer to an asynchronous commit before the next one is
/// sent anyway (librdkafka always answers; this only bounds a lost answer).
pub const COMMIT_ANSWER_WAIT_MAX: Duration = Duration::from_secs(1);
/// librdkafka's `partition.assignment.strategy` default for corestream's consumer.
/// Under the cooperative protocol a revoke happens after the group has settled its
/// new assignment, so the commit of the revoked partitions is accepted and the next
/// owner starts exactly where this one stopped (0 duplicates on a clean join or
/// leave). Under the eager protocol (librdkafka's `range,roundrobin`) the revoke
/// happens while the group is rebalancing and brokers may refuse that commit
/// (`REBALANCE_IN_PROGRESS`): the next owner then replays from the last accepted
/// commit. Every member of a group must use one protocol: a group of consumers
/// on the eager protocol is switched by restarting all of them, or by setting
/// `partition.assignment.strategy` in `properties`.
pub const ASSIGNMENT_STRATEGY_DEFAULT: &str = "cooperative-sticky";
/// Consumer errors logged in full before only every [`ERROR_LOG_EVERY`]th is.
const ERROR_LOG_FIRST: u64 = 10;
const ERROR_LOG_EVERY: u64 = 1000;
/// Slot value meaning "no slot".
const NO_SLOT: u32 = u32::MAX;
/// Offset value meaning "none" (Kafka offsets are non-negative).
const NO_OFFSET: i64 = -1;

const _: () = assert!(HELD_MESSAGES_MAX >= 2 * POLL_BATCH_MAX);
// A revoke must finish well within librdkafka's default max.poll.interval.ms (300 s).
const _: () = assert!(REVOKE_WAIT_MAX.as_secs() < 300);
const _: () = assert!(PARTITIONS_MAX < NO_SLOT as usize);

/// Counters of one Kafka source, readable while it runs (tests, benches, `run`).
#[derive(Debug, Default)]
pub struct KafkaSourceStats {
    /// Messages taken from librdkafka.
    pub polled: AtomicU64,
    /// Messages written into a ring.
    pub pushed: AtomicU64,
    /// Messages dead-lettered at the source (too large, headers too large).
    pub rejected: AtomicU64,
    /// Times a partition was paused because its worker's ring was full.
    pub pauses: AtomicU64,
    pub resumes: AtomicU64,
    /// Offset commits sent (async and sync) and those that failed.
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub assignments: AtomicU64,
    pub revocations: AtomicU64,
    /// Revokes that gave up waiting for acknowledgements (their rest is replayed).
    pub revoke_timeouts: AtomicU64,
    /// Errors reported by the consumer (per message or global).
    pub consumer_errors: AtomicU64,
    /// Times every assigned partition was paused for memory (`engine.memory_limit`).
    pub memory_pauses: AtomicU64,
}

/// Settings of a [`KafkaSource`] beyond its spec.
#[derive(Clone, Debug)]
pub struct KafkaSourceOptions {
    /// Create missing topics with (partitions, replication); `None`: wait.
    pub create_topics: Option<(u32, u16)>,
    /// Delays and budget of waiting for a missing topic.
    pub retry: RetryPolicy,
    /// What a consumer error of each category does (fail fast stops the source).
    pub actions: ActionTable,
}

/// See the module docs.
pub struct KafkaSource {
    spec: KafkaSourceSpec,
    options: KafkaSourceOptions,
    consumer: Consumer,
    stats: crate::sync::Arc<KafkaSourceStats>,
    batch: Box<[*mut rd::rd_kafka_message_t]>,
    held: Vec<Held>,
    slots: Box<[SlotState]>,
    /// Slots currently assigned, for commit scans.
    assigned: Vec<u32>,
    topics: Vec<TopicEntry>,
    /// Cache of the last message's (topic handle, partition) → slot.
    last_lookup: (*const rd::rd_kafka_topic_t, i32, u32),
    headers: Box<[u8]>,
    workers: usize,
    /// Per worker: its ring was found full and nothing was written to it since.
    worker_full: Box<[bool]>,
    /// Per worker: assigned partitions routed to it.
    worker_partitions: Box<[u32]>,
    /// Messages written since the counters were last published.
    pushed_unpublished: u64,
    pass: u32,
    messages_since_commit: u64,
    last_commit: Instant,
    /// An asynchronous commit was sent and its answer has not been seen yet.
    commit_in_flight: bool,
    /// Some assigned partition was never committed: its first commit is due as
    /// soon as it has settled messages (checked on each step while set).
    awaiting_first_commit: bool,
    subscribed: bool,
    /// Every assigned partition is paused because resident memory reached
    /// `engine.memory_limit` (see [`crate::source::pressure`]).
    memory_paused: bool,
}

// SAFETY: the raw pointers (message batch, held messages, topic handles used only
// for comparison) are owned by and used on the source thread only; the source is
// moved to that thread before `run`.
unsafe impl Send for KafkaSource {}

impl KafkaSource {
    /// Creates the consumer (properties are checked here); topics are checked and
    /// the subscription made when the engine runs the source.
    pub fn new(spec: KafkaSourceSpec, options: KafkaSourceOptions) -> Result<Self, SourceError> {
        let consumer = Consumer::new(&spec).map_err(SourceError::new)?;
        Ok(KafkaSource {
            spec,
            options,
            consumer,
            stats: Default::default(),
            batch: vec![std::ptr::null_mut(); POLL_BATCH_MAX].into_boxed_slice(),
            held: Vec::with_capacity(HELD_MESSAGES_MAX),
            slots: vec![SlotState::default(); PARTITIONS_MAX].into_boxed_slice(),
            assigned: Vec::with_capacity(PARTITIONS_MAX),
            topics: Vec::new(),
            last_lookup: (std::ptr::null(), -1, NO_SLOT),
            headers: vec![0u8; HEADERS_BYTES_MAX].into_boxed_slice(),
            workers: 1,
            worker_full: vec![false; WORKERS_MAX].into_boxed_slice(),
            worker_partitions: vec![0; WORKERS_MAX].into_boxed_slice(),
            pushed_unpublished: 0,
            pass: 0,
            messages_since_commit: 0,
            last_commit: Instant::now(),
            commit_in_flight: false,
            awaiting_first_commit: false,
            subscribed: false,
            memory_paused: false,
        })
    }

    /// The source's counters (clone the `Arc` before handing the source to an engine).
    pub fn stats(&self) -> crate::sync::Arc<KafkaSourceStats> {
        self.stats.clone()
    }

    fn start(&mut self, ingest: &Ingest) -> Result<(), SourceError> {
        self.workers = ingest.workers();
        let topics: Vec<&str> = self.spec.topics.iter().map(String::as_str).collect();
        let missing =
            admin::MissingTopic { create: self.options.create_topics, policy: &self.options.retry };
        admin::ensure_topics(&self.spec.client, &topics, missing).map_err(SourceError::new)?;
        self.consumer.subscribe(&self.spec.topics).map_err(SourceError::new)?;
        self.subscribed = true;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// One iteration of the main loop. Returns the messages taken from librdkafka
    /// and whether the consumer is idle: a poll waited ([`IDLE_WAIT`], or
    /// [`SETTLE_WAIT`] while something pushed is uncommitted) for a message
    /// and none came.
    #[inline]
    fn step(
        &mut self,
        ingest: &mut Ingest,
        idle_before: bool,
    ) -> Result<(usize, bool), SourceError> {
        if let Some(rebalance) = self.consumer.take_pending() {
            self.rebalance(rebalance, ingest)?;
        }
        let memory_paused = ingest.memory_paused();
        if memory_paused != self.memory_paused {
            self.pause_for_memory(memory_paused);
        }
        let mut progressed = true;
        if !self.held.is_empty() {
            progressed = self.retry_held(ingest)?;
        }
        if self.held.len() > HELD_MESSAGES_MAX - POLL_BATCH_MAX {
            // No room for another poll batch: let the rings drain first.
            ingest.flush();
            std::thread::sleep(HELD_WAIT);
            return Ok((0, false));
        }
        let timeout = if self.memory_paused {
            // Nothing to fetch while paused: poll for callbacks and the gate.
            MEMORY_SAMPLE_INTERVAL
        } else if !self.held.is_empty() && !progressed {
            HELD_WAIT
        } else if idle_before && self.held.is_empty() {
            if self.pushed_uncommitted() { SETTLE_WAIT } else { IDLE_WAIT }
        } else {
            Duration::ZERO
        };
        let n = self.consumer.poll(&mut self.batch, timeout);
        for i in 0..n {
            let message = std::mem::replace(&mut self.batch[i], std::ptr::null_mut());
            let Some(message) = NonNull::new(message) else { continue };
            if let Err(e) = self.take(message, ingest) {
                // Release the rest of the batch: librdkafka must get every message
                // back before the consumer is destroyed.
                for rest in &mut self.batch[i + 1..n] {
                    if let Some(m) = NonNull::new(std::mem::replace(rest, std::ptr::null_mut())) {
                        destroy(m);
                    }
                }
                return Err(e);
            }
        }
        ingest.flush();
        if n > 0 {
            self.stats.polled.fetch_add(n as u64, Ordering::Relaxed);
        }
        if self.pushed_unpublished > 0 {
            self.stats
                .pushed
                .fetch_add(std::mem::take(&mut self.pushed_unpublished), Ordering::Relaxed);
        }
        Ok((n, n == 0 && (timeout == IDLE_WAIT || timeout == SETTLE_WAIT)))
    }

    /// Handles one message from a poll: push it, or hold it, or report its error.
    #[inline]
    fn take(
        &mut self,
        message: NonNull<rd::rd_kafka_message_t>,
        ingest: &mut Ingest,
    ) -> Result<(), SourceError> {
        // SAFETY: a message returned by the poll is valid until destroyed.
        let m = unsafe { message.as_ref() };
        if m.err != Err::RD_KAFKA_RESP_ERR_NO_ERROR {
            let code = KafkaCode(m.err);
            // SAFETY: valid message; the error string lives as long as it.
            let text = unsafe { native::borrowed_text(rd::rd_kafka_message_errstr(m)) };
            let result = self.consumer_error(code, text);
            destroy(message);
            return result;
        }
        let slot = self.slot_of(m.rkt, m.partition, m.offset)?;
        if self.slots[slot as usize].held > 0 {
            // Keep partition order: behind what is already held.
            self.hold(message, slot);
            return Ok(());
        }
        match self.push(m, slot, ingest)? {
            Pushed::Full { .. } => {
                self.hold(message, slot);
                self.maybe_pause(slot);
            }
            Pushed::Written | Pushed::Rejected => destroy(message),
        }
        Ok(())
    }

    /// Copies one message into its worker's ring (without waiting).
    #[inline]
    fn push(
        &mut self,
        m: &rd::rd_kafka_message_t,
        slot: u32,
        ingest: &mut Ingest,
    ) -> Result<Pushed, SourceError> {
        let headers_len = match encode_headers(m, &mut self.headers) {
            Ok(len) => len,
            Err(reason) => {
                // SAFETY: valid message for the duration of the call.
                let message = unsafe { view(m, slot, &[]) };
                ingest
                    .reject(&message, ErrorCategory::Serialization, reason)
                    .map_err(|e| SourceError::new(e.to_string()))?;
                self.rejected(slot, m.offset);
                return Ok(Pushed::Rejected);
            }
        };
        // SAFETY: valid message; the view is used before the message is destroyed.
        let message = unsafe { view(m, slot, &self.headers[..headers_len]) };
        let pushed = ingest.try_push(&message).map_err(|e| SourceError::new(e.to_string()))?;
        match pushed {
            Pushed::Written => {
                self.slots[slot as usize].last_pushed = m.offset;
                self.messages_since_commit += 1;
                self.pushed_unpublished += 1;
                self.worker_full[slot as usize % self.workers] = false;
            }
            Pushed::Rejected => self.rejected(slot, m.offset),
            Pushed::Full { worker } => self.worker_full[worker] = true,
        }
        Ok(pushed)
    }

    fn rejected(&mut self, slot: u32, offset: i64) {
        self.slots[slot as usize].last_rejected = offset;
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A consumer error on a message: fail fast, or count, log and go on.
    #[cold]
    fn consumer_error(&mut self, code: KafkaCode, text: &str) -> Result<(), SourceError> {
        if code.0 == Err::RD_KAFKA_RESP_ERR__PARTITION_EOF {
            return Ok(());
        }
        let n = self.stats.consumer_errors.fetch_add(1, Ordering::Relaxed);
        if code.0 == Err::RD_KAFKA_RESP_ERR__FATAL {
            let fatal = self.consumer.client.fatal_error().unwrap_or_else(|| text.to_string());
            return Err(SourceError::new(format!("kafka consumer fatal error: {fatal}")));
        }
        let category = code.category();
        if self.options.actions.action(category) == Action::FailFast {
            return Err(SourceError::new(format!(
                "kafka consumer error ({category}, fail fast): {code}: {text}"
            )));
        }
        if n < ERROR_LOG_FIRST || n % ERROR_LOG_EVERY == 0 {
            eprintln!("corestream: kafka source: consumer error ({category}): {code}: {text}");
        }
        Ok(())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Held messages reference the consumer: release them before it goes.
        self.destroy_held();
    }
}

impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!(
            "kafka {:?} from {} as group {:?} (commit every {} messages or {:?})",
            self.spec.topics,
            self.spec.client.brokers,
            self.spec.group,
            self.spec.commit_every_messages,
            self.spec.commit_interval
        )
    }

    fn routing(&self) -> Routing {
        Routing::Partition
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        self.start(ingest)?;
        let mut idle = false;
        while !ingest.stop_requested() {
            // An empty poll is followed by one that waits for a message; a commit
            // "when idle" needs that wait to come back empty too.
            let (n, idle_now) = self.step(ingest, idle)?;
            idle = n == 0 && self.held.is_empty();
            self.maybe_commit(ingest, idle_now);
        }
        ingest.flush();
        Ok(())
    }

    fn finish(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        // Every worker drained: what was pushed is acknowledged (or its worker
        // failed, and its offsets stay behind). Held messages were never pushed.
        self.destroy_held();
        if !self.subscribed {
            return Ok(());
        }
        // Forced: an earlier asynchronous commit may have been refused after its
        // offsets were recorded as sent.
        let assigned = std::mem::take(&mut self.assigned);
        let code = self.commit_slots(&assigned, ingest, true, true);
        self.assigned = assigned;
        let closed = self.consumer.close();
        if !closed.is_ok() {
            eprintln!("corestream: kafka source: consumer close: {closed}");
        }
        if !code.is_ok() {
            return Err(SourceError::new(format!(
                "kafka source: final offset commit failed: {code}"
            )));
        }
        Ok(())
    }
}
