//! Durations: `"30s"`, `"5m"`, `"1h"`, `"1500ms"`, `"250us"`, `"1m30s"`, `"2.5s"`, `"0s"`.
//!
//! # Grammar
//! ```text
//! duration  = "0" | component+
//! component = digits [ "." digits ] unit
//! unit      = "ns" | "us" | "ms" | "s" | "m" | "h" | "d"
//! ```
//! - Units are lowercase ASCII and case-sensitive (`m` is minutes, `ms` milliseconds;
//!   an uppercase `M` would suggest months). `µs` is not accepted: write `us`.
//!   `d` is exactly 24 h (no calendar), there is no week, month or year.
//! - Components go from the largest unit to the smallest, each unit at most once
//!   (`1h30m`, not `30m1h` or `1m1m`): a repeated or reversed unit is almost always a
//!   typo.
//! - Any component may have a fraction (`2.5s`, `1.5h`, `0.25ms`) of at most
//!   [`FRACTION_DIGITS_MAX`] digits; the value is computed in integer nanoseconds and
//!   must be a whole number of them (`1.5ns` is an error, not 1 or 2 ns).
//! - A bare `0` is zero; any other number needs a unit. No sign, no whitespace.
//! - The largest duration is `u64::MAX` nanoseconds (about 584 years); more is an
//!   overflow error.
//!
//! [`parse_duration`] does not allocate and returns the byte offset of a mistake.
//! [`format_duration`] / [`DisplayDuration`] write the canonical form (one component
//! per non-zero unit, largest first: `1m30s`, `1s500ms`, `0s`) that parses back to the
//! same value.

use std::fmt;
use std::time::Duration;

use super::error::ParseError;
use super::{
    FRACTION_DIGITS_MAX, REASON_WHITESPACE, ScaleError, WHOLE_DIGITS_FAST_MAX, scale_fast,
    scan_decimal,
};

/// The largest duration the parser accepts, in nanoseconds (about 584 years).
pub const DURATION_NS_MAX: u64 = u64::MAX;

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_M: u64 = 60 * NS_PER_S;
const NS_PER_H: u64 = 60 * NS_PER_M;
const NS_PER_D: u64 = 24 * NS_PER_H;

/// Units from the largest to the smallest: `(suffix, nanoseconds)`. The index is the
/// unit's rank; components must have strictly increasing ranks.
const UNITS: [(&str, u64); 7] = [
    ("d", NS_PER_D),
    ("h", NS_PER_H),
    ("m", NS_PER_M),
    ("s", NS_PER_S),
    ("ms", NS_PER_MS),
    ("us", NS_PER_US),
    ("ns", 1),
];

pub(crate) const REASON_EMPTY: &str = "empty duration";
pub(crate) const REASON_MISSING_UNIT: &str = "missing unit (ns, us, ms, s, m, h or d)";
pub(crate) const REASON_UNKNOWN_UNIT: &str = "unknown unit (expected ns, us, ms, s, m, h or d)";
pub(crate) const REASON_UNIT_ORDER: &str =
    "units must go from largest to smallest, each at most once";
pub(crate) const REASON_TOO_LARGE: &str = "duration too large (at most 584 years)";
pub(crate) const REASON_INEXACT: &str = "not a whole number of nanoseconds";

/// Parses a duration such as `"1m30s"`; see the module documentation for the grammar.
///
/// ```
/// use std::time::Duration;
/// use corestream::parse::duration::parse_duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
/// let err = parse_duration("5x").unwrap_err();
/// assert_eq!(err.offset, 1);
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    parse_duration_ns(input).map(Duration::from_nanos)
}

/// [`parse_duration`] in integer nanoseconds.
#[inline]
pub fn parse_duration_ns(input: &str) -> Result<u64, ParseError> {
    match parse_fast(input.as_bytes()) {
        Some(ns) => Ok(ns),
        None => parse_exact(input),
    }
}

/// The common case in one tight pass: valid input with units and fractions that fit
/// `u64` arithmetic. `None` hands the input to [`parse_exact`], which decides the rare
/// valid cases (a fraction whose product overflows `u64`) and words every error; so
/// this function only has to be right when it returns `Some` (fuzzed against both).
#[inline(always)]
fn parse_fast(bytes: &[u8]) -> Option<u64> {
    if bytes == b"0" {
        return Some(0);
    }
    let len = bytes.len();
    let mut i = 0;
    let mut total_ns: u64 = 0;
    let mut rank_next_min = 0usize;
    loop {
        let start = i;
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
        if i == start || i == len || i - start > WHOLE_DIGITS_FAST_MAX {
            return None;
        }
        let mut fraction: u64 = 0;
        let mut fraction_digits = 0usize;
        if bytes[i] == b'.' {
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
            if fraction_digits == 0 || fraction_digits > FRACTION_DIGITS_MAX as usize || i == len {
                return None;
            }
        }
        let second_is_s = bytes.get(i + 1) == Some(&b's');
        let (rank, unit_len) = match bytes[i] {
            b's' => (3, 1),
            b'm' if second_is_s => (4, 2),
            b'm' => (2, 1),
            b'h' => (1, 1),
            b'd' => (0, 1),
            b'u' if second_is_s => (5, 2),
            b'n' if second_is_s => (6, 2),
            _ => return None,
        };
        i += unit_len;
        // The unit token must end here (`5mx` and `5sec` are errors).
        if i < len && !bytes[i].is_ascii_digit() {
            return None;
        }
        if rank < rank_next_min {
            return None;
        }
        rank_next_min = rank + 1;
        let component_ns = scale_fast(whole, fraction, fraction_digits, UNITS[rank].1)?;
        total_ns = total_ns.checked_add(component_ns)?;
        if i == len {
            return Some(total_ns);
        }
    }
}

/// The exact parser: every valid input, and the precise error for every invalid one.
#[cold]
#[inline(never)]
fn parse_exact(input: &str) -> Result<u64, ParseError> {
    let bytes = input.as_bytes();
    if bytes.is_empty() {
        return Err(ParseError::new(0, 0, REASON_EMPTY));
    }
    if bytes == b"0" {
        return Ok(0);
    }
    let mut total_ns: u64 = 0;
    let mut i = 0;
    // Rank of the previous component's unit; the next must be strictly greater.
    let mut rank_next_min = 0usize;
    while i < bytes.len() {
        let component_start = i;
        let (number, unit_start) = scan_decimal(bytes, i)?;
        i = unit_start;
        // The unit: ASCII letters, plus any non-ASCII bytes so that `µs` is one token.
        while let Some(&b) = bytes.get(i) {
            if !(b.is_ascii_alphabetic() || b >= 0x80) {
                break;
            }
            i += 1;
        }
        let unit = &bytes[unit_start..i];
        if unit.is_empty() {
            return Err(missing_unit(bytes, i));
        }
        let Some(rank) = unit_rank(unit) else {
            return Err(ParseError::new(unit_start, i - unit_start, REASON_UNKNOWN_UNIT));
        };
        if rank < rank_next_min {
            return Err(ParseError::new(unit_start, i - unit_start, REASON_UNIT_ORDER));
        }
        rank_next_min = rank + 1;
        let component_ns = match number.scale(UNITS[rank].1) {
            Ok(ns) => ns,
            Err(ScaleError::Overflow) => {
                return Err(ParseError::new(
                    component_start,
                    i - component_start,
                    REASON_TOO_LARGE,
                ));
            }
            Err(ScaleError::Inexact) => {
                return Err(ParseError::new(component_start, i - component_start, REASON_INEXACT));
            }
        };
        total_ns = match total_ns.checked_add(component_ns) {
            Some(ns) => ns,
            None => return Err(ParseError::new(0, i, REASON_TOO_LARGE)),
        };
    }
    Ok(total_ns)
}

/// The rank (index in [`UNITS`]) of a unit token, if it is one.
#[inline]
fn unit_rank(unit: &[u8]) -> Option<usize> {
    match unit {
        b"s" => Some(3),
        b"m" => Some(2),
        b"ms" => Some(4),
        b"h" => Some(1),
        b"us" => Some(5),
        b"ns" => Some(6),
        b"d" => Some(0),
        _ => None,
    }
}

#[cold]
fn missing_unit(bytes: &[u8], offset: usize) -> ParseError {
    match bytes.get(offset) {
        None => ParseError::new(offset, 0, REASON_MISSING_UNIT),
        Some(b) if b.is_ascii_whitespace() => ParseError::new(offset, 1, REASON_WHITESPACE),
        Some(_) => ParseError::new(offset, 1, REASON_MISSING_UNIT),
    }
}

/// Writes the canonical form of `duration`: each non-zero unit once, largest first
/// (`1d2h`, `1m30s`, `1s500ms`), or `0s`. Does not allocate.
///
/// Durations above [`DURATION_NS_MAX`] are written in the same form (with a large day
/// count) and do not parse back: the parser refuses them as too large.
pub fn format_duration(duration: Duration, out: &mut impl fmt::Write) -> fmt::Result {
    let mut rest_ns = duration.as_nanos();
    if rest_ns == 0 {
        return out.write_str("0s");
    }
    for (suffix, unit_ns) in UNITS {
        let unit_ns = u128::from(unit_ns);
        let count = rest_ns / unit_ns;
        if count != 0 {
            write!(out, "{count}{suffix}")?;
            rest_ns -= count * unit_ns;
        }
    }
    Ok(())
}

/// Display adapter for [`format_duration`]: `format!("{}", DisplayDuration(d))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_duration(self.0, f)
    }
}

/// Fuzz invariants for `fuzz/fuzz_targets/duration.rs` (and its replay test). Panics
/// when one is violated:
/// - the parser never panics, and agrees with a slow reference parser on every input
///   (same value, or both refuse);
/// - an error's offset and length lie inside the input;
/// - a parsed value formats to a canonical string that parses back to it, and
///   formatting is idempotent;
/// - any `Duration` built from the bytes formats and parses back (or is refused as too
///   large exactly when it exceeds [`DURATION_NS_MAX`]).
#[doc(hidden)]
pub fn fuzz_check_duration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let fast = parse_duration_ns(text);
        let slow = reference::parse(text);
        assert_eq!(fast.ok(), slow, "parser and reference disagree on {text:?}: {fast:?}");
        if let Some(ns) = parse_fast(text.as_bytes()) {
            assert_eq!(parse_exact(text), Ok(ns), "fast path accepted {text:?}");
        }
        match fast {
            Ok(ns) => {
                let canonical = DisplayDuration(Duration::from_nanos(ns)).to_string();
                assert_eq!(parse_duration_ns(&canonical), Ok(ns), "{text:?} -> {canonical:?}");
            }
            Err(err) => {
                assert!(err.offset <= text.len(), "{text:?}: offset {err:?}");
                assert!(err.offset + err.len <= text.len(), "{text:?}: length {err:?}");
                assert!(!err.reason.is_empty());
                let _ = err.caret(text).to_string();
            }
        }
    }
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) % 1_000_000_000;
        // Small values are the interesting ones: also try the seconds scaled down.
        for secs in [secs, secs >> 34, secs % 1_000] {
            let duration = Duration::new(secs, nanos);
            let text = DisplayDuration(duration).to_string();
            match u64::try_from(duration.as_nanos()) {
                Ok(ns) => assert_eq!(parse_duration_ns(&text), Ok(ns), "{duration:?} -> {text:?}"),
                Err(_) => assert!(parse_duration_ns(&text).is_err(), "{duration:?} -> {text:?}"),
            }
        }
    }
}

/// A deliberately simple and slow parser of the same grammar, written differently
/// (string splitting, `u128` arithmetic, allocation allowed) to cross-check the real
/// one under fuzzing.
mod reference {
    pub(super) fn parse(text: &str) -> Option<u64> {
        if text == "0" {
            return Some(0);
        }
        if text.is_empty() {
            return None;
        }
        let units: [(&str, u128); 7] = [
            ("d", 86_400_000_000_000),
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        let mut rest = text;
        let mut total: u128 = 0;
        let mut last_rank: Option<usize> = None;
        while !rest.is_empty() {
            let number_len =
                rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| c.is_ascii() && !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            rest = after;
            let parts: Vec<&str> = number.split('.').collect();
            let (whole, fraction) = match parts.as_slice() {
                [whole] => (*whole, ""),
                [whole, fraction] if !fraction.is_empty() => (*whole, *fraction),
                _ => return None,
            };
            if whole.is_empty() || fraction.len() > super::FRACTION_DIGITS_MAX as usize {
                return None;
            }
            let rank = units.iter().position(|(name, _)| *name == unit)?;
            if last_rank.is_some_and(|last| rank <= last) {
                return None;
            }
            last_rank = Some(rank);
            let unit_ns = units[rank].1;
            let whole: u128 = whole.parse().ok()?;
            let scale = 10u128.pow(fraction.len() as u32);
            let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
            let scaled =
                whole.checked_mul(unit_ns)?.checked_mul(scale)?.checked_add(fraction * unit_ns)?;
            if scaled % scale != 0 {
                return None;
            }
            total = total.checked_add(scaled / scale)?;
        }
        u64::try_from(total).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{
        REASON_EXPECTED_DIGIT, REASON_FRACTION_DIGIT, REASON_FRACTION_LONG, REASON_NEGATIVE,
        REASON_NUMBER_LARGE,
    };

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn parses_the_documented_examples() {
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1500ms"), Duration::from_millis(1500));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("2.5s"), Duration::from_millis(2500));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(ok("1d2h3m4s5ms6us7ns"), Duration::new(86_400 + 7200 + 180 + 4, 5_006_007));
    }

    #[test]
    fn decimals_on_any_unit_are_exact() {
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("0.001ms"), Duration::from_nanos(1000));
        assert_eq!(ok("1.000000001s"), Duration::new(1, 1));
        assert_eq!(ok("0.5d"), Duration::from_secs(43_200));
        assert_eq!(ok("1.250us"), Duration::from_nanos(1250));
        assert_eq!(ok("0.00000000005m"), Duration::from_nanos(3));
        // fraction × unit passes u64: decided by the exact parser.
        assert_eq!(ok("0.500000000000000000d"), Duration::from_secs(43_200));
        // 0.1 has no exact f64; integer arithmetic gives exactly 100 ms.
        assert_eq!(ok("0.3s").as_nanos(), 300_000_000);
    }

    #[test]
    fn the_largest_duration_parses_and_one_more_nanosecond_overflows() {
        assert_eq!(parse_duration_ns("18446744073709551615ns"), Ok(u64::MAX));
        assert_eq!(
            parse_duration_ns("18446744073709551616ns"),
            Err(ParseError::new(0, 20, REASON_NUMBER_LARGE))
        );
        assert_eq!(parse_duration_ns("213504d"), Err(ParseError::new(0, 7, REASON_TOO_LARGE)));
        // Each component fits, the sum does not.
        let text = "213503d23h34m33s709ms551us615ns";
        assert_eq!(parse_duration_ns(text), Ok(u64::MAX));
        let text = "213503d23h34m33s709ms551us616ns";
        assert_eq!(parse_duration_ns(text), Err(ParseError::new(0, text.len(), REASON_TOO_LARGE)));
    }

    #[test]
    fn every_error_names_its_reason_and_offset() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("", 0, 0, REASON_EMPTY),
            ("s", 0, 1, REASON_EXPECTED_DIGIT),
            ("-5s", 0, 1, REASON_NEGATIVE),
            (" 5s", 0, 1, REASON_WHITESPACE),
            ("5 s", 1, 1, REASON_WHITESPACE),
            ("5s ", 2, 1, REASON_WHITESPACE),
            ("5", 1, 0, REASON_MISSING_UNIT),
            ("00", 2, 0, REASON_MISSING_UNIT),
            ("1m30", 4, 0, REASON_MISSING_UNIT),
            ("5.s", 2, 1, REASON_FRACTION_DIGIT),
            (".5s", 0, 1, REASON_EXPECTED_DIGIT),
            ("5x", 1, 1, REASON_UNKNOWN_UNIT),
            ("5sec", 1, 3, REASON_UNKNOWN_UNIT),
            ("5S", 1, 1, REASON_UNKNOWN_UNIT),
            ("5µs", 1, 3, REASON_UNKNOWN_UNIT),
            ("30s1m", 4, 1, REASON_UNIT_ORDER),
            ("1m1m", 3, 1, REASON_UNIT_ORDER),
            ("1.5ns", 0, 5, REASON_INEXACT),
            ("1s0.5ns", 2, 5, REASON_INEXACT),
            ("0.1234567890123456789s", 20, 1, REASON_FRACTION_LONG),
            ("1s+", 2, 1, REASON_EXPECTED_DIGIT),
            ("1.2.3s", 3, 1, REASON_MISSING_UNIT),
        ];
        for &(text, offset, len, reason) in cases {
            assert_eq!(
                parse_duration(text),
                Err(ParseError::new(offset, len, reason)),
                "input {text:?}"
            );
        }
    }

    #[test]
    fn error_renders_with_a_caret() {
        let err = parse_duration("1m3x").unwrap_err();
        assert_eq!(
            err.caret("1m3x").to_string(),
            "  1m3x\n     ^ unknown unit (expected ns, us, ms, s, m, h or d)"
        );
        assert_eq!(err.to_string(), "unknown unit (expected ns, us, ms, s, m, h or d) at byte 3");
    }

    #[test]
    fn formats_canonically() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::new(86_400, 1_001), "1d1us1ns"),
            (Duration::from_nanos(u64::MAX), "213503d23h34m33s709ms551us615ns"),
        ];
        for &(duration, text) in cases {
            assert_eq!(DisplayDuration(duration).to_string(), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn reference_parser_agrees_on_the_examples() {
        for text in ["30s", "1m30s", "2.5s", "0", "0s", "1.5ns", "30s1m", "", "5", "1.2.3s"] {
            assert_eq!(parse_duration_ns(text).ok(), reference::parse(text), "{text:?}");
        }
    }

    #[test]
    fn fuzz_check_accepts_samples() {
        for sample in [&b"1m30s"[..], b"\xff\xfe", b"0123456789abcdef", b"2.5s", b""] {
            fuzz_check_duration(sample);
        }
    }
}
