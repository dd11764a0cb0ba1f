//! Zero-copy JSON field access: one validating pass over a payload fills a caller-owned
//! slot array with every field a compiled pipeline reads.
//!
//! A [`FieldTable`] is compiled once from the dotted paths a pipeline uses
//! (`id`, `address.city`, ...) into a small trie. [`extract`] then walks the payload
//! once, validating all of it (grammar, UTF-8, escapes, nesting depth), and stores the
//! value of each tracked path in `slots[path index]`:
//!
//! - strings borrow the payload; only a string that contains an escape is decoded, into
//!   the arena (`"p\u0061id"` reads as `paid`);
//! - numbers are parsed once, to `i64` when they are integers that fit and to `f64`
//!   otherwise; a number no `i64`/`f64` can hold (`1e999`, 400 nines) is kept as
//!   [`Slot::BadNumber`] and is an error only when a step reads it;
//! - objects and arrays are kept as their raw text ([`Slot::Json`]).
//!
//! No tree is built and nothing is allocated from the heap; the bounds are the named
//! constants below. The measurement that chose this scanner over sonic-rs, simd-json
//! and serde_json is `benches/compare_json_access.rs` (figures in `benches/README.md`).
//!
//! Differences from `serde_json::from_slice::<Value>` (checked by the `json_path` fuzz
//! target): numbers out of range are accepted by the scan and rejected when read;
//! integers above `i64::MAX` are out of range; duplicate keys keep the last value,
//! as serde_json's `Value` does.
//!
//! Files: `scan.rs` the pass itself ([`extract`]: grammar, nesting, slots),
//! `string.rs` strings (validation, escapes, decoding), `number.rs` numbers,
//! `table.rs` the compiled paths ([`FieldTable`]), `fuzz.rs` the fuzz invariant.

mod fuzz;
mod number;
mod scan;
mod string;
mod table;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub use fuzz::fuzz_check_json_path;
pub use scan::extract;
pub use table::FieldTable;

/// Most distinct field paths one pipeline may read. Slots are a stack array of this
/// many 24-byte entries (1.5 KiB) per worker.
pub const PATHS_MAX: usize = 64;
/// Most segments in one dotted path (`a.b.c` has 3). Deeper paths are a compile error.
pub const PATH_SEGMENTS_MAX: usize = 8;
/// Longest object key (field name) a path may name; not the message key limit,
/// which is [`crate::limits::KEY_BYTES_MAX`]. Escaped keys are decoded into a stack buffer of
/// this size to be compared; a longer key cannot match any path.
pub const FIELD_NAME_BYTES_MAX: usize = 255;
/// Deepest nesting of objects and arrays accepted in a payload. The scanner keeps one
/// 16-byte frame per level on the stack (2 KiB). Matches serde_json's recursion limit
/// (it fails at its 128th level).
pub const NESTING_DEPTH_MAX: usize = 127;

/// Marks "no slot" / "no trie node" in the 16-bit indices below.
const NONE: u16 = u16::MAX;

const _: () = assert!(PATHS_MAX < NONE as usize);

/// One field read from a payload. `'a` is the payload's (or the arena's) lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Slot<'a> {
    /// The path is not in the payload (or an intermediate value is not an object).
    #[default]
    Missing,
    Null,
    Bool(bool),
    /// An integer that fits `i64` (no fraction, no exponent).
    Int(i64),
    /// Any other finite number.
    Float(f64),
    /// A string, with escapes decoded.
    Str(&'a str),
    /// An object or an array, as its raw JSON text (validated).
    Json(&'a str),
    /// A number the scan accepted but no `i64`/`f64` can hold: the reason.
    BadNumber(&'static str),
}

impl Slot<'_> {
    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Slot::Missing => "missing",
            Slot::Null => "null",
            Slot::Bool(_) => "bool",
            Slot::Int(_) => "int",
            Slot::Float(_) | Slot::BadNumber(_) => "float",
            Slot::Str(_) => "string",
            Slot::Json(raw) => {
                if raw.starts_with('[') {
                    "array"
                } else {
                    "object"
                }
            }
        }
    }
}

/// A payload the scanner refused: where and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the offending byte (payload length for "unexpected end").
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed JSON at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for JsonError {}

/// A path could not be added to a [`FieldTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Empty path or empty segment (`a..b`).
    EmptySegment,
    /// More than [`PATH_SEGMENTS_MAX`] segments.
    TooDeep,
    /// A segment longer than [`FIELD_NAME_BYTES_MAX`].
    KeyTooLong,
    /// More than [`PATHS_MAX`] distinct paths.
    TooManyPaths,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::EmptySegment => "empty field name in path",
            PathError::TooDeep => "field path has more than 8 segments",
            PathError::KeyTooLong => "field name longer than 255 bytes",
            PathError::TooManyPaths => "more than 64 distinct fields in one pipeline",
        })
    }
}

impl std::error::Error for PathError {}
