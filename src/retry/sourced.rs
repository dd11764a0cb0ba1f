//! Where a retry setting came from: the default, an environment variable or the
//! pipeline file. Shared by [`super::env`] (which resolves the values) and
//! [`super::policy`] (whose errors name the source), so neither imports the other.

use std::fmt;

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The environment variable with this name.
    Env(&'static str),
    /// The config file key with this dotted path (`retry.initial`).
    Config(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Config(key) => write!(f, "config {key}"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The source of each policy setting (for error messages of [`super::RetryPolicy::build_sourced`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    pub strategy: Source,
    pub initial: Source,
    pub multiplier: Source,
    pub step: Source,
    pub max: Source,
    pub attempts_max: Source,
    pub elapsed_max: Source,
    pub jitter: Source,
}

impl Sources {
    /// Every setting from the same source.
    pub const fn all(source: Source) -> Sources {
        Sources {
            strategy: source,
            initial: source,
            multiplier: source,
            step: source,
            max: source,
            attempts_max: source,
            elapsed_max: source,
            jitter: source,
        }
    }
}
