//! Kafka: [`spec`] (settings and topic-name rules, always built) and, through
//! librdkafka (feature `kafka`), what the Kafka source
//! ([`crate::source::kafka`]), the Kafka sink and dead-letter topic
//! ([`crate::sink::kafka`]) share.
//!
//! - [`native`]: owners of librdkafka's C objects; the data path calls librdkafka
//!   through these, so it allocates nothing on the Rust heap per message.
//! - [`admin`]: off the data path: metadata, waiting for or creating missing topics,
//!   and the cluster report of `corestream check`.
//!
//! Client settings come from [`KafkaClientSpec`]: corestream's defaults first, then
//! the user's `properties` verbatim (they win), then the few values corestream
//! manages itself (brokers, group, offset handling), which the config refuses in
//! `properties`.

#[cfg(feature = "kafka")]
pub mod admin;
#[cfg(feature = "kafka")]
pub mod native;
pub mod spec;

#[cfg(feature = "kafka")]
use native::NativeConf;

pub use spec::{
    KafkaClientSpec, KafkaDeadLetterSpec, KafkaSinkSpec, KafkaSourceSpec, TopicCreation,
};

/// The `client.id` corestream's clients announce unless `properties` set one.
pub const CLIENT_ID: &str = "corestream";

#[cfg(feature = "kafka")]
/// Builds a native configuration: `defaults`, then the user's properties, then
/// `managed`. Each error names the property and carries librdkafka's explanation.
pub fn native_conf(
    spec: &KafkaClientSpec,
    defaults: &[(&str, &str)],
    managed: &[(&str, &str)],
) -> Result<NativeConf, String> {
    let mut conf = NativeConf::new();
    let mut set = |key: &str, value: &str| {
        conf.set(key, value)
            .map_err(|e| format!("librdkafka property \"{key}\" = \"{value}\": {e}"))
    };
    set("client.id", CLIENT_ID)?;
    for (key, value) in defaults {
        set(key, value)?;
    }
    for (key, value) in &spec.properties {
        set(key, value)?;
    }
    set("bootstrap.servers", &spec.brokers)?;
    for (key, value) in managed {
        set(key, value)?;
    }
    Ok(conf)
}

#[cfg(feature = "kafka")]
/// The same settings as an rdkafka `ClientConfig`, for the off-path clients
/// (admin, metadata).
pub fn client_config(spec: &KafkaClientSpec) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config.set("client.id", CLIENT_ID);
    for (key, value) in &spec.properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &spec.brokers);
    config
}

#[cfg(feature = "kafka")]
/// Partitions and replication factor of a topic corestream creates, resolved from
/// the config, else the environment/defaults of the retry settings.
pub fn creation_numbers(
    creation: &TopicCreation,
    retry: &crate::retry::env::EffectiveRetry,
) -> (u32, u16) {
    (
        creation.partitions.unwrap_or(retry.topic_partitions.value),
        creation.replication.unwrap_or(retry.topic_replication.value),
    )
}
