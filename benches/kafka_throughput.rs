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
//! - corestream: the Kafka source → the reference orders pipeline (schema, filter,
//!   route to `orders.<region>.<currency>`, map) → the Kafka sink, with its default
//!   commits. If the orders pipeline does not build, the bench stops with the reason
//!   (it never measures another pipeline in its place).
//!
//! Both are timed between 10 % and 90 % of the messages delivered (the group join
//! and the last linger are excluded), and both runs' outputs are checked (every
//! message arrived, exactly once) before any figure is printed. Rounds alternate raw and corestream so a
//! drift in machine load hits both. Environment: `CORESTREAM_BENCH_MESSAGES`
//! (default 400000), `CORESTREAM_BENCH_ROUNDS` (3), `CORESTREAM_BENCH_WORKERS` (1),
//! `CORESTREAM_BENCH_PARTITIONS` (32: the mock keeps 5 MiB per partition),
//! `CORESTREAM_BENCH_COMMIT_EVERY` (the source's `commit_every_messages`, default
//! 100000: sweep it to measure the replay-window trade-off).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use corestream::engine::{Engine, EngineSettings};
use corestream::kafka::{KafkaClientSpec, KafkaSinkSpec, KafkaSourceSpec, TopicCreation};
use corestream::metrics::Counter;
use corestream::processor::Processor;
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

/// An order of about 200 bytes in `region` (the orders pipeline routes by region
/// and currency, so each run's region names its output topic).
fn order(i: u64, region: &str) -> (String, String) {
    let key = format!("c-{:06}", i % 10_000);
    let payload = format!(
        r#"{{"id":{i},"customer":"{key}","region":"{region}","status":"paid","amount":{}.{:02},"currency":"EUR","items":{},"channel":"web","note":"standard delivery"}}"#,
        10 + i % 990,
        i % 100,
        1 + i % 7
    );
    (key, payload)
}

/// Outputs the orders pipeline must emit for `messages` orders (all are paid and
/// route to the run's topic): those with an amount over 100.
fn expected_outputs(messages: u64) -> u64 {
    (0..messages)
        .filter(|&i| {
            let (_, payload) = order(i, "x");
            let v: serde_json::Value = serde_json::from_str(&payload).expect("json order");
            v["amount"].as_f64().expect("amount") > 100.0
        })
        .count() as u64
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .expect("producer")
}

fn fill(brokers: &str, topic: &str, messages: u64, region: &str) {
    let producer = producer(brokers);
    for i in 0..messages {
        let (key, payload) = order(i, region);
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

/// Messages in `topic`: the sum of end offsets on the mock (topics start at 0);
/// read back in full from an external broker, whose end offsets may be reported per
/// batch (tansu 0.6 reports the last batch's base offset).
fn count(brokers: &str, topic: &str, partitions: i32, external: bool) -> i64 {
    if external {
        return read_back(brokers, topic);
    }
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    (0..partitions)
        .map(|p| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1
        })
        .sum()
}

/// Counts the messages of `topic` by consuming it from the start until nothing new
/// arrives for two seconds.
fn read_back(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("count-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("counting consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut n = 0i64;
    let mut last = Instant::now();
    let started = Instant::now();
    while last.elapsed() < Duration::from_secs(2)
        || (n == 0 && started.elapsed() < Duration::from_secs(30))
    {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                n += 1;
                last = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic} back: {e}"),
            None => {}
        }
    }
    n
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

/// Times the middle of a run: from 10 % to 90 % of the messages delivered, so the
/// start (group join, first fetch) and the tail (last linger) do not count, and a
/// late look at the clock moves both marks alike.
struct Window {
    low: u64,
    high: u64,
    at_low: Option<Instant>,
    at_high: Option<Instant>,
}

impl Window {
    fn new(messages: u64) -> Self {
        Window { low: messages / 10, high: messages * 9 / 10, at_low: None, at_high: None }
    }

    #[inline]
    fn observe(&mut self, delivered: u64) {
        if self.at_low.is_none() && delivered >= self.low {
            self.at_low = Some(Instant::now());
        }
        if self.at_high.is_none() && delivered >= self.high {
            self.at_high = Some(Instant::now());
        }
    }

    /// Messages per second between the marks.
    fn rate(&self) -> f64 {
        let (Some(low), Some(high)) = (self.at_low, self.at_high) else {
            panic!("the run ended before both marks were seen")
        };
        (self.high - self.low) as f64 / high.duration_since(low).as_secs_f64()
    }
}

/// The raw loop: poll, copy key/payload/headers into a produce, until `messages`
/// were consumed; then flush. Returns the rate between the 10 % and 90 % marks.
fn raw(brokers: &str, input: &str, output: &str, group: &str, messages: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = producer(brokers);
    producer.client(); // created before the clock starts
    let mut window = Window::new(messages);
    let delivered = |consumed: u64| consumed - producer.in_flight_count().max(0) as u64;
    let mut consumed = 0u64;
    while consumed < messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
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
                    window.observe(delivered(consumed));
                }
            }
            Some(Err(e)) => panic!("raw consumer: {e}"),
            None => {}
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "raw output not delivered");
        producer.poll(Duration::from_millis(1));
        window.observe(delivered(consumed));
    }
    window.observe(messages);
    window.rate()
}

/// The reference orders pipeline; a failure to build it is a hard error.
fn orders_processor() -> Box<dyn Processor> {
    match corestream::transform::orders_processor() {
        Ok(chain) => Box::new(chain),
        Err(reason) => panic!("the orders pipeline does not build: {reason}"),
    }
}

/// corestream: Kafka source → orders pipeline → Kafka sink, until all `messages`
/// are settled: delivered, or filtered by the pipeline. Returns the rate between
/// the 10 % and 90 % marks and the number of outputs.
fn corestream(
    brokers: &str,
    input: &str,
    output: &str,
    group: &str,
    messages: u64,
    workers: usize,
    commit_every_messages: u64,
) -> (f64, u64) {
    // CORESTREAM_BENCH_SOURCE_PROPERTIES="key=value,key=value": extra librdkafka
    // properties for corestream's consumer (experiments).
    let properties = std::env::var("CORESTREAM_BENCH_SOURCE_PROPERTIES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let client = KafkaClientSpec { brokers: brokers.to_string(), properties };
    let none = TopicCreation { create: false, partitions: None, replication: None };
    let retry = RetryPolicy::build(&Default::default()).expect("policy");
    let source = KafkaSource::new(
        KafkaSourceSpec {
            client: client.clone(),
            group: group.to_string(),
            topics: vec![input.to_string()],
            commit_interval: corestream::kafka::spec::COMMIT_INTERVAL_DEFAULT,
            commit_every_messages,
            queued_max_messages_kbytes: corestream::kafka::spec::QUEUED_MAX_MESSAGES_KBYTES_DEFAULT,
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
    let mut window = Window::new(messages);
    loop {
        // The orders pipeline emits at most one output per input.
        let settled = delivered.delivered.load(Relaxed)
            + counters.sum(Counter::Filtered)
            + counters.sum(Counter::ProcessorFailed);
        window.observe(settled);
        if settled >= messages {
            break;
        }
        assert!(!engine.is_finished(), "engine stopped early");
        std::thread::sleep(Duration::from_micros(100));
    }
    engine.stop();
    let report = engine.join().expect("clean stop");
    assert_eq!(report.snapshot.get(Counter::MessagesIn), messages, "every input processed once");
    let outputs = report.snapshot.get(Counter::Outputs);
    assert_eq!(delivered.delivered.load(Relaxed), outputs, "every output delivered once");
    (window.rate(), outputs)
}

/// CPU time (user + system) of this process so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 10 ms): the in-process mock broker counts too.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let messages = env_or("CORESTREAM_BENCH_MESSAGES", 400_000);
    let rounds = env_or("CORESTREAM_BENCH_ROUNDS", 3);
    let workers = env_or("CORESTREAM_BENCH_WORKERS", 1) as usize;
    let partitions = env_or("CORESTREAM_BENCH_PARTITIONS", 32) as i32;
    let commit_every = env_or(
        "CORESTREAM_BENCH_COMMIT_EVERY",
        corestream::kafka::spec::COMMIT_EVERY_MESSAGES_DEFAULT,
    );
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
        "kafka_throughput: {messages} orders per run, {partitions} partitions, {rounds} rounds, \
         corestream workers {workers}, commit every {commit_every} messages, {broker_name}"
    );
    let run_id = std::process::id();
    // Built once up front so that a broken pipeline stops the bench before any work.
    drop(orders_processor());
    println!(
        "corestream pipeline: orders (schema, filter paid && amount > 100, route by region/currency, map)"
    );
    let mut raw_rates = Vec::new();
    let mut core_rates = Vec::new();
    for round in 0..rounds {
        let t = |what: &str| format!("bench-{run_id}-{round}-{what}");
        let (raw_in, raw_out, core_in, core_out) =
            (t("raw-in"), t("raw-out"), t("cs-in"), t("cs-out"));
        // The orders pipeline routes to orders.<region>.<currency>; `core_out` is the
        // sink's default topic (it must stay empty).
        let region = format!("r{run_id}x{round}");
        let routed = format!("orders.{region}.EUR");
        create_topics(
            &brokers,
            mock.as_ref(),
            &[&raw_in, &raw_out, &core_in, &core_out, &routed],
            partitions,
        );
        fill(&brokers, &raw_in, messages, &region);
        fill(&brokers, &core_in, messages, &region);
        assert_eq!(
            count(&brokers, &raw_in, partitions, external.is_some()),
            messages as i64,
            "raw input complete"
        );
        assert_eq!(
            count(&brokers, &core_in, partitions, external.is_some()),
            messages as i64,
            "corestream input complete"
        );

        let cpu_before_raw = cpu_seconds();
        let raw_rate = raw(&brokers, &raw_in, &raw_out, &t("raw-group"), messages);
        let raw_cpu = cpu_seconds() - cpu_before_raw;
        let cpu_before_core = cpu_seconds();
        let (core_rate, core_outputs) = corestream(
            &brokers,
            &core_in,
            &core_out,
            &t("cs-group"),
            messages,
            workers,
            commit_every,
        );
        let core_cpu = cpu_seconds() - cpu_before_core;
        // Correctness before figures: every message arrived in both outputs.
        assert_eq!(
            count(&brokers, &raw_out, partitions, external.is_some()),
            messages as i64,
            "raw output complete"
        );
        assert_eq!(
            count(&brokers, &routed, partitions, external.is_some()),
            core_outputs as i64,
            "corestream output complete"
        );
        assert_eq!(core_outputs, expected_outputs(messages), "corestream filtered as specified");
        if external.is_none() {
            // (Reading an empty topic back from an external broker takes 30 s.)
            assert_eq!(count(&brokers, &core_out, partitions, false), 0, "every output routed");
        }
        println!(
            "round {round}: raw rdkafka loop {raw_rate:>9.0} msg/s   corestream {core_rate:>9.0} msg/s   ratio {:.2}   ({core_outputs} outputs)   process CPU per message: raw {:.2} us, corestream {:.2} us",
            core_rate / raw_rate,
            raw_cpu * 1e6 / messages as f64,
            core_cpu * 1e6 / messages as f64
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
