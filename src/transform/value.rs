//! The values expressions compute with, their compile-time types, and how they are
//! written as JSON or as text (templates) without allocating.

use super::json::Slot;

/// A value during evaluation. `'a` covers the payload, the arena and the compiled
/// program's constants. `Copy`, 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite when it comes from a payload; arithmetic may produce non-finite
    /// values, which are errors when written.
    Float(f64),
    Str(&'a str),
    /// An object or array from the payload, as its raw (validated) JSON text.
    Json(&'a str),
}

impl<'a> Value<'a> {
    /// Reads a slot: a missing field is `null`; a number out of range is an error.
    #[inline]
    pub fn from_slot(slot: Slot<'a>) -> Result<Value<'a>, &'static str> {
        Ok(match slot {
            Slot::Missing | Slot::Null => Value::Null,
            Slot::Bool(b) => Value::Bool(b),
            Slot::Int(i) => Value::Int(i),
            Slot::Float(f) => Value::Float(f),
            Slot::Str(s) => Value::Str(s),
            Slot::Json(s) => Value::Json(s),
            Slot::BadNumber(reason) => return Err(reason),
        })
    }

    /// The type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        self.ty().name()
    }

    /// The (single) type of this value.
    pub fn ty(&self) -> Type {
        match self {
            Value::Null => Type::NULL,
            Value::Bool(_) => Type::BOOL,
            Value::Int(_) => Type::INT,
            Value::Float(_) => Type::FLOAT,
            Value::Str(_) => Type::STR,
            Value::Json(_) => Type::JSON,
        }
    }
}

/// A set of possible runtime types, known at compile time. A field without a declared
/// type may be anything (`ANY`); a literal has exactly one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Type(pub u8);

impl Type {
    pub const NULL: Type = Type(1);
    pub const BOOL: Type = Type(2);
    pub const INT: Type = Type(4);
    pub const FLOAT: Type = Type(8);
    pub const STR: Type = Type(16);
    pub const JSON: Type = Type(32);
    pub const NUMBER: Type = Type(4 | 8);
    pub const ANY: Type = Type(63);
    pub const NONE: Type = Type(0);

    pub const fn union(self, other: Type) -> Type {
        Type(self.0 | other.0)
    }
    pub const fn intersect(self, other: Type) -> Type {
        Type(self.0 & other.0)
    }
    pub const fn overlaps(self, other: Type) -> bool {
        self.0 & other.0 != 0
    }
    /// True when every possible type of `self` is in `other`.
    pub const fn within(self, other: Type) -> bool {
        self.0 & !other.0 == 0
    }

    /// A readable name: `string`, `int or float`, `any`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "nothing",
            1 => "null",
            2 => "bool",
            4 => "int",
            8 => "float",
            12 => "number",
            16 => "string",
            32 => "object or array",
            63 => "any",
            _ => {
                // Mixed sets: name the non-null part, which is what users care about.
                match self.0 & !1 {
                    2 => "bool or null",
                    4 => "int or null",
                    8 => "float or null",
                    12 => "number or null",
                    16 => "string or null",
                    32 => "object, array or null",
                    _ => "a value of several types",
                }
            }
        }
    }
}

/// Bytes that must be escaped inside a JSON string (control characters, `"`, `\`),
/// with the short escape letter when JSON has one (`0` means use `\u00XX`). The same
/// choice as serde_json, so outputs are byte-identical.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string (quotes included). Non-ASCII passes through as UTF-8.
#[inline]
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        if e == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `v` as JSON. A non-finite float is an error (JSON cannot hold it).
#[inline]
pub fn write_json(out: &mut Vec<u8>, v: &Value<'_>) -> Result<(), &'static str> {
    match *v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err("a number is not finite (JSON cannot hold it)");
            }
            out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
        }
        Value::Str(s) => write_json_str(out, s),
        Value::Json(raw) => out.extend_from_slice(raw.as_bytes()),
    }
    Ok(())
}

/// Appends `v` as plain text (templates, `string()`): strings as they are, numbers as
/// JSON prints them, `true`/`false`/`null`, objects and arrays as their JSON text.
#[inline]
pub fn write_text(out: &mut Vec<u8>, v: &Value<'_>) -> Result<(), &'static str> {
    match *v {
        Value::Str(s) => {
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        _ => write_json(out, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_like_serde_json() {
        for s in ["plain", "q\"b\\s", "ctl\u{1}\u{8}\t\n\u{c}\r\u{1f}", "Zürich 😀", "", "\u{7f}/"]
        {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_print_like_serde_json() {
        for v in [
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::Float(100.0),
            Value::Float(123.45),
            Value::Float(1e21),
            Value::Float(-0.0),
        ] {
            let mut out = Vec::new();
            write_json(&mut out, &v).unwrap();
            let expect = match v {
                Value::Int(i) => serde_json::to_vec(&i).unwrap(),
                Value::Float(f) => serde_json::to_vec(&f).unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(out, expect);
        }
        let mut out = Vec::new();
        assert!(write_json(&mut out, &Value::Float(f64::INFINITY)).is_err());
    }

    #[test]
    fn type_sets_name_themselves() {
        assert_eq!(Type::STR.name(), "string");
        assert_eq!(Type::NUMBER.name(), "number");
        assert_eq!(Type::STR.union(Type::NULL).name(), "string or null");
        assert!(Type::INT.within(Type::NUMBER));
        assert!(!Type::ANY.within(Type::NUMBER));
    }
}
