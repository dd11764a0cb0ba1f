//! The zero-allocation claim on the Kafka path: after warm-up, Kafka → corestream →
//! Kafka moves well over a hundred thousand messages without one allocation on the
//! Rust heap, in any thread of the process.
//!
//! What this counts: a counting global allocator sees every Rust allocation —
//! corestream's own code, the rdkafka crate, std. librdkafka is C and allocates with
//! `malloc` (its message structs, fetch buffers, payload copies, header lists), which
//! this allocator does not see: those are "librdkafka's internal allocations", outside
//! the claim. The data path calls librdkafka directly (batch consume, `produceva`,
//! C partition lists for commits), so nothing on the Rust side allocates per message,
//! per batch or per commit.
#![cfg(feature = "kafka")]

mod kafka_util;

use std::sync::Arc;
use std::time::Duration;

use corestream::engine::{Engine, EngineSettings};
use corestream::metrics::Counter;
use corestream::metrics::alloc::{CountingAllocator, allocations};
use corestream::processor::PassThrough;
use corestream::retry::{ActionTable, RetryPolicy};
use corestream::sink::dead_letter::LogDeadLetter;
use corestream::sink::kafka::{KafkaSinkFactory, KafkaSinkOptions};
use corestream::source::kafka::{KafkaSource, KafkaSourceOptions};
use corestream::worker::Placement;
use kafka_util::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const PARTITIONS: i32 = 8;
/// 25 000 orders (~130 bytes) per partition: inside the mock's retention.
const PER_PARTITION: u64 = 25_000;
const WARM_UP_MESSAGES: u64 = 40_000;
const MEASURED_MESSAGES: u64 = 120_000;

#[test]
fn kafka_to_kafka_allocates_nothing_per_message_in_steady_state() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "za-in", PARTITIONS);
    create_topic(&mock, "za-out", 4);
    produce_orders(&brokers, "za-in", PARTITIONS, 0..PER_PARTITION);
    let total = PARTITIONS as u64 * PER_PARTITION;

    let retry = RetryPolicy::build(&Default::default()).expect("default policy");
    let mut source_spec = source_spec(&brokers, "zero-alloc", "za-in");
    // Commits by count and time keep happening during the measured window.
    source_spec.commit_every_messages = 10_000;
    source_spec.commit_interval = Duration::from_millis(100);
    let source = KafkaSource::new(
        source_spec,
        KafkaSourceOptions {
            create_topics: None,
            retry: retry.clone(),
            actions: ActionTable::default(),
        },
    )
    .expect("source");
    let source_stats = source.stats();
    let sink = KafkaSinkFactory::new(
        sink_spec(&brokers, "za-out"),
        KafkaSinkOptions {
            create_topics: None,
            retry,
            actions: ActionTable::default(),
            dead_letter: Arc::new(LogDeadLetter::default()),
        },
    )
    .expect("sink");
    let sink_stats = sink.stats();
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
    .start()
    .expect("engine starts");

    let counters = engine.metrics().counters();
    let wait_for = |n: u64| {
        while counters.sum(Counter::MessagesIn) < n {
            assert!(!engine.is_finished(), "engine ended before {n} messages");
            std::thread::sleep(Duration::from_micros(200));
        }
        counters.sum(Counter::MessagesIn)
    };
    let start_messages = wait_for(WARM_UP_MESSAGES);
    let start_allocations = allocations();
    let start_commits = source_stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    let end_messages = wait_for(start_messages + MEASURED_MESSAGES);
    let end_allocations = allocations();
    let commits = source_stats.commits.load(std::sync::atomic::Ordering::Relaxed) - start_commits;

    wait_until("every message delivered", Duration::from_secs(60), || {
        sink_stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= total
    });
    engine.stop();
    engine.join().expect("clean shutdown");
    let measured = end_messages - start_messages;
    eprintln!(
        "kafka zero-alloc: {} allocations over {measured} messages ({commits} offset commits, \
         {} pauses in the window's run)",
        end_allocations - start_allocations,
        source_stats.pauses.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(measured >= MEASURED_MESSAGES);
    assert!(commits > 0, "commits happened inside the measured window");
    assert_eq!(end_allocations - start_allocations, 0, "heap allocations on the Kafka path");
}
