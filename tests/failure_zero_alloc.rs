//! The zero-allocation claim with the failure-handling features switched on: the
//! resilient wrapper, adaptive batch size, and a file sink that batches by count,
//! deduplicates keys, compresses each write as a zstd frame and writes on its I/O
//! thread under a timeout. After warm-up, over a million messages go through
//! without a single heap allocation in the process (the success path; retries and
//! dead letters may allocate their messages). The writer's buffers are sized at
//! start for its flush thresholds; they grow only for a worker batch larger than
//! a whole write, so the test keeps `batch_records_max` within them.

use std::sync::Arc;
use std::time::Duration;

use corestream::engine::{Engine, EngineSettings};
use corestream::metrics::Counter;
use corestream::metrics::alloc::{CountingAllocator, allocations};
use corestream::processor::PassThrough;
use corestream::sink::writer::{Compression, WriterSettings, WriterSinkFactory};
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::worker::{BatchSizing, Placement};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const WARM_UP_MESSAGES: u64 = 400_000;
const MEASURED_MESSAGES: u64 = 1_200_000;
const TOTAL_MESSAGES: u64 = 3_000_000;

#[test]
fn batching_dedup_zstd_io_thread_and_adaptive_batches_allocate_nothing_per_message() {
    let dir = std::env::temp_dir().join(format!("corestream-failure-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("out.ndjson.zst");
    let sink = WriterSinkFactory::file(&output, false, false, 256 << 10)
        .unwrap()
        .settings(WriterSettings {
            flush_records: 2048,
            dedup: true,
            compression: Compression::Zstd { level: 1 },
            timeout: Some(Duration::from_secs(30)),
            linger: Some(Duration::from_millis(5)),
            ..WriterSettings::new(256 << 10)
        })
        .unwrap();
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(TOTAL_MESSAGES),
        keys: 10_000,
        message_bytes: 150,
        ..Default::default()
    })
    .unwrap();
    let settings = EngineSettings {
        workers: 2,
        placement: Placement::Unpinned,
        ring_bytes: 1 << 20,
        record_bytes_max: 64 << 10,
        ..EngineSettings::default()
    };
    let engine = Engine::new(
        settings,
        Box::new(source),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(sink),
    )
    .batch_sizing(BatchSizing {
        records_min: 64,
        // A worker batch fits one write (1024 × ~150 B < 256 KiB, 1024 < 2048
        // records), so the writer's buffers never grow after start.
        records_max: 1024,
        time_target: Duration::from_micros(500),
    })
    .start()
    .unwrap();
    let counters = engine.metrics().counters();
    let wait_for = |n: u64| {
        while counters.sum(Counter::MessagesIn) < n {
            assert!(!engine.is_finished(), "engine ended before {n} messages");
            std::thread::sleep(Duration::from_micros(200));
        }
        counters.sum(Counter::MessagesIn)
    };
    let start_messages = wait_for(WARM_UP_MESSAGES);
    let start = allocations();
    let end_messages = wait_for(start_messages + MEASURED_MESSAGES);
    let allocated = allocations() - start;
    let report = engine.join().unwrap();
    assert_eq!(
        allocated,
        0,
        "{allocated} allocations during {} messages",
        end_messages - start_messages
    );
    let s = &report.snapshot;
    assert_eq!(s.get(Counter::MessagesIn), TOTAL_MESSAGES);
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked));
    assert_eq!(s.get(Counter::SinkDeadLettered), 0);
    assert!(s.get(Counter::Deduplicated) > 0, "10 000 keys: some repeat within a write");
    for size in s.batch_records_current() {
        assert!((64..=1024).contains(&size), "adaptive size {size} within its bounds");
    }
    // Every output is in the file (written) or was superseded by a later one.
    let compressed = std::fs::read(&output).unwrap();
    let text = zstd::stream::decode_all(&compressed[..]).unwrap();
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(lines + s.get(Counter::Deduplicated), TOTAL_MESSAGES);
    std::fs::remove_dir_all(&dir).unwrap();
}
