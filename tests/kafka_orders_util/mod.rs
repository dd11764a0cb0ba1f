//! The reference "orders" pipeline over Kafka, for the Kafka tests: orders that vary
//! every field the pipeline reads, the outcome expected of each input computed
//! independently of corestream (serde_json, as in `tests/transform_orders.rs`), a
//! reader of the routed output topics and the checks (every expected output present
//! with the right topic, payload, key and header; nothing unexpected; duplicates
//! counted; order per source partition within each output partition).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, Message as _};

use crate::kafka_util::key_of;

/// Regions and currencies of the generated orders: the pipeline routes each order to
/// `orders.<region>.<currency>`, one of six topics.
pub const REGIONS: [&str; 3] = ["eu", "us", "apac"];
pub const CURRENCIES: [&str; 2] = ["EUR", "USD"];
/// An input's id is `src * ID_STRIDE + seq` (source partition, sequence number).
pub const ID_STRIDE: u64 = 1_000_000;

/// The reference orders chain as pipeline-file `[[processor]]` tables (for the tests
/// and benches that run the real binary).
pub const ORDERS_CHAIN_TOML: &str = r#"[[processor]]
type = "schema"
fields = { id = "uint", region = "string", customer = "string", status = "string", amount = "float", currency = "string" }

[[processor]]
type = "filter"
expr = 'status == "paid" && amount > 100.0'

[[processor]]
type = "route"
topic = "orders.${region}.${currency}"

[[processor]]
type = "map"
fields = { id = "id", customer = "customer", amount_cents = "round(amount * 100)", region = "region", topic = "topic" }
"#;

/// Every topic the orders pipeline can route the generated orders to.
pub fn routed_topics() -> Vec<String> {
    let mut topics = Vec::new();
    for region in REGIONS {
        for currency in CURRENCIES {
            topics.push(format!("orders.{region}.{currency}"));
        }
    }
    topics
}

pub fn id_of(src: i32, seq: u64) -> u64 {
    src as u64 * ID_STRIDE + seq
}

pub fn src_seq(id: u64) -> (i32, u64) {
    ((id / ID_STRIDE) as i32, id % ID_STRIDE)
}

fn mix(src: i32, seq: u64) -> u64 {
    // SplitMix64 of (src, seq): deterministic variety without a dependency.
    let mut z = (src as u64) << 40 ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Whether input `(src, seq)` is malformed; `every` = 0: none are.
pub fn is_malformed(seq: u64, every: u64) -> bool {
    every > 0 && seq % every == every / 2
}

/// The payload of input `(src, seq)`: region, currency, status and amount vary per
/// message (so a key's orders go to several topics), amounts sit on and around the
/// filter's boundary (`100`, `100.0`, `100.01`) and need rounding (`x.29 * 100`);
/// some customers need JSON escapes, some orders list their fields in another order,
/// and some carry a nested `region` the pipeline must not read. With
/// `malformed_every` > 0, every such input breaks the schema in one of four ways.
pub fn order_input(src: i32, seq: u64, malformed_every: u64) -> String {
    let h = mix(src, seq);
    let region = REGIONS[(h % 3) as usize];
    let currency = CURRENCIES[((h >> 8) % 2) as usize];
    let status = match (h >> 16) % 10 {
        6 => "pending",
        7 => "refunded",
        8 => "PAID",
        _ => "paid",
    };
    let amount = match (h >> 24) % 16 {
        0 => "100.0".to_string(),
        1 => "100".to_string(),
        2 => "100.01".to_string(),
        3 => "250".to_string(),
        4 => "100.29".to_string(),
        _ => {
            let cents = 5_000 + (h >> 32) % 45_000;
            format!("{}.{:02}", cents / 100, cents % 100)
        }
    };
    let key = key_of(src, seq);
    let customer = if seq % 13 == 5 { format!("{key} \"vip\" é\\") } else { key };
    let mut fields: Vec<(&str, String)> = vec![
        ("id", id_of(src, seq).to_string()),
        ("ts", (1_700_000_000_000 + seq).to_string()),
        ("region", json(region)),
        ("customer", json(&customer)),
        ("status", json(status)),
        ("amount", amount),
        ("currency", json(currency)),
        ("items", ((h >> 40) % 5 + 1).to_string()),
        ("tags", r#"["web","gift"]"#.to_string()),
    ];
    if seq % 5 == 2 {
        fields.push(("address", r#"{"city":"Zürich","region":"nested-not-routed"}"#.into()));
    }
    if seq % 7 == 3 {
        fields.reverse();
    }
    if is_malformed(seq, malformed_every) {
        match (seq / malformed_every) % 4 {
            0 => fields.retain(|(name, _)| *name != "currency"),
            1 => fields
                .iter_mut()
                .filter(|f| f.0 == "amount")
                .for_each(|f| f.1 = r#""150.00""#.into()),
            2 => fields.iter_mut().filter(|f| f.0 == "id").for_each(|f| f.1 = "-5".into()),
            _ => {} // truncated below
        }
        // Each would pass the filter if it were well-formed.
        for f in fields.iter_mut() {
            match f.0 {
                "status" => f.1 = json("paid"),
                "amount" if !f.1.starts_with('"') => f.1 = "150.00".into(),
                _ => {}
            }
        }
    }
    let body: Vec<String> =
        fields.iter().map(|(name, value)| format!("\"{name}\":{value}")).collect();
    let payload = format!("{{{}}}", body.join(","));
    if is_malformed(seq, malformed_every) && (seq / malformed_every) % 4 == 3 {
        return payload[..payload.len() / 2].to_string();
    }
    payload
}

/// What the orders pipeline must do with one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Routed to `topic` as `payload`.
    Output { topic: String, payload: String },
    /// Dropped by the filter.
    Filtered,
    /// Refused by the schema step (or not JSON): dead-lettered.
    Rejected,
}

enum Amount {
    Int(i64),
    Float(f64),
}

/// The expected outcome of `input`, computed with serde_json from the reference
/// pipeline's definition (`shared/bench/README.md`): schema, filter
/// `status == "paid" && amount > 100.0`, route `orders.${region}.${currency}`, map
/// `{"id","customer","amount_cents": round(amount * 100),"region","topic"}`.
pub fn expected(input: &str) -> Expected {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(input) else {
        return Expected::Rejected;
    };
    let str_field = |name: &str| o.get(name).and_then(|v| v.as_str());
    let id = o.get("id").and_then(|v| v.as_u64());
    let amount = o.get("amount").and_then(|v| match v {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Amount::Int(i)),
            None => n.as_f64().map(Amount::Float),
        },
        _ => None,
    });
    let (Some(id), Some(region), Some(customer), Some(status), Some(amount), Some(currency)) = (
        id,
        str_field("region"),
        str_field("customer"),
        str_field("status"),
        amount,
        str_field("currency"),
    ) else {
        return Expected::Rejected;
    };
    let (over_100, cents) = match amount {
        Amount::Int(i) => (i > 100, i * 100),
        Amount::Float(f) => (f > 100.0, (f * 100.0).round() as i64),
    };
    if !(status == "paid" && over_100) {
        return Expected::Filtered;
    }
    let topic = format!("orders.{region}.{currency}");
    let payload = format!(
        r#"{{"id":{id},"customer":{},"amount_cents":{cents},"region":{},"topic":{}}}"#,
        json(customer),
        json(region),
        json(&topic)
    );
    Expected::Output { topic, payload }
}

/// One expected output.
#[derive(Clone, Debug)]
pub struct Want {
    pub topic: String,
    pub payload: String,
    pub key: String,
}

/// The inputs `partitions × seqs` and what must become of each, by id.
#[derive(Debug, Default)]
pub struct Inputs {
    pub outputs: BTreeMap<u64, Want>,
    pub filtered: BTreeSet<u64>,
    pub rejected: BTreeSet<u64>,
}

impl Inputs {
    pub fn new(partitions: i32, seqs: std::ops::Range<u64>, malformed_every: u64) -> Self {
        let mut inputs = Inputs::default();
        for src in 0..partitions {
            for seq in seqs.clone() {
                let id = id_of(src, seq);
                match expected(&order_input(src, seq, malformed_every)) {
                    Expected::Output { topic, payload } => {
                        inputs.outputs.insert(id, Want { topic, payload, key: key_of(src, seq) });
                    }
                    Expected::Filtered => {
                        inputs.filtered.insert(id);
                    }
                    Expected::Rejected => {
                        inputs.rejected.insert(id);
                    }
                }
            }
        }
        inputs
    }

    pub fn total(&self) -> usize {
        self.outputs.len() + self.filtered.len() + self.rejected.len()
    }

    /// Guards the generator: the inputs exercise every topic and every outcome.
    pub fn assert_varied(&self) {
        let topics: BTreeSet<&str> = self.outputs.values().map(|w| w.topic.as_str()).collect();
        let all = routed_topics();
        assert_eq!(topics, all.iter().map(String::as_str).collect(), "every topic is routed to");
        assert!(self.filtered.len() * 10 > self.total(), "a good share is filtered");
        assert!(self.outputs.len() * 2 > self.total(), "most pass");
    }
}

/// Produces inputs `seqs` to each of `partitions` partitions of `topic` (in order,
/// one producer, so the offset of `(src, seq)` is its position in the range), with
/// the key `key_of(src, seq)` and a `trace` header, and waits until all are
/// delivered.
pub fn produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    seqs: std::ops::Range<u64>,
    malformed_every: u64,
) {
    crate::kafka_util::produce_payloads(brokers, topic, partitions, seqs, |src, seq| {
        order_input(src, seq, malformed_every)
    });
}

/// Asserts that `check` found the expected output, duplicates apart: nothing
/// lost, unexpected or different, order per source partition kept, each key in one
/// partition.
pub fn assert_expected(check: &Check) {
    assert!(check.missing.is_empty(), "expected outputs lost: {}", sample(&check.missing));
    assert!(check.unexpected.is_empty(), "unexpected outputs: {}", sample(&check.unexpected));
    assert!(check.wrong.is_empty(), "outputs differ from the expected: {}", sample(&check.wrong));
    assert!(
        check.order_violations.is_empty(),
        "order per source partition broken: {}",
        sample(&check.order_violations)
    );
    assert!(
        check.split_keys.is_empty(),
        "a key in several partitions: {}",
        sample(&check.split_keys)
    );
}

/// One message read back.
#[derive(Clone, Debug)]
pub struct Read {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `id` of an output payload.
    pub fn id(&self) -> Option<u64> {
        serde_json::from_str::<serde_json::Value>(&self.payload).ok()?.get("id")?.as_u64()
    }
}

/// Reads `topics` from the beginning (a fresh group, no commits).
pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Read>,
}

impl Reader {
    pub fn new(brokers: &str, topics: &[String]) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("orders-reader-{}-{nanos}", std::process::id()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("reader");
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).expect("subscribe");
        Reader { consumer, records: Vec::new() }
    }

    /// Polls for up to `wait`; returns the number of records read so far.
    pub fn read_for(&mut self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    let value = h.value.map(String::from_utf8_lossy);
                                    (h.key.to_string(), value.unwrap_or_default().into_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.records.push(Read {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        payload: String::from_utf8_lossy(m.payload().unwrap_or_default())
                            .into_owned(),
                        headers,
                    });
                }
                Some(Err(e)) => panic!("reading back failed: {e}"),
                None => {}
            }
        }
        self.records.len()
    }

    /// Reads until `done(records)` holds, or fails after `timeout` naming `what`.
    pub fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Read]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.records) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} reading back {what}: {} records",
                self.records.len()
            );
            self.read_for(Duration::from_millis(100));
        }
    }

    /// Ids of the expected outputs read so far.
    pub fn distinct_ids(&self) -> usize {
        self.records.iter().filter_map(Read::id).collect::<HashSet<_>>().len()
    }
}

/// What the output topics hold, against what the inputs expect.
#[derive(Debug, Default)]
pub struct Check {
    /// Expected outputs never read.
    pub missing: Vec<u64>,
    /// Outputs no input expects (filtered or rejected ids, or unknown payloads).
    pub unexpected: Vec<String>,
    /// Outputs with the right id but another topic, payload, key or header.
    pub wrong: Vec<String>,
    /// Ids read more than once, with the number of copies.
    pub duplicates: BTreeMap<u64, usize>,
    /// Within one output partition, an input first seen after a later input of its
    /// source partition.
    pub order_violations: Vec<String>,
    /// Keys spread over several partitions of one topic.
    pub split_keys: Vec<String>,
}

impl Check {
    /// Copies beyond the first, over all ids.
    pub fn extra_copies(&self) -> usize {
        self.duplicates.values().map(|n| n - 1).sum()
    }
}

/// Checks `records` (read from the routed topics) against `inputs`.
pub fn check(records: &[Read], inputs: &Inputs) -> Check {
    let mut result = Check::default();
    let mut copies: HashMap<u64, usize> = HashMap::new();
    for r in records {
        let Some(id) = r.id() else {
            result.unexpected.push(format!("{}: {}", r.topic, r.payload));
            continue;
        };
        let Some(want) = inputs.outputs.get(&id) else {
            result.unexpected.push(format!("{}: {}", r.topic, r.payload));
            continue;
        };
        *copies.entry(id).or_default() += 1;
        let (src, seq) = src_seq(id);
        let trace = format!("t-{src}-{seq}");
        if r.topic != want.topic
            || r.payload != want.payload
            || r.key != want.key
            || r.header("trace") != Some(trace.as_str())
        {
            result.wrong.push(format!(
                "id {id}: read {} {} key {} trace {:?}; want {} {} key {} trace {trace}",
                r.topic,
                r.payload,
                r.key,
                r.header("trace"),
                want.topic,
                want.payload,
                want.key
            ));
        }
    }
    result.missing = inputs.outputs.keys().filter(|id| !copies.contains_key(id)).copied().collect();
    result.duplicates = copies.into_iter().filter(|(_, n)| *n > 1).collect();

    let mut by_partition: BTreeMap<(&str, i32), Vec<&Read>> = BTreeMap::new();
    let mut key_partitions: BTreeMap<(&str, &str), BTreeSet<i32>> = BTreeMap::new();
    for r in records {
        by_partition.entry((r.topic.as_str(), r.partition)).or_default().push(r);
        key_partitions.entry((r.topic.as_str(), r.key.as_str())).or_default().insert(r.partition);
    }
    let mut seen = HashSet::new();
    for ((topic, partition), mut records) in by_partition {
        records.sort_by_key(|r| r.offset);
        let mut last: HashMap<i32, u64> = HashMap::new();
        for id in records.iter().filter_map(|r| r.id()) {
            if !seen.insert(id) {
                continue; // a replayed duplicate may repeat an older one
            }
            let (src, seq) = src_seq(id);
            if let Some(&previous) = last.get(&src)
                && previous >= seq
            {
                result.order_violations.push(format!(
                    "{topic}[{partition}]: source partition {src} seq {seq} after {previous}"
                ));
            }
            last.insert(src, seq);
        }
    }
    result.split_keys = key_partitions
        .into_iter()
        .filter(|(_, partitions)| partitions.len() > 1)
        .map(|((topic, key), partitions)| format!("{topic} key {key}: partitions {partitions:?}"))
        .collect();
    result
}

/// The first few of a list, for assertion messages.
pub fn sample<T: std::fmt::Debug>(list: &[T]) -> String {
    format!("{} in all: {:?}", list.len(), &list[..list.len().min(10)])
}
