//! The environment variables (`CORESTREAM_RETRY_*`, `CORESTREAM_TOPIC_*`): their
//! names and limits, reading them, and refusing unknown ones.

use std::fmt;

use super::*;

pub const ENV_STRATEGY: &str = "CORESTREAM_RETRY_STRATEGY";
pub const ENV_INITIAL: &str = "CORESTREAM_RETRY_INITIAL";
pub const ENV_MULTIPLIER: &str = "CORESTREAM_RETRY_MULTIPLIER";
pub const ENV_STEP: &str = "CORESTREAM_RETRY_STEP";
pub const ENV_MAX: &str = "CORESTREAM_RETRY_MAX";
pub const ENV_MAX_ATTEMPTS: &str = "CORESTREAM_RETRY_MAX_ATTEMPTS";
pub const ENV_MAX_TOTAL: &str = "CORESTREAM_RETRY_MAX_TOTAL";
pub const ENV_JITTER: &str = "CORESTREAM_RETRY_JITTER";
pub const ENV_TOPIC_PARTITIONS: &str = "CORESTREAM_TOPIC_PARTITIONS";
pub const ENV_TOPIC_REPLICATION: &str = "CORESTREAM_TOPIC_REPLICATION";

/// Every variable read, in the order of the table above.
pub const ENV_VARS: [&str; 10] = [
    ENV_STRATEGY,
    ENV_INITIAL,
    ENV_MULTIPLIER,
    ENV_STEP,
    ENV_MAX,
    ENV_MAX_ATTEMPTS,
    ENV_MAX_TOTAL,
    ENV_JITTER,
    ENV_TOPIC_PARTITIONS,
    ENV_TOPIC_REPLICATION,
];

/// Prefixes of the variables in [`ENV_VARS`]; every variable with one of them must be
/// one of [`ENV_VARS`] (see [`check_env_names`]).
pub const ENV_PREFIXES: [&str; 2] = ["CORESTREAM_RETRY_", "CORESTREAM_TOPIC_"];

/// Default partitions of a topic corestream creates when it is missing: 3 lets three
/// consumers of a group share it without over-provisioning a development broker.
pub const TOPIC_PARTITIONS_DEFAULT: u32 = 3;
/// Most partitions accepted: a guard against typos (Kafka itself advises well under
/// this per topic).
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;
/// Default replication factor of a created topic: 1 works on a single broker; set 3 in
/// production.
pub const TOPIC_REPLICATION_DEFAULT: u16 = 1;
/// Largest replication factor Kafka can represent (an `i16`).
pub const TOPIC_REPLICATION_MAX: u16 = i16::MAX as u16;

/// A bad environment value.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
    /// Where in the value a duration failed to parse.
    pub parse: Option<ParseError>,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {}={:?}: expected {}",
            self.var, self.value, self.expected
        )?;
        if let Some(parse) = &self.parse {
            write!(f, "\n{}", parse.caret(&self.value))?;
        }
        Ok(())
    }
}

impl std::error::Error for EnvError {}

/// Variables with a prefix of [`ENV_PREFIXES`] that corestream does not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownEnvVars {
    /// Each unknown name (sorted) and the known variable it most likely meant.
    pub unknown: Vec<(String, Option<&'static str>)>,
}

impl fmt::Display for UnknownEnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (var, suggestion) in &self.unknown {
            write!(f, "unknown environment variable {var}")?;
            if let Some(known) = suggestion {
                write!(f, " (did you mean {known}?)")?;
            }
            writeln!(f)?;
        }
        write!(f, "known variables: {}", ENV_VARS.join(", "))
    }
}

impl std::error::Error for UnknownEnvVars {}

/// Refuses every name in `names` that starts with a prefix of [`ENV_PREFIXES`]
/// (compared ignoring ASCII case: the variables themselves are case-sensitive) but
/// is not one of [`ENV_VARS`], with the closest known variable as a suggestion.
/// Other names are ignored.
pub fn check_env_names<I, S>(names: I) -> Result<(), UnknownEnvVars>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut unknown: Vec<(String, Option<&'static str>)> = names
        .into_iter()
        .filter_map(|name| {
            let name = name.as_ref();
            let prefix = ENV_PREFIXES.iter().copied().find(|prefix| {
                name.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })?;
            if ENV_VARS.contains(&name) {
                return None;
            }
            // Compare what follows the prefix with the known names of that prefix.
            let rest = name[prefix.len()..].to_ascii_uppercase();
            let known = ENV_VARS.iter().filter_map(|var| var.strip_prefix(prefix));
            let suggestion = crate::parse::suggest::closest(&rest, known)
                .and_then(|best| ENV_VARS.iter().copied().find(|var| var[prefix.len()..] == *best));
            Some((name.to_string(), suggestion))
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    unknown.dedup();
    Err(UnknownEnvVars { unknown })
}

/// The names of the variables in the process environment (for [`check_env_names`]);
/// a name that is not UTF-8 is converted lossily.
pub fn process_env_names() -> Vec<String> {
    std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()).collect()
}

/// Reads a variable from the process environment. A value that is not UTF-8 is
/// returned lossily converted, so that it fails validation visibly instead of
/// looking unset.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var_os(var).map(|value| value.to_string_lossy().into_owned())
}
