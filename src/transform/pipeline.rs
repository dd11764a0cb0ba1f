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
use serde::Deserialize;
use toml::Spanned;

use super::expr::{Env, Expr, ExprError, did_you_mean};
use super::json::{self, FieldTable, PATHS_MAX, Slot};
use super::template::{SCRATCH_BYTES, Template};
use super::value::{Type, Value, write_json, write_json_str, write_text};
use crate::message::{Message, Output};
use crate::processor::{Emit, Processor};
use crate::retry::ErrorCategory;
use crate::state::dedup::{Dedup, DedupSettings};
use crate::state::{Clock, Eviction, StateCounts};

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
            _ => {
                return Err(CompileError {
                    span: kind_span,
                    message: format!("unknown step type `{kind}`"),
                    hint: did_you_mean(kind, STEP_TYPES).or_else(|| {
                        Some("step types are schema, filter, route, map and dedup".into())
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
        ];
        // Every allowed key is required except these.
        let optional = ["default", "capacity", "entry_bytes", "eviction"];
        for (key, span) in &present {
            if let Some(span) = span {
                if !allowed.contains(key) {
                    return Err(CompileError {
                        span: span.clone(),
                        message: format!("`{key}` does not belong in a `{kind}` step"),
                        hint: Some(format!("a `{kind}` step takes `{}`", allowed.join("`, `"))),
                    });
                }
            }
        }
        for (key, span) in &present {
            if span.is_none() && allowed.contains(key) && !optional.contains(key) {
                return Err(CompileError {
                    span: kind_span.clone(),
                    message: format!("a `{kind}` step needs `{key}`"),
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
            "dedup" => Step::Dedup(Box::new(compile_dedup(step, config_text, &mut resolve)?)),
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
        steps: out,
        map_scratch: Vec::with_capacity(MAP_SCRATCH_BYTES_INITIAL),
        topic_scratch: Vec::with_capacity(SCRATCH_BYTES),
        key_scratch: Vec::with_capacity(KEY_NUMBER_BYTES_MAX),
        clock: Clock::Engine,
        now_ms: 0,
    })
}

/// Step types a chain knows.
const STEP_TYPES: [&str; 5] = ["schema", "filter", "route", "map", "dedup"];

/// Compiles a `dedup` step (cold): the key expression and the window's settings;
/// the cache itself is allocated per worker when the chain is cloned.
fn compile_dedup(
    step: &StepConfig,
    config_text: &str,
    resolve: &mut super::expr::Resolver<'_>,
) -> Result<DedupStep, CompileError> {
    let kind_span = step.kind.span();
    let src = step.key.as_ref().ok_or_else(|| missing(&kind_span))?;
    let key = Expr::compile(src.get_ref(), resolve).map_err(|e| expr_error(config_text, src, e))?;
    if key.ty() == Type::NULL {
        return Err(CompileError {
            span: src.span(),
            message: "a dedup key must not be null".into(),
            hint: Some("name a field, e.g. `id`, or `key` for the message key".into()),
        });
    }
    let window = step.window.as_ref().ok_or_else(|| missing(&kind_span))?;
    let window_ms = match crate::parse::duration::parse_duration(window.get_ref()) {
        Ok(d) if d.as_millis() >= 1 => d.as_millis().min(u64::MAX as u128) as u64,
        Ok(_) => {
            return Err(CompileError {
                span: window.span(),
                message: "a dedup window must be at least 1ms".into(),
                hint: None,
            });
        }
        Err(e) => {
            return Err(CompileError {
                span: window.span(),
                message: format!("invalid window: {e}"),
                hint: Some("a duration such as \"30s\", \"10m\" or \"1h\"".into()),
            });
        }
    };
    let mut settings = DedupSettings::new(window_ms);
    let positive = |value: &Option<Spanned<i64>>, name: &str, max: usize| match value {
        None => Ok(None),
        Some(v) if *v.get_ref() >= 1 && *v.get_ref() as u64 <= max as u64 => {
            Ok(Some(*v.get_ref() as usize))
        }
        Some(v) => Err(CompileError {
            span: v.span(),
            message: format!("`{name}` must be 1..={max}"),
            hint: None,
        }),
    };
    if let Some(n) = positive(&step.capacity, "capacity", crate::state::cache::ENTRIES_MAX)? {
        settings.cache.entries_max = n;
    }
    if let Some(n) =
        positive(&step.entry_bytes, "entry_bytes", crate::state::cache::ENTRY_BYTES_MAX)?
    {
        settings.cache.entry_bytes_max = n;
    }
    if let Some(e) = &step.eviction {
        settings.cache.eviction = Eviction::from_name(e.get_ref()).ok_or_else(|| CompileError {
            span: e.span(),
            message: format!("unknown eviction `{}`", e.get_ref()),
            hint: did_you_mean(e.get_ref(), Eviction::NAMES)
                .or_else(|| Some("eviction is lru, lfu or ttl".into())),
        })?;
    }
    let dedup = Dedup::new(settings).map_err(|message| CompileError {
        span: step
            .capacity
            .as_ref()
            .map(Spanned::span)
            .or_else(|| step.entry_bytes.as_ref().map(Spanned::span))
            .unwrap_or(kind_span),
        message,
        hint: Some("memory per worker is capacity × (entry_bytes + 40) bytes".into()),
    })?;
    Ok(DedupStep { key, dedup })
}

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
    /// Failed: the reason (static or in the arena).
    Failed(&'a str),
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
                _ => 0,
            })
            .sum()
    }

    /// What the state steps counted since the last call, zeroed (once per batch).
    pub fn take_state_counts(&mut self) -> StateCounts {
        let mut total = StateCounts::default();
        for step in &mut self.steps {
            if let Step::Dedup(d) = step {
                let (cache, dropped) = d.dedup.take_counts();
                total.add(&StateCounts { cache, dedup_dropped: dropped });
            }
        }
        total
    }

    /// The paths read from each payload, in slot order.
    pub fn fields(&self) -> &FieldTable {
        &self.table
    }

    /// Runs the steps on one message. `slots` must hold at least
    /// [`PATHS_MAX`] entries; it is overwritten.
    #[inline]
    pub fn run<'a>(
        &mut self,
        message: &Message<'a>,
        slots: &mut [Slot<'a>],
        arena: &'a Bump,
    ) -> Outcome<'a> {
        if let Err(e) = json::extract(message.payload, &self.table, slots, arena) {
            return Outcome::Failed(bumpalo::format!(in arena, "{}", e).into_bump_str());
        }
        let slots: &[Slot<'a>] = slots;
        let mut topic: &'a str = "";
        let mut payload: &'a [u8] = message.payload;
        for (index, step) in self.steps.iter_mut().enumerate() {
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
                    let bytes: &[u8] = match key {
                        Value::Str(s) | Value::Json(s) => s.as_bytes(),
                        Value::Null => {
                            return Outcome::Failed(dedup_reason(
                                index,
                                key_expr,
                                "is null (a missing field?)",
                                arena,
                            ));
                        }
                        other => {
                            self.key_scratch.clear();
                            if write_text(&mut self.key_scratch, &other).is_err() {
                                return Outcome::Failed(dedup_reason(
                                    index,
                                    key_expr,
                                    "is not a finite number",
                                    arena,
                                ));
                            }
                            debug_assert!(self.key_scratch.len() <= KEY_NUMBER_BYTES_MAX);
                            &self.key_scratch
                        }
                    };
                    match dedup.is_repeat(bytes, self.now_ms) {
                        Ok(false) => {}
                        Ok(true) => return Outcome::Filtered,
                        Err(_) => {
                            return Outcome::Failed(dedup_reason(
                                index,
                                key_expr,
                                "is longer than entry_bytes",
                                arena,
                            ));
                        }
                    }
                }
            }
        }
        Outcome::Emit { topic, payload }
    }
}

#[cold]
fn dedup_reason<'a>(index: usize, key: &Expr, what: &str, arena: &'a Bump) -> &'a str {
    bumpalo::format!(in arena, "step {} (dedup): key `{}` {}", index + 1, key.source(), what)
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
        let arena = emit.arena();
        let mut slots = [Slot::Missing; PATHS_MAX];
        for (index, message) in input.iter().enumerate() {
            match self.run(message, &mut slots, arena) {
                Outcome::Emit { topic, payload } => emit.emit(Output {
                    input: index as u32,
                    topic,
                    key: message.key,
                    payload,
                    headers: message.headers,
                }),
                Outcome::Filtered => {}
                Outcome::Failed(reason) => {
                    emit.fail(index as u32, ErrorCategory::Serialization, reason)
                }
            }
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

#[cfg(test)]
mod tests;
