//! Off the data path: cluster metadata, missing topics at start, `corestream check`.
//!
//! A topic missing at start is waited for with the retry policy (the same delay
//! table as every other retry: exponential 2s ×1.5 capped at 120s by default, until
//! `max_attempts` or `max_total`), or created at once when the config says
//! `create_topics = true`, with the partitions and replication factor from the
//! config or `CORESTREAM_TOPIC_PARTITIONS` / `CORESTREAM_TOPIC_REPLICATION`.
//! Metadata is read by a consumer-type client, which never asks the broker to
//! auto-create the topic it asks about.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaClientSpec, client_config};
use crate::retry::{RetryPolicy, RetryState, SplitMix64};

/// How long one metadata request may take before the broker counts as unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a topic creation request may take.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// One broker of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// One topic: its partitions and their leaders, or why it is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Leader broker id per partition, in partition order.
    pub leaders: Vec<i32>,
    /// The broker's error for this topic (missing, not authorized, ...).
    pub error: Option<String>,
}

impl TopicInfo {
    pub fn exists(&self) -> bool {
        self.error.is_none() && !self.leaders.is_empty()
    }
}

/// A consumer group's position on one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPosition {
    pub group: String,
    pub topic: String,
    /// Per partition: the committed offset (`None`: nothing committed) and the end
    /// offset (high watermark).
    pub partitions: Vec<(Option<i64>, i64)>,
}

impl GroupPosition {
    /// Messages not yet committed by the group (uncommitted partitions count from 0).
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(|(committed, end)| end - committed.unwrap_or(0).min(*end)).sum()
    }
}

/// What `corestream check` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    pub brokers: Vec<BrokerInfo>,
    /// The topics asked about, in the order asked.
    pub topics: Vec<TopicInfo>,
    /// Topics in the cluster (all of them, for the count).
    pub cluster_topics: usize,
    /// The source's group on each of its existing topics, when asked.
    pub groups: Vec<GroupPosition>,
}

impl std::fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  brokers ({}):", self.brokers.len())?;
        for b in &self.brokers {
            writeln!(f, "    {} at {}:{}", b.id, b.host, b.port)?;
        }
        writeln!(f, "  topics in the cluster: {}", self.cluster_topics)?;
        for t in &self.topics {
            match &t.error {
                None => writeln!(
                    f,
                    "    {}: {} partitions (leaders {:?})",
                    t.name,
                    t.leaders.len(),
                    t.leaders
                )?,
                Some(e) => writeln!(f, "    {}: NOT USABLE: {e}", t.name)?,
            }
        }
        for g in &self.groups {
            let committed: i64 = g.partitions.iter().map(|(c, _)| c.unwrap_or(0)).sum();
            let end: i64 = g.partitions.iter().map(|(_, e)| e).sum();
            writeln!(
                f,
                "  group {:?} on {}: lag {} (committed {committed}, end {end})",
                g.group,
                g.topic,
                g.lag()
            )?;
        }
        Ok(())
    }
}

/// A consumer-type client without a group: reads metadata, never auto-creates.
fn metadata_client(spec: &KafkaClientSpec) -> Result<BaseConsumer, String> {
    let mut config = client_config(spec);
    config.set("allow.auto.create.topics", "false");
    config.create().map_err(|e| format!("cannot create a Kafka client for {}: {e}", spec.brokers))
}

fn unreachable(spec: &KafkaClientSpec, timeout: Duration, error: &KafkaError) -> String {
    format!(
        "cannot reach the Kafka brokers {} within {:?}: {error} (are the brokers up, the addresses \
         right and the security properties set?)",
        spec.brokers, timeout
    )
}

/// Connects and reports the brokers, every topic in `topics` (existence, partitions,
/// leaders), the number of topics in the cluster and, given a `group`, its committed
/// offsets and lag on each existing topic. Bounded by `timeout` per request.
pub fn check(
    spec: &KafkaClientSpec,
    topics: &[&str],
    group: Option<&str>,
    timeout: Duration,
) -> Result<ClusterReport, String> {
    let client = metadata_client(spec)?;
    let metadata =
        client.fetch_metadata(None, timeout).map_err(|e| unreachable(spec, timeout, &e))?;
    let brokers = metadata
        .brokers()
        .iter()
        .map(|b| BrokerInfo { id: b.id(), host: b.host().to_string(), port: b.port() })
        .collect();
    let mut infos = Vec::with_capacity(topics.len());
    for name in topics {
        let found = metadata.topics().iter().find(|t| t.name() == *name);
        infos.push(match found {
            Some(t) => TopicInfo {
                name: name.to_string(),
                leaders: t.partitions().iter().map(|p| p.leader()).collect(),
                error: t.error().map(|e| RDKafkaErrorCode::from(e).to_string()),
            },
            None => TopicInfo {
                name: name.to_string(),
                leaders: Vec::new(),
                error: Some("topic does not exist".to_string()),
            },
        });
    }
    let mut groups = Vec::new();
    if let Some(group) = group {
        for topic in infos.iter().filter(|t| t.exists()) {
            groups.push(group_position(spec, group, &topic.name, topic.leaders.len(), timeout)?);
        }
    }
    Ok(ClusterReport { brokers, topics: infos, cluster_topics: metadata.topics().len(), groups })
}

/// `group`'s committed offsets and the end offsets of `topic`'s partitions.
pub fn group_position(
    spec: &KafkaClientSpec,
    group: &str,
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> Result<GroupPosition, String> {
    let mut config = client_config(spec);
    config.set("group.id", group).set("enable.auto.commit", "false");
    let client: BaseConsumer =
        config.create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p as i32);
    }
    let committed = client
        .committed_offsets(list, timeout)
        .map_err(|e| format!("cannot read group {group:?}'s offsets on {topic:?}: {e}"))?;
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions as i32 {
        let offset = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let (_, end) = client
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| format!("cannot read the end offset of {topic:?} [{p}]: {e}"))?;
        out.push((offset, end));
    }
    Ok(GroupPosition { group: group.to_string(), topic: topic.to_string(), partitions: out })
}

/// The partitions of `topic`, `None` when it does not exist.
pub fn partitions(
    spec: &KafkaClientSpec,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, String> {
    let client = metadata_client(spec)?;
    partitions_with(&client, spec, topic, timeout)
}

fn partitions_with(
    client: &BaseConsumer,
    spec: &KafkaClientSpec,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, String> {
    let metadata =
        client.fetch_metadata(Some(topic), timeout).map_err(|e| unreachable(spec, timeout, &e))?;
    let Some(info) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    match info.error().map(RDKafkaErrorCode::from) {
        None if !info.partitions().is_empty() => Ok(Some(info.partitions().len())),
        None
        | Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        | Some(RDKafkaErrorCode::UnknownTopic) => Ok(None),
        Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(None),
        Some(code) => Err(format!("topic {topic:?} is not usable: {code}")),
    }
}

/// Creates `topic`; an already existing topic counts as success.
pub fn create_topic(
    spec: &KafkaClientSpec,
    topic: &str,
    partitions: u32,
    replication: u16,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(spec)
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client for {}: {e}", spec.brokers))?;
    let new = NewTopic::new(
        topic,
        i32::try_from(partitions).unwrap_or(i32::MAX),
        TopicReplication::Fixed(i32::from(replication)),
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(CREATE_TIMEOUT))
        .request_timeout(Some(CREATE_TIMEOUT));
    let results = block_on(admin.create_topics([&new], &options))
        .map_err(|e| format!("cannot create topic {topic:?}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!(
                    "cannot create topic {name:?} ({partitions} partitions, replication {replication}): {code}"
                ));
            }
        }
    }
    Ok(())
}

/// What to do about a topic missing at start.
#[derive(Clone, Copy, Debug)]
pub struct MissingTopic<'a> {
    /// Create it with (partitions, replication); `None`: wait for it.
    pub create: Option<(u32, u16)>,
    /// The wait's delays and budget.
    pub policy: &'a RetryPolicy,
}

/// Makes sure every topic in `topics` exists: creates the missing ones when
/// configured, else waits for them by the retry policy. The error names the topic,
/// the attempts and the time waited.
pub fn ensure_topics(
    spec: &KafkaClientSpec,
    topics: &[&str],
    missing: MissingTopic<'_>,
) -> Result<(), String> {
    let client = metadata_client(spec)?;
    for topic in topics {
        let started = Instant::now();
        let mut state = RetryState::new(started);
        let mut rng = SplitMix64::new(0x006b_6166_6b61);
        loop {
            if partitions_with(&client, spec, topic, METADATA_TIMEOUT)?.is_some() {
                break;
            }
            if let Some((partitions, replication)) = missing.create {
                eprintln!(
                    "corestream: topic {topic:?} is missing: creating it ({partitions} partitions, replication {replication})"
                );
                create_topic(spec, topic, partitions, replication)?;
                wait_until_visible(&client, spec, topic)?;
                break;
            }
            let Some(delay) = state.next(missing.policy, Instant::now(), &mut rng) else {
                return Err(format!(
                    "topic {topic:?} does not exist on {} (waited {:?} over {} attempts by the retry policy); \
                     create it, or set create_topics = true",
                    spec.brokers,
                    started.elapsed(),
                    state.attempts()
                ));
            };
            eprintln!(
                "corestream: topic {topic:?} does not exist yet; checking again in {delay:?}"
            );
            std::thread::sleep(delay);
        }
    }
    Ok(())
}

/// Most metadata checks after a creation before giving up (the broker propagates
/// a new topic's metadata within a few hundred ms).
const CREATED_VISIBLE_CHECKS_MAX: u32 = 50;
const CREATED_VISIBLE_STEP: Duration = Duration::from_millis(100);

fn wait_until_visible(
    client: &BaseConsumer,
    spec: &KafkaClientSpec,
    topic: &str,
) -> Result<(), String> {
    for _ in 0..CREATED_VISIBLE_CHECKS_MAX {
        if partitions_with(client, spec, topic, METADATA_TIMEOUT)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(CREATED_VISIBLE_STEP);
    }
    Err(format!("topic {topic:?} was created but its metadata did not appear"))
}

/// Runs a future to completion on this thread (the admin client's futures are
/// completed by its own background thread; no runtime is needed).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
