//! The Kafka sink and the Kafka dead-letter topic.
//!
//! ```text
//! worker w: write(outputs, ticket) ── hold(ticket, n) ── rd_kafka_produceva × n ── done(ticket)
//!                                                            │ opaque = (w, ticket slot)
//!                       one producer, shared by all workers  ▼
//! poll thread: rd_kafka_poll ── delivery report ── Acker[w].done_slot(slot)
//!                                     │ failed for good (after librdkafka's own retries)
//!                                     ▼
//!              category (from the code) → retry by the policy / dead-letter / fail fast
//! ```
//!
//! **One producer for all workers.** librdkafka batches per partition across
//! workers, so one client makes the biggest batches; its handle is thread-safe. Each
//! message carries `(worker, ticket slot)` in its opaque; the delivery callback
//! releases that hold on that worker's [`Acker`]. A batch is acknowledged when every
//! message in it is delivered (or dead-lettered), so offsets never pass a message
//! that is still in flight.
//!
//! **No per-message allocation.** `rd_kafka_produceva` is called with a fixed array
//! of arguments on the stack: a cached topic handle (one per topic the worker has
//! seen, at most [`TOPIC_HANDLES_MAX`]), key, payload, the opaque and, when the
//! message has headers, a librdkafka header list (a C allocation). librdkafka copies
//! key and payload (`RD_KAFKA_MSG_F_COPY`): the outputs borrow the ring and arena.
//!
//! **Topic.** `Output::topic` (set by a route step's template); empty means the
//! sink's `topic`. The key and headers are kept; the partition is chosen by
//! librdkafka's partitioner from the key, so messages of one key keep their order
//! (they come from one source partition, hence one worker). Batching, linger and
//! compression are librdkafka's (`batch_bytes`, `linger`, `compression`, or any
//! property); set `enable.idempotence = true` to keep order through librdkafka's
//! internal retries.
//!
//! **Failures.** librdkafka retries transient produce errors itself until
//! `message.timeout.ms`. A delivery that still fails is categorised from its error
//! code and handled by the pipeline's failure policy: `retry` re-sends it after the
//! policy's delay (the message is copied then — the failure path may allocate), and
//! dead-letters it when the policy gives up; `dead_letter` sends it to the
//! dead-letter destination at once; `fail_fast` stops the pipeline (its offset is
//! never committed). While [`RETRY_BACKLOG_MAX`] messages wait for a retry, writes
//! wait: backpressure reaches the source, memory stays bounded. A full local queue
//! (`QUEUE_FULL`) is ordinary backpressure: the write waits for deliveries, up to
//! [`QUEUE_FULL_WAIT_MAX`], then hands the message to the retry backlog.
//!
//! **The sink contract** (see [`crate::sink::Sink`]). `write` is all or nothing: it
//! returns an error only before it took anything (a recorded fail-fast error), so
//! the engine's resilient wrapper never re-sends part of a batch; once a batch is
//! taken, each message ends delivered, retried, dead-lettered or, after a fail-fast
//! error, held unacknowledged (its offset is never committed) while the next call
//! reports the error. `idle` never blocks: it says whether deliveries are pending and
//! the worker asks again on its next wake-up, so its acknowledgements — and the
//! source's idle commit — follow the delivery reports. `flush` (a full ticket queue,
//! shutdown) waits for them, bounded by `message.timeout.ms` plus the retry budget.
//! A dead-letter record of a synchronous refusal carries the input's partition and
//! position; one of a failed delivery report carries the destination partition and
//! position 0 (librdkafka hands back only the message).
//!
//! **Dead-letter topic.** [`KafkaDeadLetter`] produces a record synchronously (a
//! dead-letter write returns only once the broker has it, so the source may then
//! commit past the message): key and payload as they were, the failure in headers
//! `corestream.category`, `.stage`, `.reason`, `.attempts`, `.partition`,
//! `.position`.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;
use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use super::{Sink, SinkError, SinkFactory};
use crate::ack::{Acker, Ticket};
use crate::kafka::native::{KafkaCode, NativeClient};
use crate::kafka::{KafkaClientSpec, KafkaSinkSpec, admin, native_conf};
use crate::limits::WORKERS_MAX;
use crate::message::{Message, Meta, Output};
use crate::retry::counters::{CounterSink, Outcome, RETRY_COUNTERS, retry_counter_index};
use crate::retry::{Action, ActionTable, ErrorCategory, RetryPolicy, RetryState, SplitMix64};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};

mod dead_letter_topic;
mod delivery;
mod producer;
mod retry;

pub use dead_letter_topic::KafkaDeadLetter;
use delivery::{Delivery, Produce, on_delivery};
use producer::{ProducerCore, ProducerHandle, TopicHandles, poll_loop};
use retry::{RetryBacklog, RetryItem};

/// Topic handles a worker's sink caches (topics from templates). A handle is a
/// reference count in librdkafka; past this many the oldest is released and made
/// again when needed.
pub const TOPIC_HANDLES_MAX: usize = 64;
/// Messages waiting for a retry (after a failed delivery) beyond which writes wait.
pub const RETRY_BACKLOG_MAX: u64 = 10_000;
/// Longest a write waits for room in librdkafka's queue before failing with
/// `throttled`: if nothing is delivered for this long the brokers are not taking
/// messages.
pub const QUEUE_FULL_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long the poll thread blocks in one `rd_kafka_poll` (also its stop latency).
const POLL_WAIT_MS: i32 = 50;
/// Longest wait for the last deliveries when the producer shuts down.
const SHUTDOWN_FLUSH_MS: i32 = 30_000;
/// Added to librdkafka's `message.timeout.ms` and the retry budget to bound a
/// flush: past that, some delivery report was lost, which librdkafka never does.
const FLUSH_SLACK: Duration = Duration::from_secs(30);
/// librdkafka's default `message.timeout.ms`.
const MESSAGE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// Default bound of librdkafka's producer queue (`queue.buffering.max.kbytes`):
/// 64 MiB instead of librdkafka's 1 GiB.
pub const QUEUE_BUFFERING_MAX_KBYTES_DEFAULT: &str = "65536";
/// Longest wait for a dead-letter record to be delivered.
pub const DEAD_LETTER_WAIT: Duration = Duration::from_secs(30);
/// `RD_KAFKA_PARTITION_UA`: let the partitioner choose.
const PARTITION_UNASSIGNED: i32 = -1;

/// Opaque tag bits: a plain message is `worker << 32 | ticket slot`; a retried
/// message is `TAG_RETRY | backlog index`.
const TAG_RETRY: usize = 1 << 63;
const TAG_WORKER_SHIFT: u32 = 32;
const _: () = assert!(usize::BITS == 64, "the delivery opaque packs worker and slot into 64 bits");
const _: () = assert!(WORKERS_MAX < 1 << 16);

#[inline]
fn tag(worker: usize, slot: u32) -> usize {
    (worker << TAG_WORKER_SHIFT) | slot as usize
}

/// Counters of a Kafka sink (all workers), readable while it runs.
#[derive(Debug)]
pub struct KafkaSinkStats {
    /// Messages handed to librdkafka (retries included).
    pub produced: AtomicU64,
    /// Messages the brokers acknowledged.
    pub delivered: AtomicU64,
    /// Delivery reports with an error (each failed attempt).
    pub failed_deliveries: AtomicU64,
    /// Messages sent to the dead-letter destination by this sink.
    pub dead_lettered: AtomicU64,
    /// Times a write found librdkafka's queue full and waited.
    pub queue_full_waits: AtomicU64,
    /// Per (category, outcome) retry counters; see `retry::counters`.
    pub retry: [AtomicU64; RETRY_COUNTERS],
}

impl Default for KafkaSinkStats {
    fn default() -> Self {
        KafkaSinkStats {
            produced: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed_deliveries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            queue_full_waits: AtomicU64::new(0),
            retry: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl KafkaSinkStats {
    /// The retry counter of `(category, outcome)`.
    pub fn retry_count(&self, category: ErrorCategory, outcome: Outcome) -> u64 {
        self.retry[retry_counter_index(category, outcome)].load(Ordering::Relaxed)
    }
}

impl CounterSink for KafkaSinkStats {
    fn add(&self, index: usize, n: u64) {
        if let Some(counter) = self.retry.get(index) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Settings of a [`KafkaSinkFactory`] beyond its spec.
#[derive(Clone)]
pub struct KafkaSinkOptions {
    /// Create missing topics with (partitions, replication); `None`: wait.
    pub create_topics: Option<(u32, u16)>,
    pub retry: RetryPolicy,
    pub actions: ActionTable,
    /// Where deliveries that failed for good go (unless the spec names a
    /// dead-letter topic, which then takes precedence).
    pub dead_letter: Arc<dyn DeadLetter>,
}

/// Creates one [`KafkaSink`] per worker over one shared producer.
pub struct KafkaSinkFactory {
    spec: KafkaSinkSpec,
    handle: Arc<ProducerHandle>,
    create_topics: Option<(u32, u16)>,
    retry: RetryPolicy,
}

impl KafkaSinkFactory {
    /// Checks (waits for, or creates) the default topic, creates the producer and
    /// starts its poll thread.
    pub fn new(spec: KafkaSinkSpec, options: KafkaSinkOptions) -> Result<Self, SinkError> {
        let setup = |e: String| SinkError::new(ErrorCategory::Configuration, e);
        let mut topics = vec![spec.topic.as_str()];
        if let Some(dlq) = &spec.dead_letter_topic {
            topics.push(dlq);
        }
        let missing = admin::MissingTopic { create: options.create_topics, policy: &options.retry };
        admin::ensure_topics(&spec.client, &topics, missing)
            .map_err(|e| SinkError::new(ErrorCategory::TopicMissing, e))?;
        let dead_letter: Arc<dyn DeadLetter> = match &spec.dead_letter_topic {
            Some(topic) => Arc::new(KafkaDeadLetter::new(&spec.client, topic)?),
            None => options.dead_letter.clone(),
        };
        let message_timeout = spec
            .client
            .properties
            .iter()
            .find(|(k, _)| k == "message.timeout.ms" || k == "delivery.timeout.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map_or(MESSAGE_TIMEOUT_DEFAULT, Duration::from_millis);
        let delivery = Box::new(Delivery {
            ackers: (0..WORKERS_MAX).map(|_| OnceLock::new()).collect(),
            unsettled: (0..WORKERS_MAX).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            stats: Arc::new(KafkaSinkStats::default()),
            backlog: Mutex::new(RetryBacklog::default()),
            backlog_len: AtomicU64::new(0),
            policy: options.retry.clone(),
            actions: options.actions,
            dead_letter,
            fatal: Mutex::new(None),
            fatal_set: AtomicBool::new(false),
        });
        let mut conf = native_conf(
            &spec.client,
            &[("queue.buffering.max.kbytes", QUEUE_BUFFERING_MAX_KBYTES_DEFAULT)],
            &[],
        )
        .map_err(setup)?;
        // SAFETY: the opaque points into the Box owned by `ProducerCore`, which drops
        // the client (ending all callbacks) before the Box.
        unsafe {
            rd::rd_kafka_conf_set_opaque(
                conf.as_ptr(),
                &*delivery as *const Delivery as *mut c_void,
            );
            rd::rd_kafka_conf_set_dr_msg_cb(conf.as_ptr(), Some(on_delivery));
        }
        // SAFETY: as above.
        let client = unsafe { NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf) }
            .map_err(|e| setup(format!("cannot create the Kafka producer: {e}")))?;
        let core = Arc::new(ProducerCore { client, delivery });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (core, stop) = (core.clone(), stop.clone());
            std::thread::Builder::new()
                .name("corestream-kafka-producer".into())
                .spawn(move || poll_loop(core, stop))
                .map_err(|e| setup(format!("cannot start the producer's poll thread: {e}")))?
        };
        let flush_wait_max = message_timeout + options.retry.elapsed_max() + FLUSH_SLACK;
        let handle = Arc::new(ProducerHandle {
            core,
            stop,
            thread: Mutex::new(Some(thread)),
            flush_wait_max,
        });
        Ok(KafkaSinkFactory {
            spec,
            handle,
            create_topics: options.create_topics,
            retry: options.retry,
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<KafkaSinkStats> {
        self.handle.core.delivery.stats.clone()
    }
}

impl SinkFactory for KafkaSinkFactory {
    fn describe(&self) -> String {
        format!("kafka topic {:?} on {}", self.spec.topic, self.spec.client.brokers)
    }

    fn open(&self, worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        let delivery = &self.handle.core.delivery;
        let slot = delivery.ackers.get(worker).ok_or_else(|| {
            SinkError::new(
                ErrorCategory::Configuration,
                format!("worker {worker} is beyond WORKERS_MAX"),
            )
        })?;
        slot.set(acker.clone()).map_err(|_| {
            SinkError::new(
                ErrorCategory::Configuration,
                format!("this Kafka sink was already opened for worker {worker} (one factory per engine)"),
            )
        })?;
        let topics = TopicHandles::new(self.handle.core.client.ptr(), &self.spec.topic)?;
        Ok(Box::new(KafkaSink {
            worker,
            acker,
            handle: self.handle.clone(),
            topics,
            client: self.spec.client.clone(),
            default_topic: self.spec.topic.clone(),
            create_topics: self.create_topics,
            retry: self.retry.clone(),
            rng: SplitMix64::new(0x7369_6e6b ^ worker as u64),
        }))
    }
}

/// One worker's Kafka sink.
pub struct KafkaSink {
    worker: usize,
    acker: Acker,
    /// Declared before `handle`: fields drop in order, and the topic handles must
    /// be released while the client (kept alive by `handle`) still exists.
    topics: TopicHandles,
    handle: Arc<ProducerHandle>,
    client: KafkaClientSpec,
    /// The sink's `topic` (for copies of outputs that name none).
    default_topic: String,
    create_topics: Option<(u32, u16)>,
    retry: RetryPolicy,
    rng: SplitMix64,
}

// SAFETY: topic handles are reference-counted, thread-safe librdkafka objects; the
// sink is used by one worker thread at a time.
unsafe impl Send for KafkaSink {}

/// Why one output could not be handed to librdkafka.
enum SendFailure {
    /// librdkafka refused it with this code.
    Refused(KafkaCode),
    /// Not a valid topic name (from a template), or a topic that could not be
    /// created: the message's own fault or the topic's.
    BadTopic(ErrorCategory, String),
    /// librdkafka's queue stayed full for [`QUEUE_FULL_WAIT_MAX`].
    QueueFull,
    /// A fail-fast failure was recorded meanwhile: stop sending.
    Fatal,
}

impl KafkaSink {
    #[inline]
    fn delivery(&self) -> &Delivery {
        &self.handle.core.delivery
    }

    /// Hands one output to librdkafka, waiting (bounded) while its queue is full.
    #[inline]
    fn send(&mut self, output: &Output<'_>, opaque: usize) -> Result<(), SendFailure> {
        let rkt = match self.topics.get(output.topic) {
            Some(rkt) => rkt,
            None => self.new_topic(output.topic)?,
        };
        let rk = self.handle.core.client.ptr();
        let mut waited: Option<Instant> = None;
        loop {
            let headers = build_headers(output);
            let message = Produce {
                rkt: rkt.as_ptr(),
                key: (!output.key.is_empty()).then_some(output.key),
                payload: output.payload,
                headers,
                opaque,
            };
            // SAFETY: valid handles; the headers list is ours until a success.
            let code = unsafe { message.send(rk) };
            if code.is_ok() {
                return Ok(());
            }
            if !headers.is_null() {
                // SAFETY: librdkafka did not take it.
                unsafe { rd::rd_kafka_headers_destroy(headers) };
            }
            if code.0 != Err::RD_KAFKA_RESP_ERR__QUEUE_FULL {
                return Err(SendFailure::Refused(code));
            }
            let started = *waited.get_or_insert_with(|| {
                self.delivery().stats.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                Instant::now()
            });
            if started.elapsed() > QUEUE_FULL_WAIT_MAX {
                return Err(SendFailure::QueueFull);
            }
            if self.delivery().fatal_set.load(Ordering::Acquire) {
                return Err(SendFailure::Fatal);
            }
            // The poll thread serves delivery reports meanwhile.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// A topic not seen before: check its name, create it if configured, cache it.
    #[cold]
    fn new_topic(&mut self, topic: &str) -> Result<NonNull<rd::rd_kafka_topic_t>, SendFailure> {
        if let Some(problem) = crate::kafka::spec::topic_name_problem(topic) {
            return Err(SendFailure::BadTopic(
                ErrorCategory::Serialization,
                format!("invalid topic {topic:?}: {problem}"),
            ));
        }
        if self.create_topics.is_some() {
            let missing = admin::MissingTopic { create: self.create_topics, policy: &self.retry };
            admin::ensure_topics(&self.client, &[topic], missing)
                .map_err(|e| SendFailure::BadTopic(ErrorCategory::TopicMissing, e))?;
        }
        self.topics.insert(topic).map_err(|e| SendFailure::BadTopic(e.category, e.message))
    }

    /// An output librdkafka refused synchronously: by its category, retry in place
    /// (the worker waits: backpressure), dead-letter it, or record a fail-fast
    /// error. Its hold stays taken until it is settled. Returns whether the batch
    /// may go on (false after a fail-fast error).
    #[cold]
    fn refused(
        &mut self,
        output: &Output<'_>,
        meta: Option<Meta>,
        ticket: Ticket,
        failure: SendFailure,
    ) -> bool {
        let mut state = RetryState::new(Instant::now());
        let mut failure = failure;
        loop {
            let (category, reason) = match &failure {
                SendFailure::Refused(code) => {
                    (code.category(), format!("librdkafka refused the message: {code}"))
                }
                SendFailure::BadTopic(category, reason) => (*category, reason.clone()),
                SendFailure::QueueFull => {
                    self.defer(output, ticket);
                    return true;
                }
                SendFailure::Fatal => return false,
            };
            let delivery = &self.handle.core.delivery;
            delivery.count(category, Outcome::Attempt);
            let delay = match delivery.actions.action(category) {
                Action::FailFast => {
                    delivery.set_fatal(category, reason);
                    return false;
                }
                Action::DeadLetter => None,
                Action::Retry => {
                    let delay = state.next(&self.retry, Instant::now(), &mut self.rng);
                    if delay.is_none() {
                        delivery.count(category, Outcome::GaveUp);
                    }
                    delay
                }
            };
            let Some(delay) = delay else {
                let meta = meta.unwrap_or_default();
                let record = DeadLetterRecord {
                    category,
                    stage: Stage::Sink,
                    reason: &reason,
                    attempts: state.attempts(),
                    partition: meta.partition,
                    position: meta.position,
                    key: output.key,
                    payload: output.payload,
                };
                // Counted unsettled again so that settling it balances.
                delivery.unsettled[self.worker].fetch_add(1, Ordering::Relaxed);
                delivery.dead_letter(self.worker, ticket.slot, &record);
                return !delivery.fatal_set.load(Ordering::Acquire);
            };
            std::thread::sleep(delay);
            match self.send(output, tag(self.worker, ticket.slot)) {
                Ok(()) => {
                    let delivery = &self.handle.core.delivery;
                    delivery.count(category, Outcome::Success);
                    delivery.unsettled[self.worker].fetch_add(1, Ordering::Relaxed);
                    delivery.stats.produced.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(next) => failure = next,
            }
        }
    }

    /// librdkafka's queue stayed full: hand the output to the retry backlog (a
    /// copy), so this write still keeps its all-or-nothing promise.
    #[cold]
    fn defer(&mut self, output: &Output<'_>, ticket: Ticket) {
        let topic =
            if output.topic.is_empty() { self.default_topic.as_str() } else { output.topic };
        let Ok(topic) = CString::new(topic) else {
            // A name with NUL never reached the queue (refused as BadTopic first).
            return;
        };
        let delivery = &self.handle.core.delivery;
        delivery.count(ErrorCategory::Throttled, Outcome::Attempt);
        delivery.unsettled[self.worker].fetch_add(1, Ordering::Relaxed);
        delivery.backlog_len.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let item = RetryItem {
            worker: self.worker,
            slot: ticket.slot,
            due: now,
            state: RetryState::new(now),
            category: ErrorCategory::Throttled,
            in_flight: false,
            topic,
            key: (!output.key.is_empty()).then(|| output.key.to_vec()),
            payload: output.payload.to_vec(),
            headers: build_headers(output),
        };
        delivery.backlog.lock().insert(item);
    }

    /// Waits until this worker's messages are all settled, bounded.
    fn wait_settled(&self) -> Result<(), SinkError> {
        let delivery = self.delivery();
        let started = Instant::now();
        let mut waiter = crate::wait::Waiter::default();
        while delivery.unsettled[self.worker].load(Ordering::Acquire) != 0 {
            if let Some(fatal) = delivery.fatal() {
                return Err(fatal);
            }
            if started.elapsed() > self.handle.flush_wait_max {
                return Err(SinkError::new(
                    ErrorCategory::Timeout,
                    format!("deliveries still pending after {:?}", self.handle.flush_wait_max),
                ));
            }
            if waiter.is_idle() {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                waiter.wait(&crate::wait::WaitCell::new(), || false);
            }
        }
        Ok(())
    }

    #[cold]
    fn wait_for_backlog(&self) -> Result<(), SinkError> {
        let delivery = self.delivery();
        while delivery.backlog_len.load(Ordering::Relaxed) >= RETRY_BACKLOG_MAX {
            if let Some(fatal) = delivery.fatal() {
                return Err(fatal);
            }
            // Bounded: every backlog item is retried or dead-lettered within the
            // policy's max_total.
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// The output's headers as a librdkafka list (a C allocation), or null.
#[inline]
fn build_headers(output: &Output<'_>) -> *mut rd::rd_kafka_headers_t {
    if output.headers.is_empty() {
        return std::ptr::null_mut();
    }
    let count = output.headers.iter().count();
    // SAFETY: creates a list we own until librdkafka takes it.
    let list = unsafe { rd::rd_kafka_headers_new(count) };
    for (name, value) in output.headers.iter() {
        let (value_ptr, value_len) = match value {
            Some(v) => (v.as_ptr() as *const c_void, v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: valid list; name and value are read for their given lengths and
        // copied.
        unsafe {
            rd::rd_kafka_header_add(
                list,
                name.as_ptr() as *const _,
                name.len() as isize,
                value_ptr,
                value_len,
            )
        };
    }
    list
}

impl Sink for KafkaSink {
    #[inline]
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        self.write_batch(outputs, &[], ticket)
    }

    /// All or nothing, as the sink contract asks: an error is returned only before
    /// anything was taken (a recorded fail-fast error, a full retry backlog that
    /// turned fatal). Once the first message is handed to librdkafka, every output
    /// ends delivered, retried from the backlog, dead-lettered, or — after a
    /// fail-fast error — held unacknowledged while the next call reports the error.
    #[inline]
    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        if let Some(fatal) = self.delivery().fatal() {
            return Err(fatal);
        }
        if self.delivery().backlog_len.load(Ordering::Relaxed) >= RETRY_BACKLOG_MAX {
            self.wait_for_backlog()?;
        }
        if outputs.is_empty() {
            self.acker.done(ticket);
            return Ok(());
        }
        let n = u32::try_from(outputs.len()).map_err(|_| {
            SinkError::new(ErrorCategory::Configuration, "more than 2^32 outputs in one batch")
        })?;
        self.acker.hold(ticket, n);
        // Counted before any report can arrive and decrement it.
        self.delivery().unsettled[self.worker].fetch_add(u64::from(n), Ordering::Relaxed);
        let opaque = tag(self.worker, ticket.slot);
        let mut produced = 0u64;
        for output in outputs {
            match self.send(output, opaque) {
                Ok(()) => produced += 1,
                Err(failure) => {
                    self.delivery().unsettled[self.worker].fetch_sub(1, Ordering::Relaxed);
                    let meta = inputs.get(output.input as usize).map(|m| m.meta);
                    if !self.refused(output, meta, ticket, failure) {
                        // Fail fast: the rest of the batch stays held (never
                        // acknowledged); the next call returns the error.
                        break;
                    }
                }
            }
        }
        self.delivery().stats.produced.fetch_add(produced, Ordering::Relaxed);
        self.acker.done(ticket);
        Ok(())
    }

    /// Waits (bounded) for every delivery report of this worker: the ticket queue
    /// is full, or the engine shuts down.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.wait_settled()
    }

    /// Never blocks: reports whether deliveries are still pending, so the worker
    /// asks again on its next idle wake-up and its acknowledgements (hence the
    /// source's idle commit) catch up as the reports arrive.
    fn idle(&mut self) -> Result<bool, SinkError> {
        if let Some(fatal) = self.delivery().fatal() {
            return Err(fatal);
        }
        Ok(self.delivery().unsettled[self.worker].load(Ordering::Acquire) == 0)
    }
}
