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

use bumpalo::Bump;

/// Most distinct field paths one pipeline may read. Slots are a stack array of this
/// many 24-byte entries (1.5 KiB) per worker.
pub const PATHS_MAX: usize = 64;
/// Most segments in one dotted path (`a.b.c` has 3). Deeper paths are a compile error.
pub const PATH_SEGMENTS_MAX: usize = 8;
/// Longest object key a path may name. Escaped keys are decoded into a stack buffer of
/// this size to be compared; a longer key cannot match any path.
pub const KEY_BYTES_MAX: usize = 255;
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
    /// A segment longer than [`KEY_BYTES_MAX`].
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

/// One key under a trie node.
#[derive(Clone, Debug)]
struct Child {
    /// Key bytes: `keys[key_start..key_start + key_len]`.
    key_start: u32,
    key_len: u16,
    /// The first 8 key bytes, little-endian, zero-padded: most keys compare in one
    /// word; only longer keys compare the rest.
    prefix: u64,
    /// Slot filled when this key's value is seen (`NONE` if the path is only a prefix).
    slot: u16,
    /// Trie node for the object under this key (`NONE` if no path goes deeper).
    node: u16,
}

/// One object level of the trie: its children are `children[first..first + len]`,
/// and the slots of every path below it are `descendants[desc_first..+desc_len]`.
#[derive(Clone, Debug)]
struct Node {
    first: u16,
    len: u16,
    desc_first: u16,
    desc_len: u16,
    /// Multiplier of this node's perfect hash (0: no perfect hash found, scan the
    /// children linearly).
    multiplier: u64,
    /// `buckets[hash]` = child index + 1, or 0 for an empty bucket.
    buckets: [u8; HASH_BUCKETS],
}

impl Default for Node {
    fn default() -> Self {
        Node {
            first: 0,
            len: 0,
            desc_first: 0,
            desc_len: 0,
            multiplier: 0,
            buckets: [0; HASH_BUCKETS],
        }
    }
}

/// Buckets of the per-object perfect hash over key words. 64 one-byte entries per
/// trie node; with at most a few dozen keys per object a collision-free multiplier is
/// found within [`HASH_TRIES_MAX`] candidates.
const HASH_BUCKETS: usize = 64;
/// Multipliers tried per node at compile time before falling back to a linear scan.
const HASH_TRIES_MAX: u64 = 4096;
const _: () = assert!(HASH_BUCKETS.is_power_of_two() && HASH_BUCKETS <= 256);

/// The bucket of a key word: multiplicative hashing, top 6 bits.
#[inline(always)]
fn bucket(word: u64, len: usize, multiplier: u64) -> usize {
    ((word ^ len as u64).wrapping_mul(multiplier) >> (64 - HASH_BUCKETS.trailing_zeros())) as usize
}

/// Finds a multiplier that sends each of `words` to its own bucket.
fn perfect_hash(words: &[(u64, usize)]) -> Option<(u64, [u8; HASH_BUCKETS])> {
    if words.len() >= HASH_BUCKETS {
        return None;
    }
    // Odd multipliers from a fixed sequence (splitmix64), so builds are reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..HASH_TRIES_MAX {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let multiplier = (z ^ (z >> 31)) | 1;
        let mut buckets = [0u8; HASH_BUCKETS];
        let mut ok = true;
        for (k, &(word, len)) in words.iter().enumerate() {
            let b = bucket(word, len, multiplier);
            if buckets[b] != 0 {
                ok = false;
                break;
            }
            buckets[b] = k as u8 + 1;
        }
        if ok {
            return Some((multiplier, buckets));
        }
    }
    None
}

/// The compiled set of paths a pipeline reads. Slot `i` holds path `i`.
#[derive(Clone, Debug, Default)]
pub struct FieldTable {
    paths: Vec<String>,
    nodes: Vec<Node>,
    children: Vec<Child>,
    keys: Vec<u8>,
    descendants: Vec<u16>,
}

impl FieldTable {
    /// An empty table (no field is read; [`extract`] still validates the payload).
    pub fn new() -> Self {
        FieldTable::default()
    }

    /// Builds a table from dotted paths; duplicates share a slot.
    pub fn from_paths<'p, I: IntoIterator<Item = &'p str>>(paths: I) -> Result<Self, PathError> {
        let mut table = FieldTable::new();
        for path in paths {
            table.add(path)?;
        }
        Ok(table)
    }

    /// Adds a dotted path (or finds it) and returns its slot index.
    pub fn add(&mut self, path: &str) -> Result<u16, PathError> {
        if let Some(i) = self.slot_of(path) {
            return Ok(i);
        }
        let segments = path.split('.');
        if segments.clone().any(str::is_empty) {
            return Err(PathError::EmptySegment);
        }
        if segments.clone().count() > PATH_SEGMENTS_MAX {
            return Err(PathError::TooDeep);
        }
        if segments.clone().any(|s| s.len() > KEY_BYTES_MAX) {
            return Err(PathError::KeyTooLong);
        }
        if self.paths.len() >= PATHS_MAX {
            return Err(PathError::TooManyPaths);
        }
        self.paths.push(path.to_owned());
        self.rebuild();
        Ok((self.paths.len() - 1) as u16)
    }

    /// The slot of `path`, if it was added.
    pub fn slot_of(&self, path: &str) -> Option<u16> {
        self.paths.iter().position(|p| p == path).map(|i| i as u16)
    }

    /// Number of slots [`extract`] fills.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when no path is tracked.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths, in slot order.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Rebuilds the flat trie from `paths` (compile time only).
    fn rebuild(&mut self) {
        // A nested tree first, flattened breadth-first so each node's children are
        // contiguous.
        #[derive(Default)]
        struct Tmp {
            kids: Vec<(String, Option<u16>, Tmp)>,
        }
        let mut root = Tmp::default();
        for (slot, path) in self.paths.iter().enumerate() {
            let mut at = &mut root;
            let segments: Vec<&str> = path.split('.').collect();
            for (depth, seg) in segments.iter().enumerate() {
                let pos = match at.kids.iter().position(|(k, _, _)| k == seg) {
                    Some(p) => p,
                    None => {
                        at.kids.push(((*seg).to_owned(), None, Tmp::default()));
                        at.kids.len() - 1
                    }
                };
                if depth + 1 == segments.len() {
                    at.kids[pos].1 = Some(slot as u16);
                }
                at = &mut at.kids[pos].2;
            }
        }
        fn collect(t: &Tmp, out: &mut Vec<u16>) {
            for (_, slot, sub) in &t.kids {
                if let Some(s) = slot {
                    out.push(*s);
                }
                collect(sub, out);
            }
        }
        self.nodes.clear();
        self.children.clear();
        self.keys.clear();
        self.descendants.clear();
        let mut queue: std::collections::VecDeque<&Tmp> = std::collections::VecDeque::new();
        queue.push_back(&root);
        self.nodes.push(Node::default());
        let mut node_index = 0usize;
        while let Some(t) = queue.pop_front() {
            let first = self.children.len() as u16;
            let mut desc = Vec::new();
            collect(t, &mut desc);
            let desc_first = self.descendants.len() as u16;
            self.descendants.extend_from_slice(&desc);
            for (key, slot, sub) in &t.kids {
                let node = if sub.kids.is_empty() {
                    NONE
                } else {
                    self.nodes.push(Node::default());
                    queue.push_back(sub);
                    (self.nodes.len() - 1) as u16
                };
                self.children.push(Child {
                    key_start: self.keys.len() as u32,
                    key_len: key.len() as u16,
                    prefix: key_word(key.as_bytes(), 0, key.len()),
                    slot: slot.unwrap_or(NONE),
                    node,
                });
                self.keys.extend_from_slice(key.as_bytes());
            }
            let words: Vec<(u64, usize)> = t
                .kids
                .iter()
                .map(|(k, _, _)| (key_word(k.as_bytes(), 0, k.len()), k.len()))
                .collect();
            let (multiplier, buckets) = perfect_hash(&words).unwrap_or((0, [0; HASH_BUCKETS]));
            self.nodes[node_index] = Node {
                first,
                len: t.kids.len() as u16,
                desc_first,
                desc_len: desc.len() as u16,
                multiplier,
                buckets,
            };
            node_index += 1;
        }
    }

    /// The child of `node` whose key is `bytes[start..start + len]`.
    #[inline(always)]
    fn lookup(&self, node: u16, bytes: &[u8], start: usize, len: usize) -> Option<&Child> {
        let n = &self.nodes[node as usize];
        let word = key_word(bytes, start, len);
        let matches = |c: &&Child| {
            c.prefix == word
                && c.key_len as usize == len
                && (len <= KEY_WORD_BYTES
                    || self.keys[c.key_start as usize..c.key_start as usize + len]
                        == bytes[start..start + len])
        };
        if n.multiplier != 0 {
            let b = n.buckets[bucket(word, len, n.multiplier)];
            if b == 0 {
                return None;
            }
            return self.children.get(n.first as usize + b as usize - 1).filter(matches);
        }
        let kids = &self.children[n.first as usize..(n.first + n.len) as usize];
        kids.iter().find(matches)
    }

    /// Resets every slot below `node` (a later duplicate key replaces the object).
    #[inline]
    fn clear_below<'a>(&self, node: u16, slots: &mut [Slot<'a>]) {
        let n = &self.nodes[node as usize];
        for &s in &self.descendants[n.desc_first as usize..(n.desc_first + n.desc_len) as usize] {
            slots[s as usize] = Slot::Missing;
        }
    }
}

/// Bytes of a key compared as one word.
const KEY_WORD_BYTES: usize = 8;

/// The first (up to) 8 bytes of `bytes[start..start + len]` as a little-endian word,
/// zero-padded. One unaligned load when 8 bytes are in bounds (the usual case: a key
/// is followed by at least `":0}`).
#[inline(always)]
fn key_word(bytes: &[u8], start: usize, len: usize) -> u64 {
    let take = len.min(KEY_WORD_BYTES);
    let mut word = [0u8; KEY_WORD_BYTES];
    match bytes.get(start..start + KEY_WORD_BYTES) {
        Some(chunk) => word.copy_from_slice(chunk),
        None => word[..take].copy_from_slice(&bytes[start..start + take]),
    }
    let w = u64::from_le_bytes(word);
    if take == KEY_WORD_BYTES { w } else { w & ((1u64 << (8 * take)) - 1) }
}

/// Byte classes inside a string: 0 = plain ASCII, 1 = `"`, 2 = `\`, 3 = control
/// character (< 0x20, invalid), 4 = first byte of a multi-byte UTF-8 sequence (or
/// invalid). One table lookup per byte.
static STRING_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 0x20 {
            3
        } else if i == b'"' as usize {
            1
        } else if i == b'\\' as usize {
            2
        } else if i >= 0x80 {
            4
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Length of the valid UTF-8 sequence starting at `p[i]` (a byte >= 0x80), or 0.
/// The ranges are those of RFC 3629 (no overlongs, no surrogates, <= U+10FFFF).
#[inline]
fn utf8_sequence_len(p: &[u8], i: usize) -> usize {
    let b0 = p[i];
    let cont = |k: usize| p.get(i + k).is_some_and(|&b| b & 0xC0 == 0x80);
    let at = |k: usize| p.get(i + k).copied().unwrap_or(0);
    match b0 {
        0xC2..=0xDF if cont(1) => 2,
        0xE0 if (0xA0..=0xBF).contains(&at(1)) && cont(2) => 3,
        0xE1..=0xEC | 0xEE..=0xEF if cont(1) && cont(2) => 3,
        0xED if (0x80..=0x9F).contains(&at(1)) && cont(2) => 3,
        0xF0 if (0x90..=0xBF).contains(&at(1)) && cont(2) && cont(3) => 4,
        0xF1..=0xF3 if cont(1) && cont(2) && cont(3) => 4,
        0xF4 if (0x80..=0x8F).contains(&at(1)) && cont(2) && cont(3) => 4,
        _ => 0,
    }
}

#[inline]
fn hex4(p: &[u8], i: usize) -> Option<u32> {
    let digits = p.get(i..i + 4)?;
    let mut v = 0u32;
    for &d in digits {
        let x = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | x as u32;
    }
    Some(v)
}

/// Validates the escape at `p[i] == b'\\'`; returns (bytes consumed, code point or
/// the escaped byte as a code point).
#[inline]
fn escape_at(p: &[u8], i: usize) -> Result<(usize, u32), JsonError> {
    let err = |offset, reason| Err(JsonError { offset, reason });
    let Some(&e) = p.get(i + 1) else {
        return err(p.len(), "unexpected end inside a string");
    };
    let simple = match e {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let Some(hi) = hex4(p, i + 2) else {
                return err(i, "invalid \\u escape");
            };
            if (0xDC00..0xE000).contains(&hi) {
                return err(i, "lone low surrogate in \\u escape");
            }
            if !(0xD800..0xDC00).contains(&hi) {
                return Ok((6, hi));
            }
            if p.get(i + 6) != Some(&b'\\') || p.get(i + 7) != Some(&b'u') {
                return err(i, "lone high surrogate in \\u escape");
            }
            let Some(lo) = hex4(p, i + 8) else {
                return err(i + 6, "invalid \\u escape");
            };
            if !(0xDC00..0xE000).contains(&lo) {
                return err(i + 6, "high surrogate not followed by a low surrogate");
            }
            return Ok((12, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)));
        }
        _ => return err(i, "invalid escape in string"),
    };
    Ok((2, simple as u32))
}

/// Bytes per word in the word-at-a-time string scan.
const WORD_BYTES: usize = 8;
const ONES: u64 = u64::from_ne_bytes([0x01; WORD_BYTES]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; WORD_BYTES]);

/// A mask with the high bit set in every byte of `word` that ends a plain run inside
/// a string: `"`, `\`, a control character (< 0x20) or a non-ASCII byte. Exact (no
/// false positives below the first set byte), so the lowest set bit finds the byte.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    // Carry-free per-byte tests: `(x & 0x7f) + k` never carries into the next byte,
    // so each byte's result is exact. `word & HIGHS` marks non-ASCII bytes.
    let low7 = !HIGHS;
    let zero = |x: u64| !(((x & low7) + low7) | x) & HIGHS;
    let control = !(((word & low7) + ONES * (0x80 - 0x20)) | word) & HIGHS;
    zero(quote) | zero(backslash) | control | (word & HIGHS)
}

/// Scans the string whose opening quote is at `p[start]`. Returns the index just past
/// the closing quote and whether the string contains an escape.
#[inline(always)]
fn scan_string(p: &[u8], start: usize) -> Result<(usize, bool), JsonError> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        // Word at a time while 8 bytes remain, then byte at a time.
        while let Some(chunk) = p.get(i..i + WORD_BYTES) {
            let mut bytes = [0u8; WORD_BYTES];
            bytes.copy_from_slice(chunk);
            let mask = special_bytes(u64::from_le_bytes(bytes));
            if mask != 0 {
                i += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            i += WORD_BYTES;
        }
        while i < p.len() && STRING_CLASS[p[i] as usize] == 0 {
            i += 1;
        }
        let Some(&b) = p.get(i) else {
            return Err(JsonError { offset: p.len(), reason: "unexpected end inside a string" });
        };
        match STRING_CLASS[b as usize] {
            1 => return Ok((i + 1, escaped)),
            2 => {
                escaped = true;
                i += escape_at(p, i)?.0;
            }
            3 => {
                return Err(JsonError { offset: i, reason: "control character in string" });
            }
            _ => {
                let n = utf8_sequence_len(p, i);
                if n == 0 {
                    return Err(JsonError { offset: i, reason: "invalid UTF-8 in string" });
                }
                i += n;
            }
        }
    }
}

/// Decodes the validated string body `raw` (between the quotes) into `out`.
fn decode_into(raw: &[u8], out: &mut impl FnMut(&[u8])) {
    let mut i = 0;
    let mut run = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            i += 1;
            continue;
        }
        out(&raw[run..i]);
        // The scan validated this escape; a failure here is unreachable, but degrade
        // to copying the byte rather than panicking.
        let (n, cp) = escape_at(raw, i).unwrap_or((1, b'\\' as u32));
        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out(ch.encode_utf8(&mut buf).as_bytes());
        i += n;
        run = i;
    }
    out(&raw[run..]);
}

/// The decoded string at `p[start..end]` (quotes included), in the arena if escaped.
fn string_value<'a>(
    p: &'a [u8],
    start: usize,
    end: usize,
    escaped: bool,
    arena: &'a Bump,
) -> &'a str {
    let raw = &p[start + 1..end - 1];
    if !escaped {
        debug_assert!(std::str::from_utf8(raw).is_ok());
        // SAFETY: `scan_string` validated these bytes: every byte >= 0x80 starts a
        // sequence accepted by `utf8_sequence_len` (RFC 3629), so `raw` is UTF-8.
        return unsafe { std::str::from_utf8_unchecked(raw) };
    }
    let mut s = bumpalo::collections::String::with_capacity_in(raw.len(), arena);
    decode_into(raw, &mut |bytes| s.push_str(std::str::from_utf8(bytes).unwrap_or("\u{FFFD}")));
    s.into_bump_str()
}

/// Powers of ten exactly representable as `f64` (Clinger's fast path).
static POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
/// Largest mantissa the fast path may use: 2^53, every integer up to it is exact.
const FAST_MANTISSA_MAX: u64 = 1 << 53;

/// Scans a number at `p[start]`; returns its end and, when `want`, its value.
#[inline(always)]
fn scan_number(p: &[u8], start: usize, want: bool) -> Result<(usize, Slot<'static>), JsonError> {
    if !want {
        return skip_number(p, start);
    }
    let mut i = start;
    let negative = p[i] == b'-';
    if negative {
        i += 1;
    }
    let digit = |i: usize| p.get(i).is_some_and(u8::is_ascii_digit);
    if !digit(i) {
        return Err(JsonError { offset: i.min(p.len()), reason: "invalid number" });
    }
    let int_start = i;
    // Mantissa accumulated over all significant digits, saturating on overflow.
    let mut mantissa: u64 = 0;
    let mut overflow = false;
    if p[i] == b'0' {
        i += 1;
        if digit(i) {
            return Err(JsonError { offset: i, reason: "leading zero in number" });
        }
    } else {
        while digit(i) {
            let d = (p[i] - b'0') as u64;
            match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                Some(m) => mantissa = m,
                None => overflow = true,
            }
            i += 1;
        }
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0usize;
    let mut is_float = false;
    if p.get(i) == Some(&b'.') {
        is_float = true;
        i += 1;
        if !digit(i) {
            return Err(JsonError { offset: i.min(p.len()), reason: "invalid number" });
        }
        while digit(i) {
            let d = (p[i] - b'0') as u64;
            match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                Some(m) => mantissa = m,
                None => overflow = true,
            }
            frac_digits += 1;
            i += 1;
        }
    }
    let mut exp: i64 = 0;
    if matches!(p.get(i), Some(b'e' | b'E')) {
        is_float = true;
        i += 1;
        let mut exp_negative = false;
        if let Some(&s @ (b'+' | b'-')) = p.get(i) {
            exp_negative = s == b'-';
            i += 1;
        }
        if !digit(i) {
            return Err(JsonError { offset: i.min(p.len()), reason: "invalid number" });
        }
        while digit(i) {
            // Saturate: anything past 10^6 is out of range for f64 either way.
            exp = (exp * 10 + (p[i] - b'0') as i64).min(1_000_000);
            i += 1;
        }
        if exp_negative {
            exp = -exp;
        }
    }
    let _ = int_digits;
    if !is_float {
        if overflow || mantissa > i64::MAX as u64 + negative as u64 {
            return Ok((i, Slot::BadNumber("integer out of i64 range")));
        }
        let v = if negative { (mantissa as i64).wrapping_neg() } else { mantissa as i64 };
        return Ok((i, Slot::Int(v)));
    }
    let exp10 = exp - frac_digits as i64;
    let value = if !overflow && mantissa <= FAST_MANTISSA_MAX && exp10.unsigned_abs() <= 22 {
        let m = mantissa as f64;
        if exp10 < 0 { m / POW10[(-exp10) as usize] } else { m * POW10[exp10 as usize] }
    } else {
        // Correctly rounded slow path from core (no allocation). The text is ASCII.
        let text = std::str::from_utf8(&p[start + negative as usize..i]).unwrap_or("x");
        match text.parse::<f64>() {
            Ok(v) => v,
            Err(_) => return Ok((i, Slot::BadNumber("invalid number"))),
        }
    };
    if !value.is_finite() {
        return Ok((i, Slot::BadNumber("number out of f64 range")));
    }
    Ok((i, Slot::Float(if negative { -value } else { value })))
}

/// Levels that keep a full [`Frame`]: a tracked container (one with a slot or a trie
/// node) is at most [`PATH_SEGMENTS_MAX`] levels below the top, so deeper levels only
/// need their object/array bit. 9 frames of 8 bytes instead of 127.
const FRAMES_MAX: usize = PATH_SEGMENTS_MAX + 1;

const _: () = assert!(NESTING_DEPTH_MAX <= u128::BITS as usize);
const _: () = assert!(FRAMES_MAX <= NESTING_DEPTH_MAX);

/// Validates an untracked number without computing its value.
#[inline(always)]
fn skip_number(p: &[u8], start: usize) -> Result<(usize, Slot<'static>), JsonError> {
    let invalid = |i: usize| Err(JsonError { offset: i.min(p.len()), reason: "invalid number" });
    let digits = |mut i: usize| {
        // Eight digits at a time: every byte in 0x30..=0x39 when its high nibble is 3
        // and adding 6 does not carry into the high nibble.
        while let Some(chunk) = p.get(i..i + WORD_BYTES) {
            let mut bytes = [0u8; WORD_BYTES];
            bytes.copy_from_slice(chunk);
            let w = u64::from_le_bytes(bytes);
            let high = ONES * 0xF0;
            let three = ONES * 0x30;
            if w & high != three || (w + ONES * 0x06) & high != three {
                break;
            }
            i += WORD_BYTES;
        }
        while p.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = start + (p[start] == b'-') as usize;
    match p.get(i) {
        Some(b'0') => {
            i += 1;
            if p.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(JsonError { offset: i, reason: "leading zero in number" });
            }
        }
        Some(b'1'..=b'9') => i = digits(i + 1),
        _ => return invalid(i),
    }
    if p.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return invalid(end);
        }
        i = end;
    }
    if matches!(p.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(p.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return invalid(end);
        }
        i = end;
    }
    Ok((i, Slot::Missing))
}

/// One open, possibly tracked, object or array during the scan.
#[derive(Clone, Copy)]
struct Frame {
    /// Offset of the `{` or `[`.
    start: u32,
    /// Slot that receives this container's raw text, or `NONE`.
    slot: u16,
    /// Trie node for this object's keys, or `NONE` (arrays are never tracked into).
    node: u16,
}

const UNTRACKED: Frame = Frame { start: 0, slot: NONE, node: NONE };

#[inline]
fn skip_ws(p: &[u8], mut i: usize) -> usize {
    while let Some(&b) = p.get(i) {
        if b > b' ' || !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Scans `payload` once, validating it, and fills `slots[..table.len()]` with the
/// value of each tracked path (`Missing` when absent).
///
/// The payload must be a JSON object. Strings with escapes are decoded into `arena`;
/// nothing else is allocated.
pub fn extract<'a>(
    payload: &'a [u8],
    table: &FieldTable,
    slots: &mut [Slot<'a>],
    arena: &'a Bump,
) -> Result<(), JsonError> {
    debug_assert!(slots.len() >= table.len());
    for s in &mut slots[..table.len()] {
        *s = Slot::Missing;
    }
    let p = payload;
    let err = |offset: usize, reason| Err(JsonError { offset: offset.min(p.len()), reason });
    let mut i = skip_ws(p, 0);
    match p.get(i) {
        None => return err(i, "empty payload"),
        Some(b'{') => {}
        Some(_) => return err(i, "top level is not an object"),
    }
    let track = !table.is_empty();
    let mut frames = [UNTRACKED; FRAMES_MAX];
    // Bit `d` is set when level `d` is an object (clear: an array).
    let mut objects: u128 = 1;
    let mut depth = 1usize;
    // True until the current container's first member or element was read.
    let mut first = true;
    frames[0] = Frame { start: i as u32, slot: NONE, node: if track { 0 } else { NONE } };
    i += 1;
    loop {
        let level = depth - 1;
        let is_object = (objects >> level) & 1 == 1;
        i = skip_ws(p, i);
        let Some(&b) = p.get(i) else {
            return err(i, "unexpected end of input");
        };
        // Close the container, or step over the separator.
        let close = if is_object { b'}' } else { b']' };
        if b != close && !first {
            if b == b',' {
                i += 1;
                if p.get(i).is_some_and(|&c| c <= b' ') {
                    i = skip_ws(p, i);
                }
            } else if is_object {
                return err(i, "expected `,` or `}` after an object member");
            } else {
                return err(i, "expected `,` or `]` after an array element");
            }
        } else if b == close {
            if level < FRAMES_MAX {
                let done = frames[level];
                if done.slot != NONE {
                    let raw = &p[done.start as usize..=i];
                    debug_assert!(std::str::from_utf8(raw).is_ok());
                    // SAFETY: the scan validated the container: outside strings only
                    // ASCII is accepted, inside strings `scan_string` checked UTF-8.
                    slots[done.slot as usize] =
                        Slot::Json(unsafe { std::str::from_utf8_unchecked(raw) });
                }
            }
            i += 1;
            depth -= 1;
            first = false;
            if depth == 0 {
                let end = skip_ws(p, i);
                if end != p.len() {
                    return err(end, "trailing characters after the top-level object");
                }
                return Ok(());
            }
            continue;
        }
        first = false;
        // Target of the value that follows.
        let mut slot = NONE;
        let mut node = NONE;
        if is_object {
            if p.get(i) != Some(&b'"') {
                return if i >= p.len() {
                    err(i, "unexpected end of input")
                } else {
                    err(i, "expected a string key")
                };
            }
            let key_start = i;
            let (end, escaped) = scan_string(p, i)?;
            i = end;
            let frame_node = if level < FRAMES_MAX { frames[level].node } else { NONE };
            if frame_node != NONE {
                let child = if !escaped {
                    table.lookup(frame_node, p, key_start + 1, end - 1 - (key_start + 1))
                } else {
                    let raw = &p[key_start + 1..end - 1];
                    let mut buf = [0u8; KEY_BYTES_MAX];
                    let mut len = 0usize;
                    let mut fits = true;
                    decode_into(raw, &mut |bytes| {
                        if len + bytes.len() <= KEY_BYTES_MAX {
                            buf[len..len + bytes.len()].copy_from_slice(bytes);
                            len += bytes.len();
                        } else {
                            fits = false;
                        }
                    });
                    if fits { table.lookup(frame_node, &buf, 0, len) } else { None }
                };
                if let Some(c) = child {
                    slot = c.slot;
                    node = c.node;
                    if node != NONE {
                        table.clear_below(node, slots);
                    }
                }
            }
            // Compact JSON (`"key":value`) skips the whitespace scans.
            if p.get(i) == Some(&b':') && p.get(i + 1).is_some_and(|&c| c > b' ') {
                i += 1;
            } else {
                i = skip_ws(p, i);
                match p.get(i) {
                    Some(b':') => i = skip_ws(p, i + 1),
                    None => return err(i, "unexpected end of input"),
                    Some(_) => return err(i, "expected `:` after an object key"),
                }
            }
        }
        // The value.
        let Some(&v) = p.get(i) else {
            return err(i, "unexpected end of input");
        };
        match v {
            b'"' => {
                let (end, escaped) = scan_string(p, i)?;
                if slot != NONE {
                    slots[slot as usize] = Slot::Str(string_value(p, i, end, escaped, arena));
                }
                i = end;
            }
            b'{' | b'[' => {
                if depth == NESTING_DEPTH_MAX {
                    return err(i, "nesting deeper than 127 levels");
                }
                let node = if v == b'{' { node } else { NONE };
                if depth < FRAMES_MAX {
                    frames[depth] = Frame { start: i as u32, slot, node };
                } else {
                    // The trie is at most PATH_SEGMENTS_MAX deep (see FRAMES_MAX).
                    debug_assert!(slot == NONE && node == NONE);
                }
                if v == b'{' {
                    objects |= 1 << depth;
                } else {
                    objects &= !(1 << depth);
                }
                depth += 1;
                first = true;
                i += 1;
            }
            b't' | b'f' | b'n' => {
                let (word, value): (&[u8], Slot) = match v {
                    b't' => (b"true", Slot::Bool(true)),
                    b'f' => (b"false", Slot::Bool(false)),
                    _ => (b"null", Slot::Null),
                };
                if p.get(i..i + word.len()) != Some(word) {
                    return err(i, "invalid literal");
                }
                if slot != NONE {
                    slots[slot as usize] = value;
                }
                i += word.len();
            }
            b'-' | b'0'..=b'9' => {
                let (end, value) = scan_number(p, i, slot != NONE)?;
                if slot != NONE {
                    slots[slot as usize] = value;
                }
                i = end;
            }
            _ => return err(i, "expected a value"),
        }
    }
}

/// Fuzz invariant for `fuzz/fuzz_targets/json_path.rs`: the first line of `data` is a
/// list of paths (comma separated), the rest is a payload. [`extract`] never panics;
/// when serde_json accepts the payload as an object, the scan accepts it too and every
/// slot agrees with serde_json's value at that path; when the scan accepts a payload,
/// serde_json accepts it too (up to the documented number-range difference).
#[doc(hidden)]
pub fn fuzz_check_json_path(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let (head, payload) = data.split_at(split);
    let payload = payload.strip_prefix(b"\n").unwrap_or(payload);
    let head = std::str::from_utf8(head).unwrap_or("");
    let mut table = FieldTable::new();
    for path in head.split(',').filter(|s| !s.is_empty()) {
        let _ = table.add(path);
    }
    let arena = Bump::new();
    let mut slots = [Slot::Missing; PATHS_MAX];
    let ours = extract(payload, &table, &mut slots, &arena);
    let theirs = serde_json::from_slice::<serde_json::Value>(payload);
    match (&ours, &theirs) {
        (Ok(()), Ok(serde_json::Value::Object(_))) => {}
        (Ok(()), Ok(other)) => panic!("scan accepted a non-object: {other:?}"),
        (Ok(()), Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("number out of range") || text.contains("recursion limit"),
                "scan accepted what serde_json rejects: {e}"
            );
            return;
        }
        (Err(ours), Ok(serde_json::Value::Object(_))) => {
            assert!(
                ours.reason.starts_with("nesting deeper"),
                "scan rejected a valid object: {ours}"
            );
            return;
        }
        (Err(_), _) => return,
    }
    let Ok(value) = theirs else { return };
    for (i, path) in table.paths().iter().enumerate() {
        let mut at = Some(&value);
        for seg in path.split('.') {
            at = at.and_then(|v| v.as_object()).and_then(|o| o.get(seg));
        }
        let slot = slots[i];
        match (slot, at) {
            (Slot::Missing, None) => {}
            (Slot::Null, Some(serde_json::Value::Null)) => {}
            (Slot::Bool(a), Some(serde_json::Value::Bool(b))) => assert_eq!(a, *b, "{path}"),
            (Slot::Str(a), Some(serde_json::Value::String(b))) => assert_eq!(a, b, "{path}"),
            (Slot::Int(a), Some(serde_json::Value::Number(n))) => {
                assert!(n.as_i64() == Some(a) || n.as_f64() == Some(a as f64), "{path}: {a} {n}")
            }
            // serde_json's default float parser (without `float_roundtrip`) may be one
            // ULP off; ours is correctly rounded (checked against core's parser here).
            (Slot::Float(a), Some(serde_json::Value::Number(n))) => {
                let b = n.as_f64().expect("a JSON number is an f64");
                let ulp = f64::EPSILON * a.abs().max(b.abs());
                assert!(a == b || (a - b).abs() <= ulp, "{path}: {a} vs serde_json {b}");
            }
            // Integers outside i64 are out of range here; serde_json holds them as u64
            // or f64.
            (Slot::BadNumber(_), Some(serde_json::Value::Number(n))) => {
                assert!(n.as_i64().is_none(), "{path}: {n}")
            }
            (
                Slot::Json(raw),
                Some(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))),
            ) => {
                let back: serde_json::Value =
                    serde_json::from_str(raw).expect("raw container text re-parses");
                assert_eq!(&back, v, "{path}");
            }
            (s, v) => panic!("{path}: scan {s:?} vs serde_json {v:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(
        payload: &'a str,
        paths: &[&str],
        arena: &'a Bump,
    ) -> Result<Vec<Slot<'a>>, JsonError> {
        let table = FieldTable::from_paths(paths.iter().copied()).unwrap();
        let mut slots = [Slot::Missing; PATHS_MAX];
        extract(payload.as_bytes(), &table, &mut slots, arena)?;
        Ok(slots[..paths.len()].to_vec())
    }

    #[test]
    fn reads_all_fields_in_one_pass() {
        let arena = Bump::new();
        let s = run(
            r#"{"id":7,"region":"eu-west","amount":123.45,"ok":true,"n":null,"tags":["a"],"address":{"city":"Zürich","zip":"8001"}}"#,
            &["id", "region", "amount", "ok", "n", "tags", "address.city", "nope", "address"],
            &arena,
        )
        .unwrap();
        assert_eq!(s[0], Slot::Int(7));
        assert_eq!(s[1], Slot::Str("eu-west"));
        assert_eq!(s[2], Slot::Float(123.45));
        assert_eq!(s[3], Slot::Bool(true));
        assert_eq!(s[4], Slot::Null);
        assert_eq!(s[5], Slot::Json(r#"["a"]"#));
        assert_eq!(s[6], Slot::Str("Zürich"));
        assert_eq!(s[7], Slot::Missing);
        assert_eq!(s[8], Slot::Json(r#"{"city":"Zürich","zip":"8001"}"#));
    }

    #[test]
    fn escapes_decode_including_surrogate_pairs_and_escaped_keys() {
        let arena = Bump::new();
        let s = run(
            r#"{"status":"p\u0061id","note":"a\"b\\c\nd \ud83d\ude00","r\u0065gion":"eu\u002dwest"}"#,
            &["status", "note", "region"],
            &arena,
        )
        .unwrap();
        assert_eq!(s[0], Slot::Str("paid"));
        assert_eq!(s[1], Slot::Str("a\"b\\c\nd \u{1F600}"));
        assert_eq!(s[2], Slot::Str("eu-west"));
    }

    #[test]
    fn numbers_out_of_range_are_bad_numbers_not_scan_errors() {
        let arena = Bump::new();
        let nines = format!(r#"{{"a":{}}}"#, "9".repeat(400));
        assert_eq!(
            run(&nines, &["a"], &arena).unwrap()[0],
            Slot::BadNumber("integer out of i64 range")
        );
        let s = run(
            r#"{"a":1e999,"b":-1e400,"c":18446744073709551616,"d":-9223372036854775808}"#,
            &["a", "b", "c", "d"],
            &arena,
        )
        .unwrap();
        assert_eq!(s[0], Slot::BadNumber("number out of f64 range"));
        assert_eq!(s[1], Slot::BadNumber("number out of f64 range"));
        assert_eq!(s[2], Slot::BadNumber("integer out of i64 range"));
        assert_eq!(s[3], Slot::Int(i64::MIN));
        let s = run(
            r#"{"a":0.1,"b":1e-7,"c":2.5E+3,"d":-0.0,"e":123456789012345678.5}"#,
            &["a", "b", "c", "d", "e"],
            &arena,
        )
        .unwrap();
        assert_eq!(
            s,
            vec![
                Slot::Float(0.1),
                Slot::Float(1e-7),
                Slot::Float(2500.0),
                Slot::Float(-0.0),
                Slot::Float(123456789012345678.5)
            ]
        );
    }

    #[test]
    fn long_decimals_are_correctly_rounded() {
        // Found by the json_path fuzzer: 21 significant digits take the slow path,
        // which must agree with core's correctly rounded parser.
        let arena = Bump::new();
        let s = run(r#"{"a":184467.444073709556115}"#, &["a"], &arena).unwrap();
        assert_eq!(s[0], Slot::Float("184467.444073709556115".parse().unwrap()));
    }

    #[test]
    fn malformed_payloads_are_errors_with_offsets() {
        let arena = Bump::new();
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 0, "empty payload"),
            (b"  ", 2, "empty payload"),
            (b"null", 0, "top level is not an object"),
            (b"[1,2,3]", 0, "top level is not an object"),
            (b"}{", 0, "top level is not an object"),
            (b"{\"a\":1", 6, "unexpected end of input"),
            (b"{\"a\":\"x", 7, "unexpected end inside a string"),
            (b"{\"a\":1,}", 7, "expected a string key"),
            (b"{\"a\" 1}", 5, "expected `:` after an object key"),
            (b"{\"a\":01}", 6, "leading zero in number"),
            (b"{\"a\":1.}", 7, "invalid number"),
            (b"{\"a\":tru}", 5, "invalid literal"),
            (b"{\"a\":\"\xff\"}", 6, "invalid UTF-8 in string"),
            (b"{\"a\":\"\xed\xa0\x80\"}", 6, "invalid UTF-8 in string"),
            (b"{\"a\":\"\\ud800\"}", 6, "lone high surrogate in \\u escape"),
            (b"{\"a\":\"\\x\"}", 6, "invalid escape in string"),
            (b"{\"a\":\"\x01\"}", 6, "control character in string"),
            (b"{\"a\":1}x", 7, "trailing characters after the top-level object"),
            (b"{\"a\":[1 2]}", 8, "expected `,` or `]` after an array element"),
        ];
        let table = FieldTable::from_paths(["a"]).unwrap();
        for (input, offset, reason) in cases {
            let mut slots = [Slot::Missing; 1];
            let e = extract(input, &table, &mut slots, &arena).unwrap_err();
            assert_eq!(
                (e.offset, e.reason),
                (*offset, *reason),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn nesting_limit_is_an_error_not_a_stack_overflow() {
        let arena = Bump::new();
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let e = run(&deep, &["a"], &arena).unwrap_err();
        assert_eq!(e.reason, "nesting deeper than 127 levels");
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(run(&ok, &["a"], &arena).is_ok());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_like_serde_json() {
        let arena = Bump::new();
        let s = run(r#"{"a":{"b":1},"a":{"c":2}}"#, &["a.b", "a.c"], &arena).unwrap();
        assert_eq!(s, vec![Slot::Missing, Slot::Int(2)]);
    }

    #[test]
    fn path_table_limits() {
        let mut t = FieldTable::new();
        assert_eq!(t.add("a..b"), Err(PathError::EmptySegment));
        assert_eq!(t.add("a.b.c.d.e.f.g.h.i"), Err(PathError::TooDeep));
        for i in 0..PATHS_MAX {
            t.add(&format!("f{i}")).unwrap();
        }
        assert_eq!(t.add("one_more"), Err(PathError::TooManyPaths));
        assert_eq!(t.add("f3"), Ok(3));
    }
}
