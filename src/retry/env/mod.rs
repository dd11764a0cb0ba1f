//! Where retry settings come from: built-in default < environment < config file.
//!
//! Each setting is an optional field of a [`PolicySpec`]; specs from the environment
//! ([`PolicySpec::from_env`]) and from the `[retry]` table of the config file
//! ([`PolicySpec::from_config`]) are laid over the defaults by
//! [`EffectiveRetry::resolve`], which keeps the [`Source`] of every value so that
//! `corestream validate` can print the effective policy and where each value came
//! from (the `Display` of [`EffectiveRetry`]).
//!
//! A bad value is an error that names the variable (or config key), shows the value
//! and says what was expected; nothing falls back silently. The environment is read
//! through a caller-supplied lookup, so tests never touch the process environment:
//! pass [`process_env`] in the binary.
//!
//! | variable | config key | value |
//! |---|---|---|
//! | `CORESTREAM_RETRY_STRATEGY` | `strategy` | `fixed`, `linear`, `exponential` |
//! | `CORESTREAM_RETRY_INITIAL` | `initial` | duration, e.g. `2s` |
//! | `CORESTREAM_RETRY_MULTIPLIER` | `multiplier` | number in 1..=16 (exponential) |
//! | `CORESTREAM_RETRY_STEP` | `step` | duration (linear) |
//! | `CORESTREAM_RETRY_MAX` | `max` | duration: cap on one delay |
//! | `CORESTREAM_RETRY_MAX_ATTEMPTS` | `max_attempts` | 1..=10000, first try included |
//! | `CORESTREAM_RETRY_MAX_TOTAL` | `max_total` | duration from the first attempt |
//! | `CORESTREAM_RETRY_JITTER` | `jitter` | `true`/`false` (also 1/0, yes/no, on/off) |
//! | `CORESTREAM_TOPIC_PARTITIONS` | `topic_partitions` | partitions of a created topic |
//! | `CORESTREAM_TOPIC_REPLICATION` | `topic_replication` | its replication factor |
//!
//! Per-category actions (`retry`, `fail_fast`, `dead_letter`) are set in the config
//! only, in `[retry.actions]` (`network = "retry"`, ...).
//!
//! Any other variable whose name starts with `CORESTREAM_RETRY_` or
//! `CORESTREAM_TOPIC_` (in any case) is refused at startup, so a typo such as
//! `CORESTREAM_RETRY_MAX_ATTEMPT` is not silently ignored: [`check_env_names`], given
//! the names of the variables set ([`process_env_names`] in the binary).

use std::fmt;
use std::time::Duration;

use toml::Spanned;

use super::category::{Action, ActionTable, ErrorCategory};
use super::policy::{ATTEMPTS_MAX_LIMIT, PolicyError, PolicyParams, RetryPolicy, Strategy};
pub use super::sourced::{Source, Sourced, Sources};

mod file;
mod vars;

use crate::parse::ParseError;
use crate::parse::duration::{DisplayDuration, parse_duration};
pub use file::*;
pub use vars::*;

const EXPECTED_STRATEGY: &str = "one of fixed, linear, exponential";
const EXPECTED_DURATION: &str = "a duration such as 2s, 1m30s or 1500ms";
const EXPECTED_MULTIPLIER: &str = "a number from 1 to 16, such as 1.5";
const EXPECTED_ATTEMPTS: &str = "a whole number from 1 to 10000";
const EXPECTED_BOOL: &str = "true or false (also 1/0, yes/no, on/off)";
const EXPECTED_PARTITIONS: &str = "a whole number from 1 to 10000";
const EXPECTED_REPLICATION: &str = "a whole number from 1 to 32767";
const EXPECTED_ACTION: &str = "one of retry, fail_fast, dead_letter";

const _: () = assert!(ATTEMPTS_MAX_LIMIT == 10_000 && TOPIC_PARTITIONS_MAX == 10_000);
const _: () =
    assert!(TOPIC_PARTITIONS_DEFAULT >= 1 && TOPIC_PARTITIONS_DEFAULT <= TOPIC_PARTITIONS_MAX);
const _: () = assert!(TOPIC_REPLICATION_DEFAULT >= 1);

/// Any error resolving the retry settings. Startup stops on it.
#[derive(Clone, Debug, PartialEq)]
pub enum RetrySettingsError {
    Env(EnvError),
    Config(ConfigValueError),
    Policy(PolicyError),
}

impl fmt::Display for RetrySettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetrySettingsError::Env(e) => e.fmt(f),
            RetrySettingsError::Config(e) => e.fmt(f),
            RetrySettingsError::Policy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RetrySettingsError {}

impl From<EnvError> for RetrySettingsError {
    fn from(e: EnvError) -> Self {
        RetrySettingsError::Env(e)
    }
}
impl From<ConfigValueError> for RetrySettingsError {
    fn from(e: ConfigValueError) -> Self {
        RetrySettingsError::Config(e)
    }
}
impl From<PolicyError> for RetrySettingsError {
    fn from(e: PolicyError) -> Self {
        RetrySettingsError::Policy(e)
    }
}

/// Retry settings, each optionally set, each with its source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySpec {
    pub strategy: Option<Sourced<Strategy>>,
    pub initial: Option<Sourced<Duration>>,
    pub multiplier: Option<Sourced<f64>>,
    pub step: Option<Sourced<Duration>>,
    pub max: Option<Sourced<Duration>>,
    pub attempts_max: Option<Sourced<u32>>,
    pub elapsed_max: Option<Sourced<Duration>>,
    pub jitter: Option<Sourced<bool>>,
    pub topic_partitions: Option<Sourced<u32>>,
    pub topic_replication: Option<Sourced<u16>>,
    pub actions: [Option<Sourced<Action>>; ErrorCategory::COUNT],
}

/// Parses a text value; on failure, `expected` and maybe a parse error.
type ValueResult<T> = Result<T, (&'static str, Option<ParseError>)>;

fn strategy_value(text: &str) -> ValueResult<Strategy> {
    Strategy::from_name(text).ok_or((EXPECTED_STRATEGY, None))
}

fn duration_value(text: &str) -> ValueResult<Duration> {
    parse_duration(text).map_err(|e| (EXPECTED_DURATION, Some(e)))
}

fn multiplier_value(text: &str) -> ValueResult<f64> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() => Ok(m),
        _ => Err((EXPECTED_MULTIPLIER, None)),
    }
}

fn bool_value(text: &str) -> ValueResult<bool> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Ok(true)
    } else if FALSE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Ok(false)
    } else {
        Err((EXPECTED_BOOL, None))
    }
}

fn action_value(text: &str) -> ValueResult<Action> {
    Action::from_name(text).ok_or((EXPECTED_ACTION, None))
}

/// A whole number in `1..=max`, as text.
fn count_value<T: TryFrom<u64>>(text: &str, max: u64, expected: &'static str) -> ValueResult<T> {
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => T::try_from(n).map_err(|_| (expected, None)),
        _ => Err((expected, None)),
    }
}

/// A whole number in `1..=max`, from a TOML integer.
fn count_integer<T: TryFrom<i64>>(n: i64, max: u64, expected: &'static str) -> ValueResult<T> {
    if n >= 1 && (n as u64) <= max {
        T::try_from(n).map_err(|_| (expected, None))
    } else {
        Err((expected, None))
    }
}

impl PolicySpec {
    /// Reads the `CORESTREAM_RETRY_*` and `CORESTREAM_TOPIC_*` variables through
    /// `lookup`. An unset variable leaves its field unset; a set but bad (or empty)
    /// value is an error naming the variable and the value.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<PolicySpec, EnvError> {
        fn read<T>(
            lookup: &impl Fn(&str) -> Option<String>,
            var: &'static str,
            parse: impl Fn(&str) -> ValueResult<T>,
        ) -> Result<Option<Sourced<T>>, EnvError> {
            let Some(value) = lookup(var) else { return Ok(None) };
            match parse(&value) {
                Ok(v) => Ok(Some(Sourced { value: v, source: Source::Env(var) })),
                Err((expected, parse)) => Err(EnvError { var, value, expected, parse }),
            }
        }
        let partitions = u64::from(TOPIC_PARTITIONS_MAX);
        let replication = u64::from(TOPIC_REPLICATION_MAX);
        Ok(PolicySpec {
            strategy: read(&lookup, ENV_STRATEGY, strategy_value)?,
            initial: read(&lookup, ENV_INITIAL, duration_value)?,
            multiplier: read(&lookup, ENV_MULTIPLIER, multiplier_value)?,
            step: read(&lookup, ENV_STEP, duration_value)?,
            max: read(&lookup, ENV_MAX, duration_value)?,
            attempts_max: read(&lookup, ENV_MAX_ATTEMPTS, |t| {
                count_value(t, u64::from(ATTEMPTS_MAX_LIMIT), EXPECTED_ATTEMPTS)
            })?,
            elapsed_max: read(&lookup, ENV_MAX_TOTAL, duration_value)?,
            jitter: read(&lookup, ENV_JITTER, bool_value)?,
            topic_partitions: read(&lookup, ENV_TOPIC_PARTITIONS, |t| {
                count_value(t, partitions, EXPECTED_PARTITIONS)
            })?,
            topic_replication: read(&lookup, ENV_TOPIC_REPLICATION, |t| {
                count_value(t, replication, EXPECTED_REPLICATION)
            })?,
            actions: [None; ErrorCategory::COUNT],
        })
    }

    /// Converts the `[retry]` table. Durations and names are parsed here; a bad value
    /// is an error naming the key, the value and its position.
    pub fn from_config(config: &RetryConfig) -> Result<PolicySpec, ConfigValueError> {
        fn text<T>(
            field: &Option<Spanned<String>>,
            key: &'static str,
            parse: impl Fn(&str) -> ValueResult<T>,
        ) -> Result<Option<Sourced<T>>, ConfigValueError> {
            let Some(spanned) = field else { return Ok(None) };
            match parse(spanned.get_ref()) {
                Ok(value) => Ok(Some(Sourced { value, source: Source::Config(key) })),
                Err((expected, parse)) => Err(ConfigValueError {
                    key,
                    value: spanned.get_ref().clone(),
                    expected,
                    span: spanned.span(),
                    parse,
                }),
            }
        }
        fn integer<T: TryFrom<i64>>(
            field: &Option<Spanned<i64>>,
            key: &'static str,
            max: u64,
            expected: &'static str,
        ) -> Result<Option<Sourced<T>>, ConfigValueError> {
            let Some(spanned) = field else { return Ok(None) };
            match count_integer(*spanned.get_ref(), max, expected) {
                Ok(value) => Ok(Some(Sourced { value, source: Source::Config(key) })),
                Err((expected, parse)) => Err(ConfigValueError {
                    key,
                    value: spanned.get_ref().to_string(),
                    expected,
                    span: spanned.span(),
                    parse,
                }),
            }
        }
        let multiplier = match &config.multiplier {
            None => None,
            Some(m) if m.get_ref().is_finite() => {
                Some(Sourced { value: *m.get_ref(), source: Source::Config("retry.multiplier") })
            }
            Some(m) => {
                return Err(ConfigValueError {
                    key: "retry.multiplier",
                    value: m.get_ref().to_string(),
                    expected: EXPECTED_MULTIPLIER,
                    span: m.span(),
                    parse: None,
                });
            }
        };
        let mut actions = [None; ErrorCategory::COUNT];
        if let Some(table) = &config.actions {
            for (i, field) in table.by_category().into_iter().enumerate() {
                actions[i] = text(field, ACTION_KEYS[i], action_value)?;
            }
        }
        Ok(PolicySpec {
            strategy: text(&config.strategy, "retry.strategy", strategy_value)?,
            initial: text(&config.initial, "retry.initial", duration_value)?,
            multiplier,
            step: text(&config.step, "retry.step", duration_value)?,
            max: text(&config.max, "retry.max", duration_value)?,
            attempts_max: integer(
                &config.max_attempts,
                "retry.max_attempts",
                u64::from(ATTEMPTS_MAX_LIMIT),
                EXPECTED_ATTEMPTS,
            )?,
            elapsed_max: text(&config.max_total, "retry.max_total", duration_value)?,
            jitter: config
                .jitter
                .as_ref()
                .map(|j| Sourced { value: *j.get_ref(), source: Source::Config("retry.jitter") }),
            topic_partitions: integer(
                &config.topic_partitions,
                "retry.topic_partitions",
                u64::from(TOPIC_PARTITIONS_MAX),
                EXPECTED_PARTITIONS,
            )?,
            topic_replication: integer(
                &config.topic_replication,
                "retry.topic_replication",
                u64::from(TOPIC_REPLICATION_MAX),
                EXPECTED_REPLICATION,
            )?,
            actions,
        })
    }

    /// `self` with every field that `over` sets replaced by `over`'s.
    pub fn overlay(self, over: PolicySpec) -> PolicySpec {
        let mut actions = self.actions;
        for (mine, theirs) in actions.iter_mut().zip(over.actions) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        PolicySpec {
            strategy: over.strategy.or(self.strategy),
            initial: over.initial.or(self.initial),
            multiplier: over.multiplier.or(self.multiplier),
            step: over.step.or(self.step),
            max: over.max.or(self.max),
            attempts_max: over.attempts_max.or(self.attempts_max),
            elapsed_max: over.elapsed_max.or(self.elapsed_max),
            jitter: over.jitter.or(self.jitter),
            topic_partitions: over.topic_partitions.or(self.topic_partitions),
            topic_replication: over.topic_replication.or(self.topic_replication),
            actions,
        }
    }
}

/// The effective retry settings: every value, its source, the built policy and the
/// per-category actions.
#[derive(Clone, Debug)]
pub struct EffectiveRetry {
    pub strategy: Sourced<Strategy>,
    pub initial: Sourced<Duration>,
    pub multiplier: Sourced<f64>,
    pub step: Sourced<Duration>,
    pub max: Sourced<Duration>,
    pub attempts_max: Sourced<u32>,
    pub elapsed_max: Sourced<Duration>,
    pub jitter: Sourced<bool>,
    pub topic_partitions: Sourced<u32>,
    pub topic_replication: Sourced<u16>,
    pub actions: [Sourced<Action>; ErrorCategory::COUNT],
    policy: RetryPolicy,
}

impl EffectiveRetry {
    /// Default < environment (read through `env`) < `config`; validates and builds the
    /// policy. Any bad value stops here with an error naming it.
    pub fn resolve(
        env: impl Fn(&str) -> Option<String>,
        config: Option<&RetryConfig>,
    ) -> Result<EffectiveRetry, RetrySettingsError> {
        let mut spec = PolicySpec::from_env(env)?;
        if let Some(config) = config {
            spec = spec.overlay(PolicySpec::from_config(config)?);
        }
        Ok(Self::from_spec(&spec)?)
    }

    /// Fills the unset fields of `spec` with the defaults and builds the policy.
    pub fn from_spec(spec: &PolicySpec) -> Result<EffectiveRetry, PolicyError> {
        fn or<T>(field: Option<Sourced<T>>, default: T) -> Sourced<T> {
            field.unwrap_or(Sourced { value: default, source: Source::Default })
        }
        let d = PolicyParams::default();
        let defaults = ActionTable::default();
        let mut actions =
            [Sourced { value: Action::Retry, source: Source::Default }; ErrorCategory::COUNT];
        for (i, slot) in actions.iter_mut().enumerate() {
            *slot = or(spec.actions[i], defaults.action(ErrorCategory::ALL[i]));
        }
        let mut effective = EffectiveRetry {
            strategy: or(spec.strategy, d.strategy),
            initial: or(spec.initial, d.delay_initial),
            multiplier: or(spec.multiplier, d.multiplier),
            step: or(spec.step, d.delay_step),
            max: or(spec.max, d.delay_max),
            attempts_max: or(spec.attempts_max, d.attempts_max),
            elapsed_max: or(spec.elapsed_max, d.elapsed_max),
            jitter: or(spec.jitter, d.jitter),
            topic_partitions: or(spec.topic_partitions, TOPIC_PARTITIONS_DEFAULT),
            topic_replication: or(spec.topic_replication, TOPIC_REPLICATION_DEFAULT),
            actions,
            // Placeholder, replaced just below once the real one is built.
            policy: RetryPolicy::build(&d)?,
        };
        effective.policy = RetryPolicy::build_sourced(&effective.params(), &effective.sources())?;
        Ok(effective)
    }

    /// The policy parameters, without sources.
    pub fn params(&self) -> PolicyParams {
        PolicyParams {
            strategy: self.strategy.value,
            delay_initial: self.initial.value,
            multiplier: self.multiplier.value,
            delay_step: self.step.value,
            delay_max: self.max.value,
            attempts_max: self.attempts_max.value,
            elapsed_max: self.elapsed_max.value,
            jitter: self.jitter.value,
        }
    }

    /// The source of each policy parameter.
    pub fn sources(&self) -> Sources {
        Sources {
            strategy: self.strategy.source,
            initial: self.initial.source,
            multiplier: self.multiplier.source,
            step: self.step.source,
            max: self.max.source,
            attempts_max: self.attempts_max.source,
            elapsed_max: self.elapsed_max.source,
            jitter: self.jitter.source,
        }
    }

    /// The built policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The per-category actions, without sources.
    pub fn action_table(&self) -> ActionTable {
        let mut table = ActionTable::default();
        for (category, action) in ErrorCategory::ALL.into_iter().zip(&self.actions) {
            table.set(category, action.value);
        }
        table
    }
}

/// Retries shown in the `delays` line of the `Display` (enough to reach the default
/// cap at retry 11).
const DISPLAY_DELAYS_MAX: u32 = 12;

impl fmt::Display for EffectiveRetry {
    /// The effective policy for `corestream validate`, one setting per line with its
    /// source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(
            f: &mut fmt::Formatter<'_>,
            name: &str,
            value: &dyn fmt::Display,
            source: Source,
        ) -> fmt::Result {
            writeln!(f, "  {name:<18} {:<12} ({source})", value.to_string())
        }
        let d = DisplayDuration;
        writeln!(f, "retry:")?;
        line(f, "strategy", &self.strategy.value, self.strategy.source)?;
        line(f, "initial", &d(self.initial.value), self.initial.source)?;
        line(f, "multiplier", &self.multiplier.value, self.multiplier.source)?;
        line(f, "step", &d(self.step.value), self.step.source)?;
        line(f, "max", &d(self.max.value), self.max.source)?;
        line(f, "max_attempts", &self.attempts_max.value, self.attempts_max.source)?;
        line(f, "max_total", &d(self.elapsed_max.value), self.elapsed_max.source)?;
        line(f, "jitter", &self.jitter.value, self.jitter.source)?;
        line(f, "topic_partitions", &self.topic_partitions.value, self.topic_partitions.source)?;
        line(f, "topic_replication", &self.topic_replication.value, self.topic_replication.source)?;
        write!(f, "  delays            ")?;
        let shown = DISPLAY_DELAYS_MAX.min(self.policy.attempts_max().saturating_sub(1));
        for retry in 0..shown {
            let separator = if retry == 0 { "" } else { ", " };
            // Readable: to the millisecond (the table itself keeps nanoseconds).
            let delay = self.policy.delay(retry);
            let rounded = if delay >= Duration::from_secs(1) {
                Duration::from_millis(((delay.as_nanos() + 500_000) / 1_000_000) as u64)
            } else {
                delay
            };
            write!(f, "{separator}{}", d(rounded))?;
        }
        if shown == 0 {
            write!(f, "none (one attempt)")?;
        } else if shown < self.policy.attempts_max() - 1 {
            write!(f, ", ...")?;
        }
        writeln!(f)?;
        writeln!(f, "retry.actions:")?;
        for (category, action) in ErrorCategory::ALL.into_iter().zip(&self.actions) {
            line(f, category.name(), &action.value, action.source)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |var| map.get(var).cloned()
    }

    fn config(text: &str) -> RetryConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let effective = EffectiveRetry::resolve(env(&[]), None).unwrap();
        assert_eq!(effective.params(), PolicyParams::default());
        assert_eq!(effective.sources(), Sources::all(Source::Default));
        assert_eq!(effective.topic_partitions.value, TOPIC_PARTITIONS_DEFAULT);
        assert_eq!(effective.action_table(), ActionTable::default());
    }

    #[test]
    fn environment_overrides_default_and_config_overrides_environment() {
        let vars = env(&[
            (ENV_STRATEGY, "linear"),
            (ENV_INITIAL, "1s"),
            (ENV_STEP, "500ms"),
            (ENV_MAX, "10s"),
            (ENV_MAX_ATTEMPTS, "4"),
            (ENV_JITTER, "on"),
            (ENV_TOPIC_PARTITIONS, "12"),
            (ENV_TOPIC_REPLICATION, "3"),
        ]);
        let file =
            config("initial = \"2s\"\nmax_total = \"1m\"\n[actions]\nauth = \"dead_letter\"\n");
        let effective = EffectiveRetry::resolve(vars, Some(&file)).unwrap();
        assert_eq!(
            effective.strategy,
            Sourced { value: Strategy::Linear, source: Source::Env(ENV_STRATEGY) }
        );
        assert_eq!(
            effective.initial,
            Sourced { value: Duration::from_secs(2), source: Source::Config("retry.initial") }
        );
        assert_eq!(effective.step.value, Duration::from_millis(500));
        assert_eq!(effective.max.source, Source::Env(ENV_MAX));
        assert_eq!(effective.multiplier.source, Source::Default);
        assert_eq!(effective.attempts_max.value, 4);
        assert_eq!(effective.elapsed_max.source, Source::Config("retry.max_total"));
        assert_eq!(effective.jitter, Sourced { value: true, source: Source::Env(ENV_JITTER) });
        assert_eq!(effective.topic_partitions.value, 12);
        assert_eq!(effective.topic_replication.value, 3);
        assert_eq!(effective.action_table().action(ErrorCategory::Auth), Action::DeadLetter);
        assert_eq!(effective.actions[2].source, Source::Config("retry.actions.auth"));
        // The built policy is the linear one: 2s, 2.5s, 3s, ...
        assert_eq!(effective.policy().delay(1), Duration::from_millis(2500));
        assert!(effective.policy().jitter());
    }

    #[test]
    fn every_bad_environment_value_names_the_variable_and_the_value() {
        let cases: &[(&str, &str, &str)] = &[
            (ENV_STRATEGY, "random", EXPECTED_STRATEGY),
            (ENV_INITIAL, "5x", EXPECTED_DURATION),
            (ENV_INITIAL, "", EXPECTED_DURATION),
            (ENV_MULTIPLIER, "fast", EXPECTED_MULTIPLIER),
            (ENV_MULTIPLIER, "inf", EXPECTED_MULTIPLIER),
            (ENV_STEP, "-1s", EXPECTED_DURATION),
            (ENV_MAX, "2 m", EXPECTED_DURATION),
            (ENV_MAX_ATTEMPTS, "0", EXPECTED_ATTEMPTS),
            (ENV_MAX_ATTEMPTS, "ten", EXPECTED_ATTEMPTS),
            (ENV_MAX_ATTEMPTS, "10001", EXPECTED_ATTEMPTS),
            (ENV_MAX_TOTAL, "5", EXPECTED_DURATION),
            (ENV_JITTER, "maybe", EXPECTED_BOOL),
            (ENV_TOPIC_PARTITIONS, "0", EXPECTED_PARTITIONS),
            (ENV_TOPIC_REPLICATION, "40000", EXPECTED_REPLICATION),
        ];
        for &(var, value, expected) in cases {
            let err = EffectiveRetry::resolve(env(&[(var, value)]), None).unwrap_err();
            let message = err.to_string();
            let head = format!("environment variable {var}={value:?}: expected {expected}");
            assert!(message.starts_with(&head), "{var}={value:?} gave {message:?}");
        }
    }

    #[test]
    fn every_known_variable_and_every_other_prefix_passes_the_name_check() {
        assert_eq!(check_env_names(ENV_VARS), Ok(()));
        let others = ["PATH", "CORESTREAM_BENCH_MESSAGES", "CORESTREAM_RETRY", "RETRY_MAX", ""];
        assert_eq!(check_env_names(others), Ok(()));
    }

    #[test]
    fn an_unknown_variable_with_a_known_prefix_is_refused_with_a_suggestion() {
        let cases: &[(&str, Option<&str>)] = &[
            ("CORESTREAM_RETRY_MAX_ATTEMPT", Some(ENV_MAX_ATTEMPTS)),
            ("CORESTREAM_RETRY_INTIAL", Some(ENV_INITIAL)),
            ("corestream_retry_max", Some(ENV_MAX)),
            ("Corestream_Topic_Partitions", Some(ENV_TOPIC_PARTITIONS)),
            ("CORESTREAM_TOPIC_REPLICATON", Some(ENV_TOPIC_REPLICATION)),
            ("CORESTREAM_TOPIC_MAX", None),
            ("CORESTREAM_RETRY_", None),
            ("CORESTREAM_RETRY_BACKOFF_SECONDS", None),
        ];
        for &(var, suggestion) in cases {
            let err = check_env_names(["HOME", var, ENV_MAX]).unwrap_err();
            assert_eq!(err.unknown, vec![(var.to_string(), suggestion)], "{var}");
            let message = err.to_string();
            let first = message.lines().next().unwrap();
            match suggestion {
                Some(known) => assert_eq!(
                    first,
                    format!("unknown environment variable {var} (did you mean {known}?)")
                ),
                None => assert_eq!(first, format!("unknown environment variable {var}")),
            }
            let known = message.lines().last().unwrap();
            assert!(known.starts_with("known variables: CORESTREAM_RETRY_STRATEGY, "), "{known}");
            assert!(ENV_VARS.iter().all(|v| known.contains(v)), "{known}");
        }
    }

    #[test]
    fn every_unknown_variable_is_listed_once_in_name_order() {
        let names = ["CORESTREAM_TOPIC_X", "CORESTREAM_RETRY_Y", "CORESTREAM_TOPIC_X"];
        let err = check_env_names(names).unwrap_err();
        let listed: Vec<&str> = err.unknown.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(listed, ["CORESTREAM_RETRY_Y", "CORESTREAM_TOPIC_X"]);
        assert_eq!(err.to_string().lines().count(), 3);
    }

    #[test]
    fn a_bad_duration_in_the_environment_shows_a_caret() {
        let err = PolicySpec::from_env(env(&[(ENV_INITIAL, "1m3x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable CORESTREAM_RETRY_INITIAL=\"1m3x\": expected a duration such as \
             2s, 1m30s or 1500ms\n  1m3x\n     ^ unknown unit (expected ns, us, ms, s, m, h or d)"
        );
    }

    #[test]
    fn a_cross_field_error_names_both_sources() {
        let err =
            EffectiveRetry::resolve(env(&[(ENV_INITIAL, "5m")]), Some(&config("max = \"1m\"")))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "retry initial delay 5m (from env CORESTREAM_RETRY_INITIAL) is larger than the max \
             delay 1m (from config retry.max)"
        );
        let err = EffectiveRetry::resolve(env(&[(ENV_MULTIPLIER, "20")]), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retry multiplier 20 (from env CORESTREAM_RETRY_MULTIPLIER) must be a number from 1 to 16"
        );
    }

    #[test]
    fn every_bad_config_value_names_the_key_the_value_and_its_position() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("strategy = \"random\"", "retry.strategy", "random", EXPECTED_STRATEGY),
            ("initial = \"5x\"", "retry.initial", "5x", EXPECTED_DURATION),
            ("step = \"\"", "retry.step", "", EXPECTED_DURATION),
            ("max = \"1h1h\"", "retry.max", "1h1h", EXPECTED_DURATION),
            ("max_total = \"10\"", "retry.max_total", "10", EXPECTED_DURATION),
            ("max_attempts = 0", "retry.max_attempts", "0", EXPECTED_ATTEMPTS),
            ("max_attempts = -3", "retry.max_attempts", "-3", EXPECTED_ATTEMPTS),
            ("multiplier = nan", "retry.multiplier", "NaN", EXPECTED_MULTIPLIER),
            ("topic_partitions = 100000", "retry.topic_partitions", "100000", EXPECTED_PARTITIONS),
            ("topic_replication = 0", "retry.topic_replication", "0", EXPECTED_REPLICATION),
            ("[actions]\nnetwork = \"ignore\"", "retry.actions.network", "ignore", EXPECTED_ACTION),
        ];
        for &(text, key, value, expected) in cases {
            let err = PolicySpec::from_config(&config(text)).unwrap_err();
            assert_eq!(
                (err.key, err.value.as_str(), err.expected),
                (key, value, expected),
                "{text}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("config key {key} = {value:?}: expected {expected}"))
            );
            // The span points at the value in the file.
            let start = text.rfind(" = ").unwrap() + 3;
            assert_eq!(err.span.start, start, "{text}");
        }
    }

    #[test]
    fn a_config_duration_error_points_into_the_string() {
        let text = "initial = \"1m3x\"";
        let err = PolicySpec::from_config(&config(text)).unwrap_err();
        assert_eq!(&text[err.file_offset()..err.file_offset() + 1], "x");
        assert_eq!(
            err.to_string(),
            "config key retry.initial = \"1m3x\": expected a duration such as 2s, 1m30s or 1500ms \
             (unknown unit (expected ns, us, ms, s, m, h or d))"
        );
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let err = toml::from_str::<RetryConfig>("inital = \"2s\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `inital`"), "{err}");
        let err = toml::from_str::<RetryConfig>("[actions]\nnetwrk = \"retry\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `netwrk`"), "{err}");
    }

    #[test]
    fn display_shows_each_value_and_its_source() {
        let file = config("max = \"1m\"\nmultiplier = 2\n");
        let effective = EffectiveRetry::resolve(env(&[(ENV_INITIAL, "1s")]), Some(&file)).unwrap();
        let shown = effective.to_string();
        let expected_lines = [
            "  strategy           exponential  (default)",
            "  initial            1s           (env CORESTREAM_RETRY_INITIAL)",
            "  multiplier         2            (config retry.multiplier)",
            "  max                1m           (config retry.max)",
            "  max_attempts       10           (default)",
            "  delays            1s, 2s, 4s, 8s, 16s, 32s, 1m, 1m, 1m",
            "  topic_missing      retry        (default)",
            "  auth               fail_fast    (default)",
        ];
        for line in expected_lines {
            assert!(shown.lines().any(|l| l == line), "missing {line:?} in\n{shown}");
        }
    }
}
