//! The one validating pass over a payload: grammar and nesting, with each tracked
//! path's value stored in its slot.

use bumpalo::Bump;

use super::number::scan_number;
use super::string::{decode_into, scan_string, string_value};
use super::table::FieldTable;
use super::{FIELD_NAME_BYTES_MAX, JsonError, NESTING_DEPTH_MAX, NONE, PATH_SEGMENTS_MAX, Slot};

/// Levels that keep a full [`Frame`]: a tracked container (one with a slot or a trie
/// node) is at most [`PATH_SEGMENTS_MAX`] levels below the top, so deeper levels only
/// need their object/array bit. 9 frames of 8 bytes instead of 127.
const FRAMES_MAX: usize = PATH_SEGMENTS_MAX + 1;

const _: () = assert!(NESTING_DEPTH_MAX <= u128::BITS as usize);
const _: () = assert!(FRAMES_MAX <= NESTING_DEPTH_MAX);

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
                    let mut buf = [0u8; FIELD_NAME_BYTES_MAX];
                    let mut len = 0usize;
                    let mut fits = true;
                    decode_into(raw, &mut |bytes| {
                        if len + bytes.len() <= FIELD_NAME_BYTES_MAX {
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
