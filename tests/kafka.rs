//! Kafka → corestream → Kafka against librdkafka's in-process mock cluster. The main
//! tests run the reference orders pipeline (schema, filter, route per message to
//! `orders.<region>.<currency>`, map): every expected output arrives in its topic
//! with its payload, key and header, nothing filtered or malformed is produced,
//! order per source partition holds in each output partition, and the committed
//! offsets cover exactly what was delivered, filtered or dead-lettered; two engines
//! in one group split the partitions and a rebalance loses nothing. With a
//! pass-through chain (every input has one output), failed deliveries are retried or
//! dead-lettered by category.
#![cfg(feature = "kafka")]

mod kafka_orders_util;
mod kafka_util;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use corestream::engine::{Engine, EngineSettings, RunningEngine};
use corestream::metrics::Counter;
use corestream::processor::{PassThrough, Processor};
use corestream::retry::ErrorCategory;
use corestream::retry::counters::Outcome;
use corestream::retry::{ActionTable, RetryPolicy};
use corestream::sink::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use corestream::sink::kafka::{KafkaSinkFactory, KafkaSinkOptions, KafkaSinkStats};
use corestream::sink::{SinkError, dead_letter::LogDeadLetter};
use corestream::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaSourceStats};
use corestream::worker::Placement;
use kafka_orders_util as orders;
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
        ..EngineSettings::default()
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

/// The processor chain of a test engine.
#[derive(Clone, Copy, Debug)]
enum Chain {
    /// Every input is one output, unchanged, to the sink's topic.
    PassThrough,
    /// The reference orders pipeline (`corestream::transform::orders_processor`).
    Orders,
}

impl Chain {
    fn processor(self) -> Box<dyn Processor> {
        match self {
            Chain::PassThrough => Box::new(PassThrough),
            Chain::Orders => Box::new(
                corestream::transform::orders_processor().expect("the orders pipeline compiles"),
            ),
        }
    }
}

struct Running {
    engine: RunningEngine,
    source: Arc<KafkaSourceStats>,
    sink: Arc<KafkaSinkStats>,
}

impl Running {
    /// Inputs the workers are done with: delivered, filtered or failed in the
    /// processor (each input has at most one output in these chains).
    fn settled(&self) -> u64 {
        let counters = self.engine.metrics().counters();
        delivered_by(&self.sink)
            + counters.sum(Counter::Filtered)
            + counters.sum(Counter::ProcessorFailed)
    }
}

/// An engine reading `input` (group `group`) and writing to `output` on `brokers`;
/// `dead_letter` receives both processor and sink failures, as with `corestream run`.
#[allow(clippy::too_many_arguments)]
fn start(
    brokers: &str,
    group: &str,
    input: &str,
    output: &str,
    settings: EngineSettings,
    chain: Chain,
    dead_letter: Arc<dyn DeadLetter>,
    sink_properties: &[(&str, &str)],
) -> Running {
    start_across(
        brokers,
        brokers,
        group,
        input,
        output,
        settings,
        chain,
        dead_letter,
        sink_properties,
    )
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
    chain: Chain,
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
            dead_letter: dead_letter.clone(),
        },
    )
    .expect("sink");
    let sink_stats = sink.stats();
    let engine = Engine::new(
        settings,
        Box::new(source),
        Box::new(move |_| chain.processor()),
        Arc::new(sink),
    )
    .dead_letter(dead_letter)
    .start()
    .expect("engine starts");
    Running { engine, source: source_stats, sink: sink_stats }
}

fn delivered(r: &Running) -> u64 {
    delivered_by(&r.sink)
}

fn delivered_by(sink: &KafkaSinkStats) -> u64 {
    sink.delivered.load(Relaxed)
}

/// Creates the orders pipeline's output topics (3 partitions each) and the sink's
/// default topic for unrouted messages; returns the routed topics.
fn create_orders_topics(
    mock: &rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    unrouted: &str,
) -> Vec<String> {
    create_topic(mock, unrouted, 1);
    let routed = orders::routed_topics();
    for topic in &routed {
        create_topic(mock, topic, 3);
    }
    routed
}

/// Messages in `topics` (the mock's topics start at offset 0).
fn messages_in(brokers: &str, topics: &[String], partitions: i32) -> i64 {
    topics.iter().map(|t| end_offsets(brokers, t, partitions).iter().sum::<i64>()).sum()
}

#[test]
fn kafka_to_orders_pipeline_to_kafka_routes_every_message_in_order_and_commits_what_was_settled() {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: u64 = 5_000;
    const MALFORMED_EVERY: u64 = 250;
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "orders-in", PARTITIONS);
    let routed = create_orders_topics(&mock, "orders.unrouted");
    let inputs = orders::Inputs::new(PARTITIONS, 0..PER_PARTITION, MALFORMED_EVERY);
    inputs.assert_varied();
    assert_eq!(
        inputs.rejected.len(),
        (PARTITIONS as u64 * PER_PARTITION / MALFORMED_EVERY) as usize
    );
    orders::produce(&brokers, "orders-in", PARTITIONS, 0..PER_PARTITION, MALFORMED_EVERY);
    let total = inputs.total() as u64;
    let ends = end_offsets(&brokers, "orders-in", PARTITIONS);
    assert_eq!(ends, vec![PER_PARTITION as i64; PARTITIONS as usize]);

    // A ring of 8 KiB holds ~30 orders: the source must pause partitions and resume
    // them as the workers drain, without losing or reordering anything.
    let dead = Arc::new(Collect::default());
    let running = start(
        &brokers,
        "pipeline",
        "orders-in",
        "orders.unrouted",
        settings(2, 8 << 10),
        Chain::Orders,
        dead.clone(),
        &[],
    );
    wait_until("every input settled", Duration::from_secs(120), || running.settled() >= total);
    // While the engine runs, idle, its time-based commit covers every input:
    // delivered, filtered (including a partition's last inputs) and dead-lettered.
    wait_until("the running engine commits every input", Duration::from_secs(30), || {
        committed(&brokers, "pipeline", "orders-in", PARTITIONS) == ends
    });
    running.engine.stop();
    let report = running.engine.join().expect("clean shutdown");
    let counts = |c| report.snapshot.get(c) as usize;
    assert_eq!(counts(Counter::MessagesIn), inputs.total());
    assert_eq!(counts(Counter::Outputs), inputs.outputs.len());
    assert_eq!(counts(Counter::Filtered), inputs.filtered.len());
    assert_eq!(counts(Counter::ProcessorFailed), inputs.rejected.len());
    assert_eq!(
        delivered_by(&running.sink) as usize,
        inputs.outputs.len(),
        "every output delivered once"
    );
    assert_eq!(running.sink.dead_lettered.load(Relaxed), 0);
    assert_eq!(
        committed(&brokers, "pipeline", "orders-in", PARTITIONS),
        ends,
        "after the stop, committed offsets = every input"
    );

    // Malformed inputs were dead-lettered by the processor, as they were.
    let dead = dead.0.lock();
    let dead_ids: std::collections::BTreeSet<u64> =
        dead.iter().map(|d| orders::id_of(d.partition as i32, d.position)).collect();
    assert_eq!(dead.len(), dead_ids.len(), "each malformed input dead-lettered once");
    assert_eq!(
        dead_ids, inputs.rejected,
        "dead letters = the malformed inputs (by partition, offset)"
    );
    for d in dead.iter() {
        let (src, seq) = (d.partition as i32, d.position);
        assert_eq!((d.category, d.stage), (ErrorCategory::Serialization, Stage::Processor));
        assert_eq!(d.payload, orders::order_input(src, seq, MALFORMED_EVERY).as_bytes());
        assert_eq!(d.key, key_of(src, seq).as_bytes());
    }

    // The output topics hold exactly the expected outputs; nothing went unrouted.
    assert_eq!(end_offsets(&brokers, "orders.unrouted", 1), vec![0], "nothing unrouted");
    assert_eq!(messages_in(&brokers, &routed, 3), inputs.outputs.len() as i64, "no extra output");
    let mut reader = orders::Reader::new(&brokers, &routed);
    reader.read_until("the routed topics", Duration::from_secs(60), |r| {
        r.len() >= inputs.outputs.len()
    });
    let check = orders::check(&reader.records, &inputs);
    orders::assert_expected(&check);
    assert!(check.duplicates.is_empty(), "a clean run duplicates nothing: {:?}", check.duplicates);

    let pauses = running.source.pauses.load(Relaxed);
    let resumes = running.source.resumes.load(Relaxed);
    assert!(pauses > 0, "the tiny rings should have paused partitions");
    assert!(resumes <= pauses);
    eprintln!(
        "orders: {total} inputs, {} outputs, {} filtered, {} dead-lettered; pauses {pauses}, \
         resumes {resumes}, commits {:?}",
        inputs.outputs.len(),
        inputs.filtered.len(),
        inputs.rejected.len(),
        running.source.commits
    );
}

#[test]
fn two_engines_in_one_group_split_the_partitions_and_a_clean_rebalance_replays_nothing() {
    const PARTITIONS: i32 = 6;
    const PHASE: u64 = 1_000;
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "rb-in", PARTITIONS);
    let routed = create_orders_topics(&mock, "rb-unrouted");
    let phase_inputs = |phases: u64| orders::Inputs::new(PARTITIONS, 0..phases * PHASE, 0);
    orders::produce(&brokers, "rb-in", PARTITIONS, 0..PHASE, 0);
    let log: Arc<dyn DeadLetter> = Arc::new(LogDeadLetter::default());
    let engine = |log: &Arc<dyn DeadLetter>| {
        start(
            &brokers,
            "rb",
            "rb-in",
            "rb-unrouted",
            settings(2, 1 << 16),
            Chain::Orders,
            log.clone(),
            &[],
        )
    };

    let a = engine(&log);
    wait_until("engine A under way", Duration::from_secs(60), || a.settled() >= PHASE);
    let b = engine(&log);
    wait_until("B receives partitions", Duration::from_secs(60), || {
        b.source.assignments.load(Relaxed) > 0 && a.source.revocations.load(Relaxed) > 0
    });
    orders::produce(&brokers, "rb-in", PARTITIONS, PHASE..2 * PHASE, 0);
    let two_phases = phase_inputs(2).total() as u64;
    wait_until("phase 2 settled", Duration::from_secs(120), || {
        a.settled() + b.settled() >= two_phases
    });
    let b_before_a_left = delivered(&b);
    // A leaves cleanly: its partitions are drained, committed and handed to B.
    a.engine.stop();
    a.engine.join().expect("A stops cleanly");
    orders::produce(&brokers, "rb-in", PARTITIONS, 2 * PHASE..3 * PHASE, 0);
    let inputs = phase_inputs(3);
    inputs.assert_varied();
    // B's idle commit reaches the end of every partition only once it has settled
    // every input (delivered, filtered or dead-lettered): then stop it.
    let ends = end_offsets(&brokers, "rb-in", PARTITIONS);
    wait_until("B commits every input", Duration::from_secs(120), || {
        committed(&brokers, "rb", "rb-in", PARTITIONS) == ends
    });
    b.engine.stop();
    b.engine.join().expect("B stops cleanly");

    // Everything is delivered: read every copy back, duplicates included.
    let copies = messages_in(&brokers, &routed, 3) as usize;
    let mut reader = orders::Reader::new(&brokers, &routed);
    reader.read_until("the routed topics", Duration::from_secs(60), |r| r.len() >= copies);
    let check = orders::check(&reader.records, &inputs);
    orders::assert_expected(&check);
    assert_eq!(end_offsets(&brokers, "rb-unrouted", 1), vec![0], "nothing unrouted");
    assert_eq!(
        delivered_by(&a.sink) + delivered_by(&b.sink),
        copies as u64,
        "the engines delivered what the topics hold"
    );
    assert!(b_before_a_left > 0, "B took part before A left");
    assert!(delivered_by(&b.sink) > b_before_a_left, "B took over A's partitions");
    eprintln!(
        "rebalance: {} outputs for {} expected ({} duplicates); A delivered {}, B {}",
        copies,
        inputs.outputs.len(),
        check.extra_copies(),
        delivered_by(&a.sink),
        delivered_by(&b.sink)
    );
    assert_eq!(
        committed(&brokers, "rb", "rb-in", PARTITIONS),
        ends,
        "the group's offsets cover everything"
    );
    // A clean join and a clean leave: each revoked partition was drained and its
    // commit accepted before the next owner started, so nothing was read twice.
    assert_eq!(a.source.revoke_timeouts.load(Relaxed), 0, "A's revokes drained");
    assert_eq!(check.extra_copies(), 0, "a clean rebalance replays nothing");
}

/// One dead letter, as recorded in memory.
struct Dead {
    category: ErrorCategory,
    stage: Stage,
    attempts: u32,
    partition: u32,
    position: u64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Records dead letters in memory.
#[derive(Default)]
struct Collect(Mutex<Vec<Dead>>);

impl DeadLetter for Collect {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        self.0.lock().push(Dead {
            category: record.category,
            stage: record.stage,
            attempts: record.attempts,
            partition: record.partition,
            position: record.position,
            key: record.key.to_vec(),
            payload: record.payload.to_vec(),
        });
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
        Chain::PassThrough,
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
    let ends = end_offsets(&in_brokers, "faults-in", PARTITIONS);
    wait_until("the running engine commits every input", Duration::from_secs(30), || {
        committed(&in_brokers, "faults", "faults-in", PARTITIONS) == ends
    });
    running.engine.stop();
    running.engine.join().expect("clean shutdown");
    let too_large = sink.retry_count(ErrorCategory::MessageTooLarge, Outcome::DeadLettered);
    assert!(too_large > 0, "the permanent failure was dead-lettered");
    assert_eq!(sink.retry_count(ErrorCategory::MessageTooLarge, Outcome::Success), 0);
    let dead = dead.0.lock();
    assert_eq!(dead.len() as u64, too_large);
    assert!(
        dead.iter().all(|d| d.category == ErrorCategory::MessageTooLarge
            && d.stage == Stage::Sink
            && d.attempts == 1),
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
    let spec = corestream::kafka::KafkaClientSpec { brokers: brokers.clone(), properties: vec![] };
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
    let nowhere =
        corestream::kafka::KafkaClientSpec { brokers: "127.0.0.1:1".into(), properties: vec![] };
    let started = std::time::Instant::now();
    let error =
        admin::check(&nowhere, &["x"], None, Duration::from_secs(2)).expect_err("unreachable");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by the timeout");
    assert!(error.contains("cannot reach the Kafka brokers 127.0.0.1:1"), "{error}");
}

#[test]
fn check_says_once_that_brokers_shared_by_several_sections_are_unreachable() {
    let dir = std::env::temp_dir().join(format!("corestream-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("check.toml");
    std::fs::write(
        &config,
        r#"[source]
type = "kafka"
brokers = "127.0.0.1:1"
group = "g"
topics = ["in"]

[sink]
type = "kafka"
brokers = "127.0.0.1:1"
topic = "out"

[dead_letter]
type = "kafka"
brokers = "127.0.0.1:1"
topic = "dead"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["check", "--timeout-secs", "1"])
        .arg(&config)
        .output()
        .expect("corestream check runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert_eq!(stderr.matches("cannot reach the Kafka brokers").count(), 1, "{stderr}");
    assert_eq!(stdout.matches("unreachable (the same brokers").count(), 2, "{stdout}");
    for role in ["source", "sink", "dead_letter"] {
        assert!(stdout.contains(&format!("{role} kafka at 127.0.0.1:1:")), "{stdout}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// (Creating a missing topic needs the CreateTopics API, which the mock cluster
/// does not implement: `scripts/tansu-e2e.sh` covers it against a real broker.)
#[test]
fn a_missing_topic_is_waited_for_by_the_retry_policy_then_reported() {
    use corestream::kafka::admin::{MissingTopic, ensure_topics};
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let spec = corestream::kafka::KafkaClientSpec { brokers, properties: vec![] };
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
    use corestream::sink::kafka::KafkaDeadLetter;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers as _, Message as _};
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "dlq", 1);
    let spec = corestream::kafka::KafkaClientSpec { brokers: brokers.clone(), properties: vec![] };
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
