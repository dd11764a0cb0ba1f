//! Strings inside a payload: the validating scan (word at a time, UTF-8 per RFC 3629,
//! escapes) and decoding escaped strings into the arena.

use bumpalo::Bump;

use super::JsonError;

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
pub(super) const WORD_BYTES: usize = 8;
pub(super) const ONES: u64 = u64::from_ne_bytes([0x01; WORD_BYTES]);
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
pub(super) fn scan_string(p: &[u8], start: usize) -> Result<(usize, bool), JsonError> {
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
pub(super) fn decode_into(raw: &[u8], out: &mut impl FnMut(&[u8])) {
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
pub(super) fn string_value<'a>(
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
