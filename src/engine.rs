//! The engine: builds rings, workers, sink instances and the source thread, runs
//! them, and shuts them down without losing a message.
//!
//! Startup allocates everything the data path needs (rings, arenas, ticket tables,
//! histograms, sink buffers); afterwards the path from source to sink allocates
//! nothing per message. Shutdown (end of input or [`RunningEngine::stop`]): the
//! source stops reading and closes the rings; each worker drains its ring, flushes
//! its sink and waits for the last acknowledgements; then the source writes its
//! final checkpoint. Nothing accepted from the input is dropped on the way.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ack::{AckQueue, PARTITIONS_MAX, Watermarks};
use crate::limits::{
    ARENA_BYTES_INITIAL, ARENA_BYTES_MAX, BATCH_RECORDS_DEFAULT, BATCH_RECORDS_MAX,
    RECORD_BYTES_MAX, RECORD_BYTES_MAX_DEFAULT, RECORD_HEADER_BYTES, RING_BYTES_DEFAULT,
    RING_BYTES_MAX, RING_BYTES_MIN, WORKERS_MAX,
};
use crate::metrics::counters::{ENGINE_COUNTERS, SHARD_SLOTS};
use crate::metrics::latency::new_histogram;
use crate::metrics::{Counter, LatencyRecorder, LatencyShared, LatencySummary, ShardedCounters};
use crate::processor::Processor;
use crate::ring::{RingFill, ring};
use crate::sink::dead_letter::{DeadLetter, StopDeadLetter};
use crate::sink::{Resilience, ResilientSinkFactory, SinkFactory};
use crate::source::{Ingest, IngestParts, IngestSettings, Routing, Source, SourceError};
use crate::worker::{BatchSizing, Placement, Worker, WorkerError, WorkerReport};
use std::sync::Arc;

/// Engine settings. Every field has a default; [`EngineSettings::validate`] refuses
/// impossible combinations before anything starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// Worker threads (one ring each). Default: one per available core.
    pub workers: usize,
    /// Bytes per ring (a power of two).
    pub ring_bytes: usize,
    /// Records a worker takes per batch (and a source publishes per ring).
    pub batch_records: usize,
    /// Longest payload accepted; longer ones are dead-lettered at the source.
    pub record_bytes_max: usize,
    pub placement: Placement,
    /// Initial bump arena per worker.
    pub arena_bytes: usize,
    /// Pause intake while the process's resident memory is at or above this many
    /// bytes, resume at 90% of it (see [`crate::source::pressure`]). Default: off.
    pub memory_limit: Option<u64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            workers: crate::worker::pin::available_cores().clamp(1, WORKERS_MAX),
            ring_bytes: RING_BYTES_DEFAULT,
            batch_records: BATCH_RECORDS_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            placement: Placement::PinPerCore,
            arena_bytes: ARENA_BYTES_INITIAL,
            memory_limit: None,
        }
    }
}

/// A setting that cannot work, named, with a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (hint: {})", self.setting, self.message, self.hint)
    }
}

impl EngineSettings {
    /// Checks every bound; the first violation is returned.
    pub fn validate(&self) -> Result<(), SettingError> {
        let error =
            |setting, message: String, hint: String| Err(SettingError { setting, message, hint });
        if self.workers == 0 || self.workers > WORKERS_MAX {
            return error(
                "workers",
                format!("{} workers is outside 1..={WORKERS_MAX}", self.workers),
                "use 1 per core; omit it for the default".into(),
            );
        }
        if !self.ring_bytes.is_power_of_two()
            || !(RING_BYTES_MIN..=RING_BYTES_MAX).contains(&self.ring_bytes)
        {
            return error(
                "ring_bytes",
                format!(
                    "{} bytes is not a power of two in {RING_BYTES_MIN}..={RING_BYTES_MAX}",
                    self.ring_bytes
                ),
                format!("try \"{}MiB\"", RING_BYTES_DEFAULT >> 20),
            );
        }
        if self.batch_records == 0 || self.batch_records > BATCH_RECORDS_MAX {
            return error(
                "batch_records",
                format!("{} is outside 1..={BATCH_RECORDS_MAX}", self.batch_records),
                format!("{BATCH_RECORDS_DEFAULT} is a good default"),
            );
        }
        if self.arena_bytes > ARENA_BYTES_MAX {
            return error(
                "arena_bytes",
                format!(
                    "{} bytes is above the maximum of {ARENA_BYTES_MAX} (1GiB) per worker",
                    self.arena_bytes
                ),
                format!("omit it for the default (\"{}MiB\")", ARENA_BYTES_INITIAL >> 20),
            );
        }
        if self.record_bytes_max == 0 {
            return error(
                "record_bytes_max",
                "must be at least 1 byte".into(),
                "try \"1MiB\"".into(),
            );
        }
        if self.record_bytes_max > RECORD_BYTES_MAX {
            return error(
                "record_bytes_max",
                format!(
                    "{} bytes is above the maximum of {RECORD_BYTES_MAX} (a record may use at most \
                     half of the largest ring, 1GiB, with its {RECORD_HEADER_BYTES}-byte header)",
                    self.record_bytes_max
                ),
                "omit it for the default (\"1MiB\")".into(),
            );
        }
        if let Some(limit) = self.memory_limit {
            // What the engine itself allocates at start; sinks and state steps add
            // theirs in the pipeline file's check (config::memory).
            let start = (self.workers as u64)
                .saturating_mul(self.ring_bytes as u64 + self.arena_bytes as u64)
                .saturating_add((self.record_bytes_max + crate::limits::SOURCE_READ_BYTES) as u64);
            if let Some(problem) = crate::source::pressure::MemoryMarks::problem(limit, start) {
                return error(
                    "memory_limit",
                    problem,
                    "raise memory_limit, or lower workers, ring_bytes or arena_bytes".into(),
                );
            }
        }
        // A record may take at most half a ring (see ring::frame). Below the maximum
        // above, the ring this asks for is at most RING_BYTES_MAX.
        let frame_max = crate::ring::frame::align_up(RECORD_HEADER_BYTES + self.record_bytes_max);
        if frame_max > self.ring_bytes / 2 {
            return error(
                "ring_bytes",
                format!(
                    "a ring of {} bytes cannot hold a record of record_bytes_max {} (a record may use at most \
                     half the ring, {} bytes with its header)",
                    self.ring_bytes, self.record_bytes_max, frame_max
                ),
                format!(
                    "raise ring_bytes to at least {} or lower record_bytes_max",
                    (2 * frame_max).next_power_of_two()
                ),
            );
        }
        Ok(())
    }
}

/// Why the engine could not start or did not finish cleanly.
#[derive(Debug)]
pub enum EngineError {
    Setting(SettingError),
    Source(SourceError),
    Worker { worker: usize, error: WorkerError },
    Panic { thread: String },
    Startup(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Setting(e) => write!(f, "invalid setting {e}"),
            EngineError::Source(e) => write!(f, "source: {e}"),
            EngineError::Worker { worker, error } => write!(f, "worker {worker}: {error}"),
            EngineError::Panic { thread } => write!(f, "thread {thread} panicked"),
            EngineError::Startup(e) => write!(f, "startup: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Creates the processor of each worker.
pub type ProcessorFactory = Box<dyn FnMut(usize) -> Box<dyn Processor> + Send>;

/// An engine ready to start: settings, a source, a processor per worker, a sink.
pub struct Engine {
    settings: EngineSettings,
    source: Box<dyn Source>,
    processors: ProcessorFactory,
    sink: Arc<dyn SinkFactory>,
    dead_letter: Arc<dyn DeadLetter>,
    resilience: Resilience,
    batch_sizing: Option<BatchSizing>,
}

impl Engine {
    /// An engine with `settings`, reading `source`, processing with one processor
    /// per worker from `processors`, writing to `sink`. Dead letters are logged and
    /// counted unless [`Engine::dead_letter`] sets a destination.
    pub fn new(
        settings: EngineSettings,
        source: Box<dyn Source>,
        processors: ProcessorFactory,
        sink: Arc<dyn SinkFactory>,
    ) -> Self {
        Engine {
            settings,
            source,
            processors,
            sink,
            dead_letter: Arc::new(StopDeadLetter),
            resilience: Resilience::default(),
            batch_sizing: None,
        }
    }

    /// Sets how sink failures are retried, broken and dead-lettered (default:
    /// [`Resilience::default`]). Every sink runs inside a
    /// [`crate::sink::resilient::ResilientSink`].
    pub fn resilience(mut self, resilience: Resilience) -> Self {
        self.resilience = resilience;
        self
    }

    /// Lets each worker adapt its batch size toward a batch time (default: fixed at
    /// `batch_records`).
    pub fn batch_sizing(mut self, sizing: BatchSizing) -> Self {
        self.batch_sizing = Some(sizing);
        self
    }

    /// Sets where undeliverable messages go.
    pub fn dead_letter(mut self, dead_letter: Arc<dyn DeadLetter>) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Starts every thread and returns a handle; allocation happens here.
    pub fn start(mut self) -> Result<RunningEngine, EngineError> {
        let settings = self.settings;
        settings.validate().map_err(EngineError::Setting)?;
        if let Some(sizing) = &self.batch_sizing {
            sizing.validate(settings.batch_records).map_err(|(setting, message)| {
                EngineError::Setting(SettingError {
                    setting,
                    message,
                    hint: "batch_records_min <= batch_records <= batch_records_max".into(),
                })
            })?;
        }
        let workers = settings.workers;
        let routing = self.source.routing();
        let watermark_per_worker = routing == Routing::KeyHash;
        let watermarks =
            Arc::new(Watermarks::new(if watermark_per_worker { workers } else { PARTITIONS_MAX }));
        // One counter shard per worker, and the last one for the source thread.
        let counters = Arc::new(ShardedCounters::new(workers + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(workers));
        let latency: Vec<LatencyShared> = (0..workers).map(|_| LatencyShared::default()).collect();
        let sink_factory: Arc<dyn SinkFactory> = Arc::new(
            ResilientSinkFactory::new(
                self.sink.clone(),
                self.resilience.clone(),
                self.dead_letter.clone(),
                counters.clone(),
            )
            .map_err(|e| EngineError::Startup(e.to_string()))?,
        );

        // Every worker's ring and arena first: a machine that cannot give the memory
        // fails the start here, before any sink is opened (and any output file
        // created or truncated).
        let mut producers = Vec::with_capacity(workers);
        let mut consumers = Vec::with_capacity(workers);
        for index in 0..workers {
            let (producer, consumer) = ring(settings.ring_bytes).map_err(|e| {
                EngineError::Startup(format!("worker {index}: {e} (engine.ring_bytes)"))
            })?;
            let arena = bumpalo::Bump::try_with_capacity(settings.arena_bytes).map_err(|_| {
                EngineError::Startup(format!(
                    "worker {index}: cannot allocate an arena of {} bytes: out of memory \
                     (engine.arena_bytes)",
                    settings.arena_bytes
                ))
            })?;
            producers.push(producer);
            consumers.push((consumer, arena));
        }
        let mut worker_threads = Vec::with_capacity(workers);
        for ((index, latency_shared), (consumer, arena)) in
            latency.iter().enumerate().zip(consumers)
        {
            let acks = AckQueue::new(watermarks.clone());
            let sink = sink_factory
                .open(index, acks.acker())
                .map_err(|e| EngineError::Startup(e.message))?;
            let worker = Worker {
                index,
                workers: settings.workers,
                consumer,
                processor: (self.processors)(index),
                sink,
                acks,
                dead_letter: self.dead_letter.clone(),
                counters: counters.clone(),
                latency: LatencyRecorder::new(latency_shared.clone()),
                batch_records: settings.batch_records,
                watermark_per_worker,
                placement: settings.placement,
                arena,
                batch_sizing: self.batch_sizing,
            };
            let running = running.clone();
            let handle = std::thread::Builder::new()
                .name(format!("corestream-worker-{index}"))
                .spawn(move || {
                    let _done = DoneGuard(running);
                    worker.run()
                })
                .map_err(|e| EngineError::Startup(format!("cannot spawn worker {index}: {e}")))?;
            worker_threads.push(handle);
        }

        let ring_fill: Vec<RingFill> = producers.iter().map(|p| p.fill()).collect();
        let ingest = Ingest::new(IngestParts {
            producers,
            settings: IngestSettings {
                batch_records: settings.batch_records,
                record_bytes_max: settings.record_bytes_max,
                memory_limit: settings.memory_limit,
                routing,
                track_progress: watermark_per_worker && self.source.tracks_progress(),
            },
            stop: stop.clone(),
            counters: counters.clone(),
            shard: workers,
            dead_letter: self.dead_letter.clone(),
            watermarks,
        });
        let mut source = self.source;
        let status = Arc::new(RunStatus {
            source: AtomicU8::new(SOURCE_NOT_STARTED),
            stop: stop.clone(),
            workers_running: running.clone(),
            workers,
        });
        let source_status = status.clone();
        let source_thread = std::thread::Builder::new()
            .name("corestream-source".into())
            .spawn(move || run_source(source.as_mut(), ingest, &source_status))
            .map_err(|e| EngineError::Startup(format!("cannot spawn the source thread: {e}")))?;

        Ok(RunningEngine {
            source_thread,
            worker_threads,
            stop,
            metrics: Metrics {
                counters,
                latency,
                started: Instant::now(),
                status,
                settings,
                batch_sizing: self.batch_sizing,
                ring_fill,
            },
        })
    }

    /// Starts and waits for the end of input.
    pub fn run(self) -> Result<Report, EngineError> {
        self.start()?.join()
    }
}

/// Decrements the running-workers count when a worker thread ends, even by panic.
struct DoneGuard(Arc<AtomicUsize>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The source thread: read, close the rings, wait for the workers, checkpoint.
fn run_source(
    source: &mut dyn Source,
    mut ingest: Ingest,
    status: &RunStatus,
) -> Result<(), SourceError> {
    status.source.store(SOURCE_READING, Ordering::Release);
    let result = source.run(&mut ingest);
    status.source.store(SOURCE_DRAINING, Ordering::Release);
    ingest.close();
    while status.workers_running.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let finished = source.finish(&mut ingest);
    status.source.store(SOURCE_FINISHED, Ordering::Release);
    result.and(finished)
}

/// `RunStatus::source`: the source thread has not called `Source::run` yet.
const SOURCE_NOT_STARTED: u8 = 0;
/// The source is reading its input.
const SOURCE_READING: u8 = 1;
/// The input ended or a stop was asked: the rings are closed (or about to be) and
/// the workers drain.
const SOURCE_DRAINING: u8 = 2;
/// The workers are done and the final checkpoint is written (or failed).
const SOURCE_FINISHED: u8 = 3;

/// Where a run is, read by probes (`/ready`) without touching the data path: the
/// source thread writes `source` twice per run, the workers decrement
/// `workers_running` once each when they end.
struct RunStatus {
    /// One of the `SOURCE_*` states.
    source: AtomicU8,
    /// The engine's stop flag (set by [`RunningEngine::stop`] or a signal).
    stop: Arc<AtomicBool>,
    /// Worker threads still running (starts at `workers`).
    workers_running: Arc<AtomicUsize>,
    workers: usize,
}

/// The phase of a run, as probes and `/stats` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Threads are started, the source has not begun reading.
    Starting,
    /// The source reads and every worker runs.
    Running,
    /// Stopping: a stop was asked or the input ended (or a worker ended early);
    /// what was read is being processed, delivered and checkpointed.
    Draining,
    /// Every thread is done.
    Finished,
}

impl Phase {
    /// Stable lower-case name (JSON, metrics labels).
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Finished => "finished",
        }
    }
}

/// Counters and histograms of a running engine, readable from any thread.
#[derive(Clone)]
pub struct Metrics {
    counters: Arc<ShardedCounters>,
    latency: Vec<LatencyShared>,
    started: Instant,
    status: Arc<RunStatus>,
    settings: EngineSettings,
    batch_sizing: Option<BatchSizing>,
    /// Each worker's ring, read-only.
    ring_fill: Vec<RingFill>,
}

/// A point-in-time view of the metrics.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// Sums over all shards (engine counters, then per-category outcomes).
    pub totals: [u64; SHARD_SLOTS],
    /// Each worker's own engine counters.
    pub per_worker: Vec<[u64; ENGINE_COUNTERS]>,
    /// Ingest → sink acceptance latency over all workers, in ns.
    pub latency: LatencySummary,
}

impl Snapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.totals[counter as usize]
    }

    /// A sink failure outcome of one error category, summed over the workers (see
    /// [`crate::sink::resilient`] for what each outcome counts).
    pub fn retry(
        &self,
        category: crate::retry::ErrorCategory,
        outcome: crate::retry::counters::Outcome,
    ) -> u64 {
        self.totals[crate::metrics::counters::CATEGORY_BASE
            + crate::retry::counters::retry_counter_index(category, outcome)]
    }

    /// Each worker's current records per batch (adaptive batch size).
    pub fn batch_records_current(&self) -> Vec<u64> {
        self.per_worker.iter().map(|w| w[Counter::BatchRecordsCurrent as usize]).collect()
    }
}

impl Metrics {
    /// The counters, for allocation-free polling.
    pub fn counters(&self) -> &ShardedCounters {
        &self.counters
    }

    /// The settings the engine runs with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The adaptive batch size, if on.
    pub fn batch_sizing(&self) -> Option<&BatchSizing> {
        self.batch_sizing.as_ref()
    }

    /// Where the run is (two atomic loads; never waits for a thread).
    pub fn phase(&self) -> Phase {
        let status = &*self.status;
        let source = status.source.load(Ordering::Acquire);
        let workers_running = status.workers_running.load(Ordering::Acquire);
        match source {
            SOURCE_FINISHED => Phase::Finished,
            SOURCE_NOT_STARTED if !status.stop.load(Ordering::Relaxed) => Phase::Starting,
            SOURCE_READING
                if !status.stop.load(Ordering::Relaxed) && workers_running == status.workers =>
            {
                Phase::Running
            }
            _ => Phase::Draining,
        }
    }

    /// Workers whose sink's circuit breaker is open or half-open now (one load
    /// per worker).
    pub fn breakers_open(&self) -> usize {
        (0..self.latency.len())
            .filter(|&w| self.counters.shard(w).get_slot(Counter::BreakerOpen as usize) != 0)
            .count()
    }

    /// Time since the engine started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes waiting in each worker's ring now (two atomic loads per ring).
    pub fn ring_used_bytes(&self) -> impl Iterator<Item = usize> + '_ {
        self.ring_fill.iter().map(RingFill::used_bytes)
    }

    /// Worker threads still running.
    pub fn workers_running(&self) -> usize {
        self.status.workers_running.load(Ordering::Acquire)
    }

    /// The ingest → sink latency of every worker merged (ns), as published so far
    /// (workers publish at most every [`crate::metrics::latency::LATENCY_PUBLISH_NS`]
    /// and at the end). Locks each worker's shared copy in turn; a worker that finds
    /// it locked publishes later instead of waiting. Allocates one histogram.
    pub fn latency_histogram(&self) -> hdrhistogram::Histogram<u64> {
        let mut merged = new_histogram();
        self.merge_latency_into(&mut merged);
        merged
    }

    /// Adds every worker's published latencies to `into` (a histogram from
    /// [`crate::metrics::latency::new_histogram`]); allocates nothing.
    pub fn merge_latency_into(&self, into: &mut hdrhistogram::Histogram<u64>) {
        for shared in &self.latency {
            shared.merge_into(into);
        }
    }

    /// Reads every counter and merges the histograms; the workers are not stopped.
    pub fn snapshot(&self) -> Snapshot {
        let mut totals = [0u64; SHARD_SLOTS];
        self.counters.sum_all(&mut totals);
        let per_worker = (0..self.latency.len())
            .map(|w| std::array::from_fn(|slot| self.counters.shard(w).get_slot(slot)))
            .collect();
        Snapshot {
            elapsed: self.started.elapsed(),
            totals,
            per_worker,
            latency: LatencySummary::of(&self.latency_histogram()),
        }
    }
}

/// A started engine.
pub struct RunningEngine {
    source_thread: JoinHandle<Result<(), SourceError>>,
    worker_threads: Vec<JoinHandle<Result<WorkerReport, WorkerError>>>,
    stop: Arc<AtomicBool>,
    metrics: Metrics,
}

/// The end of a run.
#[derive(Debug)]
pub struct Report {
    pub snapshot: Snapshot,
    pub workers: Vec<WorkerReport>,
}

impl RunningEngine {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Asks the source to stop reading; everything already read is still processed,
    /// delivered and checkpointed. Returns at once; [`RunningEngine::join`] waits.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// A flag that stops the engine when set (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// True once every thread has finished.
    pub fn is_finished(&self) -> bool {
        self.source_thread.is_finished() && self.worker_threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the end of the run. A worker failure is reported in preference to
    /// the source's consequent "worker stopped" error.
    pub fn join(self) -> Result<Report, EngineError> {
        let mut first_error: Option<EngineError> = None;
        let mut reports = Vec::new();
        for (index, handle) in self.worker_threads.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(error)) => {
                    first_error.get_or_insert(EngineError::Worker { worker: index, error });
                }
                Err(_) => {
                    first_error.get_or_insert(EngineError::Panic {
                        thread: format!("corestream-worker-{index}"),
                    });
                }
            }
        }
        match self.source_thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(EngineError::Source(error));
            }
            Err(_) => {
                first_error
                    .get_or_insert(EngineError::Panic { thread: "corestream-source".into() });
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(Report { snapshot: self.metrics.snapshot(), workers: reports }),
        }
    }
}
