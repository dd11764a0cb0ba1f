//! Error categories: what went wrong, decided once, driving the retry decision.

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
