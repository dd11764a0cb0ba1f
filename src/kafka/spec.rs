//! What a Kafka source, sink or dead-letter topic is configured with, and the rules
//! of topic names. Plain data, no librdkafka: built by `config::kafka` from the
//! pipeline file (or by hand by a library user), read by [`crate::source::kafka`]
//! and [`crate::sink::kafka`].

use std::time::Duration;

/// Default time between offset commits while messages flow. With
/// [`COMMIT_EVERY_MESSAGES_DEFAULT`] it bounds the replay window after a crash; see
/// the table in [`crate::source::kafka`].
pub const COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// Default count of settled, uncommitted messages that makes a commit due. Chosen
/// from `benches/kafka_replay.rs` (replay after kill -9: 100 000 / 1 s replayed
/// 26 % of the outputs, 2 000 / 100 ms at most 4.6 %) and `kafka_throughput` (no
/// measurable cost: one commit is out at a time); see benches/README.md, "Kafka".
pub const COMMIT_EVERY_MESSAGES_DEFAULT: u64 = 2_000;
/// Default bound of librdkafka's prefetch queue (`queued.max.messages.kbytes`):
/// 16 MiB per consumer instead of librdkafka's 64 MiB, so a large backlog cannot
/// inflate memory; fetches still overlap processing.
pub const QUEUED_MAX_MESSAGES_KBYTES_DEFAULT: u64 = 16 * 1024;
/// Smallest accepted prefetch bound: below one fetch the consumer starves.
pub const QUEUED_MAX_MESSAGES_KBYTES_MIN: u64 = 1024;
/// Largest accepted prefetch bound (librdkafka's own maximum, 2 GiB).
pub const QUEUED_MAX_MESSAGES_KBYTES_MAX: u64 = 2_097_151;

/// Brokers and librdkafka properties of one client. `Debug` (and so `validate`)
/// hides the values of secret properties.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaClientSpec {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Passed to librdkafka verbatim, after corestream's defaults (so they win).
    pub properties: Vec<(String, String)>,
}

/// Property names whose values are never printed.
const SECRET_MARKERS: [&str; 3] = ["password", "secret", "token"];

impl std::fmt::Debug for KafkaClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_MARKERS.iter().any(|m| k.to_ascii_lowercase().contains(m));
                (k.as_str(), if secret { "(hidden)" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaClientSpec")
            .field("brokers", &self.brokers)
            .field("properties", &properties)
            .finish()
    }
}

/// What to do when a topic is missing at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicCreation {
    /// Create it (else: wait for it by the retry policy, then fail).
    pub create: bool,
    /// Partitions of a created topic; `None`: `CORESTREAM_TOPIC_PARTITIONS` or the
    /// default (see `retry::env`).
    pub partitions: Option<u32>,
    /// Replication factor of a created topic; `None`: `CORESTREAM_TOPIC_REPLICATION`
    /// or the default.
    pub replication: Option<u16>,
}

/// `[source] type = "kafka"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSourceSpec {
    pub client: KafkaClientSpec,
    pub group: String,
    pub topics: Vec<String>,
    pub commit_interval: Duration,
    pub commit_every_messages: u64,
    pub queued_max_messages_kbytes: u64,
    pub topic_creation: TopicCreation,
}

/// `[sink] type = "kafka"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSinkSpec {
    pub client: KafkaClientSpec,
    /// Topic of outputs whose processor set none.
    pub topic: String,
    /// Where deliveries that failed for good go (same brokers and properties); else
    /// the pipeline's `[dead_letter]`.
    pub dead_letter_topic: Option<String>,
    pub topic_creation: TopicCreation,
}

/// `[dead_letter] type = "kafka"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaDeadLetterSpec {
    pub client: KafkaClientSpec,
    pub topic: String,
}

impl std::fmt::Display for KafkaClientSpec {
    /// Brokers and the properties set, secret values hidden (see `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "brokers {}", self.brokers)?;
        for (key, value) in &self.properties {
            let secret = SECRET_MARKERS.iter().any(|m| key.to_ascii_lowercase().contains(m));
            write!(f, ", {key}={}", if secret { "(hidden)" } else { value.as_str() })?;
        }
        Ok(())
    }
}

impl std::fmt::Display for KafkaSourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kafka topics {:?}, group {:?}, {}; commit every {} messages or {}, when idle, on \
             revoke and at shutdown; prefetch <= {} KiB; missing topic: {}",
            self.topics,
            self.group,
            self.client,
            self.commit_every_messages,
            crate::parse::duration::DisplayDuration(self.commit_interval),
            self.queued_max_messages_kbytes,
            self.topic_creation
        )
    }
}

impl std::fmt::Display for KafkaSinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kafka topic {:?} (default; route steps may set others), {}",
            self.topic, self.client
        )?;
        match &self.dead_letter_topic {
            Some(t) => write!(f, "; failed deliveries to topic {t:?}")?,
            None => write!(f, "; failed deliveries to [dead_letter]")?,
        }
        write!(f, "; missing topic: {}", self.topic_creation)
    }
}

impl std::fmt::Display for KafkaDeadLetterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka topic {:?}, {}", self.topic, self.client)
    }
}

impl std::fmt::Display for TopicCreation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.create {
            return f.write_str("wait by the retry policy");
        }
        f.write_str("create it (")?;
        match self.partitions {
            Some(p) => write!(f, "{p} partitions")?,
            None => f.write_str("partitions from CORESTREAM_TOPIC_PARTITIONS or default")?,
        }
        match self.replication {
            Some(r) => write!(f, ", replication {r})"),
            None => f.write_str(", replication from CORESTREAM_TOPIC_REPLICATION or default)"),
        }
    }
}

/// Why `name` is not a legal Kafka topic name, if it is not.
pub fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > crate::limits::TOPIC_NAME_BYTES_MAX {
        return Some("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Some("\".\" and \"..\" are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Some("only a-z A-Z 0-9 . _ - are allowed");
    }
    None
}
