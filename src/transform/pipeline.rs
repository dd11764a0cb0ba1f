//! The step chain as a [`Processor`]: `schema`, `filter`, `route`, `map`, compiled
//! from configuration once, run per message with one scan of the payload and no heap
//! allocation.
//!
//! Configuration (TOML, one table per step, in order):
//!
//! ```toml
//! [[steps]]
//! type = "schema"        # required fields and their types; violations fail the message
//! fields = { id = "uint", status = "string", amount = "float", note = "string?" }
//! [[steps]]
//! type = "filter"        # keep messages for which the expression is true
//! expr = 'status == "paid" && amount > 100.0'
//! [[steps]]
//! type = "route"         # set the output topic
//! topic = "orders.${region}.${currency}"
//! [[steps]]
//! type = "map"           # replace the payload by a JSON object built from expressions
//! fields = { id = "id", amount_cents = "round(amount * 100)", topic = "topic" }
//! [[steps]]
//! type = "dedup"         # drop a repeat of the key within the window (per-worker state)
//! key = "id"             # see `crate::state::dedup` for capacity, entry_bytes, eviction
//! window = "10m"
//! ```
//!
//! Field types: `string`, `int`, `uint` (an int >= 0), `float` (any number),
//! `number` (same as float), `bool`, `object`, `array`, `any`; a trailing `?` makes
//! the field optional (missing or null allowed). Declared types let the compiler
//! reject `len(amount)` before any message arrives.
//!
//! Compilation gathers every payload path used by every step into one
//! [`FieldTable`], so [`json::extract`](super::json::extract) reads each message once.
//! Errors carry a byte range of the configuration file ([`CompileError`]).

use std::fmt;
use std::ops::Range;

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;
use serde::Deserialize;
use toml::Spanned;

use super::expr::{Env, Expr, ExprError, did_you_mean};
use super::json::{self, FieldTable, PATHS_MAX, Slot};
use super::template::{SCRATCH_BYTES, Template};
use super::value::{Type, Value, write_json, write_json_str, write_text};
use crate::message::{Message, Output};
use crate::processor::{Emit, Processor};
use crate::retry::ErrorCategory;
use crate::state::dedup::Dedup;
use crate::state::enrich::{Enrich, Lookup, OnMiss, RedisStepConfig};
use crate::state::{Clock, StateCounts};

/// Most steps in one pipeline. Each step is a few hundred bytes compiled.
pub const STEPS_MAX: usize = 64;
/// Most fields one map step may build (and one schema step may declare).
pub const MAP_FIELDS_MAX: usize = PATHS_MAX;
/// Initial capacity of the map output buffer; it grows (once) to the largest output.
pub const MAP_SCRATCH_BYTES_INITIAL: usize = 4096;

/// One step as written in the configuration. A flat struct rather than an internally
/// tagged enum: serde buffers tagged enums, which loses the `Spanned` positions that
/// errors point at. [`compile`] checks which keys each `type` takes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// `schema`, `filter`, `route` or `map`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Filter condition.
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    /// Route topic template.
    #[serde(default)]
    pub topic: Option<Spanned<String>>,
    /// Route fallback topic, used when the template cannot be rendered (a field is
    /// missing or not a scalar) instead of failing the message.
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    /// Map output fields (name = expression) or schema fields (name = type), in order.
    #[serde(default)]
    pub fields: Option<Spanned<FieldList>>,
    // ---- state steps (src/state/) ----
    /// Dedup key expression.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// Dedup window, a duration (`"10m"`).
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    /// State cache capacity, entries per worker.
    #[serde(default)]
    pub capacity: Option<Spanned<i64>>,
    /// State cache entry size (key + value), bytes.
    #[serde(default)]
    pub entry_bytes: Option<Spanned<i64>>,
    /// State cache eviction: `lru`, `lfu` or `ttl`.
    #[serde(default)]
    pub eviction: Option<Spanned<String>>,
    /// Enrich: how long a looked-up value is reused, a duration.
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
    /// Enrich: the member the value goes into (absent: the top level).
    #[serde(default)]
    pub field: Option<Spanned<String>>,
    /// Enrich: what a key Redis does not have does (`pass`, `drop`, `dead_letter`,
    /// `default`).
    #[serde(default)]
    pub on_miss: Option<Spanned<String>>,
    /// Enrich: the Redis connection (`[processor.redis]`).
    #[serde(default)]
    pub redis: Option<Spanned<RedisStepConfig>>,
}

/// An ordered list of `name = "text"` pairs (TOML tables keep document order).
#[derive(Clone, Debug, Default)]
pub struct FieldList(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for FieldList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FieldList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of `name = \"text\"` pairs")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FieldList, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value::<Spanned<String>>()?));
                }
                Ok(FieldList(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// A configuration error: the byte range in the configuration file, what is wrong,
/// and sometimes a hint. The config module turns the range into file:line:column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub span: Range<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Maps an error at `offset..offset + len` inside a string value (decoded) to the
/// file: through quotes, escapes and the lines of a multi-line string (see
/// [`crate::parse::toml_string`]); the whole value if it cannot be mapped.
pub fn file_span(
    config_text: &str,
    value: &Range<usize>,
    offset: usize,
    len: usize,
) -> Range<usize> {
    use crate::parse::toml_string::raw_offset;
    let raw = config_text.get(value.clone()).unwrap_or("");
    match (raw_offset(raw, offset), raw_offset(raw, offset + len.max(1))) {
        (Some(start), Some(end)) => value.start + start..value.start + end.max(start + 1),
        (Some(start), None) => value.start + start..value.start + start + 1,
        _ => value.clone(),
    }
}

fn expr_error(config_text: &str, value: &Spanned<String>, e: ExprError) -> CompileError {
    CompileError {
        span: file_span(config_text, &value.span(), e.offset, e.len),
        message: e.message,
        hint: e.hint,
    }
}

/// A declared field type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Uint,
    Float,
    Bool,
    Object,
    Array,
    Any,
}

const FIELD_TYPES: [(&str, FieldType); 13] = [
    ("string", FieldType::String),
    ("str", FieldType::String),
    ("int", FieldType::Int),
    ("i64", FieldType::Int),
    ("uint", FieldType::Uint),
    ("u64", FieldType::Uint),
    ("float", FieldType::Float),
    ("f64", FieldType::Float),
    ("number", FieldType::Float),
    ("bool", FieldType::Bool),
    ("object", FieldType::Object),
    ("array", FieldType::Array),
    ("any", FieldType::Any),
];

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Uint => "uint",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Object => "object",
            FieldType::Array => "array",
            FieldType::Any => "any",
        }
    }

    fn ty(self) -> Type {
        match self {
            FieldType::String => Type::STR,
            FieldType::Int | FieldType::Uint => Type::INT,
            FieldType::Float => Type::NUMBER,
            FieldType::Bool => Type::BOOL,
            FieldType::Object | FieldType::Array => Type::JSON,
            FieldType::Any => Type::ANY.intersect(Type(!Type::NULL.0)),
        }
    }

    #[inline]
    fn accepts(self, slot: &Slot<'_>) -> bool {
        match (self, slot) {
            (FieldType::String, Slot::Str(_)) => true,
            (FieldType::Int, Slot::Int(_)) => true,
            (FieldType::Uint, Slot::Int(i)) => *i >= 0,
            (FieldType::Float, Slot::Int(_) | Slot::Float(_)) => true,
            (FieldType::Bool, Slot::Bool(_)) => true,
            (FieldType::Object, Slot::Json(s)) => s.starts_with('{'),
            (FieldType::Array, Slot::Json(s)) => s.starts_with('['),
            (FieldType::Any, s) => !matches!(s, Slot::Missing | Slot::Null | Slot::BadNumber(_)),
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
struct SchemaField {
    slot: u16,
    path: String,
    ty: FieldType,
    optional: bool,
}

#[derive(Clone, Debug)]
enum MapValue {
    /// A constant, already written as JSON (a static mapping).
    Json(Box<[u8]>),
    /// Computed per message (a dynamic mapping).
    Expr(Expr),
}

#[derive(Clone, Debug)]
struct MapField {
    name: String,
    /// `"name":` with the name escaped, written before the value.
    key_json: Box<[u8]>,
    value: MapValue,
}

#[derive(Clone, Debug)]
enum Step {
    Schema(Vec<SchemaField>),
    Filter(Expr),
    /// A template and the topic to use when it cannot be rendered.
    Route(Template, Option<Box<str>>),
    Map(Vec<MapField>),
    /// Drop repeats of a key within a window (per-worker state, see `state::dedup`).
    Dedup(Box<DedupStep>),
    /// Look a key up in Redis through a per-worker cache (see `state::enrich`).
    Enrich(Box<EnrichStep>),
}

/// A compiled `enrich` step: the key expression and this worker's lookup state.
#[derive(Clone, Debug)]
struct EnrichStep {
    key: Expr,
    enrich: Enrich,
}

/// A compiled `dedup` step: the key expression and this worker's window.
#[derive(Clone, Debug)]
struct DedupStep {
    key: Expr,
    dedup: Dedup,
}

/// Longest text of a number or bool key (`i64::MIN`, a float's shortest form).
const KEY_NUMBER_BYTES_MAX: usize = 32;

/// A compiled pipeline. One per worker (it owns reusable scratch buffers).
#[derive(Clone, Debug)]
pub struct Pipeline {
    table: FieldTable,
    steps: Vec<Step>,
    /// An `enrich` step pauses the chain per batch (one Redis round trip for the
    /// batch's misses): [`Processor::process`] runs the chain in rounds.
    has_enrich: bool,
    /// Map output scratch: grows to the largest output once, then reused.
    map_scratch: Vec<u8>,
    /// Topic scratch: reserved once at [`SCRATCH_BYTES`], never grows.
    topic_scratch: Vec<u8>,
    /// Number/bool keys as text: reserved once at [`KEY_NUMBER_BYTES_MAX`], never grows.
    key_scratch: Vec<u8>,
    /// Where state steps read the time, and the time read for the current batch.
    clock: Clock,
    now_ms: u64,
}

/// Compiles `steps` (parsed from `config_text`, whose spans they carry).
pub fn compile(steps: &[StepConfig], config_text: &str) -> Result<Pipeline, CompileError> {
    if steps.len() > STEPS_MAX {
        let span = steps[STEPS_MAX].kind.span();
        return Err(CompileError {
            span,
            message: format!("more than {STEPS_MAX} steps"),
            hint: None,
        });
    }
    let mut table = FieldTable::new();
    // Declared types by path, from schema steps seen so far.
    let mut declared: Vec<(String, Type)> = Vec::new();
    let mut out = Vec::new();
    let mut mapped_at: Option<Range<usize>> = None;
    for step in steps {
        let kind = step.kind.get_ref().as_str();
        let kind_span = step.kind.span();
        let allowed: &[&str] = match kind {
            "schema" | "map" => &["fields"],
            "filter" => &["expr"],
            "route" => &["topic", "default"],
            "dedup" => &["key", "window", "capacity", "entry_bytes", "eviction"],
            "enrich" => &[
                "key",
                "redis",
                "field",
                "on_miss",
                "default",
                "capacity",
                "entry_bytes",
                "eviction",
                "ttl",
            ],
            _ => {
                return Err(CompileError {
                    span: kind_span,
                    message: format!("unknown step type `{kind}`"),
                    hint: did_you_mean(kind, STEP_TYPES).or_else(|| {
                        Some("step types are schema, filter, route, map, dedup and enrich".into())
                    }),
                });
            }
        };
        let present = [
            ("expr", step.expr.as_ref().map(Spanned::span)),
            ("topic", step.topic.as_ref().map(Spanned::span)),
            ("fields", step.fields.as_ref().map(Spanned::span)),
            ("default", step.default.as_ref().map(Spanned::span)),
            ("key", step.key.as_ref().map(Spanned::span)),
            ("window", step.window.as_ref().map(Spanned::span)),
            ("capacity", step.capacity.as_ref().map(Spanned::span)),
            ("entry_bytes", step.entry_bytes.as_ref().map(Spanned::span)),
            ("eviction", step.eviction.as_ref().map(Spanned::span)),
            ("ttl", step.ttl.as_ref().map(Spanned::span)),
            ("field", step.field.as_ref().map(Spanned::span)),
            ("on_miss", step.on_miss.as_ref().map(Spanned::span)),
            ("redis", step.redis.as_ref().map(Spanned::span)),
        ];
        // Every allowed key is required except these.
        let optional =
            ["default", "capacity", "entry_bytes", "eviction", "ttl", "field", "on_miss"];
        for (key, span) in &present {
            if let Some(span) = span {
                if !allowed.contains(key) {
                    return Err(CompileError {
                        span: span.clone(),
                        message: format!("`{key}` does not belong in {} step", a_step(kind)),
                        hint: Some(format!(
                            "{} step takes `{}`",
                            a_step(kind),
                            allowed.join("`, `")
                        )),
                    });
                }
            }
        }
        for (key, span) in &present {
            if span.is_none() && allowed.contains(key) && !optional.contains(key) {
                return Err(CompileError {
                    span: kind_span.clone(),
                    message: format!("{} step needs `{key}`", a_step(kind)),
                    hint: None,
                });
            }
        }
        // A path read after a map would name the old payload, which the map replaced.
        let after_map = mapped_at.clone();
        let mut resolve = |path: &str| -> Result<(u16, Type), String> {
            if after_map.is_some() {
                return Err(format!("`{path}` is read after a `map` step replaced the payload"));
            }
            let slot = table.add(path).map_err(|e| e.to_string())?;
            let ty = declared.iter().rev().find(|(p, _)| p == path).map_or(Type::ANY, |(_, t)| *t);
            Ok((slot, ty))
        };
        let mut pending: Vec<(String, Type)> = Vec::new();
        let compiled = match kind {
            "filter" => {
                let src = step.expr.as_ref().ok_or_else(|| missing(&kind_span))?;
                let e = Expr::compile(src.get_ref(), &mut resolve)
                    .map_err(|e| expr_error(config_text, src, e))?;
                if !e.ty().overlaps(Type::BOOL) {
                    return Err(CompileError {
                        span: src.span(),
                        message: format!(
                            "a filter expression must be a bool, found {}",
                            e.ty().name()
                        ),
                        hint: Some("compare it, e.g. `amount > 100`".into()),
                    });
                }
                Step::Filter(e)
            }
            "route" => {
                let src = step.topic.as_ref().ok_or_else(|| missing(&kind_span))?;
                let t = Template::compile(src.get_ref(), &mut resolve)
                    .map_err(|e| expr_error(config_text, src, e))?;
                let default = match &step.default {
                    Some(d) if d.get_ref().len() > super::template::TOPIC_NAME_BYTES_MAX => {
                        return Err(CompileError {
                            span: d.span(),
                            message: format!(
                                "default topic longer than {} bytes",
                                super::template::TOPIC_NAME_BYTES_MAX
                            ),
                            hint: None,
                        });
                    }
                    Some(d) => Some(d.get_ref().clone().into_boxed_str()),
                    None => None,
                };
                Step::Route(t, default)
            }
            "dedup" => {
                Step::Dedup(Box::new(state_steps::compile_dedup(step, config_text, &mut resolve)?))
            }
            "enrich" => Step::Enrich(Box::new(state_steps::compile_enrich(
                step,
                config_text,
                &mut resolve,
            )?)),
            "map" => {
                let list = step.fields.as_ref().ok_or_else(|| missing(&kind_span))?;
                let mut fields = Vec::new();
                for (name, src) in &list.get_ref().0 {
                    if fields.len() == MAP_FIELDS_MAX {
                        return Err(CompileError {
                            span: name.span(),
                            message: format!("more than {MAP_FIELDS_MAX} map fields"),
                            hint: None,
                        });
                    }
                    let e = Expr::compile(src.get_ref(), &mut resolve)
                        .map_err(|e| expr_error(config_text, src, e))?;
                    let mut key_json = Vec::new();
                    write_json_str(&mut key_json, name.get_ref());
                    key_json.push(b':');
                    let value = match e.constant() {
                        Some(c) => {
                            let mut bytes = Vec::new();
                            write_json(&mut bytes, &c.value()).map_err(|r| CompileError {
                                span: src.span(),
                                message: r.into(),
                                hint: None,
                            })?;
                            MapValue::Json(bytes.into())
                        }
                        None => MapValue::Expr(e),
                    };
                    fields.push(MapField {
                        name: name.get_ref().clone(),
                        key_json: key_json.into(),
                        value,
                    });
                }
                mapped_at = Some(kind_span.clone());
                Step::Map(fields)
            }
            _ => {
                // schema
                let list = step.fields.as_ref().ok_or_else(|| missing(&kind_span))?;
                let mut fields = Vec::new();
                for (name, ty_text) in &list.get_ref().0 {
                    let text = ty_text.get_ref().trim();
                    let (base, optional) = match text.strip_suffix('?') {
                        Some(b) => (b, true),
                        None => (text, false),
                    };
                    let Some(&(_, ty)) = FIELD_TYPES.iter().find(|(n, _)| *n == base) else {
                        return Err(CompileError {
                            span: ty_text.span(),
                            message: format!("unknown field type `{base}`"),
                            hint: did_you_mean(base, FIELD_TYPES.iter().map(|(n, _)| *n)).or_else(|| {
                                Some("types are string, int, uint, float, bool, object, array, any (add `?` for optional)".into())
                            }),
                        });
                    };
                    let path = name.get_ref();
                    let (slot, _) = resolve(path).map_err(|m| CompileError {
                        span: name.span(),
                        message: m,
                        hint: None,
                    })?;
                    let t = if optional { ty.ty().union(Type::NULL) } else { ty.ty() };
                    pending.push((path.clone(), t));
                    fields.push(SchemaField { slot, path: path.clone(), ty, optional });
                }
                Step::Schema(fields)
            }
        };
        out.push(compiled);
        declared.extend(pending);
    }
    Ok(Pipeline {
        table,
        has_enrich: out.iter().any(|s| matches!(s, Step::Enrich(_))),
        steps: out,
        map_scratch: Vec::with_capacity(MAP_SCRATCH_BYTES_INITIAL),
        topic_scratch: Vec::with_capacity(SCRATCH_BYTES),
        key_scratch: Vec::with_capacity(KEY_NUMBER_BYTES_MAX),
        clock: Clock::Engine,
        now_ms: 0,
    })
}

/// "a `map`", "an `enrich`" (error text).
fn a_step(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} `{kind}`")
}

/// Step types a chain knows.
const STEP_TYPES: [&str; 6] = ["schema", "filter", "route", "map", "dedup", "enrich"];

fn missing(span: &Range<usize>) -> CompileError {
    CompileError {
        span: span.clone(),
        message: "step is missing a required key".into(),
        hint: None,
    }
}

/// Parses a TOML document of the form `[[steps]] ...` and compiles it; errors from
/// TOML itself become [`CompileError`]s with TOML's span.
pub fn compile_toml(config_text: &str) -> Result<Pipeline, CompileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        steps: Vec<StepConfig>,
    }
    let doc: Doc = toml::from_str(config_text).map_err(|e| CompileError {
        span: e.span().unwrap_or(0..0),
        message: e.message().to_owned(),
        hint: None,
    })?;
    compile(&doc.steps, config_text)
}

/// What happened to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Kept: the topic ("" without a route step) and the payload (the input's when
    /// there is no map step).
    Emit { topic: &'a str, payload: &'a [u8] },
    /// Dropped by a filter.
    Filtered,
    /// Failed: the reason (static or in the arena); category `serialization`.
    Failed(&'a str),
    /// Failed with another category (an `enrich` step's Redis failure).
    FailedAs(ErrorCategory, &'a str),
    /// Stopped at `enrich` step `step` with its Redis key: only inside a batch, never
    /// returned by [`Pipeline::run`].
    Paused { step: usize, topic: &'a str, payload: &'a [u8], key: &'a [u8] },
}

impl Pipeline {
    /// Sets where state steps read the time (default: the engine clock). Clones made
    /// after this share the clock.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Reads the clock for the next batch (once per batch; [`Processor::process`]
    /// does it, callers of [`Pipeline::run`] may).
    #[inline]
    pub fn read_clock(&mut self) {
        self.now_ms = self.clock.now_ms();
    }

    /// Bytes the state steps allocate per worker when the engine starts (their
    /// caches; cold, for the start-time memory check).
    pub fn state_bytes(&self) -> u64 {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Dedup(d) => d.dedup.settings().cache.bytes(),
                Step::Enrich(e) => e.enrich.settings().cache.bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Connects the `enrich` steps to Redis and gives them the engine's retry policy,
    /// breaker and worker count (cold: when the engine starts, before the workers'
    /// clones are made). Redis unreachable: an error, or a wait by `policy` where the
    /// step says `startup = "wait"`. A chain without `enrich` does nothing.
    pub fn connect_state(
        &mut self,
        workers: usize,
        policy: &crate::retry::RetryPolicy,
        breaker: crate::retry::breaker::BreakerConfig,
    ) -> Result<(), String> {
        for (index, step) in self.steps.iter_mut().enumerate() {
            if let Step::Enrich(e) = step {
                e.enrich.set_runtime(policy.clone(), breaker, workers);
                e.enrich
                    .link()
                    .connect_at_start(workers, policy)
                    .map_err(|m| format!("step {} (enrich): {m}", index + 1))?;
            }
        }
        Ok(())
    }

    /// The Redis links of the `enrich` steps, with their step numbers (cold; for
    /// `corestream check`).
    pub fn redis_links(&self) -> Vec<(usize, std::sync::Arc<crate::state::redis::Link>)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Enrich(e) => Some((i + 1, e.enrich.link().clone())),
                _ => None,
            })
            .collect()
    }

    /// What the state steps counted since the last call, zeroed (once per batch).
    pub fn take_state_counts(&mut self) -> StateCounts {
        let mut total = StateCounts::default();
        for step in &mut self.steps {
            match step {
                Step::Dedup(d) => {
                    let (cache, dropped) = d.dedup.take_counts();
                    total.add(&StateCounts { cache, dedup_dropped: dropped, ..Default::default() });
                }
                Step::Enrich(e) => {
                    let (cache, enrich) = e.enrich.take_counts();
                    total.add(&StateCounts { cache, enrich, ..Default::default() });
                }
                _ => {}
            }
        }
        total
    }

    /// The paths read from each payload, in slot order.
    pub fn fields(&self) -> &FieldTable {
        &self.table
    }

    /// Runs the steps on one message. `slots` must hold at least
    /// [`PATHS_MAX`] entries; it is overwritten. A chain with an `enrich` step looks
    /// the message's key up alone (a batch of one; [`Processor::process`] looks up
    /// a whole batch in one round trip).
    #[inline]
    pub fn run<'a>(
        &mut self,
        message: &Message<'a>,
        slots: &mut [Slot<'a>],
        arena: &'a Bump,
    ) -> Outcome<'a> {
        let mut outcome = self.run_from(0, message, "", message.payload, slots, arena);
        while let Outcome::Paused { step, key, .. } = outcome {
            let now_ms = self.now_ms;
            let lookup = self.enrich_at(step).lookup(&[Some(key)], now_ms, arena)[0];
            outcome = self.resume(step, message, outcome, lookup, slots, arena);
        }
        outcome
    }

    /// Runs steps `first..` on `message` with `payload` (the input's, or what an
    /// `enrich` step made of it), scanning `payload` once; stops at the end, at a
    /// decision, or at an `enrich` step ([`Outcome::Paused`]).
    #[inline]
    fn run_from<'a>(
        &mut self,
        first: usize,
        message: &Message<'a>,
        topic: &'a str,
        payload: &'a [u8],
        slots: &mut [Slot<'a>],
        arena: &'a Bump,
    ) -> Outcome<'a> {
        if let Err(e) = json::extract(payload, &self.table, slots, arena) {
            return Outcome::Failed(bumpalo::format!(in arena, "{}", e).into_bump_str());
        }
        let slots: &[Slot<'a>] = slots;
        let mut topic: &'a str = topic;
        let mut payload: &'a [u8] = payload;
        for (index, step) in self.steps.iter_mut().enumerate().skip(first) {
            let env = Env { slots, message, topic, arena };
            match step {
                Step::Schema(fields) => {
                    for f in fields {
                        let slot = &slots[f.slot as usize];
                        if f.ty.accepts(slot)
                            || (f.optional && matches!(slot, Slot::Missing | Slot::Null))
                        {
                            continue;
                        }
                        return Outcome::Failed(schema_reason(f, slot, arena));
                    }
                }
                Step::Filter(e) => match e.eval_bool(&env) {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Filtered,
                    Err(err) => {
                        let text = e.error_text(&err);
                        return Outcome::Failed(
                            bumpalo::format!(in arena, "step {} (filter): {} in `{}`", index + 1, err.reason, text).into_bump_str(),
                        );
                    }
                },
                Step::Route(t, default) => match t.render(&env, &mut self.topic_scratch, arena) {
                    Ok(rendered) => topic = rendered,
                    Err(_) if default.is_some() => {
                        topic = arena.alloc_str(default.as_deref().unwrap_or(""))
                    }
                    Err(err) => {
                        let field = t.error_field(&err);
                        return Outcome::Failed(
                            bumpalo::format!(in arena, "step {} (route): {}: `{}`", index + 1, err.reason, field).into_bump_str(),
                        );
                    }
                },
                Step::Map(fields) => {
                    let out = &mut self.map_scratch;
                    out.clear();
                    out.push(b'{');
                    for (k, f) in fields.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&f.key_json);
                        match &f.value {
                            MapValue::Json(bytes) => out.extend_from_slice(bytes),
                            MapValue::Expr(e) => {
                                let written = e
                                    .eval(&env)
                                    .map_err(|err| (err.reason, e.error_text(&err)))
                                    .and_then(|v| write_json(out, &v).map_err(|r| (r, e.source())));
                                if let Err((reason, text)) = written {
                                    return Outcome::Failed(
                                        bumpalo::format!(in arena, "step {} (map) field `{}`: {} in `{}`", index + 1, f.name, reason, text)
                                            .into_bump_str(),
                                    );
                                }
                            }
                        }
                    }
                    out.push(b'}');
                    payload = arena.alloc_slice_copy(out);
                }
                Step::Dedup(d) => {
                    // Hot: one expression, one cache probe (and an insert for a new key).
                    let DedupStep { key: key_expr, dedup } = &mut **d;
                    let key = match key_expr.eval(&env) {
                        Ok(v) => v,
                        Err(err) => {
                            let text = key_expr.error_text(&err);
                            return Outcome::Failed(
                                bumpalo::format!(in arena, "step {} (dedup) key: {} in `{}`", index + 1, err.reason, text).into_bump_str(),
                            );
                        }
                    };
                    let bytes = match key_text(key, &mut self.key_scratch) {
                        Ok(bytes) => bytes,
                        Err(what) => {
                            return Outcome::Failed(state_key_reason(
                                index, "dedup", key_expr, what, arena,
                            ));
                        }
                    };
                    match dedup.is_repeat(bytes, self.now_ms) {
                        Ok(false) => {}
                        Ok(true) => return Outcome::Filtered,
                        Err(_) => {
                            return Outcome::Failed(state_key_reason(
                                index,
                                "dedup",
                                key_expr,
                                "is longer than entry_bytes",
                                arena,
                            ));
                        }
                    }
                }
                Step::Enrich(e) => {
                    // The chain pauses here: the batch's keys are looked up together.
                    let EnrichStep { key: key_expr, enrich } = &mut **e;
                    let key = match key_expr.eval(&env) {
                        Ok(v) => v,
                        Err(err) => {
                            let text = key_expr.error_text(&err);
                            return Outcome::Failed(
                                bumpalo::format!(in arena, "step {} (enrich) key: {} in `{}`", index + 1, err.reason, text).into_bump_str(),
                            );
                        }
                    };
                    let redis_key = key_text(key, &mut self.key_scratch)
                        .and_then(|text| enrich.redis_key(text, arena));
                    return match redis_key {
                        Ok(key) => Outcome::Paused { step: index, topic, payload, key },
                        Err(what) => Outcome::Failed(state_key_reason(
                            index, "enrich", key_expr, what, arena,
                        )),
                    };
                }
            }
        }
        Outcome::Emit { topic, payload }
    }

    fn enrich_at(&mut self, step: usize) -> &mut Enrich {
        match &mut self.steps[step] {
            Step::Enrich(e) => &mut e.enrich,
            _ => unreachable!("Outcome::Paused names an enrich step"),
        }
    }

    /// Applies `lookup` to a message paused at enrich step `step` (merge, or the
    /// miss policy, or the failure) and runs the rest of the chain.
    fn resume<'a>(
        &mut self,
        step: usize,
        message: &Message<'a>,
        paused: Outcome<'a>,
        lookup: Option<Lookup<'a>>,
        slots: &mut [Slot<'a>],
        arena: &'a Bump,
    ) -> Outcome<'a> {
        let Outcome::Paused { topic, payload, key, .. } = paused else { return paused };
        let enrich = self.enrich_at(step);
        let merged = match lookup {
            Some(Lookup::Found(value)) => enrich.merge(payload, value, arena),
            Some(Lookup::NotFound) => match enrich.settings().on_miss {
                OnMiss::Pass => Ok(payload),
                OnMiss::Drop => {
                    enrich.count_dropped();
                    return Outcome::Filtered;
                }
                OnMiss::DeadLetter => {
                    return Outcome::Failed(
                        bumpalo::format!(in arena, "step {} (enrich): Redis has no value for `{}` (on_miss = \"dead_letter\")",
                            step + 1, String::from_utf8_lossy(key)).into_bump_str(),
                    );
                }
                OnMiss::Default => {
                    let default = enrich.settings().default.as_deref().unwrap_or(b"{}");
                    enrich.merge(payload, default, arena)
                }
            },
            Some(Lookup::Failed(category, reason)) => {
                let reason = bumpalo::format!(in arena, "step {} (enrich): {reason}", step + 1);
                return Outcome::FailedAs(category, reason.into_bump_str());
            }
            None => unreachable!("a paused message has a key, so a lookup"),
        };
        match merged {
            Ok(payload) => self.run_from(step + 1, message, topic, payload, slots, arena),
            Err(why) => Outcome::Failed(
                bumpalo::format!(in arena, "step {} (enrich): {why}", step + 1).into_bump_str(),
            ),
        }
    }

    /// [`Processor::process`] for a chain with `enrich` steps: the chain runs in
    /// rounds, every live message of the batch pausing at the same `enrich` step,
    /// whose keys are then looked up together (one round trip for the misses).
    fn process_in_rounds<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        let arena = emit.arena();
        let mut slots = [Slot::Missing; PATHS_MAX];
        let mut outcomes: BumpVec<'a, Outcome<'a>> = BumpVec::with_capacity_in(input.len(), arena);
        for message in input {
            outcomes.push(self.run_from(0, message, "", message.payload, &mut slots, arena));
        }
        // Every live message pauses at the same step: the steps before it are the
        // same for all of them.
        while let Some(step) = outcomes.iter().find_map(|o| match o {
            Outcome::Paused { step, .. } => Some(*step),
            _ => None,
        }) {
            let keys: BumpVec<'a, Option<&'a [u8]>> = BumpVec::from_iter_in(
                outcomes.iter().map(|o| match o {
                    Outcome::Paused { key, .. } => Some(*key),
                    _ => None,
                }),
                arena,
            );
            let now_ms = self.now_ms;
            let lookups = self.enrich_at(step).lookup(&keys, now_ms, arena);
            for (index, message) in input.iter().enumerate() {
                if matches!(outcomes[index], Outcome::Paused { .. }) {
                    outcomes[index] = self.resume(
                        step,
                        message,
                        outcomes[index],
                        lookups[index],
                        &mut slots,
                        arena,
                    );
                }
            }
        }
        for (index, (message, outcome)) in input.iter().zip(outcomes.iter()).enumerate() {
            emit_outcome(emit, index, message, *outcome);
        }
    }
}

/// Hands one message's outcome to `emit` (hot).
#[inline]
fn emit_outcome<'a>(
    emit: &mut Emit<'a, '_>,
    index: usize,
    message: &Message<'a>,
    outcome: Outcome<'a>,
) {
    match outcome {
        Outcome::Emit { topic, payload } => emit.emit(Output {
            input: index as u32,
            topic,
            key: message.key,
            payload,
            headers: message.headers,
        }),
        Outcome::Filtered => {}
        Outcome::Failed(reason) => emit.fail(index as u32, ErrorCategory::Serialization, reason),
        Outcome::FailedAs(category, reason) => emit.fail(index as u32, category, reason),
        Outcome::Paused { .. } => unreachable!("every paused message was resumed"),
    }
}

/// A state step's key as bytes: text as is, numbers and bools as their text (in
/// `scratch`); null or a non-finite number is an error (hot).
#[inline]
fn key_text<'k>(key: Value<'k>, scratch: &'k mut Vec<u8>) -> Result<&'k [u8], &'static str> {
    match key {
        Value::Str(s) | Value::Json(s) => Ok(s.as_bytes()),
        Value::Null => Err("is null (a missing field?)"),
        other => {
            scratch.clear();
            write_text(scratch, &other).map_err(|_| "is not a finite number")?;
            debug_assert!(scratch.len() <= KEY_NUMBER_BYTES_MAX);
            Ok(scratch)
        }
    }
}

#[cold]
fn state_key_reason<'a>(
    index: usize,
    kind: &str,
    key: &Expr,
    what: &str,
    arena: &'a Bump,
) -> &'a str {
    bumpalo::format!(in arena, "step {} ({kind}): key `{}` {}", index + 1, key.source(), what)
        .into_bump_str()
}

#[cold]
fn schema_reason<'a>(f: &SchemaField, slot: &Slot<'_>, arena: &'a Bump) -> &'a str {
    let s = match slot {
        Slot::Missing => bumpalo::format!(in arena, "missing required field `{}`", f.path),
        Slot::BadNumber(r) => bumpalo::format!(in arena, "field `{}`: {}", f.path, r),
        Slot::Int(i) if f.ty == FieldType::Uint => {
            bumpalo::format!(in arena, "field `{}` is {}, expected uint (an int >= 0)", f.path, i)
        }
        other => {
            bumpalo::format!(in arena, "field `{}` is {}, expected {}", f.path, other.type_name(), f.ty.name())
        }
    };
    s.into_bump_str()
}

impl Processor for Pipeline {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        self.read_clock();
        if self.has_enrich {
            return self.process_in_rounds(input, emit);
        }
        let arena = emit.arena();
        let mut slots = [Slot::Missing; PATHS_MAX];
        for (index, message) in input.iter().enumerate() {
            let outcome = self.run_from(0, message, "", message.payload, &mut slots, arena);
            emit_outcome(emit, index, message, outcome);
        }
    }

    #[inline]
    fn publish_counts(&mut self, local: &mut crate::metrics::counters::LocalCounts) {
        // Once per batch: a walk over the steps (a few) and plain adds.
        self.take_state_counts().publish(local);
    }
}

/// The compiled form, for `corestream validate`: the field table (one scan reads all
/// of these), then each step with folded constants and template parts.
impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline: {} steps; one scan of each payload reads {} fields",
            self.steps.len(),
            self.table.len()
        )?;
        for (slot, path) in self.table.paths().iter().enumerate() {
            writeln!(f, "  field {slot}: {path}")?;
        }
        for (k, step) in self.steps.iter().enumerate() {
            let n = k + 1;
            match step {
                Step::Schema(fields) => {
                    let list: Vec<String> = fields
                        .iter()
                        .map(|s| {
                            format!(
                                "{} {}{}",
                                s.path,
                                s.ty.name(),
                                if s.optional { "?" } else { "" }
                            )
                        })
                        .collect();
                    writeln!(f, "  step {n} schema: {}", list.join(", "))?;
                }
                Step::Filter(e) => match e.constant() {
                    Some(c) => writeln!(
                        f,
                        "  step {n} filter: constant {c} (folded from `{}`)",
                        e.source()
                    )?,
                    None => writeln!(f, "  step {n} filter: {e}  [{} nodes]", e.node_count())?,
                },
                Step::Route(t, default) => {
                    match t.constant() {
                        Some(c) => write!(f, "  step {n} route: constant topic {c:?}")?,
                        None => write!(f, "  step {n} route: {t}")?,
                    }
                    match default {
                        Some(d) => writeln!(f, "; when it cannot be rendered: {d:?}")?,
                        None => writeln!(f)?,
                    }
                }
                Step::Dedup(d) => {
                    let c = &d.dedup.settings().cache;
                    writeln!(
                        f,
                        "  step {n} dedup: key {}, window {}ms, {} keys × {} B per worker ({} eviction, {} bytes)",
                        d.key,
                        c.ttl_ms.unwrap_or(0),
                        c.entries_max,
                        c.entry_bytes_max,
                        c.eviction.name(),
                        c.bytes()
                    )?;
                }
                Step::Enrich(e) => {
                    let st = e.enrich.settings();
                    let c = &st.cache;
                    writeln!(
                        f,
                        "  step {n} enrich: key {} from {} ({}{}), into {}; on miss: {}; cache {} keys × {} B per worker ({} eviction, ttl {}ms, {} bytes)",
                        e.key,
                        st.redis.url_redacted(),
                        st.value.name(),
                        if st.prefix.is_empty() {
                            String::new()
                        } else {
                            format!(", prefix {:?}", String::from_utf8_lossy(&st.prefix))
                        },
                        st.field
                            .as_deref()
                            .map_or("the top level".to_string(), |f| format!("`{f}`")),
                        st.on_miss.name(),
                        c.entries_max,
                        c.entry_bytes_max,
                        c.eviction.name(),
                        c.ttl_ms.unwrap_or(0),
                        c.bytes()
                    )?;
                }
                Step::Map(fields) => {
                    writeln!(f, "  step {n} map:")?;
                    for m in fields {
                        match &m.value {
                            MapValue::Json(bytes) => writeln!(
                                f,
                                "    {} = {} (constant)",
                                m.name,
                                String::from_utf8_lossy(bytes)
                            )?,
                            MapValue::Expr(e) => writeln!(f, "    {} = {e}", m.name)?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

mod state_steps;
#[cfg(test)]
mod tests;
