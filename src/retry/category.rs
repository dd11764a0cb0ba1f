//! Error categories: what went wrong, decided once, driving the retry decision.
//!
//! A Kafka error is categorised from its rdkafka error code ([`categorize_kafka`],
//! feature `kafka`); any other error from its text ([`categorize_text`]), by an ASCII
//! case-insensitive substring match over a static pattern table that does not
//! allocate: one pass over the text, a first-byte index into the table, and the
//! highest-priority match wins. Each category has an [`Action`]; the defaults are in
//! [`ActionTable::default`] and the config file can override them.

/// Why a message or a sink write failed. The numbering is stable: counters are
/// indexed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCategory {
    /// The destination topic (or file) does not exist.
    TopicMissing = 0,
    /// Connection refused, reset, broker down, transport failure.
    Network = 1,
    /// Authentication or authorization refused.
    Auth = 2,
    /// A request or a sink write took longer than its timeout.
    Timeout = 3,
    /// The other side asks us to slow down: throttled, local queue full.
    Throttled = 4,
    /// The message is larger than a limit (ring record, broker message size).
    MessageTooLarge = 5,
    /// The payload could not be parsed or built (malformed JSON, missing field,
    /// wrong type, template field missing).
    Serialization = 6,
    /// The configuration is wrong (cannot be fixed by retrying).
    Configuration = 7,
    /// Anything else.
    Unknown = 8,
}

impl ErrorCategory {
    /// Number of categories; counter arrays are sized by it.
    pub const COUNT: usize = 9;

    /// All categories, in counter order.
    pub const ALL: [ErrorCategory; Self::COUNT] = [
        ErrorCategory::TopicMissing,
        ErrorCategory::Network,
        ErrorCategory::Auth,
        ErrorCategory::Timeout,
        ErrorCategory::Throttled,
        ErrorCategory::MessageTooLarge,
        ErrorCategory::Serialization,
        ErrorCategory::Configuration,
        ErrorCategory::Unknown,
    ];

    /// Stable snake_case name, used in metrics, dead-letter records and config keys.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCategory::TopicMissing => "topic_missing",
            ErrorCategory::Network => "network",
            ErrorCategory::Auth => "auth",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Throttled => "throttled",
            ErrorCategory::MessageTooLarge => "message_too_large",
            ErrorCategory::Serialization => "serialization",
            ErrorCategory::Configuration => "configuration",
            ErrorCategory::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do with a message whose delivery failed with a given category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Back off by the retry policy and try again; when the policy gives up, send the
    /// message to the dead-letter sink.
    Retry,
    /// Stop the pipeline with the error: retrying cannot help and dead-lettering
    /// every message would silently empty the stream (bad credentials, bad config).
    FailFast,
    /// Send this message to the dead-letter sink at once: the problem is the
    /// message itself (too large, malformed), and the next message may be fine.
    DeadLetter,
}

impl Action {
    /// The spelling used in configuration (`[retry.actions]`).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::FailFast => "fail_fast",
            Action::DeadLetter => "dead_letter",
        }
    }

    /// Parses `retry`, `fail_fast` or `dead_letter` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Action> {
        [Action::Retry, Action::FailFast, Action::DeadLetter]
            .into_iter()
            .find(|action| action.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The action per category: 9 bytes, copied into each worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionTable {
    actions: [Action; ErrorCategory::COUNT],
}

impl Default for ActionTable {
    /// Transient failures retry (topic missing: wait for it to be created; network,
    /// timeout, throttled, unknown); operator mistakes fail fast (auth,
    /// configuration); faults of the message itself dead-letter it (too large,
    /// serialization).
    fn default() -> Self {
        let mut actions = [Action::Retry; ErrorCategory::COUNT];
        actions[ErrorCategory::Auth as usize] = Action::FailFast;
        actions[ErrorCategory::Configuration as usize] = Action::FailFast;
        actions[ErrorCategory::MessageTooLarge as usize] = Action::DeadLetter;
        actions[ErrorCategory::Serialization as usize] = Action::DeadLetter;
        ActionTable { actions }
    }
}

impl ActionTable {
    #[inline]
    pub fn action(&self, category: ErrorCategory) -> Action {
        self.actions[category as usize]
    }

    pub fn set(&mut self, category: ErrorCategory, action: Action) {
        self.actions[category as usize] = action;
    }
}

/// Text patterns, lowercase ASCII, in priority order: when several match, the one
/// listed first wins. Specific categories come before broad ones, so "connection timed
/// out" is a timeout and "unknown topic ... broker" a missing topic, not network.
const PATTERNS: [(&str, ErrorCategory); PATTERNS_LEN] = {
    use ErrorCategory::*;
    [
        ("too large", MessageTooLarge),
        ("too big", MessageTooLarge),
        ("message size", MessageTooLarge),
        ("exceeds the maximum", MessageTooLarge),
        ("unknown topic", TopicMissing),
        ("unknown_topic", TopicMissing),
        ("topic does not exist", TopicMissing),
        ("topic not found", TopicMissing),
        ("no such topic", TopicMissing),
        ("no such file", TopicMissing),
        ("auth", Auth),
        ("sasl", Auth),
        ("permission denied", Auth),
        ("access denied", Auth),
        ("forbidden", Auth),
        ("credential", Auth),
        ("certificate", Auth),
        ("throttl", Throttled),
        ("queue full", Throttled),
        ("queue is full", Throttled),
        ("rate limit", Throttled),
        ("too many requests", Throttled),
        ("quota", Throttled),
        ("timed out", Timeout),
        ("timedout", Timeout),
        ("timeout", Timeout),
        ("deadline exceeded", Timeout),
        ("serializ", Serialization),
        ("malformed", Serialization),
        ("invalid json", Serialization),
        ("invalid utf-8", Serialization),
        ("expected value", Serialization),
        ("missing field", Serialization),
        ("parse error", Serialization),
        ("invalid type", Serialization),
        ("eof while parsing", Serialization),
        ("config", Configuration),
        ("invalid argument", Configuration),
        ("unsupported", Configuration),
        ("not supported", Configuration),
        ("connect", Network),
        ("network", Network),
        ("broker", Network),
        ("transport", Network),
        ("refused", Network),
        ("reset by peer", Network),
        ("broken pipe", Network),
        ("unreachable", Network),
        ("resolve", Network),
        ("dns", Network),
        ("socket", Network),
        ("host", Network),
    ]
};

/// Number of text patterns (an index into [`PATTERNS`] fits a `u8`).
const PATTERNS_LEN: usize = 52;

/// The patterns grouped by first byte: the patterns starting with byte `b` are
/// `BY_FIRST_BYTE[FIRST_BYTE_START[b]..FIRST_BYTE_START[b + 1]]`, in priority order.
/// Built at compile time by a stable counting sort.
const FIRST_BYTE_START: [u8; 257] = first_byte_index().0;
const BY_FIRST_BYTE: [u8; PATTERNS_LEN] = first_byte_index().1;

const fn first_byte_index() -> ([u8; 257], [u8; PATTERNS_LEN]) {
    let mut start = [0u8; 257];
    let mut i = 0;
    while i < PATTERNS_LEN {
        let pattern = PATTERNS[i].0.as_bytes();
        // Patterns are lowercase ASCII, at least two bytes (the scan checks the second
        // byte before the rest).
        assert!(pattern.len() >= 2, "pattern shorter than two bytes");
        let mut j = 0;
        while j < pattern.len() {
            assert!(
                pattern[j].is_ascii() && !pattern[j].is_ascii_uppercase(),
                "pattern not lowercase ASCII"
            );
            j += 1;
        }
        start[pattern[0] as usize + 1] += 1;
        i += 1;
    }
    let mut b = 1;
    while b < 257 {
        start[b] += start[b - 1];
        b += 1;
    }
    let mut order = [0u8; PATTERNS_LEN];
    let mut filled = [0u8; 256];
    let mut i = 0;
    while i < PATTERNS_LEN {
        let first = PATTERNS[i].0.as_bytes()[0] as usize;
        order[(start[first] + filled[first]) as usize] = i as u8;
        filled[first] += 1;
        i += 1;
    }
    (start, order)
}

const _: () = assert!(PATTERNS_LEN <= u8::MAX as usize);

/// Categorises an error from its text: ASCII case-insensitive substring match against
/// a static pattern table, highest priority wins, [`ErrorCategory::Unknown`] when
/// nothing matches. One pass over the text, no allocation. (Non-ASCII letters are not
/// case-folded: the patterns are ASCII.)
///
/// ```
/// use corestream::retry::category::{categorize_text, ErrorCategory};
/// assert_eq!(categorize_text("Broker: Unknown topic or partition"), ErrorCategory::TopicMissing);
/// assert_eq!(categorize_text("Connection refused (os error 111)"), ErrorCategory::Network);
/// assert_eq!(categorize_text("all good"), ErrorCategory::Unknown);
/// ```
pub fn categorize_text(text: &str) -> ErrorCategory {
    let bytes = text.as_bytes();
    // Index into PATTERNS of the best match so far; PATTERNS_LEN = none.
    let mut best = PATTERNS_LEN;
    // Matches of the first category cannot be beaten.
    const UNBEATABLE: ErrorCategory = PATTERNS[0].1;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let first = bytes[i].to_ascii_lowercase() as usize;
        let start = FIRST_BYTE_START[first] as usize;
        let end = FIRST_BYTE_START[first + 1] as usize;
        if start != end {
            let second = bytes[i + 1].to_ascii_lowercase();
            for &candidate in &BY_FIRST_BYTE[start..end] {
                let candidate = candidate as usize;
                if candidate >= best {
                    // Sorted by priority: the rest cannot beat the current best.
                    break;
                }
                let pattern = PATTERNS[candidate].0.as_bytes();
                if pattern[1] == second && matches_at(bytes, i, pattern) {
                    best = candidate;
                    break;
                }
            }
            if best < PATTERNS_LEN && PATTERNS[best].1 as u8 == UNBEATABLE as u8 {
                break;
            }
        }
        i += 1;
    }
    if best < PATTERNS_LEN { PATTERNS[best].1 } else { ErrorCategory::Unknown }
}

/// Whether `pattern` (lowercase ASCII) occurs at `bytes[at..]`, ASCII case-insensitive.
#[inline]
fn matches_at(bytes: &[u8], at: usize, pattern: &[u8]) -> bool {
    match bytes.get(at..at + pattern.len()) {
        Some(window) => window.iter().zip(pattern).all(|(b, p)| b.to_ascii_lowercase() == *p),
        None => false,
    }
}

/// The text patterns in priority order, for the benchmark's lowercase-and-`contains`
/// baseline and for tests that compare against it.
#[doc(hidden)]
pub fn text_patterns() -> &'static [(&'static str, ErrorCategory)] {
    &PATTERNS
}

/// Categorises an rdkafka error code. Codes decide first; text is the fallback for
/// errors without one.
#[cfg(feature = "kafka")]
pub fn categorize_kafka(code: rdkafka::types::RDKafkaErrorCode) -> ErrorCategory {
    use rdkafka::types::RDKafkaErrorCode as C;
    match code {
        C::UnknownTopicOrPartition
        | C::UnknownTopic
        | C::UnknownPartition
        | C::UnknownTopicId
        | C::LeaderNotAvailable => ErrorCategory::TopicMissing,
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::BrokerNotAvailable
        | C::NetworkException
        | C::NotLeaderForPartition
        | C::ReplicaNotAvailable
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::CoordinatorLoadInProgress
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::ISRInsufficient
        | C::UnknownBroker
        | C::DestroyBroker
        | C::BrokerDestroy
        | C::PreferredLeaderNotAvailable
        | C::EligibleLeadersNotAvailable
        | C::KafkaStorageError
        | C::FencedLeaderEpoch
        | C::UnknownLeaderEpoch
        | C::RebootstrapRequired => ErrorCategory::Network,
        C::Authentication
        | C::SSL
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        | C::DelegationTokenExpired
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::SaslAuthenticationFailed
        | C::SecurityDisabled
        | C::UnacceptableCredential
        | C::PrincipalDeserializationFailure => ErrorCategory::Auth,
        C::MessageTimedOut | C::OperationTimedOut | C::TimedOutQueue | C::RequestTimedOut => {
            ErrorCategory::Timeout
        }
        C::QueueFull | C::ThrottlingQuotaExceeded | C::PollExceeded => ErrorCategory::Throttled,
        C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidMessageSize
        | C::OffsetMetadataTooLarge => ErrorCategory::MessageTooLarge,
        C::BadMessage
        | C::BadCompression
        | C::InvalidMessage
        | C::InvalidRecord
        | C::KeySerialization
        | C::ValueSerialization
        | C::KeyDeserialization
        | C::ValueDeserialization
        | C::InvalidTimestamp
        | C::UnsupportedCompressionType => ErrorCategory::Serialization,
        C::InvalidArgument
        | C::InvalidConfig
        | C::NotConfigured
        | C::InvalidTopic
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::InvalidRequiredAcks
        | C::PolicyViolation
        | C::UnsupportedFeature
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat
        | C::TopicDeletionDisabled
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::InvalidTransactionTimeout
        | C::UnknownProtocol
        | C::NotImplemented => ErrorCategory::Configuration,
        _ => ErrorCategory::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_stable() {
        for (index, category) in ErrorCategory::ALL.into_iter().enumerate() {
            assert_eq!(category as usize, index);
        }
    }

    #[test]
    fn categorizes_typical_messages() {
        let cases: &[(&str, ErrorCategory)] = &[
            ("Broker: Unknown topic or partition", ErrorCategory::TopicMissing),
            (
                "KafkaError (Message production error: MessageSizeTooLarge (Broker: Message size too large))",
                ErrorCategory::MessageTooLarge,
            ),
            ("Connection refused (os error 111)", ErrorCategory::Network),
            ("Local: All brokers are down", ErrorCategory::Network),
            ("connection timed out", ErrorCategory::Timeout),
            ("Local: Timed out", ErrorCategory::Timeout),
            ("Kind(TimedOut)", ErrorCategory::Timeout),
            ("SASL AUTHENTICATION FAILED: invalid credentials", ErrorCategory::Auth),
            ("Permission denied (os error 13)", ErrorCategory::Auth),
            ("Local: Queue full", ErrorCategory::Throttled),
            ("Broker: Throttling quota has been exceeded", ErrorCategory::Throttled),
            ("expected value at line 1 column 1", ErrorCategory::Serialization),
            ("invalid configuration: bootstrap.servers", ErrorCategory::Configuration),
            ("No such file or directory (os error 2)", ErrorCategory::TopicMissing),
            ("something odd happened", ErrorCategory::Unknown),
            ("", ErrorCategory::Unknown),
            ("a", ErrorCategory::Unknown),
            // A pattern at the very end of the text.
            ("lost the BROKER", ErrorCategory::Network),
        ];
        for &(text, category) in cases {
            assert_eq!(categorize_text(text), category, "{text:?}");
        }
    }

    /// The background document's way: lowercase (allocating), then `contains` per
    /// pattern in priority order.
    fn lowercase_contains(text: &str) -> ErrorCategory {
        let lower = text.to_ascii_lowercase();
        PATTERNS
            .iter()
            .find(|(pattern, _)| lower.contains(pattern))
            .map_or(ErrorCategory::Unknown, |(_, category)| *category)
    }

    use proptest::prelude::*;

    proptest::proptest! {
        #[test]
        fn agrees_with_lowercase_contains(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(PATTERNS.iter().map(|p| p.0).collect::<Vec<_>>())
                        .prop_map(str::to_string),
                    "[ -~]{0,12}",
                ],
                0..6,
            ),
            flips in proptest::collection::vec(proptest::bool::ANY, 0..200),
        ) {
            let mut text: Vec<u8> = parts.concat().into_bytes();
            for (byte, flip) in text.iter_mut().zip(flips) {
                if flip { *byte = byte.to_ascii_uppercase(); }
            }
            let text = String::from_utf8(text).unwrap();
            prop_assert_eq!(categorize_text(&text), lowercase_contains(&text), "{:?}", text);
        }
    }

    #[test]
    fn every_pattern_alone_gives_its_category_in_any_case() {
        for &(pattern, category) in &PATTERNS {
            assert_eq!(categorize_text(pattern), category, "{pattern}");
            assert_eq!(categorize_text(&pattern.to_ascii_uppercase()), category, "{pattern}");
            assert_eq!(categorize_text(&format!("xx {pattern} yy")), category, "{pattern}");
        }
    }

    #[test]
    fn actions_default_and_names() {
        let table = ActionTable::default();
        assert_eq!(table.action(ErrorCategory::Network), Action::Retry);
        assert_eq!(table.action(ErrorCategory::Auth), Action::FailFast);
        assert_eq!(table.action(ErrorCategory::Serialization), Action::DeadLetter);
        for action in [Action::Retry, Action::FailFast, Action::DeadLetter] {
            assert_eq!(Action::from_name(action.name()), Some(action));
        }
        assert_eq!(Action::from_name("DEAD_LETTER"), Some(Action::DeadLetter));
        assert_eq!(Action::from_name("drop"), None);
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_codes_decide() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert_eq!(categorize_kafka(C::UnknownTopicOrPartition), ErrorCategory::TopicMissing);
        assert_eq!(categorize_kafka(C::AllBrokersDown), ErrorCategory::Network);
        assert_eq!(categorize_kafka(C::SaslAuthenticationFailed), ErrorCategory::Auth);
        assert_eq!(categorize_kafka(C::MessageTimedOut), ErrorCategory::Timeout);
        assert_eq!(categorize_kafka(C::QueueFull), ErrorCategory::Throttled);
        assert_eq!(categorize_kafka(C::MessageSizeTooLarge), ErrorCategory::MessageTooLarge);
        assert_eq!(categorize_kafka(C::ValueSerialization), ErrorCategory::Serialization);
        assert_eq!(categorize_kafka(C::InvalidConfig), ErrorCategory::Configuration);
        assert_eq!(categorize_kafka(C::Fail), ErrorCategory::Unknown);
    }
}
