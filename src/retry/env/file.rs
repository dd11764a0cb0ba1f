//! The `[retry]` table of the pipeline file as written, with the span of every value.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::*;

/// A bad value in the `[retry]` table of the config file.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigValueError {
    /// Dotted key path, e.g. `retry.initial`.
    pub key: &'static str,
    /// The value as written (for strings, without quotes).
    pub value: String,
    pub expected: &'static str,
    /// Byte range of the value in the config file (a string's range includes quotes).
    pub span: Range<usize>,
    /// Where in the value a duration failed to parse.
    pub parse: Option<ParseError>,
}

impl ConfigValueError {
    /// Byte offset in the config file of the mistake: the parse error's offset inside
    /// a quoted string, or the start of the value. (Exact for strings without escapes,
    /// which is every valid duration.)
    pub fn file_offset(&self) -> usize {
        match self.parse {
            Some(parse) => self.span.start + 1 + parse.offset,
            None => self.span.start,
        }
    }
}

impl fmt::Display for ConfigValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key {} = {:?}: expected {}", self.key, self.value, self.expected)?;
        if let Some(parse) = &self.parse {
            write!(f, " ({})", parse.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigValueError {}

/// The `[retry]` table of the config file (`config` embeds it as
/// `retry: Option<RetryConfig>`). Durations are strings parsed by
/// [`crate::parse::duration`]; every value keeps its span for error messages.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub strategy: Option<Spanned<String>>,
    pub initial: Option<Spanned<String>>,
    pub multiplier: Option<Spanned<f64>>,
    pub step: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub max_total: Option<Spanned<String>>,
    pub jitter: Option<Spanned<bool>>,
    pub topic_partitions: Option<Spanned<i64>>,
    pub topic_replication: Option<Spanned<i64>>,
    pub actions: Option<ActionsConfig>,
}

impl RetryConfig {
    /// Where the value of `key` (a dotted path such as `retry.initial`) is written.
    pub fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let int = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        match key {
            "retry.strategy" => text(&self.strategy),
            "retry.initial" => text(&self.initial),
            "retry.multiplier" => self.multiplier.as_ref().map(Spanned::span),
            "retry.step" => text(&self.step),
            "retry.max" => text(&self.max),
            "retry.max_attempts" => int(&self.max_attempts),
            "retry.max_total" => text(&self.max_total),
            "retry.jitter" => self.jitter.as_ref().map(Spanned::span),
            "retry.topic_partitions" => int(&self.topic_partitions),
            "retry.topic_replication" => int(&self.topic_replication),
            _ => None,
        }
    }
}

/// `[retry.actions]`: what to do per error category.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    pub topic_missing: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub throttled: Option<Spanned<String>>,
    pub message_too_large: Option<Spanned<String>>,
    pub serialization: Option<Spanned<String>>,
    pub configuration: Option<Spanned<String>>,
    pub unknown: Option<Spanned<String>>,
}

impl ActionsConfig {
    /// The configured value per category, in [`ErrorCategory::ALL`] order.
    pub(super) fn by_category(&self) -> [&Option<Spanned<String>>; ErrorCategory::COUNT] {
        [
            &self.topic_missing,
            &self.network,
            &self.auth,
            &self.timeout,
            &self.throttled,
            &self.message_too_large,
            &self.serialization,
            &self.configuration,
            &self.unknown,
        ]
    }
}

/// Config keys of the per-category actions, in [`ErrorCategory::ALL`] order.
pub(super) const ACTION_KEYS: [&str; ErrorCategory::COUNT] = [
    "retry.actions.topic_missing",
    "retry.actions.network",
    "retry.actions.auth",
    "retry.actions.timeout",
    "retry.actions.throttled",
    "retry.actions.message_too_large",
    "retry.actions.serialization",
    "retry.actions.configuration",
    "retry.actions.unknown",
];
