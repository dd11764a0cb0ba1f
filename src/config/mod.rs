//! The pipeline file: TOML, parsed with serde, every error pointing at the line.
//!
//! ```toml
//! [engine]                      # all optional
//! workers = 2                   # default: one per core
//! ring_bytes = "8MiB"           # power of two per worker
//! batch_records = 512
//! record_bytes_max = "1MiB"
//! pin = true
//! memory_limit = "2GiB"         # pause intake at this resident memory, resume at 90%
//!                               # (off unless set; see `source::pressure`)
//! batch_time_target = "1ms"     # adaptive batch size (off unless set) ...
//! batch_records_min = 64        # ... within these bounds
//! batch_records_max = 4096
//!
//! [source]
//! type = "file"                 # generator | file | stdin
//! path = "orders.ndjson"        # relative paths are relative to this file
//! checkpoint = "orders.ckpt"    # resume here after a restart (the file sink then appends)
//!
//! [[processor]]                 # the chain, in order (see `transform`)
//! type = "filter"
//! expr = 'status == "paid" && amount > 100.0'
//!
//! [[processor]]                 # drop repeats of a key within a window (see `state::dedup`)
//! type = "dedup"
//! key = "id"                    # an expression
//! window = "10m"
//! capacity = 100000             # keys per worker (default); entry_bytes = 64, eviction = "ttl"
//!
//! [sink]
//! type = "file"                 # null | stdout | file
//! path = "out.ndjson"
//! append = false                # truncate at start (default), unless the source checkpoints;
//!                               # appending cuts a torn last line a crash left
//! flush_records = 4096          # write when this many outputs are buffered,
//! flush_bytes = "256KiB"        # or this many bytes (alias of buffer_bytes),
//! linger = "5ms"                # or the oldest is this old (default: when idle)
//! dedup = false                 # keep only the latest output per key per write
//! compression = "zstd"          # file only: one zstd frame per write
//! compression_level = 1
//! timeout = "30s"               # file/stdout (default 30s; "off": write inline)
//! breaker_failures = 5          # any sink: circuit breaker
//! breaker_cool_down = "30s"
//!
//! [dead_letter]                 # optional; without it the first failed message
//! type = "file"                 #   stops the run (unacknowledged, read again)
//! path = "dead.ndjson"          # or type = "kafka" (brokers, topic), or "discard"
//!                               #   (dropped on purpose: counted, first 10 logged)
//!
//! [retry]                       # optional; see `retry::env` (env vars CORESTREAM_RETRY_*)
//!
//! [observe]                     # optional; the HTTP server (see `observe`)
//! enabled = true                # default true; `run --observe off` too
//! address = "127.0.0.1:9464"    # IP:port (default loopback 9464; port 0: any free port)
//! ```
//!
//! Each section is one struct holding the fields of every `type`, so that every value
//! keeps its position (serde's internally tagged enums lose them); a field that does
//! not apply to the chosen type is an error pointing at it.

pub mod build;
pub mod diagnostic;
mod fuzz;
pub mod kafka;
pub mod memory;
mod paths;
pub mod steps;

pub use steps::RawStep;

#[doc(hidden)]
pub use fuzz::fuzz_check_config;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::engine::EngineSettings;
use crate::observe::{AddressOrigin, ObserveSettings};
use crate::retry::breaker::{BreakerConfig, CircuitBreaker};
use crate::retry::env::{EffectiveRetry, RetryConfig};
use crate::sink::writer::{Compression, WriterSettings, ZSTD_LEVEL_DEFAULT};
use crate::source::file::CHECKPOINT_INTERVAL_DEFAULT;
use crate::source::generator::GeneratorSettings;
use crate::worker::BatchSizing;
use crate::worker::Placement;

use crate::parse::suggest::closest;
pub use diagnostic::{ConfigError, Diagnostic};

/// A size: an integer number of bytes, or a string such as "64MiB" (see
/// [`crate::parse::size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeValue(pub u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a number of bytes or a string like \"64MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                u64::try_from(v).map(SizeValue).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                crate::parse::size::parse_size(v).map(SizeValue).map_err(|e| {
                    E::custom(format!("invalid size {v:?}: {}\n{}", e.reason, e.caret(v)))
                })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration string such as "30s", "1m30s", "1500ms" (see [`crate::parse::duration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::parse::duration::parse_duration(&text).map(DurationValue).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?}: {}\n{}",
                e.reason,
                e.caret(&text)
            ))
        })
    }
}

/// A table whose entries keep their file order and their values' positions (the
/// fields of a `map` step, Kafka properties).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedTable(pub Vec<(String, Spanned<String>)>);

impl<'de> Deserialize<'de> for OrderedTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = OrderedTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedTable, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Spanned<String>>()? {
                    entries.push((key, value));
                }
                Ok(OrderedTable(entries))
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    source: Option<Spanned<RawSource>>,
    #[serde(default)]
    processor: Vec<Spanned<RawStep>>,
    sink: Option<Spanned<RawSink>>,
    dead_letter: Option<Spanned<RawDeadLetter>>,
    retry: Option<RetryConfig>,
    observe: Option<RawObserve>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    enabled: Option<bool>,
    address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    workers: Option<Spanned<u64>>,
    ring_bytes: Option<Spanned<SizeValue>>,
    batch_records: Option<Spanned<u64>>,
    record_bytes_max: Option<Spanned<SizeValue>>,
    arena_bytes: Option<Spanned<SizeValue>>,
    memory_limit: Option<Spanned<SizeValue>>,
    pin: Option<bool>,
    batch_records_min: Option<Spanned<u64>>,
    batch_records_max: Option<Spanned<u64>>,
    batch_time_target: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    // file
    path: Option<Spanned<String>>,
    checkpoint: Option<Spanned<String>>,
    checkpoint_interval: Option<Spanned<DurationValue>>,
    // generator
    count: Option<Spanned<u64>>,
    rate_per_sec: Option<Spanned<u64>>,
    keys: Option<Spanned<u64>>,
    message_bytes: Option<Spanned<SizeValue>>,
    seed: Option<Spanned<u64>>,
    // kafka (see `kafka`)
    brokers: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    topics: Option<Spanned<Vec<Spanned<String>>>>,
    properties: Option<Spanned<kafka::PropertyTable>>,
    commit_interval: Option<Spanned<DurationValue>>,
    commit_every_messages: Option<Spanned<u64>>,
    queued_max_messages_kbytes: Option<Spanned<u64>>,
    create_topics: Option<Spanned<bool>>,
    topic_partitions: Option<Spanned<u64>>,
    topic_replication: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    append: Option<Spanned<bool>>,
    fsync: Option<Spanned<bool>>,
    buffer_bytes: Option<Spanned<SizeValue>>,
    flush_bytes: Option<Spanned<SizeValue>>,
    flush_records: Option<Spanned<u64>>,
    linger: Option<Spanned<DurationValue>>,
    dedup: Option<Spanned<bool>>,
    compression: Option<Spanned<String>>,
    compression_level: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    breaker_failures: Option<Spanned<u64>>,
    breaker_cool_down: Option<Spanned<DurationValue>>,
    // kafka (see `kafka`; it shares `linger` and `compression`)
    brokers: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    properties: Option<Spanned<kafka::PropertyTable>>,
    dead_letter_topic: Option<Spanned<String>>,
    batch_bytes: Option<Spanned<SizeValue>>,
    create_topics: Option<Spanned<bool>>,
    topic_partitions: Option<Spanned<u64>>,
    topic_replication: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    // kafka (see `kafka`)
    brokers: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    properties: Option<Spanned<kafka::PropertyTable>>,
}

/// Where the messages come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    Generator(GeneratorSettings),
    File { path: PathBuf, checkpoint: Option<PathBuf>, checkpoint_interval: Duration },
    Stdin,
    Kafka(crate::kafka::KafkaSourceSpec),
}

/// Where they go.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkSpec {
    Null,
    /// `writer.flush_bytes` equals `buffer_bytes`.
    Stdout {
        buffer_bytes: usize,
        writer: WriterSettings,
    },
    File {
        path: PathBuf,
        append: bool,
        fsync: bool,
        buffer_bytes: usize,
        writer: WriterSettings,
    },
    Kafka(crate::kafka::KafkaSinkSpec),
}

/// Where undeliverable messages go.
#[derive(Clone, Debug, PartialEq)]
pub enum DeadLetterSpec {
    /// Failed messages are dropped on purpose: counted, the first few logged.
    Discard,
    File {
        path: PathBuf,
    },
    Kafka(crate::kafka::KafkaDeadLetterSpec),
}

/// A checked pipeline file.
#[derive(Debug)]
pub struct PipelineConfig {
    pub path: PathBuf,
    pub text: String,
    pub engine: EngineSettings,
    pub source: SourceSpec,
    pub steps: Vec<Spanned<RawStep>>,
    pub sink: SinkSpec,
    /// The sink's circuit breaker (`[sink] breaker_failures`, `breaker_cool_down`).
    pub breaker: BreakerConfig,
    /// Adaptive batch size (`[engine] batch_time_target`, ...); `None`: fixed.
    pub batch_sizing: Option<BatchSizing>,
    pub dead_letter: Option<DeadLetterSpec>,
    pub retry: EffectiveRetry,
    /// The HTTP server (`[observe]`).
    pub observe: ObserveSettings,
    /// Problems that do not stop the run (memory above what is available now);
    /// `validate` and `run` print them.
    pub warnings: Vec<String>,
}

impl PipelineConfig {
    /// Reads and checks `path`, reading retry overrides from the process environment
    /// (and refusing unknown `CORESTREAM_RETRY_*` / `CORESTREAM_TOPIC_*` variables).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::new(
                path,
                "",
                Diagnostic::new(None, format!("cannot read config file: {e}")),
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Point at the first bad byte: the text before it is valid and unchanged.
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            ConfigError::new(
                path,
                &text,
                Diagnostic::new(Some(at..at + 1), "invalid UTF-8: a pipeline file is UTF-8 text")
                    .hint("re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),
            )
        })?;
        // A mistyped CORESTREAM_RETRY_* / CORESTREAM_TOPIC_* variable would be ignored.
        crate::retry::env::check_env_names(crate::retry::env::process_env_names()).map_err(
            |e| {
                let var = e.unknown.first().map_or("", |(name, _)| name.as_str());
                ConfigError::new(
                    path,
                    &text,
                    Diagnostic::in_env(e.to_string(), var)
                        .hint("fix the variable's name or unset it"),
                )
            },
        )?;
        Self::parse(path, &text, crate::retry::env::process_env)
    }

    /// Checks `text` (the content of `path`); `env` looks up environment variables.
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let fail = |d: Diagnostic| ConfigError::new(path, text, d);
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(toml_diagnostic(&e, text)))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let engine = engine_settings(&raw.engine).map_err(fail)?;
        let batch_sizing = batch_sizing(&raw.engine, engine.batch_records).map_err(fail)?;
        let source = raw
            .source
            .as_ref()
            .ok_or_else(|| {
                Diagnostic::missing("missing [source] section", section_slot(text, "source"))
                    .hint("add e.g. [source] type = \"generator\" (or \"file\" with a path, or \"stdin\")")
            })
            .and_then(|s| source_spec(s, &base, engine.batch_records))
            .map_err(fail)?;
        let sink = raw
            .sink
            .as_ref()
            .ok_or_else(|| {
                Diagnostic::missing("missing [sink] section", section_slot(text, "sink")).hint(
                    "add e.g. [sink] type = \"stdout\" (or \"null\", or \"file\" with a path)",
                )
            })
            .and_then(|s| sink_spec(s, &base))
            .map_err(fail)?;
        let sink =
            resume_appends(&source, sink, raw.sink.as_ref().map(|s| s.get_ref())).map_err(fail)?;
        let breaker =
            raw.sink.as_ref().map_or(Ok(BreakerConfig::default()), breaker).map_err(fail)?;
        let dead_letter = raw
            .dead_letter
            .as_ref()
            .map(|d| dead_letter_spec(d, &base))
            .transpose()
            .map_err(fail)?;
        distinct_files(&raw, &source, &sink, dead_letter.as_ref()).map_err(fail)?;
        let retry = EffectiveRetry::resolve(env, raw.retry.as_ref())
            .map_err(|e| fail(retry_diagnostic(&e, raw.retry.as_ref())))?;
        let observe = observe_settings(raw.observe.as_ref()).map_err(fail)?;
        let mut config = PipelineConfig {
            path: path.to_path_buf(),
            text: text.to_string(),
            engine,
            source,
            steps: raw.processor,
            sink,
            breaker,
            batch_sizing,
            dead_letter,
            retry,
            observe,
            warnings: Vec::new(),
        };
        // A chain that does not compile is reported by the build with its place;
        // until then it allocates nothing here.
        let state = steps::compile_steps(&config.steps, &config.text)
            .map_or(0, |chain| chain.state_bytes());
        let start = memory::StartMemory::of(&config, state);
        if let Some(limit) = config.engine.memory_limit {
            let span = raw.engine.memory_limit.as_ref().map(Spanned::span);
            match memory::check_limit(&start, limit, memory::MachineMemory::cached()) {
                Ok(warning) => config.warnings.extend(warning),
                Err(message) => {
                    return Err(fail(
                        Diagnostic::new(span, format!("engine.memory_limit: {message}")).hint(
                            "raise memory_limit, or lower workers, ring_bytes, arena_bytes, \
                             sink buffers or state caches",
                        ),
                    ));
                }
            }
        }
        if let Some(machine) = memory::MachineMemory::cached() {
            match memory::check(&start, machine) {
                Ok(warning) => config.warnings.extend(warning),
                Err(message) => {
                    return Err(fail(memory_diagnostic(
                        &raw.engine,
                        &config.steps,
                        &start,
                        message,
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Turns a diagnostic about this file into a printable error.
    pub fn error(&self, diagnostic: Diagnostic) -> ConfigError {
        ConfigError::new(&self.path, &self.text, diagnostic)
    }
}

/// What to write instead, for serde's "invalid type: X, expected Y".
fn type_hint(message: &str) -> Option<&'static str> {
    let expected = message.strip_prefix("invalid type: ")?.split_once(", expected ")?.1;
    let expected = expected.lines().next().unwrap_or(expected);
    Some(match expected {
        "u64" | "u32" | "u16" | "usize" | "i64" | "i32" | "an integer" => {
            "a whole number, without quotes (sizes and durations take a string: \"4KiB\", \"5s\")"
        }
        "f64" | "f32" | "a float" => "a number, without quotes (e.g. 1.5)",
        "a boolean" => "true or false, without quotes",
        "a string" => "a string, in double quotes",
        e if e.contains("sequence") => "a list in brackets, e.g. [\"a\", \"b\"]",
        e if e.contains("map") || e.contains("struct") || e.contains("table") => {
            "a table: a [section] or an inline { key = value }"
        }
        _ => "see the key's documentation in src/config/mod.rs",
    })
}

/// A bare word where TOML expects a value (`type = file`): toml reports it as a bad
/// boolean, number or string; the word itself, when there is one at `span`.
fn bare_word<'t>(text: &'t str, span: Option<&Range<usize>>) -> Option<&'t str> {
    let rest = text.get(span?.start..)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    let word = &rest[..end];
    let is_word = word.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(word, "true" | "false" | "inf" | "nan");
    is_word.then_some(word)
}

/// A toml/serde error as a diagnostic, with a "did you mean" for unknown fields.
fn toml_diagnostic(error: &toml::de::Error, text: &str) -> Diagnostic {
    let message = error.message().trim_end().to_string();
    let mut diagnostic =
        Diagnostic::new(error.span(), message.lines().next().unwrap_or("").to_string());
    if message.lines().count() > 1 {
        // Our own value errors carry a caret line for the value itself.
        diagnostic.message = message.clone();
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        diagnostic.message = format!("unknown field `{field}`");
        diagnostic.hint = Some(match closest(field, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("expected one of: {}", candidates.join(", ")),
        });
    } else if let Some(word) = bare_word(text, error.span().as_ref())
        && !message.starts_with("invalid type")
        && !message.starts_with("unknown")
    {
        diagnostic.hint =
            Some(format!("text needs quotes: \"{word}\" (true and false are the only bare words)"));
    } else if let Some(hint) = type_hint(&message) {
        diagnostic.hint = Some(hint.to_string());
    } else if message.starts_with("missing field `type`") {
        diagnostic.hint =
            Some("every [source], [sink], [dead_letter] and [[processor]] needs a `type`".into());
    }
    diagnostic
}

fn retry_diagnostic(
    error: &crate::retry::env::RetrySettingsError,
    file: Option<&RetryConfig>,
) -> Diagnostic {
    use crate::retry::env::{RetrySettingsError, Source};
    const ENV_HINT: &str =
        "fix or unset the environment variable; the config file's [retry] overrides it";
    match error {
        RetrySettingsError::Config(e) => {
            let at = e.file_offset();
            Diagnostic::new(
                Some(at..at + e.parse.map_or(e.span.len(), |p| p.len.max(1))),
                e.to_string(),
            )
        }
        RetrySettingsError::Env(e) => Diagnostic::in_env(e.to_string(), e.var).hint(ENV_HINT),
        RetrySettingsError::Policy(e) => {
            // Point at the value in the file when it came from there; name the
            // variable when it came from the environment.
            let sources = e.sources();
            let from_file = sources.iter().find_map(|s| match s {
                Source::Config(key) => file.and_then(|f| f.span_of(key)),
                _ => None,
            });
            let from_env = sources.iter().find_map(|s| match s {
                Source::Env(var) => Some(*var),
                _ => None,
            });
            match (from_file, from_env) {
                (Some(span), _) => Diagnostic::new(Some(span), e.to_string()).hint(e.hint()),
                (None, Some(var)) => Diagnostic::in_env(e.to_string(), var).hint(ENV_HINT),
                (None, None) => Diagnostic::new(None, e.to_string()).hint(e.hint()),
            }
        }
    }
}

/// Where a missing `[section]` would go: before the first section that follows it
/// in the documented order (`[engine]`, `[source]`, `[[processor]]`, `[sink]`,
/// `[dead_letter]`, `[retry]`), else at the end of the file.
fn section_slot(text: &str, section: &str) -> usize {
    const ORDER: [&str; 6] = ["engine", "source", "processor", "sink", "dead_letter", "retry"];
    let rank = |name: &str| ORDER.iter().position(|s| *s == name);
    let Some(mine) = rank(section) else { return text.len() };
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let header = line.trim().trim_start_matches('[').trim_end_matches(']');
        let name = header.split('.').next().unwrap_or("").trim();
        if line.trim_start().starts_with('[') && rank(name).is_some_and(|r| r > mine) {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

/// A checkpointed file source resumes after a restart; a file sink that truncated
/// its output at start would then throw away what the previous run wrote. So with a
/// checkpoint the file sink appends unless told otherwise, and `append = false` is
/// refused.
fn resume_appends(
    source: &SourceSpec,
    mut sink: SinkSpec,
    raw: Option<&RawSink>,
) -> Result<SinkSpec, Diagnostic> {
    let checkpointed = matches!(source, SourceSpec::File { checkpoint: Some(_), .. });
    if let (true, SinkSpec::File { append, .. }) = (checkpointed, &mut sink) {
        match raw.and_then(|r| r.append.as_ref()) {
            Some(explicit) if !*explicit.get_ref() => {
                return Err(Diagnostic::new(
                    Some(explicit.span()),
                    "append = false with a checkpointed source: a restart resumes the input \
                     after the checkpoint but would truncate the output written before it",
                )
                .hint(
                    "remove `append` (a checkpoint makes the file sink append) or the checkpoint",
                ));
            }
            _ => *append = true,
        }
    }
    Ok(sink)
}

/// Start-time memory above the machine's: blamed on the larger of the rings and
/// the arenas where the file sets it, else on `workers`, else on the file.
fn memory_diagnostic(
    raw: &RawEngine,
    steps: &[Spanned<RawStep>],
    start: &memory::StartMemory,
    message: String,
) -> Diagnostic {
    if start.state > start.rings.max(start.arenas) {
        // The state caches are the largest part: point at the first state step's
        // capacity (or the step).
        let step = steps
            .iter()
            .map(Spanned::get_ref)
            .find(|s| matches!(s.kind.get_ref().as_str(), "dedup" | "enrich"));
        let span = step.map(|s| s.capacity.as_ref().map_or(s.kind.span(), Spanned::span));
        return Diagnostic::new(span, format!("engine: {message}")).hint(
            "lower capacity or entry_bytes of the dedup and enrich steps, or workers (each \
             worker allocates capacity × (entry_bytes + 40) bytes plus an index per step)",
        );
    }
    let (first, second) = if start.arenas > start.rings {
        (raw.arena_bytes.as_ref(), raw.ring_bytes.as_ref())
    } else {
        (raw.ring_bytes.as_ref(), raw.arena_bytes.as_ref())
    };
    let span =
        first.or(second).map(Spanned::span).or_else(|| raw.workers.as_ref().map(Spanned::span));
    Diagnostic::new(span, format!("engine: {message}"))
        .hint("lower ring_bytes, arena_bytes or workers (memory = workers × (ring + arena + sink buffers))")
}

/// Refuses one file named twice among the input, its checkpoint, the output and
/// the dead-letter file (see [`paths`]).
fn distinct_files(
    raw: &RawConfig,
    source: &SourceSpec,
    sink: &SinkSpec,
    dead_letter: Option<&DeadLetterSpec>,
) -> Result<(), Diagnostic> {
    let mut named = Vec::new();
    let span = |v: Option<&Spanned<String>>| v.map_or(0..0, Spanned::span);
    let raw_source = raw.source.as_ref().map(Spanned::get_ref);
    if let SourceSpec::File { path, checkpoint, .. } = source {
        let key = "source.path";
        named.push(paths::NamedPath {
            key,
            path,
            span: span(raw_source.and_then(|s| s.path.as_ref())),
        });
        if let Some(path) = checkpoint {
            let span = span(raw_source.and_then(|s| s.checkpoint.as_ref()));
            named.push(paths::NamedPath { key: "source.checkpoint", path, span });
        }
    }
    if let SinkSpec::File { path, .. } = sink {
        let span = span(raw.sink.as_ref().and_then(|s| s.get_ref().path.as_ref()));
        named.push(paths::NamedPath { key: "sink.path", path, span });
    }
    if let Some(DeadLetterSpec::File { path }) = dead_letter {
        let span = span(raw.dead_letter.as_ref().and_then(|d| d.get_ref().path.as_ref()));
        named.push(paths::NamedPath { key: "dead_letter.path", path, span });
    }
    paths::check_distinct(&named)
}

fn span_of<T>(value: &Spanned<T>) -> Option<Range<usize>> {
    Some(value.span())
}

fn engine_settings(raw: &RawEngine) -> Result<EngineSettings, Diagnostic> {
    let mut settings = EngineSettings::default();
    if let Some(w) = &raw.workers {
        settings.workers = usize::try_from(*w.get_ref()).unwrap_or(usize::MAX);
    }
    if let Some(r) = &raw.ring_bytes {
        settings.ring_bytes = usize::try_from(r.get_ref().0).unwrap_or(usize::MAX);
    }
    if let Some(b) = &raw.batch_records {
        settings.batch_records = usize::try_from(*b.get_ref()).unwrap_or(usize::MAX);
    }
    if let Some(r) = &raw.record_bytes_max {
        settings.record_bytes_max = usize::try_from(r.get_ref().0).unwrap_or(usize::MAX);
    }
    if let Some(a) = &raw.arena_bytes {
        settings.arena_bytes = usize::try_from(a.get_ref().0).unwrap_or(usize::MAX);
    }
    if let Some(m) = &raw.memory_limit {
        settings.memory_limit = Some(m.get_ref().0);
    }
    if raw.pin == Some(false) {
        settings.placement = Placement::Unpinned;
    }
    settings.validate().map_err(|e| {
        let written = |setting: &str| match setting {
            "workers" => raw.workers.as_ref().and_then(span_of),
            "ring_bytes" => raw.ring_bytes.as_ref().and_then(span_of),
            "batch_records" => raw.batch_records.as_ref().and_then(span_of),
            "record_bytes_max" => raw.record_bytes_max.as_ref().and_then(span_of),
            "arena_bytes" => raw.arena_bytes.as_ref().and_then(span_of),
            "memory_limit" => raw.memory_limit.as_ref().and_then(span_of),
            _ => None,
        };
        // A ring too small for the record limit: blame what the user wrote. With
        // the default ring, that is record_bytes_max.
        if e.setting == "ring_bytes" && raw.ring_bytes.is_none() {
            return Diagnostic::new(
                written("record_bytes_max"),
                format!("engine.record_bytes_max: {} (ring_bytes is the default)", e.message),
            )
            .hint(e.hint);
        }
        Diagnostic::new(written(e.setting), format!("engine.{}: {}", e.setting, e.message))
            .hint(e.hint)
    })?;
    Ok(settings)
}

/// Refuses fields set for a `type` they do not apply to.
fn only_fields(
    kind: &Spanned<String>,
    set: &[(&str, Option<Range<usize>>)],
    allowed: &[&str],
) -> Result<(), Diagnostic> {
    for (name, span) in set {
        if let Some(span) = span
            && !allowed.contains(name)
        {
            return Err(Diagnostic::new(
                Some(span.clone()),
                format!("`{name}` does not apply to type \"{}\"", kind.get_ref()),
            )
            .hint(if allowed.is_empty() {
                format!("type \"{}\" takes no settings", kind.get_ref())
            } else {
                format!("type \"{}\" takes: {}", kind.get_ref(), allowed.join(", "))
            }));
        }
    }
    Ok(())
}

fn unknown_type(kind: &Spanned<String>, section: &str, known: &[&str]) -> Diagnostic {
    let hint = match closest(kind.get_ref(), known.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"?"),
        None => format!("known types: {}", known.join(", ")),
    };
    Diagnostic::new(Some(kind.span()), format!("unknown {section} type \"{}\"", kind.get_ref()))
        .hint(hint)
}

fn resolve_path(base: &Path, value: &Spanned<String>) -> PathBuf {
    let path = Path::new(value.get_ref());
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

fn required<'a, T>(
    value: &'a Option<Spanned<T>>,
    name: &str,
    kind: &Spanned<String>,
    example: &str,
) -> Result<&'a Spanned<T>, Diagnostic> {
    value.as_ref().ok_or_else(|| {
        Diagnostic::new(Some(kind.span()), format!("type \"{}\" needs `{name}`", kind.get_ref()))
            .hint(format!("add {name} = {example}"))
    })
}

fn source_spec(
    raw: &Spanned<RawSource>,
    base: &Path,
    batch_records: usize,
) -> Result<SourceSpec, Diagnostic> {
    let s = raw.get_ref();
    let set = [
        ("path", s.path.as_ref().and_then(span_of)),
        ("checkpoint", s.checkpoint.as_ref().and_then(span_of)),
        ("checkpoint_interval", s.checkpoint_interval.as_ref().and_then(span_of)),
        ("count", s.count.as_ref().and_then(span_of)),
        ("rate_per_sec", s.rate_per_sec.as_ref().and_then(span_of)),
        ("keys", s.keys.as_ref().and_then(span_of)),
        ("message_bytes", s.message_bytes.as_ref().and_then(span_of)),
        ("seed", s.seed.as_ref().and_then(span_of)),
    ];
    let kafka_set = kafka::source_set(s);
    let set: Vec<_> = set.into_iter().chain(kafka_set).collect();
    match s.kind.get_ref().as_str() {
        "generator" => {
            only_fields(
                &s.kind,
                &set,
                &["count", "rate_per_sec", "keys", "message_bytes", "seed"],
            )?;
            let defaults = GeneratorSettings::default();
            if let Some(rate) = &s.rate_per_sec
                && *rate.get_ref() == 0
            {
                return Err(Diagnostic::new(Some(rate.span()), "rate_per_sec must be at least 1")
                    .hint("omit rate_per_sec for no limit"));
            }
            let message_bytes =
                s.message_bytes.as_ref().map_or(defaults.message_bytes, |m| m.get_ref().0 as usize);
            if message_bytes > crate::source::generator::GENERATOR_MESSAGE_BYTES_MAX {
                return Err(Diagnostic::new(
                    s.message_bytes.as_ref().and_then(span_of),
                    "message_bytes is too large",
                )
                .hint(format!(
                    "at most {} bytes",
                    crate::source::generator::GENERATOR_MESSAGE_BYTES_MAX
                )));
            }
            if let Some(keys) = &s.keys
                && *keys.get_ref() > 1_000_000
            {
                return Err(Diagnostic::new(Some(keys.span()), "keys must be at most 1000000")
                    .hint("keys are customer ids c-000000 .. c-999999; 0 means keyless"));
            }
            Ok(SourceSpec::Generator(GeneratorSettings {
                count: s.count.as_ref().map(|c| *c.get_ref()),
                rate_per_sec: s.rate_per_sec.as_ref().map(|r| *r.get_ref()),
                keys: s.keys.as_ref().map_or(defaults.keys, |k| *k.get_ref()),
                message_bytes,
                seed: s.seed.as_ref().map_or(defaults.seed, |k| *k.get_ref()),
                batch_records,
            }))
        }
        "file" => {
            only_fields(&s.kind, &set, &["path", "checkpoint", "checkpoint_interval"])?;
            let path = required(&s.path, "path", &s.kind, "\"orders.ndjson\"")?;
            Ok(SourceSpec::File {
                path: resolve_path(base, path),
                checkpoint: s.checkpoint.as_ref().map(|c| resolve_path(base, c)),
                checkpoint_interval: s
                    .checkpoint_interval
                    .as_ref()
                    .map_or(CHECKPOINT_INTERVAL_DEFAULT, |d| d.get_ref().0),
            })
        }
        "stdin" => {
            only_fields(&s.kind, &set, &[])?;
            Ok(SourceSpec::Stdin)
        }
        "kafka" => {
            only_fields(&s.kind, &set, &kafka::SOURCE_FIELDS)?;
            kafka::source_spec(s).map(SourceSpec::Kafka)
        }
        _ => Err(unknown_type(&s.kind, "source", &["generator", "file", "stdin", "kafka"])),
    }
}

fn sink_spec(raw: &Spanned<RawSink>, base: &Path) -> Result<SinkSpec, Diagnostic> {
    let s = raw.get_ref();
    let set = [
        ("path", s.path.as_ref().and_then(span_of)),
        ("append", s.append.as_ref().and_then(span_of)),
        ("fsync", s.fsync.as_ref().and_then(span_of)),
        ("buffer_bytes", s.buffer_bytes.as_ref().and_then(span_of)),
        ("flush_bytes", s.flush_bytes.as_ref().and_then(span_of)),
        ("flush_records", s.flush_records.as_ref().and_then(span_of)),
        ("linger", s.linger.as_ref().and_then(span_of)),
        ("dedup", s.dedup.as_ref().and_then(span_of)),
        ("compression", s.compression.as_ref().and_then(span_of)),
        ("compression_level", s.compression_level.as_ref().and_then(span_of)),
        ("timeout", s.timeout.as_ref().and_then(span_of)),
        ("breaker_failures", s.breaker_failures.as_ref().and_then(span_of)),
        ("breaker_cool_down", s.breaker_cool_down.as_ref().and_then(span_of)),
    ];
    let kafka_set = kafka::sink_set(s);
    let set: Vec<_> = set.into_iter().chain(kafka_set).collect();
    if let (Some(_), Some(f)) = (&s.buffer_bytes, &s.flush_bytes) {
        return Err(Diagnostic::new(
            Some(f.span()),
            "set either buffer_bytes or flush_bytes, not both",
        )
        .hint("they are one setting: the bytes buffered per worker before a write"));
    }
    let buffer_bytes = match s.flush_bytes.as_ref().or(s.buffer_bytes.as_ref()) {
        Some(b) if b.get_ref().0 == 0 || b.get_ref().0 > (1 << 30) => {
            return Err(Diagnostic::new(
                Some(b.span()),
                "buffer_bytes must be between 1 byte and 1GiB",
            )
            .hint("the default \"256KiB\" suits most sinks"));
        }
        Some(b) => b.get_ref().0 as usize,
        None => crate::limits::SINK_BUFFER_BYTES_DEFAULT,
    };
    const BREAKER: [&str; 2] = ["breaker_failures", "breaker_cool_down"];
    const BATCHING: [&str; 6] =
        ["buffer_bytes", "flush_bytes", "flush_records", "linger", "dedup", "timeout"];
    match s.kind.get_ref().as_str() {
        "null" => {
            only_fields(&s.kind, &set, &BREAKER)?;
            Ok(SinkSpec::Null)
        }
        "stdout" => {
            only_fields(&s.kind, &set, &[&BATCHING[..], &BREAKER[..]].concat())?;
            Ok(SinkSpec::Stdout { buffer_bytes, writer: writer_settings(s, buffer_bytes)? })
        }
        "file" => {
            let file_only = ["path", "append", "fsync", "compression", "compression_level"];
            only_fields(&s.kind, &set, &[&file_only[..], &BATCHING[..], &BREAKER[..]].concat())?;
            let path = required(&s.path, "path", &s.kind, "\"out.ndjson\"")?;
            Ok(SinkSpec::File {
                path: resolve_path(base, path),
                append: s.append.as_ref().is_some_and(|a| *a.get_ref()),
                fsync: s.fsync.as_ref().is_some_and(|a| *a.get_ref()),
                buffer_bytes,
                writer: writer_settings(s, buffer_bytes)?,
            })
        }
        "kafka" => {
            only_fields(&s.kind, &set, &kafka::SINK_FIELDS)?;
            kafka::sink_spec(s).map(SinkSpec::Kafka)
        }
        _ => Err(unknown_type(&s.kind, "sink", &["null", "stdout", "file", "kafka"])),
    }
}

/// Batching, dedup, compression and timeout of a file or stdout sink.
fn writer_settings(s: &RawSink, flush_bytes: usize) -> Result<WriterSettings, Diagnostic> {
    let mut settings = WriterSettings::new(flush_bytes);
    if let Some(n) = &s.flush_records {
        settings.flush_records = usize::try_from(*n.get_ref()).unwrap_or(usize::MAX);
    }
    settings.linger = s.linger.as_ref().map(|d| d.get_ref().0);
    settings.dedup = s.dedup.as_ref().is_some_and(|d| *d.get_ref());
    if let Some(t) = &s.timeout {
        settings.timeout = match t.get_ref().as_str() {
            "off" => None,
            text => Some(crate::parse::duration::parse_duration(text).map_err(|e| {
                let at = t.span().start + 1 + e.offset;
                Diagnostic::new(
                    Some(at..at + e.len.max(1)),
                    format!("invalid duration \"{text}\": {}\n{}", e.reason, e.caret(text)),
                )
                .hint("a duration such as \"30s\", or \"off\" to write inline without a timeout")
            })?),
        };
    }
    settings.compression = match &s.compression {
        None => Compression::None,
        Some(c) => match c.get_ref().as_str() {
            "none" => Compression::None,
            "zstd" => Compression::Zstd { level: ZSTD_LEVEL_DEFAULT },
            other => {
                let hint = match closest(other, ["none", "zstd"]) {
                    Some(best) => format!("did you mean \"{best}\"?"),
                    None => "known: \"none\", \"zstd\"".to_string(),
                };
                return Err(Diagnostic::new(
                    Some(c.span()),
                    format!("unknown compression \"{other}\""),
                )
                .hint(hint));
            }
        },
    };
    if let Some(level) = &s.compression_level {
        match &mut settings.compression {
            Compression::Zstd { level: l } => {
                *l = i32::try_from(*level.get_ref()).unwrap_or(i32::MAX);
            }
            Compression::None => {
                return Err(Diagnostic::new(
                    Some(level.span()),
                    "compression_level needs compression = \"zstd\"",
                )
                .hint("add compression = \"zstd\", or remove compression_level"));
            }
        }
    }
    settings.validate().map_err(|(setting, message)| {
        let span = match setting {
            "flush_bytes" => s.flush_bytes.as_ref().or(s.buffer_bytes.as_ref()).and_then(span_of),
            "flush_records" => s.flush_records.as_ref().and_then(span_of),
            "linger" => s.linger.as_ref().and_then(span_of),
            "timeout" => s.timeout.as_ref().and_then(span_of),
            "compression_level" => s.compression_level.as_ref().and_then(span_of),
            _ => None,
        };
        Diagnostic::new(span, format!("sink.{setting}: {message}"))
            .hint(format!("omit {setting} for the default"))
    })?;
    Ok(settings)
}

/// The sink's circuit breaker: `breaker_failures` consecutive failures open it for
/// `breaker_cool_down`.
fn breaker(raw: &Spanned<RawSink>) -> Result<BreakerConfig, Diagnostic> {
    let s = raw.get_ref();
    let mut config = BreakerConfig::default();
    if let Some(n) = &s.breaker_failures {
        config.failures_to_open = u32::try_from(*n.get_ref()).map_err(|_| {
            Diagnostic::new(
                Some(n.span()),
                format!(
                    "sink.breaker_failures: circuit breaker failures_to_open {} must be from 1 to {}",
                    n.get_ref(),
                    crate::retry::breaker::BREAKER_FAILURES_LIMIT
                ),
            )
            .hint("omit it for the default (5 failures, 30s)")
        })?;
    }
    if let Some(d) = &s.breaker_cool_down {
        config.cool_down = d.get_ref().0;
    }
    CircuitBreaker::new(config).map_err(|e| {
        let (key, value) = match e {
            crate::retry::breaker::BreakerConfigError::Failures(_) => {
                ("breaker_failures", s.breaker_failures.as_ref().and_then(span_of))
            }
            crate::retry::breaker::BreakerConfigError::CoolDown(_) => {
                ("breaker_cool_down", s.breaker_cool_down.as_ref().and_then(span_of))
            }
        };
        Diagnostic::new(value, format!("sink.{key}: {e}"))
            .hint("omit it for the default (5 failures, 30s)")
    })?;
    Ok(config)
}

/// Adaptive batch size: on when `batch_time_target` is set; the bounds default to
/// an eighth and eight times `batch_records`.
fn batch_sizing(raw: &RawEngine, batch_records: usize) -> Result<Option<BatchSizing>, Diagnostic> {
    let Some(target) = &raw.batch_time_target else {
        if let Some(bound) = raw.batch_records_min.as_ref().or(raw.batch_records_max.as_ref()) {
            return Err(Diagnostic::new(
                Some(bound.span()),
                "batch_records_min and batch_records_max need batch_time_target",
            )
            .hint(
                "add batch_time_target = \"1ms\" to adapt the batch size, or remove the bounds",
            ));
        }
        return Ok(None);
    };
    let count = |v: &Option<Spanned<u64>>, default: usize| {
        v.as_ref().map_or(default, |n| usize::try_from(*n.get_ref()).unwrap_or(usize::MAX))
    };
    let sizing = BatchSizing {
        records_min: count(&raw.batch_records_min, (batch_records / 8).max(1)),
        records_max: count(
            &raw.batch_records_max,
            batch_records.saturating_mul(8).min(crate::limits::BATCH_RECORDS_MAX),
        ),
        time_target: target.get_ref().0,
    };
    sizing.validate(batch_records).map_err(|(setting, message)| {
        let bounds = [
            ("batch_records_min", &raw.batch_records_min, sizing.records_min, "batch_records / 8"),
            ("batch_records_max", &raw.batch_records_max, sizing.records_max, "batch_records × 8"),
            ("batch_records", &raw.batch_records, batch_records, "the engine default"),
        ];
        let written = |name: &str| {
            bounds.iter().find(|b| b.0 == name).and_then(|b| b.1.as_ref()).and_then(span_of)
        };
        // Point at the value written: the one named, else a bound the user set (the
        // named one is then a default).
        let span = match setting {
            "batch_time_target" => Some(target.span()),
            _ => written(setting)
                .or_else(|| bounds.iter().find_map(|b| b.1.as_ref().and_then(span_of))),
        };
        let defaults: Vec<String> = bounds
            .iter()
            .filter(|b| b.1.is_none() && setting != "batch_time_target")
            .map(|b| format!("{} = {} ({})", b.0, b.2, b.3))
            .collect();
        let message = if defaults.is_empty() {
            format!("engine.{setting}: {message}")
        } else {
            format!(
                "engine.{setting}: {message}; not written in the file, so defaults: {}",
                defaults.join(", ")
            )
        };
        Diagnostic::new(span, message).hint(
            "batch_records_min <= batch_records <= batch_records_max: set the others to match",
        )
    })?;
    Ok(Some(sizing))
}

/// `[observe]`: the HTTP server's settings (see [`crate::observe::ObserveSettings`]).
fn observe_settings(raw: Option<&RawObserve>) -> Result<ObserveSettings, Diagnostic> {
    let mut settings = ObserveSettings::default();
    let Some(raw) = raw else { return Ok(settings) };
    settings.enabled = raw.enabled.unwrap_or(true);
    if let Some(address) = &raw.address {
        settings.address = ObserveSettings::parse_address(address.get_ref()).map_err(|e| {
            Diagnostic::new(Some(address.span()), format!("observe.address: {e}"))
                .hint("an IP address and port: \"127.0.0.1:9464\" (loopback), \"0.0.0.0:9464\" (every interface)")
        })?;
        settings.address_origin = AddressOrigin::File;
    }
    Ok(settings)
}

fn dead_letter_spec(
    raw: &Spanned<RawDeadLetter>,
    base: &Path,
) -> Result<DeadLetterSpec, Diagnostic> {
    let d = raw.get_ref();
    match d.kind.get_ref().as_str() {
        "discard" => {
            let set = [
                ("path", d.path.as_ref().and_then(span_of)),
                ("brokers", d.brokers.as_ref().and_then(span_of)),
                ("topic", d.topic.as_ref().and_then(span_of)),
                ("properties", d.properties.as_ref().and_then(span_of)),
            ];
            only_fields(&d.kind, &set, &[])?;
            Ok(DeadLetterSpec::Discard)
        }
        "file" => {
            let set = [
                ("brokers", d.brokers.as_ref().and_then(span_of)),
                ("topic", d.topic.as_ref().and_then(span_of)),
                ("properties", d.properties.as_ref().and_then(span_of)),
            ];
            only_fields(&d.kind, &set, &["path"])?;
            let path = required(&d.path, "path", &d.kind, "\"dead.ndjson\"")?;
            Ok(DeadLetterSpec::File { path: resolve_path(base, path) })
        }
        "kafka" => {
            only_fields(
                &d.kind,
                &[("path", d.path.as_ref().and_then(span_of))],
                &["brokers", "topic", "properties"],
            )?;
            kafka::dead_letter_spec(d).map(DeadLetterSpec::Kafka)
        }
        _ => Err(unknown_type(&d.kind, "dead_letter", &["file", "kafka", "discard"])),
    }
}

#[cfg(test)]
mod tests;

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Generator(g) => write!(
                f,
                "generator: count {}, rate {}, keys {}, message_bytes {}, seed {}",
                g.count.map_or("unlimited".to_string(), |c| c.to_string()),
                g.rate_per_sec.map_or("unlimited".to_string(), |r| format!("{r}/s")),
                g.keys,
                g.message_bytes,
                g.seed
            ),
            SourceSpec::File { path, checkpoint, checkpoint_interval } => {
                write!(f, "file {}", path.display())?;
                match checkpoint {
                    Some(c) => write!(
                        f,
                        ", checkpoint {} every {}",
                        c.display(),
                        crate::parse::duration::DisplayDuration(*checkpoint_interval)
                    ),
                    None => write!(f, ", no checkpoint (a restart reads from the start)"),
                }
            }
            SourceSpec::Stdin => write!(f, "stdin (no checkpoint)"),
            SourceSpec::Kafka(k) => k.fmt(f),
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Null => write!(f, "null"),
            SinkSpec::Stdout { buffer_bytes, writer } => {
                write!(
                    f,
                    "stdout, buffer {}; {writer}",
                    crate::parse::size::DisplaySize(*buffer_bytes as u64)
                )
            }
            SinkSpec::File { path, append, fsync, buffer_bytes, writer } => write!(
                f,
                "file {} ({}, {}, buffer {}); {writer}",
                path.display(),
                if *append { "append" } else { "truncate" },
                if *fsync { "fsync on flush" } else { "no fsync" },
                crate::parse::size::DisplaySize(*buffer_bytes as u64)
            ),
            SinkSpec::Kafka(k) => k.fmt(f),
        }
    }
}

/// The engine settings as `validate` prints them.
pub struct DisplayEngine<'a>(pub &'a EngineSettings);

impl std::fmt::Display for DisplayEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        write!(
            f,
            "{} worker(s) {}, ring {} each, batch {} records, record_bytes_max {}, arena {}",
            e.workers,
            match e.placement {
                Placement::PinPerCore if e.workers > crate::worker::pin::available_cores() => {
                    "unpinned (more workers than cores)"
                }
                Placement::PinPerCore => "pinned one per core",
                Placement::Unpinned => "unpinned",
            },
            crate::parse::size::DisplaySize(e.ring_bytes as u64),
            e.batch_records,
            crate::parse::size::DisplaySize(e.record_bytes_max as u64),
            crate::parse::size::DisplaySize(e.arena_bytes as u64)
        )?;
        if let Some(limit) = e.memory_limit {
            let marks = crate::source::pressure::MemoryMarks::of(limit);
            write!(
                f,
                ", memory_limit {} (intake pauses there, resumes at {})",
                crate::parse::size::DisplaySize(marks.high),
                crate::parse::size::DisplaySize(marks.low)
            )?;
        }
        Ok(())
    }
}
