//! Kafka → corestream (pass-through, so every input has one output to check) → Kafka
//! against librdkafka's in-process mock cluster: every message arrives, order per key holds, committed offsets match what was
//! delivered; two engines in one group split the partitions and a rebalance loses
//! nothing; failed deliveries are retried or dead-lettered by category.
#![cfg(feature = "kafka")]

mod kafka_util;

use std::sync::Arc;
use std::time::Duration;

use corestream::engine::{Engine, EngineSettings, RunningEngine};
use corestream::processor::PassThrough;
use corestream::retry::ErrorCategory;
use corestream::retry::counters::Outcome;
use corestream::retry::{ActionTable, RetryPolicy};
use corestream::sink::dead_letter::{DeadLetter, DeadLetterRecord};
use corestream::sink::kafka::{KafkaSinkFactory, KafkaSinkOptions, KafkaSinkStats};
use corestream::sink::{SinkError, dead_letter::LogDeadLetter};
use corestream::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaSourceStats};
use corestream::worker::Placement;
use kafka_util::*;
use parking_lot::Mutex;

fn settings(workers: usize, ring_bytes: usize) -> EngineSettings {
    EngineSettings {
        workers,
        ring_bytes,
        batch_records: 128,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: ring_bytes / 4,
    }
}

fn retry_policy() -> RetryPolicy {
    use corestream::retry::policy::{PolicyParams, Strategy};
    RetryPolicy::build(&PolicyParams {
        strategy: Strategy::Fixed,
        delay_initial: Duration::from_millis(50),
        delay_max: Duration::from_millis(50),
        attempts_max: 5,
        elapsed_max: Duration::from_secs(30),
        ..PolicyParams::default()
    })
    .expect("test policy")
}

struct Running {
    engine: RunningEngine,
    source: Arc<KafkaSourceStats>,
    sink: Arc<KafkaSinkStats>,
}

fn start(
    brokers: &str,
    group: &str,
    input: &str,
    output: &str,
    settings: EngineSettings,
    dead_letter: Arc<dyn DeadLetter>,
    sink_properties: &[(&str, &str)],
) -> Running {
    start_across(brokers, brokers, group, input, output, settings, dead_letter, sink_properties)
}

/// Source on `in_brokers`, sink on `out_brokers` (they may be different clusters).
#[allow(clippy::too_many_arguments)]
fn start_across(
    brokers: &str,
    out_brokers: &str,
    group: &str,
    input: &str,
    output: &str,
    settings: EngineSettings,
    dead_letter: Arc<dyn DeadLetter>,
    sink_properties: &[(&str, &str)],
) -> Running {
    let source = KafkaSource::new(
        source_spec(brokers, group, input),
        KafkaSourceOptions {
            create_topics: None,
            retry: retry_policy(),
            actions: ActionTable::default(),
        },
    )
    .expect("source");
    let source_stats = source.stats();
    let mut spec = sink_spec(out_brokers, output);
    spec.client
        .properties
        .extend(sink_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let sink = KafkaSinkFactory::new(
        spec,
        KafkaSinkOptions {
            create_topics: None,
            retry: retry_policy(),
            actions: ActionTable::default(),
            dead_letter,
        },
    )
    .expect("sink");
    let sink_stats = sink.stats();
    let engine = Engine::new(
        settings,
        Box::new(source),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(sink),
    )
    .start()
    .expect("engine starts");
    Running { engine, source: source_stats, sink: sink_stats }
}

fn delivered(r: &Running) -> u64 {
    delivered_by(&r.sink)
}

fn delivered_by(sink: &KafkaSinkStats) -> u64 {
    sink.delivered.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn kafka_to_kafka_delivers_everything_in_order_and_commits_what_was_delivered() {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: u64 = 5_000;
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "orders-in", PARTITIONS);
    create_topic(&mock, "orders-out", 3);
    produce_orders(&brokers, "orders-in", PARTITIONS, 0..PER_PARTITION);
    let total = (PARTITIONS as u64 * PER_PARTITION) as usize;

    // A ring of 8 KiB holds ~50 orders: the source must pause partitions and resume
    // them as the workers drain, without losing or reordering anything.
    let running = start(
        &brokers,
        "pipeline",
        "orders-in",
        "orders-out",
        settings(2, 8 << 10),
        Arc::new(LogDeadLetter::default()),
        &[],
    );
    wait_until("every message delivered", Duration::from_secs(120), || {
        delivered(&running) >= total as u64
    });
    // Let an idle commit happen, then stop (which commits again, synchronously).
    std::thread::sleep(Duration::from_millis(500));
    running.engine.stop();
    let report = running.engine.join().expect("clean shutdown");
    assert_eq!(report.snapshot.get(corestream::metrics::Counter::MessagesIn), total as u64);

    let mut reader = OutputReader::new(&brokers, "orders-out");
    let tally = reader.read_until_distinct(total, Duration::from_secs(60));
    assert_eq!(missing(&reader.records, PARTITIONS, 0..PER_PARTITION), vec![], "messages lost");
    assert_eq!(
        tally,
        Tally { total, distinct: total, duplicates: 0 },
        "a clean run duplicates nothing"
    );
    assert_eq!(order_violations(&reader.records), Vec::<String>::new());
    for r in &reader.records {
        assert_eq!(r.key, key_of(r.src, r.seq), "key kept");
        assert_eq!(
            r.trace.as_deref(),
            Some(format!("t-{}-{}", r.src, r.seq).as_str()),
            "header kept"
        );
    }
    assert_eq!(
        committed(&brokers, "pipeline", "orders-in", PARTITIONS),
        end_offsets(&brokers, "orders-in", PARTITIONS),
        "committed offsets = everything delivered"
    );
    let pauses = running.source.pauses.load(std::sync::atomic::Ordering::Relaxed);
    let resumes = running.source.resumes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(pauses > 0, "the tiny rings should have paused partitions");
    assert!(resumes <= pauses);
    eprintln!("pauses {pauses}, resumes {resumes}, commits {:?}", running.source.commits);
}

#[test]
fn two_engines_in_one_group_split_the_partitions_and_a_rebalance_loses_nothing() {
    const PARTITIONS: i32 = 6;
    const PHASE: u64 = 1_000;
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "rb-in", PARTITIONS);
    create_topic(&mock, "rb-out", 3);
    produce_orders(&brokers, "rb-in", PARTITIONS, 0..PHASE);
    let log: Arc<dyn DeadLetter> = Arc::new(LogDeadLetter::default());

    let a = start(&brokers, "rb", "rb-in", "rb-out", settings(2, 1 << 16), log.clone(), &[]);
    wait_until("engine A under way", Duration::from_secs(60), || delivered(&a) >= PHASE);
    let b = start(&brokers, "rb", "rb-in", "rb-out", settings(2, 1 << 16), log.clone(), &[]);
    wait_until("B receives partitions", Duration::from_secs(60), || {
        b.source.assignments.load(std::sync::atomic::Ordering::Relaxed) > 0
            && a.source.revocations.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    produce_orders(&brokers, "rb-in", PARTITIONS, PHASE..2 * PHASE);
    wait_until("phase 2 delivered", Duration::from_secs(120), || {
        delivered(&a) + delivered(&b) >= 2 * PHASE * PARTITIONS as u64
    });
    let b_before_a_left = delivered(&b);
    // A leaves cleanly: its partitions are drained, committed and handed to B.
    a.engine.stop();
    a.engine.join().expect("A stops cleanly");
    produce_orders(&brokers, "rb-in", PARTITIONS, 2 * PHASE..3 * PHASE);
    let total = (3 * PHASE * PARTITIONS as u64) as usize;
    let mut reader = OutputReader::new(&brokers, "rb-out");
    let tally = reader.read_until_distinct(total, Duration::from_secs(120));
    b.engine.stop();
    b.engine.join().expect("B stops cleanly");

    assert_eq!(
        missing(&reader.records, PARTITIONS, 0..3 * PHASE),
        vec![],
        "messages lost in a rebalance"
    );
    assert_eq!(order_violations(&reader.records), Vec::<String>::new());
    assert!(b_before_a_left > 0, "B took part before A left");
    assert!(delivered_by(&b.sink) > b_before_a_left, "B took over A's partitions");
    eprintln!(
        "rebalance: {} outputs for {} inputs ({} duplicates); A delivered {}, B {}",
        tally.total,
        total,
        tally.duplicates,
        delivered_by(&a.sink),
        delivered_by(&b.sink)
    );
    assert_eq!(
        committed(&brokers, "rb", "rb-in", PARTITIONS),
        end_offsets(&brokers, "rb-in", PARTITIONS),
        "the group's offsets cover everything"
    );
}

/// Records dead letters in memory.
#[derive(Default)]
struct Collect(Mutex<Vec<(ErrorCategory, u32, Vec<u8>)>>);

impl DeadLetter for Collect {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        self.0.lock().push((record.category, record.attempts, record.payload.to_vec()));
        Ok(())
    }
    fn describe(&self) -> String {
        "collect".into()
    }
}

#[test]
fn failed_deliveries_are_retried_by_category_and_dead_lettered_when_they_cannot_succeed() {
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::types::RDKafkaRespErr as E;
    use std::sync::atomic::Ordering::Relaxed;
    const PARTITIONS: i32 = 2;
    const PHASE: u64 = 200;
    // Input and output on two clusters, so injected produce errors hit only the sink.
    let input = mock();
    let output = mock();
    let (in_brokers, out_brokers) = (input.bootstrap_servers(), output.bootstrap_servers());
    create_topic(&input, "faults-in", PARTITIONS);
    create_topic(&output, "faults-out", 1);
    let dead = Arc::new(Collect::default());
    // librdkafka's own retries are off, so its failures reach corestream's policy.
    let running = start_across(
        &in_brokers,
        &out_brokers,
        "faults",
        "faults-in",
        "faults-out",
        settings(1, 1 << 16),
        dead.clone(),
        &[("retries", "0"), ("linger.ms", "20")],
    );
    let settled = |s: &KafkaSinkStats| delivered_by(s) + s.dead_lettered.load(Relaxed);

    // Phase 1: the next produce request fails with a transient error (network):
    // corestream retries by its policy and the retry is delivered.
    output.request_errors(RDKafkaApiKey::Produce, &[E::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS]);
    produce_orders(&in_brokers, "faults-in", PARTITIONS, 0..PHASE);
    wait_until("phase 1 settled", Duration::from_secs(60), || settled(&running.sink) >= PHASE * 2);
    let sink = &running.sink;
    let network_attempts = sink.retry_count(ErrorCategory::Network, Outcome::Attempt);
    assert!(network_attempts > 0, "the transient failure reached the retry path");
    assert_eq!(sink.retry_count(ErrorCategory::Network, Outcome::Success), network_attempts);
    assert_eq!(sink.dead_lettered.load(Relaxed), 0, "a transient failure dead-letters nothing");

    // Phase 2: the next produce request fails with a permanent error (message too
    // large): dead-lettered at once, the rest delivered.
    output.request_errors(RDKafkaApiKey::Produce, &[E::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    produce_orders(&in_brokers, "faults-in", PARTITIONS, PHASE..2 * PHASE);
    let total = 2 * PHASE * PARTITIONS as u64;
    wait_until("phase 2 settled", Duration::from_secs(60), || settled(&running.sink) >= total);
    std::thread::sleep(Duration::from_millis(300));
    running.engine.stop();
    running.engine.join().expect("clean shutdown");
    let too_large = sink.retry_count(ErrorCategory::MessageTooLarge, Outcome::DeadLettered);
    assert!(too_large > 0, "the permanent failure was dead-lettered");
    assert_eq!(sink.retry_count(ErrorCategory::MessageTooLarge, Outcome::Success), 0);
    let dead = dead.0.lock();
    assert_eq!(dead.len() as u64, too_large);
    assert!(
        dead.iter()
            .all(|(category, attempts, _)| *category == ErrorCategory::MessageTooLarge
                && *attempts == 1),
        "dead-lettered at the first failure"
    );
    // Nothing lost: delivered + dead-lettered covers every input, and the offsets
    // were committed past all of them.
    let mut reader = OutputReader::new(&out_brokers, "faults-out");
    let tally = reader.read_until_distinct(total as usize - dead.len(), Duration::from_secs(30));
    assert_eq!(
        tally.distinct + dead.len(),
        total as usize,
        "{tally:?} + {} dead letters",
        dead.len()
    );
    assert_eq!(
        committed(&in_brokers, "faults", "faults-in", PARTITIONS),
        end_offsets(&in_brokers, "faults-in", PARTITIONS)
    );
}

#[test]
fn check_reports_brokers_topics_and_partitions_and_fails_fast_when_unreachable() {
    use corestream::kafka::admin;
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "checked", 5);
    let spec =
        corestream::config::kafka::KafkaClientSpec { brokers: brokers.clone(), properties: vec![] };
    produce_orders(&brokers, "checked", 5, 0..10);
    let report =
        admin::check(&spec, &["checked", "absent"], Some("nobody"), Duration::from_secs(10))
            .expect("reachable");
    assert_eq!(report.brokers.len(), 1);
    assert_eq!(report.topics[0].leaders.len(), 5);
    assert!(report.topics[0].exists());
    assert!(!report.topics[1].exists(), "{:?}", report.topics[1]);
    let text = report.to_string();
    assert!(text.contains("checked: 5 partitions"), "{text}");
    assert_eq!(report.groups.len(), 1, "one group position per existing topic");
    assert_eq!(report.groups[0].lag(), 50, "nothing committed: every message is lag");
    assert!(text.contains("group \"nobody\" on checked: lag 50"), "{text}");

    // Nothing listens on port 1: a bounded, clear error.
    let nowhere = corestream::config::kafka::KafkaClientSpec {
        brokers: "127.0.0.1:1".into(),
        properties: vec![],
    };
    let started = std::time::Instant::now();
    let error =
        admin::check(&nowhere, &["x"], None, Duration::from_secs(2)).expect_err("unreachable");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by the timeout");
    assert!(error.contains("cannot reach the Kafka brokers 127.0.0.1:1"), "{error}");
}

/// (Creating a missing topic needs the CreateTopics API, which the mock cluster
/// does not implement: `scripts/tansu-e2e.sh` covers it against a real broker.)
#[test]
fn a_missing_topic_is_waited_for_by_the_retry_policy_then_reported() {
    use corestream::kafka::admin::{MissingTopic, ensure_topics};
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let spec = corestream::config::kafka::KafkaClientSpec { brokers, properties: vec![] };
    let policy = retry_policy();
    let started = std::time::Instant::now();
    let error =
        ensure_topics(&spec, &["never-created"], MissingTopic { create: None, policy: &policy })
            .expect_err("waits, then gives up");
    assert!(
        error.contains("topic \"never-created\" does not exist") && error.contains("5 attempts"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_millis(4 * 50), "waited the policy's delays");
    create_topic(&mock, "arrives-later", 2);
    ensure_topics(&spec, &["arrives-later"], MissingTopic { create: None, policy: &policy })
        .expect("exists");
}

#[test]
fn the_kafka_dead_letter_topic_keeps_the_message_and_says_why() {
    use corestream::retry::ErrorCategory;
    use corestream::sink::dead_letter::Stage;
    use corestream::sink::kafka::KafkaDeadLetter;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers as _, Message as _};
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "dlq", 1);
    let spec =
        corestream::config::kafka::KafkaClientSpec { brokers: brokers.clone(), properties: vec![] };
    let dead_letter = KafkaDeadLetter::new(&spec, "dlq").expect("dead-letter producer");
    let record = DeadLetterRecord {
        category: ErrorCategory::Serialization,
        stage: Stage::Processor,
        reason: "missing field \"amount\"",
        attempts: 1,
        partition: 3,
        position: 42,
        key: b"c-1",
        payload: b"{\"id\":7,",
    };
    // `send` returns once the broker has the record.
    dead_letter.send(&record).expect("dead-lettered");
    assert_eq!(end_offsets(&brokers, "dlq", 1), vec![1], "delivered before send returned");

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    consumer.subscribe(&["dlq"]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(std::time::Instant::now() < deadline, "dead letter not readable");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            break m.expect("dead letter").detach();
        }
    };
    assert_eq!(message.key(), Some(&b"c-1"[..]));
    assert_eq!(message.payload(), Some(&b"{\"id\":7,"[..]));
    let headers = message.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("corestream.category").as_deref(), Some("serialization"));
    assert_eq!(header("corestream.stage").as_deref(), Some("processor"));
    assert_eq!(header("corestream.reason").as_deref(), Some("missing field \"amount\""));
    assert_eq!(header("corestream.attempts").as_deref(), Some("1"));
    assert_eq!(header("corestream.partition").as_deref(), Some("3"));
    assert_eq!(header("corestream.position").as_deref(), Some("42"));
}
