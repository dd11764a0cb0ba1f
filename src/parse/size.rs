//! Sizes in bytes: `"4KiB"`, `"64MiB"`, `"1GB"`, `"512"`, `"1.5MiB"`.
//!
//! # Grammar
//! ```text
//! size = digits [ "." digits ] [ unit ]
//! unit = "B"
//!      | "KB" | "MB" | "GB" | "TB" | "PB" | "EB"            (powers of 1000, SI)
//!      | "KiB" | "MiB" | "GiB" | "TiB" | "PiB" | "EiB"      (powers of 1024, IEC)
//!      | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"            (IEC, Kubernetes style)
//! ```
//! - Units are ASCII case-insensitive (`4kib`, `4KIB`, `1gb`, `1Gb` all parse): a
//!   size is always bytes, so a lowercase `b` cannot mean bits here.
//! - A bare prefix without `B` or `i` (`4K`, `1G`) is refused as ambiguous: write
//!   `KB` for 1000 or `KiB` for 1024.
//! - No unit means bytes. A fraction must give a whole number of bytes
//!   (`1.5KiB` = 1536, `0.5B` is an error) and has at most [`FRACTION_DIGITS_MAX`]
//!   digits. No sign, no whitespace (also not between number and unit).
//! - The largest size is `u64::MAX` bytes; `16EiB` overflows.
//!
//! [`parse_size`] does not allocate. [`format_size`] / [`DisplaySize`] write the
//! canonical form: the unit with the smallest whole count (`4KiB`, `1MB`, `1000B`,
//! `0B`), which parses back to the same value.

use std::fmt;

use super::error::ParseError;
use super::{
    FRACTION_DIGITS_MAX, REASON_WHITESPACE, ScaleError, WHOLE_DIGITS_FAST_MAX, scale_fast,
    scan_decimal,
};

/// Canonical spelling and bytes of every unit above a byte, IEC first so that a tie
/// (never possible for a non-zero count) would prefer it.
const UNITS: [(&str, u64); 12] = [
    ("EiB", 1 << 60),
    ("PiB", 1 << 50),
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("EB", 1_000_000_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
];

pub(crate) const REASON_EMPTY: &str = "empty size";
pub(crate) const REASON_UNKNOWN_UNIT: &str =
    "unknown unit (expected B, KB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)";
pub(crate) const REASON_AMBIGUOUS_UNIT: &str =
    "ambiguous unit: write KB, MB, GB... for powers of 1000 or KiB, MiB, GiB... for 1024";
pub(crate) const REASON_TRAILING: &str = "unexpected character after the size";
pub(crate) const REASON_TOO_LARGE: &str = "size too large (at most 16 EiB minus 1 byte)";
pub(crate) const REASON_INEXACT: &str = "not a whole number of bytes";

/// Parses a size such as `"64MiB"`; see the module documentation for the grammar.
///
/// ```
/// use corestream::parse::size::parse_size;
/// assert_eq!(parse_size("4KiB"), Ok(4096));
/// assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
/// assert_eq!(parse_size("4K").unwrap_err().offset, 1);
/// ```
#[inline]
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    match parse_fast(input.as_bytes()) {
        Some(size) => Ok(size),
        None => parse_exact(input),
    }
}

/// `1000^p` and `1024^p` for the prefix power `p` (index 0 unused).
const SI_BYTES: [u64; 7] = [
    1,
    1_000,
    1_000_000,
    1_000_000_000,
    1_000_000_000_000,
    1_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// The prefix power of a lowercased prefix letter (k = 1 ... e = 6), 0 for none.
#[inline(always)]
fn prefix_power(lower: u8) -> usize {
    match lower {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        b'e' => 6,
        _ => 0,
    }
}

/// The common case in one pass; `None` hands over to [`parse_exact`] for the rare
/// valid inputs (a fraction whose product passes `u64`) and every error. Only has to
/// be right when it returns `Some` (fuzzed against the exact and reference parsers).
#[inline(always)]
fn parse_fast(bytes: &[u8]) -> Option<u64> {
    let len = bytes.len();
    let mut i = 0;
    let mut whole: u64 = 0;
    while i < len {
        let digit = bytes[i].wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        // Wraps past 19 digits; refused just below.
        whole = whole.wrapping_mul(10).wrapping_add(u64::from(digit));
        i += 1;
    }
    if i == 0 || i > WHOLE_DIGITS_FAST_MAX {
        return None;
    }
    let mut fraction: u64 = 0;
    let mut fraction_digits = 0usize;
    if i < len && bytes[i] == b'.' {
        i += 1;
        while i < len {
            let digit = bytes[i].wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            // Wraps past 19 digits; refused just below.
            fraction = fraction.wrapping_mul(10).wrapping_add(u64::from(digit));
            fraction_digits += 1;
            i += 1;
        }
        if fraction_digits == 0 || fraction_digits > FRACTION_DIGITS_MAX as usize {
            return None;
        }
    }
    // `| 0x20` lowercases ASCII letters; the only bytes it maps onto a lowercase
    // letter are that letter's two cases, so no other byte can pass for a unit.
    let unit = match &bytes[i..] {
        [] => 1,
        [b] if b | 0x20 == b'b' => 1,
        [prefix, b] => {
            let power = prefix_power(prefix | 0x20);
            match b | 0x20 {
                b'b' if power != 0 => SI_BYTES[power],
                b'i' if power != 0 => 1u64 << (10 * power),
                _ => return None,
            }
        }
        [prefix, i_byte, b] if i_byte | 0x20 == b'i' && b | 0x20 == b'b' => {
            let power = prefix_power(prefix | 0x20);
            if power == 0 {
                return None;
            }
            1u64 << (10 * power)
        }
        _ => return None,
    };
    scale_fast(whole, fraction, fraction_digits, unit)
}

/// The exact parser: every valid input, and the precise error for every invalid one.
#[cold]
#[inline(never)]
fn parse_exact(input: &str) -> Result<u64, ParseError> {
    let bytes = input.as_bytes();
    if bytes.is_empty() {
        return Err(ParseError::new(0, 0, REASON_EMPTY));
    }
    let (number, unit_start) = scan_decimal(bytes, 0)?;
    let mut i = unit_start;
    while let Some(&b) = bytes.get(i) {
        if !(b.is_ascii_alphabetic() || b >= 0x80) {
            break;
        }
        i += 1;
    }
    let unit_bytes = match unit_bytes(&bytes[unit_start..i]) {
        Ok(unit) => unit,
        Err(reason) => return Err(ParseError::new(unit_start, i - unit_start, reason)),
    };
    if let Some(&b) = bytes.get(i) {
        let reason = if b.is_ascii_whitespace() { REASON_WHITESPACE } else { REASON_TRAILING };
        return Err(ParseError::new(i, 1, reason));
    }
    match number.scale(unit_bytes) {
        Ok(size) => Ok(size),
        Err(ScaleError::Overflow) => Err(ParseError::new(0, i, REASON_TOO_LARGE)),
        Err(ScaleError::Inexact) => Err(ParseError::new(0, i, REASON_INEXACT)),
    }
}

/// Bytes per unit token (ASCII case-insensitive), or the reason it is refused.
#[inline]
fn unit_bytes(unit: &[u8]) -> Result<u64, &'static str> {
    // Longest unit is 3 bytes; fold case into a fixed buffer (no allocation).
    let mut folded = [0u8; 3];
    if unit.len() > folded.len() {
        return Err(REASON_UNKNOWN_UNIT);
    }
    for (to, from) in folded.iter_mut().zip(unit) {
        *to = from.to_ascii_lowercase();
    }
    let power = |prefix: u8| match prefix {
        b'k' => Some(1),
        b'm' => Some(2),
        b'g' => Some(3),
        b't' => Some(4),
        b'p' => Some(5),
        b'e' => Some(6),
        _ => None,
    };
    match &folded[..unit.len()] {
        [] | [b'b'] => Ok(1),
        [prefix] if power(*prefix).is_some() => Err(REASON_AMBIGUOUS_UNIT),
        [prefix, b'b'] => power(*prefix).map(|p| 1000u64.pow(p)).ok_or(REASON_UNKNOWN_UNIT),
        [prefix, b'i'] | [prefix, b'i', b'b'] => {
            power(*prefix).map(|p| 1u64 << (10 * p)).ok_or(REASON_UNKNOWN_UNIT)
        }
        _ => Err(REASON_UNKNOWN_UNIT),
    }
}

/// Writes the canonical form of `size`: the unit with the smallest whole count
/// (`4KiB`, `1MB`, `1000B`, `0B`). Does not allocate.
pub fn format_size(size: u64, out: &mut impl fmt::Write) -> fmt::Result {
    let mut best: (u64, &str) = (size, "B");
    for (suffix, unit) in UNITS {
        if size != 0 && size % unit == 0 && size / unit < best.0 {
            best = (size / unit, suffix);
        }
    }
    write!(out, "{}{}", best.0, best.1)
}

/// Display adapter for [`format_size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplaySize(pub u64);

impl fmt::Display for DisplaySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(self.0, f)
    }
}

/// Fuzz invariants for `fuzz/fuzz_targets/size.rs` (and its replay test). Panics when
/// one is violated: no panic on any input; agreement with a slow reference parser;
/// error offsets inside the input; every parsed or byte-built size formats to a
/// canonical string that parses back to it.
#[doc(hidden)]
pub fn fuzz_check_size(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let fast = parse_size(text);
        let slow = reference::parse(text);
        assert_eq!(fast.ok(), slow, "parser and reference disagree on {text:?}: {fast:?}");
        if let Some(size) = parse_fast(text.as_bytes()) {
            assert_eq!(parse_exact(text), Ok(size), "fast path accepted {text:?}");
        }
        match fast {
            Ok(size) => {
                let canonical = DisplaySize(size).to_string();
                assert_eq!(parse_size(&canonical), Ok(size), "{text:?} -> {canonical:?}");
            }
            Err(err) => {
                assert!(err.offset + err.len <= text.len(), "{text:?}: {err:?}");
                let _ = err.caret(text).to_string();
            }
        }
    }
    if data.len() >= 8 {
        let raw = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        // Also sizes that are multiples of the units, where the formatter picks one.
        for size in [raw, raw << 40, (raw % 100_000) * 1000, (raw % 100_000) << 20] {
            let text = DisplaySize(size).to_string();
            assert_eq!(parse_size(&text), Ok(size), "{size} -> {text:?}");
        }
    }
}

/// A deliberately simple and slow parser of the same grammar (lowercased `String`,
/// lookup list, `u128` arithmetic) to cross-check the real one under fuzzing.
mod reference {
    pub(super) fn parse(text: &str) -> Option<u64> {
        let number_len =
            text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, unit) = text.split_at(number_len);
        let units: [(&str, u128); 19] = [
            ("", 1),
            ("b", 1),
            ("kb", 1_000),
            ("mb", 1_000_000),
            ("gb", 1_000_000_000),
            ("tb", 1_000_000_000_000),
            ("pb", 1_000_000_000_000_000),
            ("eb", 1_000_000_000_000_000_000),
            ("kib", 1 << 10),
            ("mib", 1 << 20),
            ("gib", 1 << 30),
            ("tib", 1 << 40),
            ("pib", 1 << 50),
            ("eib", 1 << 60),
            ("ki", 1 << 10),
            ("mi", 1 << 20),
            ("gi", 1 << 30),
            ("ti", 1 << 40),
            ("pi", 1 << 50),
        ];
        let unit = unit.to_ascii_lowercase();
        let unit_bytes = if unit == "ei" {
            1u128 << 60
        } else {
            units.iter().find(|(name, _)| *name == unit)?.1
        };
        let (whole, fraction) = match number.split_once('.') {
            None => (number, ""),
            Some((_, "")) => return None,
            Some((whole, fraction)) => (whole, fraction),
        };
        if whole.is_empty()
            || fraction.contains('.')
            || fraction.len() > super::FRACTION_DIGITS_MAX as usize
        {
            return None;
        }
        let whole: u128 = whole.parse().ok()?;
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
        let scaled = whole.checked_mul(unit_bytes)?.checked_mul(scale)?;
        let scaled = scaled.checked_add(fraction * unit_bytes)?;
        if scaled % scale != 0 {
            return None;
        }
        u64::try_from(scaled / scale).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{REASON_EXPECTED_DIGIT, REASON_FRACTION_DIGIT, REASON_NEGATIVE};

    #[test]
    fn parses_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("4KiB", 4096),
            ("64MiB", 64 << 20),
            ("1GB", 1_000_000_000),
            ("1kB", 1000),
            ("1KB", 1000),
            ("2gib", 2 << 30),
            ("3TiB", 3 << 40),
            ("1PB", 1_000_000_000_000_000),
            ("15EiB", 15 << 60),
            ("1.5KiB", 1536),
            ("0.5MB", 500_000),
            ("128Mi", 128 << 20),
            ("1Ei", 1 << 60),
            ("1.0", 1),
            // Past u64 in the fast path's product: decided by the exact parser.
            ("0.500000000000000000EiB", 1 << 59),
            ("18446744073709551615", u64::MAX),
        ];
        for &(text, size) in cases {
            assert_eq!(parse_size(text), Ok(size), "input {text:?}");
        }
    }

    #[test]
    fn every_error_names_its_reason_and_offset() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("", 0, 0, REASON_EMPTY),
            ("KiB", 0, 1, REASON_EXPECTED_DIGIT),
            ("-1", 0, 1, REASON_NEGATIVE),
            ("4 KiB", 1, 1, REASON_WHITESPACE),
            ("4KiB ", 4, 1, REASON_WHITESPACE),
            ("4K", 1, 1, REASON_AMBIGUOUS_UNIT),
            ("4g", 1, 1, REASON_AMBIGUOUS_UNIT),
            ("4kbit", 1, 4, REASON_UNKNOWN_UNIT),
            ("4xb", 1, 2, REASON_UNKNOWN_UNIT),
            ("4KiB2", 4, 1, REASON_TRAILING),
            ("4.KiB", 2, 1, REASON_FRACTION_DIGIT),
            ("0.5B", 0, 4, REASON_INEXACT),
            ("1.5", 0, 3, REASON_INEXACT),
            ("16EiB", 0, 5, REASON_TOO_LARGE),
            ("18446744073709551616", 0, 20, crate::parse::REASON_NUMBER_LARGE),
        ];
        for &(text, offset, len, reason) in cases {
            assert_eq!(parse_size(text), Err(ParseError::new(offset, len, reason)), "{text:?}");
        }
    }

    #[test]
    fn error_renders_with_a_caret() {
        let err = parse_size("64MX").unwrap_err();
        assert_eq!(err.caret("64MX").to_string(), format!("  64MX\n    ^^ {REASON_UNKNOWN_UNIT}"));
    }

    #[test]
    fn formats_canonically() {
        let cases: &[(u64, &str)] = &[
            (0, "0B"),
            (1, "1B"),
            (1000, "1kB"),
            (1024, "1KiB"),
            (1001, "1001B"),
            (64 << 20, "64MiB"),
            (1_000_000_000, "1GB"),
            (1_024_000, "1000KiB"),
            (u64::MAX, "18446744073709551615B"),
            (1 << 63, "8EiB"),
        ];
        for &(size, text) in cases {
            assert_eq!(DisplaySize(size).to_string(), text);
            assert_eq!(parse_size(text), Ok(size));
        }
    }

    #[test]
    fn reference_parser_agrees_on_the_examples() {
        for text in ["4KiB", "1GB", "0", "4K", "1.5KiB", "0.5B", "16EiB", "", "1Ei", "4 B"] {
            assert_eq!(parse_size(text).ok(), reference::parse(text), "{text:?}");
        }
    }

    #[test]
    fn fuzz_check_accepts_samples() {
        for sample in [&b"4KiB"[..], b"\xff", b"0123456789abcdef", b"1.5MiB", b""] {
            fuzz_check_size(sample);
        }
    }
}
