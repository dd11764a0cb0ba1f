//! The Kafka sections of the pipeline file: `[source] type = "kafka"`,
//! `[sink] type = "kafka"` and `[dead_letter] type = "kafka"`.
//!
//! ```toml
//! [source]
//! type = "kafka"
//! brokers = "localhost:9092"
//! group = "orders-enricher"
//! topics = ["orders"]
//! commit_interval = "100ms"           # commit what settled at least this often
//! commit_every_messages = 2000        # ... or once this many settled messages wait
//! queued_max_messages_kbytes = 16384  # librdkafka prefetch bound (memory)
//! create_topics = false               # missing topic: wait by the retry policy
//! properties = { "security.protocol" = "sasl_ssl", "session.timeout.ms" = 10000 }
//!
//! [sink]
//! type = "kafka"
//! brokers = "localhost:9092"
//! topic = "orders-enriched"           # default topic (outputs without a routed topic)
//! linger = "5ms"                      # -> linger.ms
//! batch_bytes = "1MiB"                # -> batch.size
//! compression = "lz4"                 # -> compression.type (none, gzip, snappy, lz4, zstd)
//! dead_letter_topic = "orders-dlq"    # deliveries that failed for good
//! create_topics = true                # create missing topics ...
//! topic_partitions = 6                # ... with these (else CORESTREAM_TOPIC_*)
//! topic_replication = 3
//!
//! [dead_letter]
//! type = "kafka"
//! brokers = "localhost:9092"
//! topic = "pipeline-dlq"
//! ```
//!
//! `properties` go to librdkafka verbatim (numbers and booleans are accepted and
//! passed as text). With the `kafka` feature every property is checked offline by
//! librdkafka itself, so `corestream validate` catches a misspelt or invalid one
//! and points at it. Properties corestream manages itself are refused with the key
//! to use instead. Without the `kafka` feature, a kafka type is a config error.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::{Diagnostic, RawDeadLetter, RawSink, RawSource, required, span_of};
use crate::kafka::spec::*;
use crate::retry::env::{TOPIC_PARTITIONS_MAX, TOPIC_REPLICATION_MAX};

/// A librdkafka property value: text, or a number or boolean written as TOML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyValue(pub String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = PropertyValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a property value: a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// `properties = { ... }` in file order, each value with its position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PropertyTable(pub Vec<(String, Spanned<PropertyValue>)>);

impl<'de> Deserialize<'de> for PropertyTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = PropertyTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of librdkafka properties, e.g. { \"linger.ms\" = 5 }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PropertyTable, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Spanned<PropertyValue>>()? {
                    entries.push((key, value));
                }
                Ok(PropertyTable(entries))
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

/// Properties corestream sets itself, and the key to use instead.
const MANAGED_SOURCE: [(&str, &str); 5] = [
    ("bootstrap.servers", "brokers"),
    ("group.id", "group"),
    (
        "enable.auto.commit",
        "commit_interval / commit_every_messages (corestream commits acknowledged offsets itself)",
    ),
    ("enable.auto.offset.store", "commit_interval (corestream stores acknowledged offsets itself)"),
    ("queued.max.messages.kbytes", "queued_max_messages_kbytes"),
];
const MANAGED_SINK: [(&str, &str); 4] = [
    ("bootstrap.servers", "brokers"),
    ("linger.ms", "linger"),
    ("batch.size", "batch_bytes"),
    ("compression.type", "compression"),
];
const MANAGED_DEAD_LETTER: [(&str, &str); 1] = [("bootstrap.servers", "brokers")];

/// Compression codecs built into this librdkafka (the `kafka` feature enables
/// rdkafka's `zstd`; gzip, snappy and lz4 are always there).
const COMPRESSION_CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// The error for any kafka type in a build without the feature.
pub(super) fn unavailable(kind: &Spanned<String>) -> Diagnostic {
    Diagnostic::new(
        Some(kind.span()),
        "type \"kafka\" is not available: corestream was built without Kafka support",
    )
    .hint("rebuild with the `kafka` feature (on by default): cargo build --features kafka")
}

pub(super) fn source_spec(s: &RawSource) -> Result<KafkaSourceSpec, Diagnostic> {
    if !cfg!(feature = "kafka") {
        return Err(unavailable(&s.kind));
    }
    let brokers = brokers(&s.brokers, &s.kind)?;
    let group = required(&s.group, "group", &s.kind, "\"my-pipeline\"")?;
    if group.get_ref().trim().is_empty() {
        return Err(Diagnostic::new(Some(group.span()), "group must not be empty")
            .hint("name the consumer group, e.g. group = \"orders-enricher\""));
    }
    let topics = required(&s.topics, "topics", &s.kind, "[\"orders\"]")?;
    if topics.get_ref().is_empty() {
        return Err(Diagnostic::new(Some(topics.span()), "topics must name at least one topic")
            .hint("topics = [\"orders\"]"));
    }
    for topic in topics.get_ref() {
        topic_name(topic)?;
    }
    let commit_every_messages = match &s.commit_every_messages {
        Some(n) if *n.get_ref() == 0 => {
            return Err(Diagnostic::new(
                Some(n.span()),
                "commit_every_messages must be at least 1",
            )
            .hint(format!("the default is {COMMIT_EVERY_MESSAGES_DEFAULT}")));
        }
        Some(n) => *n.get_ref(),
        None => COMMIT_EVERY_MESSAGES_DEFAULT,
    };
    let commit_interval = match &s.commit_interval {
        Some(d) if d.get_ref().0.is_zero() => {
            return Err(Diagnostic::new(Some(d.span()), "commit_interval must be longer than 0")
                .hint("try \"1s\""));
        }
        Some(d) => d.get_ref().0,
        None => COMMIT_INTERVAL_DEFAULT,
    };
    let queued = match &s.queued_max_messages_kbytes {
        Some(q)
            if !(QUEUED_MAX_MESSAGES_KBYTES_MIN..=QUEUED_MAX_MESSAGES_KBYTES_MAX)
                .contains(q.get_ref()) =>
        {
            return Err(Diagnostic::new(
                Some(q.span()),
                format!(
                    "queued_max_messages_kbytes must be in {QUEUED_MAX_MESSAGES_KBYTES_MIN}..={QUEUED_MAX_MESSAGES_KBYTES_MAX}"
                ),
            )
            .hint(format!("the default is {QUEUED_MAX_MESSAGES_KBYTES_DEFAULT} (16 MiB)")));
        }
        Some(q) => *q.get_ref(),
        None => QUEUED_MAX_MESSAGES_KBYTES_DEFAULT,
    };
    let properties = properties(&s.properties, &MANAGED_SOURCE)?;
    Ok(KafkaSourceSpec {
        client: KafkaClientSpec { brokers, properties },
        group: group.get_ref().clone(),
        topics: topics.get_ref().iter().map(|t| t.get_ref().clone()).collect(),
        commit_interval,
        commit_every_messages,
        queued_max_messages_kbytes: queued,
        topic_creation: topic_creation(
            &s.create_topics,
            &s.topic_partitions,
            &s.topic_replication,
        )?,
    })
}

pub(super) fn sink_spec(s: &RawSink) -> Result<KafkaSinkSpec, Diagnostic> {
    if !cfg!(feature = "kafka") {
        return Err(unavailable(&s.kind));
    }
    let brokers = brokers(&s.brokers, &s.kind)?;
    let topic = required(&s.topic, "topic", &s.kind, "\"orders-out\"")?;
    topic_name(topic)?;
    if let Some(dlq) = &s.dead_letter_topic {
        topic_name(dlq)?;
    }
    let mut properties = properties(&s.properties, &MANAGED_SINK)?;
    if let Some(linger) = &s.linger {
        let ms = linger.get_ref().0.as_millis();
        if ms > 900_000 {
            return Err(Diagnostic::new(Some(linger.span()), "linger must be at most 15m")
                .hint("librdkafka's linger.ms ranges 0..=900000; 5ms is its default"));
        }
        properties.insert(0, ("linger.ms".to_string(), ms.to_string()));
    }
    if let Some(batch) = &s.batch_bytes {
        let bytes = batch.get_ref().0;
        if bytes == 0 || bytes > i32::MAX as u64 {
            return Err(Diagnostic::new(
                Some(batch.span()),
                "batch_bytes must be between 1 byte and 2GiB",
            )
            .hint("librdkafka's default batch.size is 1000000 bytes"));
        }
        properties.insert(0, ("batch.size".to_string(), bytes.to_string()));
    }
    if let Some(codec) = &s.compression {
        if !COMPRESSION_CODECS.contains(&codec.get_ref().as_str()) {
            return Err(Diagnostic::new(
                Some(codec.span()),
                format!("unknown compression \"{}\"", codec.get_ref()),
            )
            .hint(format!("one of: {}", COMPRESSION_CODECS.join(", "))));
        }
        properties.insert(0, ("compression.type".to_string(), codec.get_ref().clone()));
    }
    Ok(KafkaSinkSpec {
        client: KafkaClientSpec { brokers, properties },
        topic: topic.get_ref().clone(),
        dead_letter_topic: s.dead_letter_topic.as_ref().map(|t| t.get_ref().clone()),
        topic_creation: topic_creation(
            &s.create_topics,
            &s.topic_partitions,
            &s.topic_replication,
        )?,
    })
}

pub(super) fn dead_letter_spec(d: &RawDeadLetter) -> Result<KafkaDeadLetterSpec, Diagnostic> {
    if !cfg!(feature = "kafka") {
        return Err(unavailable(&d.kind));
    }
    let brokers = brokers(&d.brokers, &d.kind)?;
    let topic = required(&d.topic, "topic", &d.kind, "\"pipeline-dlq\"")?;
    topic_name(topic)?;
    let properties = properties(&d.properties, &MANAGED_DEAD_LETTER)?;
    Ok(KafkaDeadLetterSpec {
        client: KafkaClientSpec { brokers, properties },
        topic: topic.get_ref().clone(),
    })
}

fn brokers(value: &Option<Spanned<String>>, kind: &Spanned<String>) -> Result<String, Diagnostic> {
    let brokers = required(value, "brokers", kind, "\"localhost:9092\"")?;
    let text = brokers.get_ref().trim();
    if text.is_empty() || text.split(',').any(|b| b.trim().is_empty()) {
        return Err(Diagnostic::new(Some(brokers.span()), "brokers must list host:port entries")
            .hint("brokers = \"kafka-1:9092,kafka-2:9092\""));
    }
    Ok(text.to_string())
}

/// Checks a literal topic name against Kafka's rules.
fn topic_name(topic: &Spanned<String>) -> Result<(), Diagnostic> {
    let name = topic.get_ref();
    if let Some(reason) = topic_name_problem(name) {
        let mut diagnostic =
            Diagnostic::new(Some(topic.span()), format!("invalid topic name {name:?}: {reason}"));
        diagnostic = if name.contains('{') {
            diagnostic.hint(
                "a per-message topic comes from a route step's template; this is the default topic",
            )
        } else {
            diagnostic.hint("use 1 to 249 of the characters a-z A-Z 0-9 . _ -")
        };
        return Err(diagnostic);
    }
    Ok(())
}

fn topic_creation(
    create: &Option<Spanned<bool>>,
    partitions: &Option<Spanned<u64>>,
    replication: &Option<Spanned<u64>>,
) -> Result<TopicCreation, Diagnostic> {
    let partitions = match partitions {
        Some(p) if *p.get_ref() == 0 || *p.get_ref() > u64::from(TOPIC_PARTITIONS_MAX) => {
            return Err(Diagnostic::new(
                Some(p.span()),
                format!("topic_partitions must be in 1..={TOPIC_PARTITIONS_MAX}"),
            ));
        }
        Some(p) => Some(*p.get_ref() as u32),
        None => None,
    };
    let replication = match replication {
        Some(r) if *r.get_ref() == 0 || *r.get_ref() > u64::from(TOPIC_REPLICATION_MAX) => {
            return Err(Diagnostic::new(
                Some(r.span()),
                format!("topic_replication must be in 1..={TOPIC_REPLICATION_MAX}"),
            ));
        }
        Some(r) => Some(*r.get_ref() as u16),
        None => None,
    };
    Ok(TopicCreation {
        create: create.as_ref().is_some_and(|c| *c.get_ref()),
        partitions,
        replication,
    })
}

fn properties(
    table: &Option<Spanned<PropertyTable>>,
    managed: &[(&str, &str)],
) -> Result<Vec<(String, String)>, Diagnostic> {
    let Some(table) = table else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(table.get_ref().0.len());
    for (key, value) in &table.get_ref().0 {
        if let Some((_, instead)) = managed.iter().find(|(name, _)| name == key) {
            return Err(Diagnostic::new(
                Some(value.span()),
                format!("property \"{key}\" is managed by corestream"),
            )
            .hint(format!("use `{instead}` instead")));
        }
        check_property(key, &value.get_ref().0).map_err(|reason| {
            let hint = if reason.contains("OpenSSL not available") {
                "this build has no TLS: rebuild with `--features kafka-tls` (builds OpenSSL \
                 from source)"
            } else {
                "properties go to librdkafka verbatim; see its CONFIGURATION.md"
            };
            Diagnostic::new(Some(value.span()), format!("property \"{key}\": {reason}")).hint(hint)
        })?;
        out.push((key.clone(), value.get_ref().0.clone()));
    }
    Ok(out)
}

/// librdkafka's own offline check of one property.
#[cfg(feature = "kafka")]
fn check_property(key: &str, value: &str) -> Result<(), String> {
    crate::kafka::native::NativeConf::new().set(key, value)
}

#[cfg(not(feature = "kafka"))]
fn check_property(_key: &str, _value: &str) -> Result<(), String> {
    Ok(())
}

/// Fields of the Kafka source (for `only_fields`).
pub(super) const SOURCE_FIELDS: [&str; 10] = [
    "brokers",
    "group",
    "topics",
    "properties",
    "commit_interval",
    "commit_every_messages",
    "queued_max_messages_kbytes",
    "create_topics",
    "topic_partitions",
    "topic_replication",
];

/// Fields of the Kafka sink (for `only_fields`).
pub(super) const SINK_FIELDS: [&str; 10] = [
    "brokers",
    "topic",
    "properties",
    "dead_letter_topic",
    "linger",
    "batch_bytes",
    "compression",
    "create_topics",
    "topic_partitions",
    "topic_replication",
];

/// The span list of the Kafka fields of a `[source]`, for `only_fields`.
pub(super) fn source_set(s: &RawSource) -> [(&'static str, Option<std::ops::Range<usize>>); 10] {
    [
        ("brokers", s.brokers.as_ref().and_then(span_of)),
        ("group", s.group.as_ref().and_then(span_of)),
        ("topics", s.topics.as_ref().and_then(span_of)),
        ("properties", s.properties.as_ref().and_then(span_of)),
        ("commit_interval", s.commit_interval.as_ref().and_then(span_of)),
        ("commit_every_messages", s.commit_every_messages.as_ref().and_then(span_of)),
        ("queued_max_messages_kbytes", s.queued_max_messages_kbytes.as_ref().and_then(span_of)),
        ("create_topics", s.create_topics.as_ref().and_then(span_of)),
        ("topic_partitions", s.topic_partitions.as_ref().and_then(span_of)),
        ("topic_replication", s.topic_replication.as_ref().and_then(span_of)),
    ]
}

/// The span list of the Kafka fields of a `[sink]`, for `only_fields`.
/// (`linger` and `compression` are shared with the file sink and listed there.)
pub(super) fn sink_set(s: &RawSink) -> [(&'static str, Option<std::ops::Range<usize>>); 8] {
    [
        ("brokers", s.brokers.as_ref().and_then(span_of)),
        ("topic", s.topic.as_ref().and_then(span_of)),
        ("properties", s.properties.as_ref().and_then(span_of)),
        ("dead_letter_topic", s.dead_letter_topic.as_ref().and_then(span_of)),
        ("batch_bytes", s.batch_bytes.as_ref().and_then(span_of)),
        ("create_topics", s.create_topics.as_ref().and_then(span_of)),
        ("topic_partitions", s.topic_partitions.as_ref().and_then(span_of)),
        ("topic_replication", s.topic_replication.as_ref().and_then(span_of)),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::PipelineConfig;
    #[cfg(feature = "kafka")]
    use super::super::{SinkSpec, SourceSpec};

    fn parse(text: &str) -> Result<PipelineConfig, String> {
        PipelineConfig::parse(Path::new("/etc/cs/k.toml"), text, |_| None)
            .map_err(|e| e.to_string())
    }

    const SINK: &str = "[sink]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"out\"\n";

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_source_and_sink_take_defaults_and_properties() {
        let text = format!(
            "[source]\ntype = \"kafka\"\nbrokers = \"a:9092,b:9092\"\ngroup = \"g\"\ntopics = [\"in\"]\n\
             properties = {{ \"session.timeout.ms\" = 10000, \"auto.offset.reset\" = \"latest\" }}\n\
             {SINK}linger = \"20ms\"\ncompression = \"lz4\"\ndead_letter_topic = \"dlq\"\n"
        );
        let config = parse(&text).unwrap();
        let SourceSpec::Kafka(source) = &config.source else { panic!("{:?}", config.source) };
        assert_eq!(source.client.brokers, "a:9092,b:9092");
        assert_eq!(source.commit_interval, super::COMMIT_INTERVAL_DEFAULT);
        assert_eq!(source.commit_every_messages, super::COMMIT_EVERY_MESSAGES_DEFAULT);
        assert_eq!(
            source.client.properties,
            vec![
                ("session.timeout.ms".to_string(), "10000".to_string()),
                ("auto.offset.reset".to_string(), "latest".to_string())
            ]
        );
        let SinkSpec::Kafka(sink) = &config.sink else { panic!("{:?}", config.sink) };
        assert!(sink.client.properties.contains(&("linger.ms".to_string(), "20".to_string())));
        assert!(
            sink.client.properties.contains(&("compression.type".to_string(), "lz4".to_string()))
        );
        assert_eq!(sink.dead_letter_topic.as_deref(), Some("dlq"));
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_dead_letter_and_secret_properties() {
        use super::super::DeadLetterSpec;
        let text = format!(
            "[source]\ntype = \"generator\"\n{SINK}properties = {{ \"sasl.password\" = \"hunter2\" }}\n\
             [dead_letter]\ntype = \"kafka\"\nbrokers = \"d:9092\"\ntopic = \"dlq\"\n"
        );
        let config = parse(&text).unwrap();
        let Some(DeadLetterSpec::Kafka(d)) = &config.dead_letter else {
            panic!("{:?}", config.dead_letter)
        };
        assert_eq!((d.client.brokers.as_str(), d.topic.as_str()), ("d:9092", "dlq"));
        let shown = format!("{:?}", config.sink);
        assert!(shown.contains("sasl.password") && !shown.contains("hunter2"), "{shown}");
        let e = parse(&format!("{text}path = \"x\"\n")).unwrap_err();
        assert!(e.contains("`path` does not apply to type \"kafka\""), "{e}");
    }

    /// TLS and SASL settings reach librdkafka; without the `kafka-tls` feature a TLS
    /// protocol is refused offline, naming the feature that enables it.
    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_security_settings_and_codecs() {
        let source =
            "[source]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ngroup = \"g\"\ntopics = [\"in\"]\n";
        // SASL PLAIN over plaintext is built into librdkafka in every build.
        let plain = format!(
            "{source}properties = {{ \"security.protocol\" = \"sasl_plaintext\", \
             \"sasl.mechanism\" = \"PLAIN\", \"sasl.username\" = \"u\", \
             \"sasl.password\" = \"p\" }}\n{SINK}compression = \"zstd\"\n"
        );
        let config = parse(&plain).unwrap();
        let SinkSpec::Kafka(sink) = &config.sink else { panic!("{:?}", config.sink) };
        assert!(
            sink.client.properties.contains(&("compression.type".to_string(), "zstd".to_string()))
        );
        let tls = format!(
            "{source}properties = {{ \"security.protocol\" = \"sasl_ssl\", \
             \"sasl.mechanism\" = \"SCRAM-SHA-512\" }}\n{SINK}"
        );
        let result = parse(&tls);
        if cfg!(feature = "kafka-tls") {
            let config = result.unwrap();
            let SourceSpec::Kafka(source) = &config.source else { panic!("{:?}", config.source) };
            assert!(
                source
                    .client
                    .properties
                    .contains(&("security.protocol".to_string(), "sasl_ssl".to_string()))
            );
        } else {
            let e = result.unwrap_err();
            assert!(e.contains("property \"security.protocol\"") && e.contains("k.toml:6:"), "{e}");
            assert!(e.contains("--features kafka-tls"), "{e}");
        }
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_mistakes_point_at_the_value() {
        let source =
            "[source]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ngroup = \"g\"\ntopics = [\"in\"]\n";
        let e =
            parse(&format!("{source}properties = {{ \"linger.mss\" = 5 }}\n{SINK}")).unwrap_err();
        assert!(
            e.contains("property \"linger.mss\"") && e.contains("No such configuration property"),
            "{e}"
        );
        assert!(e.contains("k.toml:6:"), "{e}");
        let e =
            parse(&format!("{source}properties = {{ \"group.id\" = \"x\" }}\n{SINK}")).unwrap_err();
        assert!(e.contains("managed by corestream") && e.contains("use `group` instead"), "{e}");
        let e = parse(&format!("{source}{SINK}compression = \"brotli\"\n")).unwrap_err();
        assert!(e.contains("unknown compression \"brotli\""), "{e}");
        let e = parse(&format!(
            "[source]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ngroup = \"g\"\ntopics = [\"bad topic\"]\n{SINK}"
        ))
        .unwrap_err();
        assert!(e.contains("invalid topic name \"bad topic\""), "{e}");
        assert!(e.contains("k.toml:5:11"), "{e}");
        let e = parse(&format!(
            "[source]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"in\"]\n{SINK}"
        ))
        .unwrap_err();
        assert!(e.contains("type \"kafka\" needs `group`"), "{e}");
        let e = parse(&format!("{source}path = \"x\"\n{SINK}")).unwrap_err();
        assert!(e.contains("`path` does not apply to type \"kafka\""), "{e}");
        let e =
            parse(&format!("[source]\ntype = \"generator\"\ngroup = \"g\"\n{SINK}")).unwrap_err();
        assert!(e.contains("`group` does not apply to type \"generator\""), "{e}");
        let e = parse(&format!("{source}commit_every_messages = 0\n{SINK}")).unwrap_err();
        assert!(e.contains("commit_every_messages must be at least 1"), "{e}");
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn kafka_without_the_feature_is_a_clear_error() {
        let e = parse(&format!("[source]\ntype = \"generator\"\n{SINK}")).unwrap_err();
        assert!(e.contains("built without Kafka support"), "{e}");
        assert!(e.contains("k.toml:4:8"), "{e}");
    }
}
