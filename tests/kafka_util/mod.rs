//! Helpers shared by the Kafka tests: a mock cluster, an order producer, an output
//! reader and the checks (every message present, order per key, commits).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

use corestream::kafka::{KafkaClientSpec, KafkaSinkSpec, KafkaSourceSpec, TopicCreation};

/// Distinct customers per source partition (keys never span partitions, so per-key
/// order is the order of their source partition).
pub const KEYS_PER_PARTITION: u64 = 50;

/// An in-process mock cluster with one broker. Mind its retention: librdkafka's mock
/// keeps at most 5 MiB (or 100 000 message sets) per partition and trims the oldest
/// beyond that, so a test keeps each partition under ~30 000 orders.
pub fn mock() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(1).expect("mock cluster starts")
}

pub fn create_topic(
    mock: &MockCluster<'static, DefaultProducerContext>,
    topic: &str,
    partitions: i32,
) {
    mock.create_topic(topic, partitions, 1).expect("mock topic created");
}

/// Settings for quick group coordination against the mock cluster.
pub fn fast_group_properties() -> Vec<(String, String)> {
    [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "300"),
        ("topic.metadata.refresh.interval.ms", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn source_spec(brokers: &str, group: &str, topic: &str) -> KafkaSourceSpec {
    KafkaSourceSpec {
        client: KafkaClientSpec {
            brokers: brokers.to_string(),
            properties: fast_group_properties(),
        },
        group: group.to_string(),
        topics: vec![topic.to_string()],
        commit_interval: Duration::from_millis(200),
        commit_every_messages: 2_000,
        queued_max_messages_kbytes: 1024,
        topic_creation: TopicCreation { create: false, partitions: None, replication: None },
    }
}

pub fn sink_spec(brokers: &str, topic: &str) -> KafkaSinkSpec {
    KafkaSinkSpec {
        client: KafkaClientSpec {
            brokers: brokers.to_string(),
            properties: vec![("linger.ms".into(), "2".into())],
        },
        topic: topic.to_string(),
        dead_letter_topic: None,
        topic_creation: TopicCreation { create: false, partitions: None, replication: None },
    }
}

/// The payload of order `seq` of source partition `src`.
pub fn order(src: i32, seq: u64) -> String {
    format!(
        r#"{{"src":{src},"seq":{seq},"customer":"c-{src}-{}","amount":{}.{:02},"status":"paid","region":"eu"}}"#,
        seq % KEYS_PER_PARTITION,
        10 + seq % 990,
        seq % 100
    )
}

pub fn key_of(src: i32, seq: u64) -> String {
    format!("c-{src}-{}", seq % KEYS_PER_PARTITION)
}

/// Produces orders `seqs` to each of `partitions` partitions of `topic`, with a key
/// and a `trace` header, and waits until all are delivered.
pub fn produce_orders(brokers: &str, topic: &str, partitions: i32, seqs: std::ops::Range<u64>) {
    produce_payloads(brokers, topic, partitions, seqs, order);
}

/// Like [`produce_orders`], with the payload of `(src, seq)` from `payload`.
pub fn produce_payloads(
    brokers: &str,
    topic: &str,
    partitions: i32,
    seqs: std::ops::Range<u64>,
    payload: impl Fn(i32, u64) -> String,
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for seq in seqs {
        for src in 0..partitions {
            let payload = payload(src, seq);
            let key = key_of(src, seq);
            let trace = format!("t-{src}-{seq}");
            let headers =
                OwnedHeaders::new().insert(Header { key: "trace", value: Some(trace.as_bytes()) });
            let mut record = BaseRecord::to(topic)
                .partition(src)
                .key(key.as_bytes())
                .payload(payload.as_bytes())
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "produce failed: {e}"
                        );
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("test input delivered");
}

/// One output message as read back.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub src: i32,
    pub seq: u64,
    pub trace: Option<String>,
}

fn number_after(payload: &str, field: &str) -> Option<u64> {
    let at = payload.find(field)? + field.len();
    let digits: String = payload[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads `topic` from the beginning (a fresh group) until `expected` messages
/// arrived or `quiet` passes without a new one.
pub struct OutputReader {
    consumer: BaseConsumer,
    pub records: Vec<Record>,
}

impl OutputReader {
    pub fn new(brokers: &str, topic: &str) -> Self {
        let group = format!("reader-{}-{}", std::process::id(), rand_seed());
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("reader");
        consumer.subscribe(&[topic]).expect("subscribe");
        OutputReader { consumer, records: Vec::new() }
    }

    /// Polls for up to `wait`; returns the number of records read so far.
    pub fn read_for(&mut self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let payload = std::str::from_utf8(m.payload().unwrap_or_default())
                        .expect("utf-8 payload");
                    let trace = m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "trace")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    self.records.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        src: number_after(payload, "\"src\":").expect("src field") as i32,
                        seq: number_after(payload, "\"seq\":").expect("seq field"),
                        trace,
                    });
                }
                Some(Err(e)) => panic!("reading the output failed: {e}"),
                None => {}
            }
        }
        self.records.len()
    }

    /// Reads until `expected` distinct (src, seq) pairs were seen, or fails after
    /// `timeout`.
    pub fn read_until_distinct(&mut self, expected: usize, timeout: Duration) -> Tally {
        let deadline = Instant::now() + timeout;
        loop {
            self.read_for(Duration::from_millis(200));
            let tally = tally(&self.records);
            if tally.distinct >= expected || Instant::now() >= deadline {
                return tally;
            }
        }
    }
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// What the output contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    pub distinct: usize,
    pub duplicates: usize,
}

pub fn tally(records: &[Record]) -> Tally {
    let mut seen: HashMap<(i32, u64), u32> = HashMap::new();
    for r in records {
        *seen.entry((r.src, r.seq)).or_default() += 1;
    }
    Tally { total: records.len(), distinct: seen.len(), duplicates: records.len() - seen.len() }
}

/// Inputs `(src, seq)` for `partitions × seqs` that are not in the output.
pub fn missing(records: &[Record], partitions: i32, seqs: std::ops::Range<u64>) -> Vec<(i32, u64)> {
    let seen: std::collections::HashSet<(i32, u64)> =
        records.iter().map(|r| (r.src, r.seq)).collect();
    let mut missing = Vec::new();
    for src in 0..partitions {
        for seq in seqs.clone() {
            if !seen.contains(&(src, seq)) {
                missing.push((src, seq));
            }
        }
    }
    missing
}

/// Per key, the first occurrences of its sequence numbers must be increasing in the
/// order the output partition holds them (a replayed duplicate may repeat an older
/// one, which is allowed). Returns the violations.
pub fn order_violations(records: &[Record]) -> Vec<String> {
    let mut by_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut violations = Vec::new();
    let mut seen: std::collections::HashSet<(i32, u64)> = std::collections::HashSet::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for records in by_partition.values_mut() {
        records.sort_by_key(|r| r.offset);
        for r in records.iter() {
            if !seen.insert((r.src, r.seq)) {
                continue; // a duplicate from a replay
            }
            if let Some(&previous) = last.get(r.key.as_str())
                && previous >= r.seq
            {
                violations.push(format!("key {} has seq {} after {}", r.key, r.seq, previous));
            }
            last.insert(r.key.as_str(), r.seq);
        }
    }
    violations
}

/// The offsets `group` committed on `topic`, per partition (-1: none).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("client");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed =
        consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// The end offset (high watermark) of each partition of `topic`.
pub fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    (0..partitions)
        .map(|p| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1
        })
        .collect()
}

/// Waits until `condition` holds, failing with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
