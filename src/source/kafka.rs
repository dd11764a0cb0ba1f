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
//! fetch for the full wait capped throughput at 500 ms); managed: `group.id`,
//! `enable.auto.commit = false`, `enable.auto.offset.store = false`,
//! `queued.max.messages.kbytes` (from the config key). Figures in
//! `benches/README.md`, section "Kafka".
//!
//! **Offsets (at-least-once).** A partition's offset is committed only up to the
//! contiguous prefix of messages acknowledged by the sink or dead-lettered (see
//! [`crate::ack`]). Commits are asynchronous while running and batched: after
//! `commit_every_messages` messages, after `commit_interval`, and whenever the
//! consumer goes idle with something new to commit. A revoke waits (at most
//! [`REVOKE_WAIT_MAX`]) until the revoked partitions' messages are acknowledged,
//! then commits synchronously before giving them up, so the next owner starts where
//! this one stopped. Shutdown commits synchronously after the workers drained.
//!
//! **Replay window after a crash.** What was delivered but not yet committed is
//! read again (at-least-once: duplicates, never a gap). The window is at most the
//! messages since the last commit plus those in flight:
//! `min(commit_every_messages, rate × commit_interval)` + ring and sink backlog.
//!
//! | commit_every_messages | commit_interval | commits at 1M msg/s | replay after a crash (at most, plus in flight) | use |
//! |---|---|---|---|---|
//! | 1 | 1s | one per poll batch (≤ 1024 msgs) | one poll batch | every duplicate costs (payments) |
//! | 1 000 | 1s | ≤ 1 000/s | 1 000 messages | most production |
//! | 100 000 (default) | 1s (default) | ≤ 10/s | 100 000 messages or 1 s | high throughput, idempotent consumers downstream |
//! | 10 000 000 | 10s | 1 per 10 s | 10 s of traffic | analytics, replay is cheap |
//!
//! Unlike a synchronous checkpoint store, a Kafka commit is one asynchronous request
//! carrying every partition, so committing more often costs broker requests, not
//! pipeline throughput: the measured effect is in `benches/README.md` (section
//! "Kafka"). Choose the window by the background guide's rule: at most the messages
//! a restart takes (`rate × restart time`).
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
//! Both the eager and the cooperative (`partition.assignment.strategy =
//! cooperative-sticky`) protocols are supported.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::{Ingest, Pushed, Routing, Source, SourceError};
use crate::ack::PARTITIONS_MAX;
use crate::kafka::native::{self, KafkaCode, NativeClient, PartitionList};
use crate::kafka::{KafkaSourceSpec, admin, native_conf};
use crate::limits::{HEADERS_BYTES_MAX, WORKERS_MAX};
use crate::message::{Headers, Message, Meta};
use crate::metrics::clock;
use crate::retry::{Action, ActionTable, ErrorCategory, RetryPolicy};
use crate::sync::Mutex;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Most messages taken from librdkafka per poll: one ring publish and one clock
/// read per poll batch. The pointer array (8 KiB) is allocated at start.
pub const POLL_BATCH_MAX: usize = 1024;
/// How long an idle poll waits for the first message. Also the period of idle
/// commits and of stop checks while idle.
pub const IDLE_WAIT: Duration = Duration::from_millis(100);
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
}

/// What the librdkafka callbacks hand to the source thread. Reached through the
/// client's opaque pointer; the callbacks only touch these fields.
struct Callbacks {
    /// A rebalance the source thread has to carry out (the callback yields the
    /// poll so that it is handled before any further message).
    pending: Mutex<Option<Rebalance>>,
    /// Set once the source is closing: rebalances are then carried out inside the
    /// callback (there is nothing left to drain or commit).
    closing: AtomicBool,
    /// An asynchronous commit failed: the next commit resends every partition.
    commit_failed: AtomicBool,
    commit_failures: AtomicU64,
    errors: AtomicU64,
}

struct Rebalance {
    assign: bool,
    partitions: PartitionList,
}

/// The consumer handle, its queue and the callbacks' state, torn down in order.
struct Consumer {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Dropped before `callbacks` (declaration order): librdkafka calls nothing
    /// after `rd_kafka_destroy` returns.
    client: NativeClient,
    callbacks: Box<Callbacks>,
    closed: bool,
    cooperative: Option<bool>,
}

// SAFETY: the queue pointer is only used by the thread that owns the `Consumer`
// (the source thread); the client is thread-safe and the callbacks' state is Sync.
unsafe impl Send for Consumer {}

impl Consumer {
    fn new(spec: &KafkaSourceSpec) -> Result<Self, String> {
        let queued = spec.queued_max_messages_kbytes.to_string();
        let mut conf = native_conf(
            &spec.client,
            &[
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS_DEFAULT),
                ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS_DEFAULT),
            ],
            &[
                ("group.id", &spec.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("queued.max.messages.kbytes", &queued),
            ],
        )?;
        let callbacks = Box::new(Callbacks {
            pending: Mutex::new(None),
            closing: AtomicBool::new(false),
            commit_failed: AtomicBool::new(false),
            commit_failures: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        // SAFETY: the opaque points into a Box owned by the Consumer, which drops
        // the client (and with it every callback) before the Box; the callbacks
        // only read it through a shared reference.
        unsafe {
            rd::rd_kafka_conf_set_opaque(
                conf.as_ptr(),
                &*callbacks as *const Callbacks as *mut c_void,
            );
            rd::rd_kafka_conf_set_rebalance_cb(conf.as_ptr(), Some(on_rebalance));
            rd::rd_kafka_conf_set_offset_commit_cb(conf.as_ptr(), Some(on_commit));
            rd::rd_kafka_conf_set_error_cb(conf.as_ptr(), Some(on_error));
        }
        // SAFETY: the opaque and callbacks stay valid for the client's life (above).
        let client = unsafe { NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_CONSUMER, conf) }
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        // SAFETY: valid consumer handle. Redirecting the main queue makes the poll
        // serve rebalance, commit and error callbacks too.
        let queue = unsafe {
            rd::rd_kafka_poll_set_consumer(client.ptr());
            rd::rd_kafka_queue_get_consumer(client.ptr())
        };
        let queue = NonNull::new(queue).ok_or("librdkafka gave no consumer queue")?;
        Ok(Consumer { queue, client, callbacks, closed: false, cooperative: None })
    }

    fn subscribe(&self, topics: &[String]) -> Result<(), String> {
        let mut list = PartitionList::with_capacity(topics.len());
        for topic in topics {
            let name =
                CString::new(topic.as_str()).map_err(|_| "a topic name cannot contain NUL")?;
            list.add(&name, -1, rd::RD_KAFKA_OFFSET_INVALID as i64);
        }
        // SAFETY: valid handle and list; librdkafka copies the list.
        let code = KafkaCode(unsafe { rd::rd_kafka_subscribe(self.client.ptr(), list.as_ptr()) });
        if code.is_ok() { Ok(()) } else { Err(format!("cannot subscribe to {topics:?}: {code}")) }
    }

    /// Takes up to `out.len()` messages, waiting at most `timeout` for the first one
    /// when `wait_for_one` (then only one is taken, so the wait ends at once).
    #[inline]
    fn poll(&self, out: &mut [*mut rd::rd_kafka_message_t], timeout: Duration) -> usize {
        let (timeout_ms, size) = if timeout.is_zero() {
            (0, out.len())
        } else {
            (timeout.as_millis().min(i32::MAX as u128) as c_int, 1)
        };
        // SAFETY: `out` has room for `size` pointers; the queue is valid. Returned
        // messages are owned by the caller until rd_kafka_message_destroy.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                out.as_mut_ptr(),
                size,
            )
        };
        // A negative count is an error on the queue itself (never for a valid queue).
        n.max(0) as usize
    }

    fn is_cooperative(&mut self) -> bool {
        if let Some(c) = self.cooperative {
            return c;
        }
        // SAFETY: valid handle; a static string.
        let protocol =
            unsafe { native::borrowed_text(rd::rd_kafka_rebalance_protocol(self.client.ptr())) };
        let cooperative = protocol == "COOPERATIVE";
        if protocol != "NONE" {
            self.cooperative = Some(cooperative);
        }
        cooperative
    }

    fn take_pending(&self) -> Option<Rebalance> {
        self.callbacks.pending.lock().take()
    }

    fn commit(&self, list: &PartitionList, sync: bool) -> KafkaCode {
        // SAFETY: valid handle and list; librdkafka copies the list.
        KafkaCode(unsafe {
            rd::rd_kafka_commit(self.client.ptr(), list.as_ptr(), c_int::from(!sync))
        })
    }

    fn assignment_lost(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { rd::rd_kafka_assignment_lost(self.client.ptr()) != 0 }
    }

    fn close(&mut self) -> KafkaCode {
        if self.closed {
            return KafkaCode::OK;
        }
        self.closed = true;
        self.callbacks.closing.store(true, Ordering::Release);
        // SAFETY: valid handle; serves the final revoke through `on_rebalance`,
        // which acts at once now that `closing` is set.
        KafkaCode(unsafe { rd::rd_kafka_consumer_close(self.client.ptr()) })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let code = self.close();
        if !code.is_ok() {
            eprintln!("corestream: kafka source: consumer close: {code}");
        }
        // SAFETY: the queue reference is ours; destroyed before the client.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Carries out a rebalance at once (closing, or nothing to coordinate).
///
/// # Safety
/// `rk` is a valid consumer handle; `partitions` is valid or null.
unsafe fn apply_rebalance(
    rk: *mut rd::rd_kafka_t,
    assign: bool,
    partitions: *const rd::rd_kafka_topic_partition_list_t,
) -> KafkaCode {
    // SAFETY: per the contract; the protocol string is static.
    unsafe {
        let cooperative =
            native::borrowed_text(rd::rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
        match (cooperative, assign) {
            (true, true) => native::take_error(rd::rd_kafka_incremental_assign(rk, partitions)),
            (true, false) => native::take_error(rd::rd_kafka_incremental_unassign(rk, partitions)),
            (false, true) => KafkaCode(rd::rd_kafka_assign(rk, partitions)),
            (false, false) => KafkaCode(rd::rd_kafka_assign(rk, std::ptr::null())),
        }
    }
}

/// librdkafka's rebalance callback (served inside the source's poll).
unsafe extern "C" fn on_rebalance(
    rk: *mut rd::rd_kafka_t,
    err: rd::rd_kafka_resp_err_t,
    partitions: *mut rd::rd_kafka_topic_partition_list_t,
    opaque: *mut c_void,
) {
    // SAFETY: the opaque is the consumer's `Callbacks`, alive while the client is.
    let callbacks = unsafe { &*(opaque as *const Callbacks) };
    let assign = err == Err::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    if err != Err::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
        && err != Err::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
    {
        eprintln!(
            "corestream: kafka source: rebalance error {}; releasing the assignment",
            KafkaCode(err)
        );
    }
    if callbacks.closing.load(Ordering::Acquire) {
        // SAFETY: valid handle and list for the duration of the callback.
        let code = unsafe { apply_rebalance(rk, assign, partitions) };
        if !code.is_ok() {
            eprintln!("corestream: kafka source: rebalance while closing: {code}");
        }
        return;
    }
    // SAFETY: `partitions` is valid for the duration of the callback; we copy it.
    let copy = unsafe { PartitionList::copy_of(partitions) };
    let previous = callbacks.pending.lock().replace(Rebalance { assign, partitions: copy });
    debug_assert!(previous.is_none(), "a rebalance was left unhandled");
    // SAFETY: valid handle; makes the current poll return so the source thread
    // carries out the rebalance before touching any further message.
    unsafe { rd::rd_kafka_yield(rk) };
}

/// librdkafka's offset-commit callback.
unsafe extern "C" fn on_commit(
    _rk: *mut rd::rd_kafka_t,
    err: rd::rd_kafka_resp_err_t,
    _offsets: *mut rd::rd_kafka_topic_partition_list_t,
    opaque: *mut c_void,
) {
    // SAFETY: as in `on_rebalance`.
    let callbacks = unsafe { &*(opaque as *const Callbacks) };
    // "No offset" is not a failure: nothing new was committed.
    if err != Err::RD_KAFKA_RESP_ERR_NO_ERROR && err != Err::RD_KAFKA_RESP_ERR__NO_OFFSET {
        let n = callbacks.commit_failures.fetch_add(1, Ordering::Relaxed);
        callbacks.commit_failed.store(true, Ordering::Release);
        if n < ERROR_LOG_FIRST || n % ERROR_LOG_EVERY == 0 {
            eprintln!(
                "corestream: kafka source: offset commit failed: {} (will resend)",
                KafkaCode(err)
            );
        }
    }
}

/// librdkafka's error callback (client-wide errors: brokers down, ...).
unsafe extern "C" fn on_error(
    _rk: *mut rd::rd_kafka_t,
    err: c_int,
    reason: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: as in `on_rebalance`; `reason` is valid for the call.
    let (callbacks, reason) =
        unsafe { (&*(opaque as *const Callbacks), native::borrowed_text(reason)) };
    let n = callbacks.errors.fetch_add(1, Ordering::Relaxed);
    if n < ERROR_LOG_FIRST || n % ERROR_LOG_EVERY == 0 {
        eprintln!("corestream: kafka source: error {err}: {reason}");
    }
}

/// Per-slot state, owned by the source thread.
#[derive(Clone, Copy, Debug)]
struct SlotState {
    /// Index into `topics`, and the Kafka partition, of this slot.
    topic: u32,
    partition: i32,
    /// Ever handed out (slots are not reused by another partition).
    used: bool,
    /// Currently assigned to this consumer.
    assigned: bool,
    /// Offset of the last message written into a ring; `NO_OFFSET` if none.
    last_pushed: i64,
    /// Offset of the last message dead-lettered at the source; `NO_OFFSET` if none.
    last_rejected: i64,
    /// Next offset as last committed (or known committed); `NO_OFFSET` if none.
    committed: i64,
    /// Messages of this slot in the held list.
    held: u32,
    /// Paused because its worker's ring was full.
    paused: bool,
    /// On reassignment: everything pushed from the previous assignment was
    /// acknowledged (read by `slot_for_first_message`).
    drained_at_assign: bool,
    /// The retry pass in which this slot's ring was found full.
    blocked_pass: u32,
}

impl Default for SlotState {
    fn default() -> Self {
        SlotState {
            topic: 0,
            partition: 0,
            used: false,
            assigned: false,
            last_pushed: NO_OFFSET,
            last_rejected: NO_OFFSET,
            committed: NO_OFFSET,
            held: 0,
            paused: false,
            drained_at_assign: false,
            blocked_pass: 0,
        }
    }
}

/// One Kafka partition as seen by this consumer.
#[derive(Clone, Copy, Debug)]
struct PartitionEntry {
    slot: u32,
    /// Reassigned after a revoke: decide at its first message whether the old slot
    /// can be kept (see `slot_for_first_message`).
    decide_on_first: bool,
}

/// One subscribed topic: its name (for partition lists) and its partitions' slots.
struct TopicEntry {
    name: CString,
    /// The `rd_kafka_topic_t` last seen on a message of this topic (compared only).
    handle: *const rd::rd_kafka_topic_t,
    partitions: Vec<PartitionEntry>,
}

/// A message kept back because its worker's ring was full.
#[derive(Clone, Copy)]
struct Held {
    message: NonNull<rd::rd_kafka_message_t>,
    slot: u32,
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
    subscribed: bool,
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
            subscribed: false,
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
    /// and whether the consumer is idle: a poll waited [`IDLE_WAIT`] for a message
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
        let timeout = if !self.held.is_empty() && !progressed {
            HELD_WAIT
        } else if idle_before && self.held.is_empty() {
            IDLE_WAIT
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
        Ok((n, n == 0 && timeout == IDLE_WAIT))
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

    fn hold(&mut self, message: NonNull<rd::rd_kafka_message_t>, slot: u32) {
        debug_assert!(self.held.len() < HELD_MESSAGES_MAX);
        self.held.push(Held { message, slot });
        self.slots[slot as usize].held += 1;
    }

    /// Pushes held messages in order; a partition whose ring is still full is
    /// skipped for the rest of the pass. Returns whether anything moved.
    fn retry_held(&mut self, ingest: &mut Ingest) -> Result<bool, SourceError> {
        self.pass = self.pass.wrapping_add(1).max(1);
        let pass = self.pass;
        let mut kept = 0usize;
        let mut moved = false;
        for i in 0..self.held.len() {
            let held = self.held[i];
            if self.slots[held.slot as usize].blocked_pass == pass {
                self.held[kept] = held;
                kept += 1;
                continue;
            }
            // SAFETY: held messages are valid until destroyed.
            let m = unsafe { held.message.as_ref() };
            match self.push(m, held.slot, ingest)? {
                Pushed::Full { .. } => {
                    self.slots[held.slot as usize].blocked_pass = pass;
                    self.held[kept] = held;
                    kept += 1;
                    self.maybe_pause(held.slot);
                }
                Pushed::Written | Pushed::Rejected => {
                    destroy(held.message);
                    moved = true;
                    let state = &mut self.slots[held.slot as usize];
                    state.held -= 1;
                    if state.held == 0 && state.paused {
                        self.resume(held.slot);
                    }
                }
            }
        }
        self.held.truncate(kept);
        Ok(moved)
    }

    /// A one-entry partition list of `slot` (C allocation only).
    fn list_of(&self, slot: u32) -> PartitionList {
        let state = &self.slots[slot as usize];
        let mut list = PartitionList::with_capacity(1);
        list.add(&self.topics[state.topic as usize].name, state.partition, NO_OFFSET);
        list
    }

    /// Pauses `slot` (its worker's ring is full) when that lets other partitions
    /// flow: some other worker with partitions has room. When every worker is full,
    /// pausing would only make librdkafka drop and refetch what it prefetched;
    /// instead the held list fills and the source waits for the rings to drain.
    fn maybe_pause(&mut self, slot: u32) {
        if self.slots[slot as usize].paused {
            return;
        }
        let worker = slot as usize % self.workers;
        let others_have_room = (0..self.workers)
            .any(|w| w != worker && !self.worker_full[w] && self.worker_partitions[w] > 0);
        if others_have_room {
            self.pause(slot);
        }
    }

    /// Recounts the assigned partitions per worker (after an assignment change).
    fn recount_workers(&mut self) {
        self.worker_partitions.iter_mut().for_each(|n| *n = 0);
        for &slot in &self.assigned {
            self.worker_partitions[slot as usize % self.workers] += 1;
        }
    }

    fn pause(&mut self, slot: u32) {
        let list = self.list_of(slot);
        // SAFETY: valid handle and list.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_pause_partitions(self.consumer.client.ptr(), list.as_ptr())
        });
        if !code.is_ok() {
            eprintln!("corestream: kafka source: cannot pause a partition: {code}");
        }
        self.slots[slot as usize].paused = true;
        self.stats.pauses.fetch_add(1, Ordering::Relaxed);
    }

    fn resume(&mut self, slot: u32) {
        let list = self.list_of(slot);
        // SAFETY: valid handle and list.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_resume_partitions(self.consumer.client.ptr(), list.as_ptr())
        });
        if !code.is_ok() {
            eprintln!("corestream: kafka source: cannot resume a partition: {code}");
        }
        self.slots[slot as usize].paused = false;
        self.stats.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// The slot of a message's partition: a cached compare in the common case.
    #[inline]
    fn slot_of(
        &mut self,
        rkt: *const rd::rd_kafka_topic_t,
        partition: i32,
        offset: i64,
    ) -> Result<u32, SourceError> {
        let (cached_rkt, cached_partition, cached_slot) = self.last_lookup;
        if cached_rkt == rkt && cached_partition == partition {
            return Ok(cached_slot);
        }
        let slot = self.lookup(rkt, partition, offset)?;
        self.last_lookup = (rkt, partition, slot);
        Ok(slot)
    }

    #[cold]
    fn lookup(
        &mut self,
        rkt: *const rd::rd_kafka_topic_t,
        partition: i32,
        offset: i64,
    ) -> Result<u32, SourceError> {
        let index = match self.topics.iter().position(|t| t.handle == rkt) {
            Some(i) => i,
            None => {
                // SAFETY: a message's topic handle is valid while the message is.
                let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(rkt)) };
                let i = self.topic_index(name);
                self.topics[i].handle = rkt;
                i
            }
        };
        let p = usize::try_from(partition)
            .map_err(|_| SourceError::new("librdkafka returned a negative partition"))?;
        let entry = self.topics[index].partitions.get(p).copied();
        match entry {
            Some(e) if e.slot != NO_SLOT && !e.decide_on_first => Ok(e.slot),
            Some(e) if e.slot != NO_SLOT => {
                let slot = self.slot_for_first_message(e.slot, offset)?;
                self.topics[index].partitions[p] = PartitionEntry { slot, decide_on_first: false };
                Ok(slot)
            }
            // A message for a partition never assigned (cannot happen with a group
            // subscription): give it a slot rather than lose it.
            _ => self.assign_slot(index, partition),
        }
    }

    /// A partition came back after a revoke. Keep its old slot if everything pushed
    /// from it is acknowledged and this message is past it (the watermark then keeps
    /// growing); else give it a fresh slot on the same worker, so old in-flight
    /// acknowledgements can never move the new watermark backwards.
    /// The slot joins the commit list only now, so an offset from its previous
    /// assignment is never committed over the group's newer one.
    fn slot_for_first_message(&mut self, old: u32, offset: i64) -> Result<u32, SourceError> {
        let state = self.slots[old as usize];
        if state.last_pushed == NO_OFFSET || (state.drained_at_assign && offset > state.last_pushed)
        {
            // The partition starts at `offset` (the group's committed offset or, if
            // further, our own acknowledged progress): commit it once more, so a
            // start past a refused commit reaches the group without new traffic.
            self.slots[old as usize].committed = offset - 1;
            self.assigned.push(old);
            self.recount_workers();
            return Ok(old);
        }
        let fresh = self.free_slot(Some(old as usize % self.workers.max(1)))?;
        let (topic, partition) = (state.topic, state.partition);
        self.slots[fresh as usize] = SlotState {
            topic,
            partition,
            used: true,
            assigned: true,
            committed: offset,
            ..SlotState::default()
        };
        self.slots[old as usize].assigned = false;
        self.assigned.push(fresh);
        self.recount_workers();
        Ok(fresh)
    }

    fn topic_index(&mut self, name: &CStr) -> usize {
        if let Some(i) = self.topics.iter().position(|t| t.name.as_c_str() == name) {
            return i;
        }
        self.topics.push(TopicEntry {
            name: name.to_owned(),
            handle: std::ptr::null(),
            partitions: Vec::new(),
        });
        self.topics.len() - 1
    }

    /// A slot never handed out, preferring one on worker `residue`.
    fn free_slot(&self, residue: Option<usize>) -> Result<u32, SourceError> {
        let workers = self.workers.max(1);
        let found = residue
            .and_then(|r| (r..PARTITIONS_MAX).step_by(workers).find(|&s| !self.slots[s].used))
            .or_else(|| (0..PARTITIONS_MAX).find(|&s| !self.slots[s].used));
        found.map(|s| s as u32).ok_or_else(|| {
            SourceError::new(format!(
                "more than {PARTITIONS_MAX} partition slots used (partitions assigned, plus partitions \
                 reassigned while their old messages were still in flight); restart the process"
            ))
        })
    }

    /// Gives (topic, partition) a fresh slot and marks it assigned.
    fn assign_slot(&mut self, topic: usize, partition: i32) -> Result<u32, SourceError> {
        let slot = self.free_slot(None)?;
        self.slots[slot as usize] = SlotState {
            topic: topic as u32,
            partition,
            used: true,
            assigned: true,
            ..SlotState::default()
        };
        let p = partition as usize;
        let partitions = &mut self.topics[topic].partitions;
        if partitions.len() <= p {
            partitions.resize(p + 1, PartitionEntry { slot: NO_SLOT, decide_on_first: false });
        }
        partitions[p] = PartitionEntry { slot, decide_on_first: false };
        self.assigned.push(slot);
        self.recount_workers();
        Ok(slot)
    }

    fn slot_of_entry(&self, topic: &CStr, partition: i32) -> Option<(usize, u32)> {
        let index = self.topics.iter().position(|t| t.name.as_c_str() == topic)?;
        let entry = self.topics[index].partitions.get(usize::try_from(partition).ok()?)?;
        (entry.slot != NO_SLOT).then_some((index, entry.slot))
    }

    /// Carries out a rebalance the callback handed over.
    fn rebalance(&mut self, rebalance: Rebalance, ingest: &mut Ingest) -> Result<(), SourceError> {
        self.last_lookup = (std::ptr::null(), -1, NO_SLOT);
        let mut rebalance = rebalance;
        if rebalance.assign {
            self.start_where_left_off(&mut rebalance.partitions, ingest);
        }
        let list = &rebalance.partitions;
        if rebalance.assign {
            self.stats.assignments.fetch_add(1, Ordering::Relaxed);
            for i in 0..list.len() {
                let Some((topic, partition, start, _)) = list.get(i) else { continue };
                let topic = topic.to_owned();
                match self.slot_of_entry(&topic, partition) {
                    Some((index, slot)) => {
                        // Back after a revoke. Drained: keep the slot now (every new
                        // offset is past what it pushed) and commit the start once
                        // more if it is our own progress (a refused revoke commit).
                        // Not drained: decide at its first message (`lookup`).
                        let acknowledged =
                            ingest.watermarks().acknowledged(slot).map_or(NO_OFFSET, |a| a as i64);
                        let own_next = self.commit_offset(slot, ingest);
                        let state = &mut self.slots[slot as usize];
                        let drained =
                            state.last_pushed == NO_OFFSET || acknowledged >= state.last_pushed;
                        state.drained_at_assign = drained;
                        state.assigned = true;
                        let entry = &mut self.topics[index].partitions[partition as usize];
                        if drained {
                            if start >= 0 {
                                state.committed = if start == own_next { start - 1 } else { start };
                            }
                            entry.decide_on_first = false;
                            self.assigned.push(slot);
                        } else {
                            entry.decide_on_first = true;
                        }
                    }
                    None => {
                        let index = self.topic_index(&topic);
                        self.assign_slot(index, partition)?;
                    }
                }
            }
            self.recount_workers();
        } else {
            self.stats.revocations.fetch_add(1, Ordering::Relaxed);
            ingest.flush();
            // Revoked slots in the commit list; undecided ones (reassigned, no
            // message yet) only stop being assigned.
            let mut revoked: Vec<u32> = Vec::with_capacity(list.len());
            for i in 0..list.len() {
                let Some((topic, partition, _, _)) = list.get(i) else { continue };
                let Some((_, slot)) = self.slot_of_entry(topic, partition) else { continue };
                if self.assigned.contains(&slot) {
                    revoked.push(slot);
                } else {
                    self.slots[slot as usize].assigned = false;
                }
            }
            self.drop_held(&revoked);
            // librdkafka keeps an application pause across unassign and assign: a
            // partition paused now would come back paused and never flow again.
            for &slot in &revoked {
                if self.slots[slot as usize].paused {
                    self.resume(slot);
                }
            }
            if !self.wait_drained(&revoked, ingest) {
                self.stats.revoke_timeouts.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "corestream: kafka source: revoked partitions not fully acknowledged within {REVOKE_WAIT_MAX:?}; \
                     committing what is acknowledged (the rest will be read again by the next owner)"
                );
            }
            if !self.consumer.assignment_lost() {
                let code = self.commit_slots(&revoked, ingest, true, true);
                if !code.is_ok() {
                    eprintln!("corestream: kafka source: commit on revoke failed: {code}");
                }
            }
            for slot in &revoked {
                let state = &mut self.slots[*slot as usize];
                state.assigned = false;
                state.paused = false;
            }
            self.assigned.retain(|s| !revoked.contains(s));
            self.recount_workers();
        }
        let cooperative = self.consumer.is_cooperative();
        // SAFETY: valid handle and list.
        let code = unsafe {
            match (cooperative, rebalance.assign) {
                (true, true) => native::take_error(rd::rd_kafka_incremental_assign(
                    self.consumer.client.ptr(),
                    list.as_ptr(),
                )),
                (true, false) => native::take_error(rd::rd_kafka_incremental_unassign(
                    self.consumer.client.ptr(),
                    list.as_ptr(),
                )),
                (false, true) => {
                    KafkaCode(rd::rd_kafka_assign(self.consumer.client.ptr(), list.as_ptr()))
                }
                (false, false) => {
                    KafkaCode(rd::rd_kafka_assign(self.consumer.client.ptr(), std::ptr::null()))
                }
            }
        };
        if !code.is_ok() {
            return Err(SourceError::new(format!(
                "kafka source: cannot {} partitions: {code}",
                if rebalance.assign { "assign" } else { "release" }
            )));
        }
        if rebalance.assign {
            // Clear any application pause left on these partitions (a revoke that
            // was handled while closing, or another library user): a new
            // assignment always starts flowing; corestream pauses again if needed.
            // SAFETY: valid handle and list.
            let code = KafkaCode(unsafe {
                rd::rd_kafka_resume_partitions(self.consumer.client.ptr(), list.as_ptr())
            });
            if !code.is_ok() {
                eprintln!("corestream: kafka source: cannot resume assigned partitions: {code}");
            }
        }
        Ok(())
    }

    /// A partition that comes back to this consumer starts where this consumer's
    /// acknowledged progress ends, unless the group's committed offset is further:
    /// a revoke commit the broker refused (Kafka refuses commits in some rebalance
    /// states; librdkafka's mock cluster in all of them) would otherwise replay
    /// everything since the last accepted commit. Starting at one past our own
    /// acknowledged offset loses nothing: everything before it was delivered.
    fn start_where_left_off(&mut self, list: &mut PartitionList, ingest: &Ingest) {
        let mut own: Vec<(usize, i64)> = Vec::new();
        for i in 0..list.len() {
            let Some((topic, partition, _, _)) = list.get(i) else { continue };
            if let Some((_, slot)) = self.slot_of_entry(topic, partition) {
                let next = self.commit_offset(slot, ingest);
                if next != NO_OFFSET {
                    own.push((i, next));
                }
            }
        }
        if own.is_empty() {
            return;
        }
        // The group's committed offsets, filled into `list` (INVALID where none).
        let timeout_ms = admin::METADATA_TIMEOUT.as_millis() as c_int;
        // SAFETY: valid handle and list; librdkafka writes offsets in place.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_committed(self.consumer.client.ptr(), list.as_ptr(), timeout_ms)
        });
        for (i, next) in own {
            let committed =
                if code.is_ok() { list.get(i).map_or(NO_OFFSET, |e| e.2) } else { NO_OFFSET };
            if next > committed {
                list.set_offset(i, next);
            }
        }
    }

    /// Drops held messages of `slots` (they were never pushed; the next owner, or
    /// this consumer after a reassignment, reads them again).
    fn drop_held(&mut self, slots: &[u32]) {
        let mut kept = 0;
        for i in 0..self.held.len() {
            let held = self.held[i];
            if slots.contains(&held.slot) {
                destroy(held.message);
                self.slots[held.slot as usize].held -= 1;
            } else {
                self.held[kept] = held;
                kept += 1;
            }
        }
        self.held.truncate(kept);
    }

    /// Waits until every message pushed from `slots` is acknowledged, at most
    /// [`REVOKE_WAIT_MAX`]. Returns whether they drained.
    fn wait_drained(&self, slots: &[u32], ingest: &Ingest) -> bool {
        let deadline = Instant::now() + REVOKE_WAIT_MAX;
        loop {
            let drained = slots.iter().all(|&slot| {
                let last = self.slots[slot as usize].last_pushed;
                last == NO_OFFSET
                    || ingest.watermarks().acknowledged(slot).is_some_and(|a| a as i64 >= last)
            });
            if drained {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The offset to commit for `slot`: one past the acknowledged watermark, or past
    /// a trailing message dead-lettered at the source once everything before it is
    /// acknowledged.
    #[inline]
    fn commit_offset(&self, slot: u32, ingest: &Ingest) -> i64 {
        let state = &self.slots[slot as usize];
        let acknowledged = ingest.watermarks().acknowledged(slot).map_or(NO_OFFSET, |a| a as i64);
        let mut next = if acknowledged == NO_OFFSET { NO_OFFSET } else { acknowledged + 1 };
        if state.last_rejected > state.last_pushed && acknowledged >= state.last_pushed {
            next = next.max(state.last_rejected + 1);
        }
        next
    }

    /// Commits every slot of `slots` whose offset moved (all of them when `force`).
    /// Returns the commit's result (OK when there was nothing to commit).
    fn commit_slots(
        &mut self,
        slots: &[u32],
        ingest: &Ingest,
        sync: bool,
        force: bool,
    ) -> KafkaCode {
        let mut list: Option<PartitionList> = None;
        for &slot in slots {
            let next = self.commit_offset(slot, ingest);
            let state = self.slots[slot as usize];
            if next == NO_OFFSET || (next <= state.committed && !force) {
                continue;
            }
            list.get_or_insert_with(|| PartitionList::with_capacity(slots.len())).add(
                &self.topics[state.topic as usize].name,
                state.partition,
                next,
            );
            self.slots[slot as usize].committed = next.max(state.committed);
        }
        let Some(list) = list else { return KafkaCode::OK };
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        let code = self.consumer.commit(&list, sync);
        if !code.is_ok() && code.0 != Err::RD_KAFKA_RESP_ERR__NO_OFFSET {
            self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            self.consumer.callbacks.commit_failed.store(true, Ordering::Release);
            return code;
        }
        KafkaCode::OK
    }

    /// Commits asynchronously when the count or the interval is reached, or when
    /// idle with something new.
    #[inline]
    fn maybe_commit(&mut self, ingest: &Ingest, idle: bool) {
        let due = idle
            || self.messages_since_commit >= self.spec.commit_every_messages
            || self.last_commit.elapsed() >= self.spec.commit_interval;
        if !due || self.assigned.is_empty() {
            return;
        }
        let force = self.consumer.callbacks.commit_failed.swap(false, Ordering::AcqRel);
        let assigned = std::mem::take(&mut self.assigned);
        let code = self.commit_slots(&assigned, ingest, false, force);
        self.assigned = assigned;
        if !code.is_ok() {
            eprintln!("corestream: kafka source: offset commit failed: {code} (will resend)");
        }
        self.messages_since_commit = 0;
        self.last_commit = Instant::now();
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

    fn destroy_held(&mut self) {
        for held in self.held.drain(..) {
            destroy(held.message);
        }
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

/// Releases a message back to librdkafka.
#[inline]
fn destroy(message: NonNull<rd::rd_kafka_message_t>) {
    // SAFETY: each message is destroyed exactly once, by its single owner.
    unsafe { rd::rd_kafka_message_destroy(message.as_ptr()) }
}

/// A borrowed view of a librdkafka message as an engine message.
///
/// # Safety
/// `m` is a valid, not yet destroyed message; the view must not outlive it.
#[inline]
unsafe fn view<'a>(m: &'a rd::rd_kafka_message_t, slot: u32, headers: &'a [u8]) -> Message<'a> {
    let mut timestamp_type = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: valid message per the contract.
    let timestamp_ms = unsafe { rd::rd_kafka_message_timestamp(m, &mut timestamp_type) };
    Message {
        // SAFETY: key and payload are valid for the message's life (or null).
        key: unsafe { native::bytes(m.key, m.key_len) },
        payload: unsafe { native::bytes(m.payload, m.len) },
        headers: Headers::from_encoded(headers),
        meta: Meta {
            partition: slot,
            position: m.offset.max(0) as u64,
            timestamp_ms: if timestamp_ms >= 0 { timestamp_ms } else { clock::unix_ms() },
            ingest_ns: 0,
        },
    }
}

/// Re-encodes a message's headers into `out`; returns the encoded length.
#[inline]
fn encode_headers(m: &rd::rd_kafka_message_t, out: &mut [u8]) -> Result<usize, &'static str> {
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: valid message; the header list belongs to it (not to be destroyed).
    let code = unsafe { rd::rd_kafka_message_headers(m, &mut headers) };
    if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return Ok(0);
    }
    let mut index = 0usize;
    let iter = std::iter::from_fn(|| {
        let mut name: *const c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: valid header list; the returned pointers live as long as it.
        let code = unsafe {
            rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
        };
        if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        index += 1;
        // SAFETY: name is NUL-terminated; value points to `size` bytes or is null.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| unsafe { native::bytes(value, size) });
        Some((name, value))
    });
    Headers::encode(iter, out).map_err(|_| "headers exceed the 65534-byte header block of a record")
}
