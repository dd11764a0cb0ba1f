//! Error categories: what went wrong, decided once, driving the retry decision.
//!
//! A Kafka error is categorised from its rdkafka error code ([`categorize_kafka`],
//! feature `kafka`); any other error from its text ([`categorize_text`]), by an ASCII
//! case-insensitive substring match over a static pattern table that does not
//! allocate: one pass over the text, a two-byte bucket index into the table, a
//! four-byte prefix compare per candidate, and the highest-priority match wins. Each category has an [`Action`]; the defaults are in
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

/// Bucket of a position: the low 5 bits of its first two bytes. The low 5 bits of an
/// ASCII letter do not depend on its case, so the scan needs no lowercasing; other
/// bytes share buckets with letters, which only adds candidates that the prefix
/// compare then rejects. 1024 buckets.
const PAIR_BUCKETS: usize = 1 << 10;

#[inline(always)]
const fn pair_bucket(first: u8, second: u8) -> usize {
    ((first & 0x1f) as usize) << 5 | (second & 0x1f) as usize
}

/// The patterns grouped by bucket: those whose first two bytes fall in bucket `k` are
/// `BY_PAIR[PAIR_START[k]..PAIR_START[k + 1]]`, in priority order. Built at compile
/// time by a stable counting sort; 1 KiB + 52 bytes.
const PAIR_START: [u8; PAIR_BUCKETS + 1] = pair_index().0;
const BY_PAIR: [u8; PATTERNS_LEN] = pair_index().1;

const fn pair_index() -> ([u8; PAIR_BUCKETS + 1], [u8; PATTERNS_LEN]) {
    let mut start = [0u8; PAIR_BUCKETS + 1];
    let mut i = 0;
    while i < PATTERNS_LEN {
        let pattern = PATTERNS[i].0.as_bytes();
        // Patterns are lowercase ASCII of at least two bytes (a bucket is two bytes).
        assert!(pattern.len() >= 2, "pattern shorter than two bytes");
        let mut j = 0;
        while j < pattern.len() {
            assert!(
                pattern[j].is_ascii() && !pattern[j].is_ascii_uppercase(),
                "pattern not lowercase ASCII"
            );
            j += 1;
        }
        start[pair_bucket(pattern[0], pattern[1]) + 1] += 1;
        i += 1;
    }
    let mut k = 1;
    while k < PAIR_BUCKETS + 1 {
        start[k] += start[k - 1];
        k += 1;
    }
    let mut order = [0u8; PATTERNS_LEN];
    let mut filled = [0u8; PAIR_BUCKETS];
    let mut i = 0;
    while i < PATTERNS_LEN {
        let pattern = PATTERNS[i].0.as_bytes();
        let bucket = pair_bucket(pattern[0], pattern[1]);
        order[(start[bucket] + filled[bucket]) as usize] = i as u8;
        filled[bucket] += 1;
        i += 1;
    }
    (start, order)
}

const _: () = assert!(PATTERNS_LEN <= u8::MAX as usize);

/// ASCII lowercase of every byte (other bytes unchanged): one load instead of a
/// compare-and-or per byte in the scan.
const LOWER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    table
};

/// Index of the first pattern of a category other than the first: a match below it
/// cannot be beaten, so the scan stops.
const UNBEATABLE_END: usize = {
    let mut i = 0;
    while i < PATTERNS_LEN && PATTERNS[i].1 as u8 == PATTERNS[0].1 as u8 {
        i += 1;
    }
    i
};

/// Categorises an error from its text: ASCII case-insensitive substring match against
/// a static pattern table, highest priority wins, [`ErrorCategory::Unknown`] when
/// nothing matches. One pass over the text with one bucket test per byte; patterns are
/// only compared where a pattern's first two bytes may occur, and rejected by one
/// 4-byte compare. No allocation.
/// (Non-ASCII letters are not case-folded: the patterns are ASCII.)
///
/// ```
/// use corestream::retry::category::{categorize_text, ErrorCategory};
/// assert_eq!(categorize_text("Broker: Unknown topic or partition"), ErrorCategory::TopicMissing);
/// assert_eq!(categorize_text("Connection refused (os error 111)"), ErrorCategory::Network);
/// assert_eq!(categorize_text("all good"), ErrorCategory::Unknown);
/// ```
pub fn categorize_text(text: &str) -> ErrorCategory {
    let bytes = text.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return ErrorCategory::Unknown;
    };
    // Index into PATTERNS of the best match so far; PATTERNS_LEN = none.
    let mut best = PATTERNS_LEN;
    // The previous byte's low 5 bits, already shifted into bucket position.
    let mut previous = ((first & 0x1f) as usize) << 5;
    for (at, &byte) in rest.iter().enumerate() {
        let current = (byte & 0x1f) as usize;
        let bucket = previous | current;
        previous = current << 5;
        if PAIR_START[bucket] != PAIR_START[bucket + 1] {
            // A pattern may start at `at`, the byte before `byte`.
            best = best_match_at(bytes, at, bucket, best);
            if best < UNBEATABLE_END {
                break;
            }
        }
    }
    if best < PATTERNS_LEN { PATTERNS[best].1 } else { ErrorCategory::Unknown }
}

/// Per pattern, in [`BY_PAIR`] order: its first (up to) 4 bytes as a
/// little-endian `u32`, and the mask of the bytes that count (patterns of 2 or 3
/// bytes). One compare rejects almost every candidate.
const PREFIX_BY_PAIR: [(u32, u32); PATTERNS_LEN] = {
    let mut table = [(0u32, 0u32); PATTERNS_LEN];
    let mut k = 0;
    while k < PATTERNS_LEN {
        let pattern = PATTERNS[BY_PAIR[k] as usize].0.as_bytes();
        let mut prefix = 0u32;
        let mut mask = 0u32;
        let mut j = 0;
        while j < 4 && j < pattern.len() {
            prefix |= (pattern[j] as u32) << (8 * j);
            mask |= 0xff << (8 * j);
            j += 1;
        }
        table[k] = (prefix, mask);
        k += 1;
    }
    table
};

/// Four bytes from `bytes[at..]` (zero past the end), little-endian, ASCII-lowercased
/// without a per-byte loop (SWAR: a byte is uppercase iff it is ASCII and
/// `0x41 <= b <= 0x5a`; adding `0x3f` and `0x25` to its low 7 bits sets bit 7 at those
/// bounds without carrying into the next byte).
#[inline(always)]
fn lowercase_window(bytes: &[u8], at: usize) -> u32 {
    let word = match bytes.get(at..at + 4) {
        Some(four) => u32::from_le_bytes([four[0], four[1], four[2], four[3]]),
        None => {
            let mut four = [0u8; 4];
            for (to, from) in four.iter_mut().zip(&bytes[at..]) {
                *to = *from;
            }
            u32::from_le_bytes(four)
        }
    };
    let low7 = word & 0x7f7f_7f7f;
    let at_least_a = low7.wrapping_add(0x3f3f_3f3f);
    let above_z = low7.wrapping_add(0x2525_2525);
    let upper = at_least_a & !above_z & !word & 0x8080_8080;
    word | (upper >> 2)
}

/// The best of `best` and the highest-priority pattern of `bucket` matching at
/// `bytes[at..]`.
#[inline(never)]
fn best_match_at(bytes: &[u8], at: usize, bucket: usize, best: usize) -> usize {
    let window = lowercase_window(bytes, at);
    for k in PAIR_START[bucket] as usize..PAIR_START[bucket + 1] as usize {
        let candidate = BY_PAIR[k] as usize;
        if candidate >= best {
            // Sorted by priority: the rest cannot beat the current best.
            break;
        }
        let (prefix, mask) = PREFIX_BY_PAIR[k];
        if window & mask == prefix && matches_at(bytes, at, PATTERNS[candidate].0.as_bytes()) {
            return candidate;
        }
    }
    best
}

/// Whether `pattern` (lowercase ASCII) occurs at `bytes[at..]`, ASCII
/// case-insensitive, given that its first 4 bytes (or all, if shorter) already match.
#[inline(always)]
fn matches_at(bytes: &[u8], at: usize, pattern: &[u8]) -> bool {
    match bytes.get(at..at + pattern.len()) {
        Some(window) => window.iter().zip(pattern).skip(4).all(|(b, p)| LOWER[*b as usize] == *p),
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
    fn lowercase_window_folds_only_ascii_uppercase() {
        let all: Vec<u8> = (0..=255u8).collect();
        for at in 0..all.len() {
            let window = lowercase_window(&all, at).to_le_bytes();
            for (j, byte) in window.iter().enumerate() {
                let expected = all.get(at + j).map_or(0, |b| b.to_ascii_lowercase());
                assert_eq!(*byte, expected, "byte {:#x}", at + j);
            }
        }
        assert_eq!(lowercase_window(b"AbC", 0).to_le_bytes(), *b"abc\0");
    }

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
