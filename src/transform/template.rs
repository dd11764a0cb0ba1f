//! Topic templates: `orders.${region}.${currency}`, compiled once, rendered per
//! message into the worker's arena.
//!
//! Syntax: literal text with `${name}` fields. `name` is a dotted payload path
//! (`${address.city}`) or metadata: `${key}`, `${topic}`, `${partition}`,
//! `${offset}`, `${timestamp}`, `${header.NAME}` (`${payload.key}` reads a payload
//! field named `key`). `${name:-text}` renders `text` when the field is missing or
//! null; without a default such a message fails with the reason. `$$` is a literal
//! `$`. Strings render as they are, numbers as JSON prints them, bools as
//! `true`/`false`; an object or array is an error.
//!
//! Rendering writes into a scratch buffer reserved once ([`TOPIC_NAME_BYTES_MAX`] plus the
//! longest number) and copies the result into the arena: no heap allocation.

use std::fmt;

use super::expr::{Env, ExprError, MetaKind, Name, Resolver, classify, header_value, meta_value};
use super::json::PATH_SEGMENTS_MAX;
use super::value::{Value, write_text};

/// Longest topic a template may render: Kafka's limit on topic names.
pub use crate::limits::TOPIC_NAME_BYTES_MAX;
/// Longest text a number or bool renders to (`-9223372036854775808`, a 17-digit float
/// with exponent): scratch space reserved beyond [`TOPIC_NAME_BYTES_MAX`] so that writing a
/// number never grows the buffer.
pub const NUMBER_TEXT_BYTES_MAX: usize = 32;
/// Capacity to reserve for the scratch buffer passed to [`Template::render`].
pub const SCRATCH_BYTES: usize = TOPIC_NAME_BYTES_MAX + NUMBER_TEXT_BYTES_MAX;
/// Most parts (literals and fields) in one template.
pub const PARTS_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq)]
enum Source {
    Field(u16),
    Meta(MetaKind),
    Header(Box<str>),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// `literals[start..end]`
    Lit(u32, u32),
    Value {
        source: Source,
        name: Box<str>,
        default: Option<Box<str>>,
    },
}

/// A rendering failure: which field and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderError {
    part: u16,
    pub reason: &'static str,
}

/// A compiled template.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    literals: String,
}

fn err(offset: usize, len: usize, message: impl Into<String>, hint: Option<String>) -> ExprError {
    ExprError { offset, len, message: message.into(), hint }
}

impl Template {
    /// Compiles `src`; `resolve` assigns payload paths their slots.
    pub fn compile(src: &str, resolve: &mut Resolver<'_>) -> Result<Template, ExprError> {
        let mut t = Template { source: src.to_owned(), parts: Vec::new(), literals: String::new() };
        let b = src.as_bytes();
        let mut i = 0;
        let mut lit_start = t.literals.len();
        while i < b.len() {
            if b[i] != b'$' {
                let ch = src[i..].chars().next().unwrap_or(' ');
                t.literals.push(ch);
                i += ch.len_utf8();
                continue;
            }
            match b.get(i + 1) {
                Some(b'$') => {
                    t.literals.push('$');
                    i += 2;
                    continue;
                }
                Some(b'{') => {}
                _ => {
                    t.literals.push('$');
                    i += 1;
                    continue;
                }
            }
            if t.literals.len() > lit_start {
                t.parts.push(Part::Lit(lit_start as u32, t.literals.len() as u32));
            }
            let open = i;
            let Some(close) = src[open..].find('}').map(|k| open + k) else {
                return Err(err(open, 2, "unclosed `${`", Some("close the field with `}`".into())));
            };
            let inner = &src[open + 2..close];
            let (name, default) = match inner.find(":-") {
                Some(k) => (&inner[..k], Some(&inner[k + 2..])),
                None => (inner, None),
            };
            let name_at = open + 2;
            if name.is_empty() {
                return Err(err(
                    open,
                    close + 1 - open,
                    "empty field name in `${}`",
                    Some("write a field such as `${region}`".into()),
                ));
            }
            if let Some((k, c)) = name
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            {
                let hint = (c == ':').then(|| "a default is written `${name:-default}`".to_owned());
                return Err(err(
                    name_at + k,
                    c.len_utf8(),
                    format!("invalid character `{c}` in a template field name"),
                    hint,
                ));
            }
            if name.split('.').any(str::is_empty) {
                return Err(err(
                    name_at,
                    name.len(),
                    format!("empty segment in field path `{name}`"),
                    None,
                ));
            }
            if name.split('.').count() > PATH_SEGMENTS_MAX {
                return Err(err(
                    name_at,
                    name.len(),
                    format!("field path `{name}` has more than {PATH_SEGMENTS_MAX} segments"),
                    None,
                ));
            }
            let source = match classify(name) {
                Name::Meta(kind) => Source::Meta(kind),
                Name::Header(h) => Source::Header(h.into()),
                Name::Field(p) => {
                    let (slot, _) = resolve(p).map_err(|m| err(name_at, name.len(), m, None))?;
                    Source::Field(slot)
                }
            };
            if let Some(d) = default {
                if d.len() > TOPIC_NAME_BYTES_MAX {
                    return Err(err(
                        name_at + name.len(),
                        d.len() + 2,
                        "default longer than a topic may be",
                        None,
                    ));
                }
            }
            t.parts.push(Part::Value {
                source,
                name: name.into(),
                default: default.map(Into::into),
            });
            i = close + 1;
            lit_start = t.literals.len();
        }
        if t.literals.len() > lit_start || t.parts.is_empty() {
            t.parts.push(Part::Lit(lit_start as u32, t.literals.len() as u32));
        }
        if t.parts.len() > PARTS_MAX {
            return Err(err(
                0,
                src.len(),
                format!("template has more than {PARTS_MAX} parts"),
                None,
            ));
        }
        if t.literals.len() > TOPIC_NAME_BYTES_MAX {
            return Err(err(
                0,
                src.len(),
                format!("template text is longer than {TOPIC_NAME_BYTES_MAX} bytes"),
                None,
            ));
        }
        Ok(t)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rendered text when the template has no fields.
    pub fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(a, b)] => Some(&self.literals[*a as usize..*b as usize]),
            _ => None,
        }
    }

    /// The field name of the part that failed.
    pub fn error_field(&self, e: &RenderError) -> &str {
        match self.parts.get(e.part as usize) {
            Some(Part::Value { name, .. }) => name,
            _ => "",
        }
    }

    /// Renders into `scratch` (cleared first; reserve [`SCRATCH_BYTES`] once so it
    /// never grows) and copies the result into the arena.
    #[inline]
    pub fn render<'a>(
        &self,
        env: &Env<'_>,
        scratch: &mut Vec<u8>,
        arena: &'a bumpalo::Bump,
    ) -> Result<&'a str, RenderError> {
        scratch.clear();
        self.render_into(env, scratch)?;
        // Every part is UTF-8 (literals and strings are `str`, numbers ASCII).
        let text = std::str::from_utf8(scratch)
            .map_err(|_| RenderError { part: 0, reason: "rendered topic is not UTF-8" })?;
        Ok(arena.alloc_str(text))
    }

    /// Appends the rendering to `out`; fails before `out` would pass
    /// [`TOPIC_NAME_BYTES_MAX`].
    #[inline]
    pub fn render_into(&self, env: &Env<'_>, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let base = out.len();
        for (k, part) in self.parts.iter().enumerate() {
            let fail = |reason| RenderError { part: k as u16, reason };
            let (source, default) = match part {
                Part::Lit(a, b) => {
                    let text = &self.literals.as_bytes()[*a as usize..*b as usize];
                    if text.len() > TOPIC_NAME_BYTES_MAX - (out.len() - base) {
                        return Err(fail("rendered topic longer than 249 bytes"));
                    }
                    out.extend_from_slice(text);
                    continue;
                }
                Part::Value { source, default, .. } => (source, default),
            };
            let value = match source {
                Source::Field(slot) => Value::from_slot(env.slots[*slot as usize]).map_err(fail)?,
                Source::Meta(kind) => meta_value(*kind, env).map_err(fail)?,
                Source::Header(h) => header_value(h, env).map_err(fail)?,
            };
            let room = TOPIC_NAME_BYTES_MAX - (out.len() - base);
            match value {
                Value::Null => match default {
                    Some(d) if d.len() <= room => out.extend_from_slice(d.as_bytes()),
                    Some(_) => return Err(fail("rendered topic longer than 249 bytes")),
                    None => return Err(fail("template field is missing or null")),
                },
                Value::Json(_) => return Err(fail("template field is an object or array")),
                Value::Str(s) if s.len() > room => {
                    return Err(fail("rendered topic longer than 249 bytes"));
                }
                v => write_text(out, &v).map_err(fail)?,
            }
            if out.len() - base > TOPIC_NAME_BYTES_MAX {
                return Err(fail("rendered topic longer than 249 bytes"));
            }
        }
        Ok(())
    }
}

/// Shows the compiled parts: `"orders." + region + "." + currency`.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, part) in self.parts.iter().enumerate() {
            if k > 0 {
                f.write_str(" + ")?;
            }
            match part {
                Part::Lit(a, b) => write!(f, "{:?}", &self.literals[*a as usize..*b as usize])?,
                Part::Value { source, name, default } => {
                    match source {
                        Source::Field(slot) => write!(f, "{name}@{slot}")?,
                        Source::Meta(kind) => write!(f, "<{}>", kind.name())?,
                        Source::Header(h) => write!(f, "<header {h:?}>")?,
                    }
                    if let Some(d) = default {
                        write!(f, " (default {d:?})")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Fuzz invariant for `fuzz/fuzz_targets/template.rs`: `data` is a template, a newline
/// and a JSON object. Compiling never panics; when the template compiles and the
/// payload is valid, rendering equals a naive left-to-right substitution written here
/// independently, and fails exactly when the naive one finds a missing field.
#[doc(hidden)]
pub fn fuzz_check_template(data: &[u8]) {
    use crate::message::Message;
    use crate::transform::json::{FieldTable, PATHS_MAX, Slot, extract};
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(src) = std::str::from_utf8(&data[..split]) else { return };
    let payload = data.get(split + 1..).unwrap_or(b"");
    let mut table = FieldTable::new();
    let mut resolve = |p: &str| {
        table.add(p).map(|s| (s, crate::transform::value::Type::ANY)).map_err(|e| e.to_string())
    };
    let Ok(t) = Template::compile(src, &mut resolve) else { return };
    let arena = bumpalo::Bump::new();
    let mut slots = [Slot::Missing; PATHS_MAX];
    if extract(payload, &table, &mut slots, &arena).is_err() {
        return;
    }
    let message = Message::default();
    let env = Env { slots: &slots, message: &message, topic: "", arena: &arena };
    let mut scratch = Vec::with_capacity(SCRATCH_BYTES);
    let ours = t.render(&env, &mut scratch, &arena);
    assert_eq!(
        scratch.capacity(),
        SCRATCH_BYTES,
        "rendering grew the scratch buffer (a heap allocation)"
    );

    // Naive substitution: find `${`, the next `}`, split off `:-`.
    let value_text = |name: &str| -> Result<Option<String>, ()> {
        let path = name.strip_prefix("payload.").unwrap_or(name);
        if ["key", "topic"].contains(&name) {
            return Ok(Some(String::new()));
        }
        if ["partition", "offset", "timestamp"].contains(&name) {
            return Ok(Some("0".into()));
        }
        if name.starts_with("header.") {
            return Ok(None);
        }
        match table.slot_of(path).map(|s| slots[s as usize]) {
            Some(Slot::Str(s)) => Ok(Some(s.to_owned())),
            Some(Slot::Int(i)) => Ok(Some(i.to_string())),
            Some(Slot::Float(f)) => Ok(Some(serde_json::to_string(&f).map_err(|_| ())?)),
            Some(Slot::Bool(b)) => Ok(Some(b.to_string())),
            Some(Slot::Null | Slot::Missing) | None => Ok(None),
            Some(Slot::Json(_) | Slot::BadNumber(_)) => Err(()),
        }
    };
    let mut naive = String::new();
    let mut rest = src;
    let mut ok = true;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("$$") {
            naive.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let close = r.find('}').expect("compiled templates close every field");
            let field = &r[..close];
            let (name, default) = match field.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (field, None),
            };
            match (value_text(name), default) {
                (Ok(Some(v)), _) => naive.push_str(&v),
                (Ok(None), Some(d)) => naive.push_str(d),
                _ => ok = false,
            }
            rest = &r[close + 1..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            naive.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let ok = ok && naive.len() <= TOPIC_NAME_BYTES_MAX;
    match ours {
        Ok(text) => {
            assert!(ok, "{src:?}: rendered {text:?} but the naive substitution fails");
            assert_eq!(text, naive, "{src:?}");
        }
        Err(e) => assert!(!ok, "{src:?}: render failed ({}) but naive gives {naive:?}", e.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Headers, Message, Meta};
    use crate::transform::json::{FieldTable, PATHS_MAX, Slot, extract};
    use crate::transform::value::Type;

    fn render(src: &str, payload: &str) -> Result<String, String> {
        let mut table = FieldTable::new();
        let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
        let t = Template::compile(src, &mut resolve).map_err(|e| e.to_string())?;
        let arena = bumpalo::Bump::new();
        let mut slots = [Slot::Missing; PATHS_MAX];
        extract(payload.as_bytes(), &table, &mut slots, &arena).unwrap();
        let mut hbuf = [0u8; 64];
        let hlen = Headers::encode([(&b"tenant"[..], Some(&b"acme"[..]))], &mut hbuf).unwrap();
        let message = Message {
            key: b"k-9",
            payload: payload.as_bytes(),
            headers: Headers::from_encoded(&hbuf[..hlen]),
            meta: Meta {
                partition: 3,
                position: 77,
                timestamp_ms: 1_700_000_000_000,
                ingest_ns: 0,
            },
        };
        let env = Env { slots: &slots, message: &message, topic: "in", arena: &arena };
        let mut scratch = Vec::with_capacity(SCRATCH_BYTES);
        let out = t.render(&env, &mut scratch, &arena).map(str::to_owned);
        out.map_err(|e| format!("{} `{}`", e.reason, t.error_field(&e)))
    }

    const ORDER: &str = r#"{"region":"eu-west","currency":"EUR","id":7,"amount":1.5,"address":{"city":"Zürich"},"n":null,"obj":{}}"#;

    #[test]
    fn renders_fields_metadata_and_defaults() {
        let cases = [
            ("orders.${region}.${currency}", "orders.eu-west.EUR"),
            ("${address.city}/${id}/${amount}", "Zürich/7/1.5"),
            ("${key}-${partition}-${offset}-${timestamp}", "k-9-3-77-1700000000000"),
            ("t.${header.tenant}.${header.none:-x}", "t.acme.x"),
            ("${missing:-unknown}.${n:-null}", "unknown.null"),
            ("static", "static"),
            ("cost $$5 $x", "cost $5 $x"),
            ("${topic}.out", "in.out"),
            ("", ""),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, ORDER).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn render_errors_name_the_field() {
        assert_eq!(
            render("a.${missing}", ORDER),
            Err("template field is missing or null `missing`".into())
        );
        assert_eq!(
            render("a.${obj}", ORDER),
            Err("template field is an object or array `obj`".into())
        );
        let long = format!(r#"{{"region":"{}"}}"#, "x".repeat(300));
        assert_eq!(
            render("${region}", &long),
            Err("rendered topic longer than 249 bytes `region`".into())
        );
    }

    #[test]
    fn compile_errors_point_into_the_template() {
        let cases = [
            ("orders.${region", 7, "unclosed `${`"),
            ("a.${}", 2, "empty field name in `${}`"),
            ("a.${re gion}", 6, "invalid character ` ` in a template field name"),
            ("a.${a..b}", 4, "empty segment in field path `a..b`"),
            ("${region:unknown}", 8, "invalid character `:` in a template field name"),
        ];
        for (src, offset, message) in cases {
            let mut resolve = |_: &str| Ok((0u16, Type::ANY));
            let e = Template::compile(src, &mut resolve).unwrap_err();
            assert_eq!((e.offset, e.message.as_str()), (offset, message), "{src}");
        }
    }

    #[test]
    fn display_shows_the_parts() {
        let mut table = FieldTable::new();
        let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
        let t =
            Template::compile("orders.${region}.${currency:-XXX}.${key}", &mut resolve).unwrap();
        assert_eq!(
            t.to_string(),
            r#""orders." + region@0 + "." + currency@1 (default "XXX") + "." + <key>"#
        );
    }
}
