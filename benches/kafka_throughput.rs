//! Kafka → corestream → Kafka beside a raw rdkafka consume → produce loop, in the
//! same run, against the same broker.
//!
//! ```text
//! cargo bench --bench kafka_throughput                      # in-process mock cluster
//! CORESTREAM_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench kafka_throughput
//! ```
//!
//! Each round pre-fills two input topics with the same orders (key, one header,
//! ~200-byte JSON), then times, one after the other:
//! - raw: `BaseConsumer::poll` → `BaseProducer::send` (key, payload and headers
//!   copied; librdkafka's auto-commit), the loop a user writes with rdkafka and no
//!   processing;
//! - corestream: the Kafka source → the orders pipeline (pass-through until the
//!   transform step is built in) → the Kafka sink, with its default commits.
//!
//! Both are timed from the first message consumed to the last one delivered (the
//! group join is excluded), and both runs' outputs are checked (every message
//! arrived) before any figure is printed. Rounds alternate raw and corestream so a
//! drift in machine load hits both. Environment: `CORESTREAM_BENCH_MESSAGES`
//! (default 400000), `CORESTREAM_BENCH_ROUNDS` (3), `CORESTREAM_BENCH_WORKERS` (1),
//! `CORESTREAM_BENCH_PARTITIONS` (32: the mock keeps 5 MiB per partition).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use corestream::config::kafka::{KafkaClientSpec, KafkaSinkSpec, KafkaSourceSpec, TopicCreation};
use corestream::engine::{Engine, EngineSettings};
use corestream::metrics::Counter;
use corestream::processor::{PassThrough, Processor};
use corestream::retry::{ActionTable, RetryPolicy};
use corestream::sink::dead_letter::LogDeadLetter;
use corestream::sink::kafka::{KafkaSinkFactory, KafkaSinkOptions};
use corestream::source::kafka::{KafkaSource, KafkaSourceOptions};
use corestream::worker::Placement;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// An order of about 200 bytes.
fn order(i: u64) -> (String, String) {
    let key = format!("c-{:06}", i % 10_000);
    let payload = format!(
        r#"{{"id":{i},"customer":"{key}","region":"eu-west","status":"paid","amount":{}.{:02},"currency":"EUR","items":{},"channel":"web","note":"standard delivery"}}"#,
        10 + i % 990,
        i % 100,
        1 + i % 7
    );
    (key, payload)
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .expect("producer")
}

fn fill(brokers: &str, topic: &str, messages: u64) {
    let producer = producer(brokers);
    for i in 0..messages {
        let (key, payload) = order(i);
        let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(b"bench") });
        let mut record =
            BaseRecord::to(topic).key(key.as_bytes()).payload(payload.as_bytes()).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("input delivered");
}

/// Messages in `topic` (sum of end offsets; topics start at offset 0 here).
fn count(brokers: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    (0..partitions)
        .map(|p| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1
        })
        .sum()
}

fn create_topics(
    brokers: &str,
    mock: Option<&MockCluster<'static, DefaultProducerContext>>,
    names: &[&str],
    partitions: i32,
) {
    for name in names {
        match mock {
            Some(mock) => mock.create_topic(name, partitions, 1).expect("mock topic"),
            None => corestream::kafka::admin::create_topic(
                &KafkaClientSpec { brokers: brokers.to_string(), properties: vec![] },
                name,
                partitions as u32,
                1,
            )
            .expect("topic created"),
        }
    }
}

/// The raw loop: poll, copy key/payload/headers into a produce, until `messages`
/// were consumed; then flush. Returns the time from the first message to the flush.
fn raw(brokers: &str, input: &str, output: &str, group: &str, messages: u64) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = producer(brokers);
    producer.client(); // created before the clock starts
    let mut first: Option<Instant> = None;
    let mut consumed = 0u64;
    while consumed < messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let mut record = BaseRecord::to(output).payload(m.payload().unwrap_or_default());
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                if let Some(headers) = m.headers() {
                    record = record.headers(headers.detach());
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                }
                consumed += 1;
                if consumed % 1024 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            Some(Err(e)) => panic!("raw consumer: {e}"),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(120)).expect("raw output delivered");
    first.map_or(Duration::ZERO, |f| f.elapsed())
}

fn orders_processor() -> Box<dyn Processor> {
    match corestream::transform::orders_processor() {
        Ok(chain) => Box::new(chain),
        Err(_) => Box::new(PassThrough),
    }
}

/// corestream: Kafka source → orders pipeline → Kafka sink, until `messages` were
/// delivered. Returns the time from the first message ingested to the last delivery.
fn corestream(
    brokers: &str,
    input: &str,
    output: &str,
    group: &str,
    messages: u64,
    workers: usize,
) -> Duration {
    let client = KafkaClientSpec { brokers: brokers.to_string(), properties: vec![] };
    let none = TopicCreation { create: false, partitions: None, replication: None };
    let retry = RetryPolicy::build(&Default::default()).expect("policy");
    let source = KafkaSource::new(
        KafkaSourceSpec {
            client: client.clone(),
            group: group.to_string(),
            topics: vec![input.to_string()],
            commit_interval: corestream::config::kafka::COMMIT_INTERVAL_DEFAULT,
            commit_every_messages: corestream::config::kafka::COMMIT_EVERY_MESSAGES_DEFAULT,
            queued_max_messages_kbytes:
                corestream::config::kafka::QUEUED_MAX_MESSAGES_KBYTES_DEFAULT,
            topic_creation: none,
        },
        KafkaSourceOptions {
            create_topics: None,
            retry: retry.clone(),
            actions: ActionTable::default(),
        },
    )
    .expect("source");
    let sink = KafkaSinkFactory::new(
        KafkaSinkSpec {
            client: KafkaClientSpec {
                brokers: brokers.to_string(),
                properties: vec![("linger.ms".into(), "20".into())],
            },
            topic: output.to_string(),
            dead_letter_topic: None,
            topic_creation: none,
        },
        KafkaSinkOptions {
            create_topics: None,
            retry,
            actions: ActionTable::default(),
            dead_letter: Arc::new(LogDeadLetter::default()),
        },
    )
    .expect("sink");
    let delivered = sink.stats();
    let settings =
        EngineSettings { workers, placement: Placement::Unpinned, ..EngineSettings::default() };
    let engine =
        Engine::new(settings, Box::new(source), Box::new(|_| orders_processor()), Arc::new(sink))
            .start()
            .expect("engine");
    let counters = engine.metrics().counters();
    while counters.sum(Counter::Ingested) == 0 {
        assert!(!engine.is_finished(), "engine stopped before any input");
        std::thread::sleep(Duration::from_micros(200));
    }
    let first = Instant::now();
    while delivered.delivered.load(Relaxed) < messages {
        assert!(!engine.is_finished(), "engine stopped early");
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = first.elapsed();
    engine.stop();
    engine.join().expect("clean stop");
    elapsed
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let messages = env_or("CORESTREAM_BENCH_MESSAGES", 400_000);
    let rounds = env_or("CORESTREAM_BENCH_ROUNDS", 3);
    let workers = env_or("CORESTREAM_BENCH_WORKERS", 1) as usize;
    let partitions = env_or("CORESTREAM_BENCH_PARTITIONS", 32) as i32;
    let external = std::env::var("CORESTREAM_BENCH_BROKERS").ok();
    let mock = match &external {
        Some(_) => None,
        None => Some(MockCluster::new(1).expect("mock cluster")),
    };
    let brokers = external
        .clone()
        .unwrap_or_else(|| mock.as_ref().map(|m| m.bootstrap_servers()).unwrap_or_default());
    let broker_name = if external.is_some() {
        format!("broker {brokers}")
    } else {
        "in-process mock cluster".into()
    };
    println!(
        "kafka_throughput: {messages} orders per run, {partitions} partitions, {rounds} rounds, corestream workers {workers}, {broker_name}"
    );
    let run_id = std::process::id();
    let mut raw_rates = Vec::new();
    let mut core_rates = Vec::new();
    for round in 0..rounds {
        let t = |what: &str| format!("bench-{run_id}-{round}-{what}");
        let (raw_in, raw_out, core_in, core_out) =
            (t("raw-in"), t("raw-out"), t("cs-in"), t("cs-out"));
        create_topics(
            &brokers,
            mock.as_ref(),
            &[&raw_in, &raw_out, &core_in, &core_out],
            partitions,
        );
        fill(&brokers, &raw_in, messages);
        fill(&brokers, &core_in, messages);
        assert_eq!(count(&brokers, &raw_in, partitions), messages as i64, "raw input complete");
        assert_eq!(
            count(&brokers, &core_in, partitions),
            messages as i64,
            "corestream input complete"
        );

        let raw_time = raw(&brokers, &raw_in, &raw_out, &t("raw-group"), messages);
        let core_time =
            corestream(&brokers, &core_in, &core_out, &t("cs-group"), messages, workers);
        // Correctness before figures: every message arrived in both outputs.
        assert_eq!(count(&brokers, &raw_out, partitions), messages as i64, "raw output complete");
        assert_eq!(
            count(&brokers, &core_out, partitions),
            messages as i64,
            "corestream output complete"
        );
        let raw_rate = messages as f64 / raw_time.as_secs_f64();
        let core_rate = messages as f64 / core_time.as_secs_f64();
        println!(
            "round {round}: raw rdkafka loop {:>9.0} msg/s ({raw_time:.2?})   corestream {:>9.0} msg/s ({core_time:.2?})   ratio {:.2}",
            raw_rate,
            core_rate,
            core_rate / raw_rate
        );
        raw_rates.push(raw_rate);
        core_rates.push(core_rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (raw_median, core_median) = (median(&mut raw_rates), median(&mut core_rates));
    println!(
        "median: raw {raw_median:.0} msg/s, corestream {core_median:.0} msg/s, corestream/raw = {:.2} (goal >= 0.90)",
        core_median / raw_median
    );
}
