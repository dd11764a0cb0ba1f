//! `engine.memory_limit`: with a sink much slower than the source, resident memory
//! stays near the limit, intake pauses and resumes, and every message is delivered
//! exactly once.
//!
//! The sink is what the limit exists for: a library sink with its own send queue
//! (it copies each batch into 1 MiB blocks and acknowledges at once, as a client
//! that buffers does); a drain thread empties the queue at about 100 MiB/s, much
//! slower than the source. Without the limit the queue would grow to most of the
//! input (hundreds of MiB); with it, resident memory stays within a few samples'
//! worth of the limit. Blocks are mapped and unmapped by malloc (the mmap threshold
//! is fixed below their size), so freed blocks leave resident memory at once and
//! the figures are the queue's, not the allocator's.
//!
//! One test per file: the figures are the process's own resident memory.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use corestream::ack::{Acker, Ticket};
use corestream::engine::{Engine, EngineSettings, Report, RunningEngine};
use corestream::message::{Message, Meta, Output};
use corestream::metrics::Counter;
use corestream::processor::PassThrough;
use corestream::sink::{Sink, SinkError, SinkFactory};
use corestream::source::Source;
use corestream::source::file::ReaderSource;
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::source::pressure::ResidentMeter;
use corestream::worker::Placement;

const BLOCK_BYTES: usize = 1 << 20;
/// The drain thread's pace: one block per this long (about 100 MiB/s).
const DRAIN_PER_BLOCK: Duration = Duration::from_millis(10);
/// The pace for the Kafka source, which reads slower than the others (25 MiB/s).
const DRAIN_PER_BLOCK_KAFKA: Duration = Duration::from_millis(40);
const MIB: u64 = 1 << 20;
const RING_BYTES: u64 = 4 << 20;
/// Bytes per line of the reader's input, newline included.
const LINE_BYTES: u64 = 1000;

/// The queue between the sinks and the drain thread, and what the drain saw.
struct Queue {
    blocks: Mutex<VecDeque<Vec<u8>>>,
    /// Times each message index was delivered (drained).
    seen: Mutex<Vec<u8>>,
    engine_done: AtomicBool,
}

struct QueueSink {
    acker: Acker,
    queue: Arc<Queue>,
    block: Vec<u8>,
    index_of: fn(&Meta) -> usize,
}

impl QueueSink {
    fn push_block(&mut self) {
        if !self.block.is_empty() {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES));
            self.queue.blocks.lock().push_back(full);
        }
    }
}

impl Sink for QueueSink {
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        self.write_batch(outputs, &[], ticket)
    }

    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        for output in outputs {
            // A record: message index (u64), payload length (u32), payload.
            let index = inputs
                .get(output.input as usize)
                .map_or(u64::MAX, |m| (self.index_of)(&m.meta) as u64);
            let record = 12 + output.payload.len();
            if self.block.len() + record > BLOCK_BYTES {
                self.push_block();
            }
            self.block.extend_from_slice(&index.to_le_bytes());
            self.block.extend_from_slice(&(output.payload.len() as u32).to_le_bytes());
            self.block.extend_from_slice(output.payload);
        }
        // Accepted into the sink's own queue: acknowledged now.
        self.acker.done(ticket);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.push_block();
        Ok(())
    }
}

struct QueueSinkFactory {
    queue: Arc<Queue>,
    index_of: fn(&Meta) -> usize,
}

impl SinkFactory for QueueSinkFactory {
    fn describe(&self) -> String {
        "a queue drained slowly".into()
    }

    fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(QueueSink {
            acker,
            queue: self.queue.clone(),
            block: Vec::with_capacity(BLOCK_BYTES),
            index_of: self.index_of,
        }))
    }
}

/// Empties the queue one block per `per_block`, marking each message seen.
fn drain(queue: &Queue, per_block: Duration) {
    loop {
        let block = queue.blocks.lock().pop_front();
        let Some(block) = block else {
            if queue.engine_done.load(Ordering::Acquire) && queue.blocks.lock().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let mut seen = queue.seen.lock();
        let mut at = 0;
        while at < block.len() {
            let index = u64::from_le_bytes(block[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(block[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 12 + len;
            let slot = seen.get_mut(index as usize).expect("a message index in range");
            *slot = slot.saturating_add(1);
        }
        drop(seen);
        drop(block);
        std::thread::sleep(per_block);
    }
}

/// Lines of `line_bytes` (newline included), generated on the fly.
struct Lines {
    left: u64,
    line_bytes: usize,
    line: Vec<u8>,
    at: usize,
}

impl Lines {
    fn new(count: u64, line_bytes: usize) -> Self {
        let mut line = vec![b'x'; line_bytes];
        line[line_bytes - 1] = b'\n';
        Lines { left: count, line_bytes, line, at: line_bytes }
    }
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.at == self.line_bytes {
                if self.left == 0 {
                    break;
                }
                self.left -= 1;
                self.at = 0;
            }
            let take = (self.line_bytes - self.at).min(out.len() - n);
            out[n..n + take].copy_from_slice(&self.line[self.at..self.at + take]);
            self.at += take;
            n += take;
        }
        Ok(n)
    }
}

struct Run {
    report: Report,
    peak_resident: u64,
    baseline: u64,
    seen: Vec<u8>,
}

/// Runs `source` into the slow queue sink under `memory_limit`, sampling resident
/// memory every millisecond; `until` returns once the run may end (a source that
/// never ends is stopped then).
fn run(
    source: Box<dyn Source>,
    count: usize,
    index_of: fn(&Meta) -> usize,
    limit: u64,
    drain_per_block: Duration,
    until: impl FnOnce(&RunningEngine),
) -> Run {
    let queue = Arc::new(Queue {
        blocks: Mutex::new(VecDeque::new()),
        seen: Mutex::new(vec![0; count]),
        engine_done: AtomicBool::new(false),
    });
    let meter = ResidentMeter::open().expect("Linux has /proc/self/statm");
    let baseline = meter.resident_bytes().unwrap();
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(meter.resident_bytes().unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let drainer = {
        let queue = queue.clone();
        std::thread::spawn(move || drain(&queue, drain_per_block))
    };
    let settings = EngineSettings {
        workers: 2,
        ring_bytes: RING_BYTES as usize,
        batch_records: 256,
        record_bytes_max: 64 << 10,
        arena_bytes: 1 << 20,
        placement: Placement::Unpinned,
        memory_limit: Some(limit),
    };
    let engine = Engine::new(
        settings,
        source,
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(QueueSinkFactory { queue: queue.clone(), index_of }),
    )
    .start()
    .expect("the engine starts");
    until(&engine);
    let report = engine.join().expect("the run succeeds");
    queue.engine_done.store(true, Ordering::Release);
    drainer.join().unwrap();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let seen = std::mem::take(&mut *queue.seen.lock());
    Run { report, peak_resident: peak.load(Ordering::Relaxed), baseline, seen }
}

/// Watches the `IntakePaused` gauge until the run ends: whether it was ever 1.
fn watch_gauge(engine: &RunningEngine) -> bool {
    let mut seen = false;
    while !engine.is_finished() {
        seen |= engine.metrics().counters().sum(Counter::IntakePaused) == 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    seen
}

fn check(run: &Run, count: u64, limit: u64, what: &str) {
    let s = &run.report.snapshot;
    eprintln!(
        "{what}: baseline {} MiB, limit {} MiB, peak {} MiB; {} pauses, {:.2}s paused",
        run.baseline / MIB,
        limit / MIB,
        run.peak_resident / MIB,
        s.get(Counter::IntakePauses),
        s.get(Counter::IntakePausedMicros) as f64 / 1e6
    );
    assert_eq!(s.get(Counter::Ingested), count, "{what}: every message read");
    assert_eq!(s.get(Counter::Outputs), count, "{what}: every message handed to the sink");
    let missing = run.seen.iter().filter(|&&n| n == 0).count();
    let doubled = run.seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, doubled), (0, 0), "{what}: every message delivered exactly once");
    assert!(s.get(Counter::IntakePauses) >= 1, "{what}: intake paused");
    assert!(s.get(Counter::IntakePausedMicros) > 0, "{what}: time paused counted");
    assert_eq!(s.get(Counter::IntakePaused), 0, "{what}: not paused after the run");
    // The overshoot the gate documents: the rings' contents still reach the sink
    // after a pause (2 × 4 MiB), plus about one read between two samples; and
    // pages of rings, arenas and the sinks' open blocks first touched late.
    let slack = 2 * RING_BYTES + 8 * MIB;
    assert!(
        run.peak_resident <= limit + slack,
        "{what}: peak resident {} MiB above the {} MiB limit + {} MiB (baseline {} MiB, pauses {})",
        run.peak_resident / MIB,
        limit / MIB,
        slack / MIB,
        run.baseline / MIB,
        s.get(Counter::IntakePauses)
    );
}

#[test]
fn a_slow_sink_keeps_resident_memory_at_the_limit() {
    // Blocks of 1 MiB are mapped by malloc and unmapped when freed.
    // SAFETY: mallopt only changes malloc's parameters; called before the threads.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, (BLOCK_BYTES / 2) as i32) };
    assert_eq!(set, 1, "mallopt(M_MMAP_THRESHOLD)");
    let limit_above = |baseline: u64| baseline.max(32 * MIB) + 128 * MIB;

    // The generator: 400k messages of ~1000 bytes, about 400 MB through a queue
    // drained at ~100 MiB/s.
    let count = 400_000u64;
    let meter = ResidentMeter::open().unwrap();
    let limit = limit_above(meter.resident_bytes().unwrap());
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(count),
        keys: 1000,
        message_bytes: 1000,
        batch_records: 256,
        ..Default::default()
    })
    .unwrap();
    let index_of = |meta: &Meta| meta.position as usize - 1;
    let mut gauge_seen = false;
    let generated = run(Box::new(source), count as usize, index_of, limit, DRAIN_PER_BLOCK, |e| {
        gauge_seen = watch_gauge(e);
    });
    check(&generated, count, limit, "generator");
    assert!(gauge_seen, "the intake_paused gauge showed a pause while it lasted");

    // A reader (the file and stdin path): 400k lines of 1000 bytes.
    let lines = 400_000u64;
    let limit = limit_above(meter.resident_bytes().unwrap());
    let source = ReaderSource::new(Lines::new(lines, LINE_BYTES as usize), 64 << 10, "lines");
    // A line's position is the offset just past its newline.
    let index_of = |meta: &Meta| (meta.position / LINE_BYTES) as usize - 1;
    let read = run(Box::new(source), lines as usize, index_of, limit, DRAIN_PER_BLOCK, |_| {});
    check(&read, lines, limit, "reader");
    // Without the gate the queue would have held most of each input.
    assert!(
        count * 1000 > 2 * limit && lines * LINE_BYTES > 2 * limit,
        "inputs far above the limit"
    );

    #[cfg(feature = "kafka")]
    kafka::pauses_partitions(&meter);
}

/// Kafka pauses its partitions (and keeps polling) while memory is high.
#[cfg(feature = "kafka")]
mod kafka {
    use super::*;
    use corestream::retry::{ActionTable, RetryPolicy};
    use corestream::source::kafka::{KafkaSource, KafkaSourceOptions};
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    const PARTITIONS: i32 = 16;
    /// Within the mock's retention (5 MiB per partition): 4,000 × 1 KB.
    const PER_PARTITION: u64 = 4_000;

    pub fn pauses_partitions(meter: &ResidentMeter) {
        let mock = MockCluster::new(1).expect("mock cluster starts");
        mock.create_topic("big", PARTITIONS, 1).unwrap();
        let brokers = mock.bootstrap_servers();
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let payload = vec![b'k'; 1000];
        for _ in 0..PER_PARTITION {
            for partition in 0..PARTITIONS {
                let mut record =
                    BaseRecord::<(), [u8]>::to("big").partition(partition).payload(&payload);
                while let Err((_, back)) = producer.send(record) {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        drop(producer);
        let total = PARTITIONS as u64 * PER_PARTITION;
        // The broker keeps the 64 MB in this process: the limit sits 48 MiB above.
        let limit = meter.resident_bytes().unwrap() + 48 * MIB;
        let spec = corestream::kafka::KafkaSourceSpec {
            client: corestream::kafka::KafkaClientSpec {
                brokers: brokers.clone(),
                properties: vec![("session.timeout.ms".into(), "6000".into())],
            },
            group: "memory".into(),
            topics: vec!["big".into()],
            commit_interval: Duration::from_millis(200),
            commit_every_messages: 2_000,
            queued_max_messages_kbytes: 1024,
            topic_creation: corestream::kafka::TopicCreation {
                create: false,
                partitions: None,
                replication: None,
            },
        };
        let options = KafkaSourceOptions {
            create_topics: None,
            retry: RetryPolicy::build(&Default::default()).expect("the default policy"),
            actions: ActionTable::default(),
        };
        let source = KafkaSource::new(spec, options).expect("source");
        let stats = source.stats();
        let source = Box::new(source);
        let index_of =
            |meta: &Meta| meta.partition as usize * PER_PARTITION as usize + meta.position as usize;
        let consumed =
            run(source, total as usize, index_of, limit, DRAIN_PER_BLOCK_KAFKA, |engine| {
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                while engine.metrics().counters().sum(Counter::Outputs) < total {
                    assert!(std::time::Instant::now() < deadline, "every message consumed in time");
                    std::thread::sleep(Duration::from_millis(10));
                }
                engine.stop();
            });
        check(&consumed, total, limit, "kafka");
        let paused = stats.memory_pauses.load(Ordering::Relaxed);
        assert_eq!(
            paused,
            consumed.report.snapshot.get(Counter::IntakePauses),
            "each intake pause paused the partitions"
        );
    }
}
