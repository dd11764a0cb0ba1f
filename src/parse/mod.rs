//! Parsers for the configuration language: durations, sizes, and offsets in TOML strings.
//!
//! Both parsers share one contract:
//! - they read a `&str` and return a value or a [`ParseError`] with the byte offset
//!   of the mistake; they never allocate and never panic;
//! - numbers are decimal, with an optional fraction (`2.5s`, `1.5KiB`), and are
//!   computed in integers (nanoseconds, bytes): a value that is not a whole number of
//!   the base unit is an error rather than a silently rounded float;
//! - overflow of the `u64` result is an error;
//! - each has a formatter producing a canonical form that parses back to the same
//!   value (fuzzed: `fuzz/fuzz_targets/{duration,size}.rs`).
//!
//! They are fast enough that no cache is needed: `benches/parse.rs` compares a parse
//! with a `HashMap<String, Duration>` lookup of the same string.

pub mod duration;
pub mod error;
pub mod size;
pub mod suggest;
pub mod toml_string;

pub use error::ParseError;

/// Most fraction digits a number may carry. `10^18` is the largest power of ten in a
/// `u64`, so the fraction's numerator fits one register and `fraction × unit` fits a
/// `u128`. 18 digits name a nanosecond of a day or a byte of a PB; a longer fraction
/// in a configuration file is a mistake worth reporting, not a value to round.
pub const FRACTION_DIGITS_MAX: u32 = 18;

/// `10^n` for `n` in `0..=FRACTION_DIGITS_MAX`.
pub(crate) const POW10: [u64; FRACTION_DIGITS_MAX as usize + 1] = {
    let mut table = [1u64; FRACTION_DIGITS_MAX as usize + 1];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Most whole-part digits the fast paths accept: any 19-digit number fits a `u64`
/// (`u64::MAX` has 20 digits), so the digit loop needs no overflow check; longer
/// numbers go to the exact parsers, which report the overflow.
pub(crate) const WHOLE_DIGITS_FAST_MAX: usize = 19;

const _: () = assert!(10u64.checked_pow(WHOLE_DIGITS_FAST_MAX as u32).is_some());

/// `whole.fraction × unit` if it is exact and fits, computed in `u64` only; `None`
/// means "ask the exact parser" (overflow, inexact, or a product past `u64`).
#[inline(always)]
pub(crate) fn scale_fast(
    whole: u64,
    fraction: u64,
    fraction_digits: usize,
    unit: u64,
) -> Option<u64> {
    let whole = whole.checked_mul(unit)?;
    if fraction_digits == 0 {
        return Some(whole);
    }
    let divisor = POW10[fraction_digits];
    let product = fraction.checked_mul(unit)?;
    if product % divisor != 0 {
        return None;
    }
    whole.checked_add(product / divisor)
}

/// Reasons shared by both parsers.
pub(crate) const REASON_EXPECTED_DIGIT: &str = "expected a digit";
pub(crate) const REASON_NEGATIVE: &str = "negative values are not allowed";
pub(crate) const REASON_WHITESPACE: &str = "whitespace is not allowed";
pub(crate) const REASON_FRACTION_DIGIT: &str = "expected a digit after the decimal point";
pub(crate) const REASON_FRACTION_LONG: &str = "more than 18 fraction digits";
pub(crate) const REASON_NUMBER_LARGE: &str = "number too large";

/// A decimal number as scanned: `whole.fraction` with `fraction_digits` digits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal {
    pub whole: u64,
    /// Fraction numerator: the value is `whole + fraction / 10^fraction_digits`.
    pub fraction: u64,
    /// In `0..=FRACTION_DIGITS_MAX`.
    pub fraction_digits: u32,
}

/// Scans `digits [ '.' digits ]` at `bytes[start..]`; returns the number and the
/// offset just past it.
#[inline]
pub(crate) fn scan_decimal(bytes: &[u8], start: usize) -> Result<(Decimal, usize), ParseError> {
    let mut i = start;
    let mut whole: u64 = 0;
    let mut overflow = false;
    while let Some(&b) = bytes.get(i) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        match whole.checked_mul(10).and_then(|w| w.checked_add(u64::from(digit))) {
            Some(w) => whole = w,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return Err(not_a_number(bytes, start));
    }
    let mut fraction: u64 = 0;
    let mut fraction_digits: u32 = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let fraction_start = i;
        while let Some(&b) = bytes.get(i) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if fraction_digits == FRACTION_DIGITS_MAX {
                return Err(ParseError::new(i, 1, REASON_FRACTION_LONG));
            }
            // Cannot overflow: at most 18 digits.
            fraction = fraction * 10 + u64::from(digit);
            fraction_digits += 1;
            i += 1;
        }
        if i == fraction_start {
            return Err(ParseError::new(i, usize::from(i < bytes.len()), REASON_FRACTION_DIGIT));
        }
    }
    if overflow {
        return Err(ParseError::new(start, i - start, REASON_NUMBER_LARGE));
    }
    Ok((Decimal { whole, fraction, fraction_digits }, i))
}

/// The error for a number expected at `offset` but not found.
#[cold]
fn not_a_number(bytes: &[u8], offset: usize) -> ParseError {
    match bytes.get(offset) {
        None => ParseError::new(offset, 0, REASON_EXPECTED_DIGIT),
        Some(b'-') => ParseError::new(offset, 1, REASON_NEGATIVE),
        Some(b) if b.is_ascii_whitespace() => ParseError::new(offset, 1, REASON_WHITESPACE),
        Some(_) => ParseError::new(offset, 1, REASON_EXPECTED_DIGIT),
    }
}

/// Why [`Decimal::scale`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleError {
    /// The result does not fit a `u64`.
    Overflow,
    /// The fraction names a part of the base unit (half a nanosecond, a third byte).
    Inexact,
}

impl Decimal {
    /// `self × unit` exactly, in base units.
    #[inline]
    pub(crate) fn scale(self, unit: u64) -> Result<u64, ScaleError> {
        let whole = self.whole.checked_mul(unit).ok_or(ScaleError::Overflow)?;
        if self.fraction_digits == 0 {
            return Ok(whole);
        }
        // fraction < 10^18 < 2^60 and unit < 2^64: the product fits in 124 bits.
        let product = u128::from(self.fraction) * u128::from(unit);
        let divisor = u128::from(POW10[self.fraction_digits as usize]);
        if product % divisor != 0 {
            return Err(ScaleError::Inexact);
        }
        // product / divisor < unit, so it fits a u64.
        whole.checked_add((product / divisor) as u64).ok_or(ScaleError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow10_table_is_exact() {
        assert_eq!(POW10[0], 1);
        assert_eq!(POW10[18], 1_000_000_000_000_000_000);
    }

    #[test]
    fn scan_decimal_reads_whole_and_fraction() {
        let (d, end) = scan_decimal(b"12.50s", 0).unwrap();
        assert_eq!((d.whole, d.fraction, d.fraction_digits, end), (12, 50, 2, 5));
        assert_eq!(d.scale(1000), Ok(12_500));
        assert_eq!(d.scale(1), Err(ScaleError::Inexact));
        let (d, end) = scan_decimal(b"7", 0).unwrap();
        assert_eq!((d.whole, d.fraction_digits, end), (7, 0, 1));
        assert_eq!(d.scale(u64::MAX), Err(ScaleError::Overflow));
    }

    #[test]
    fn scan_decimal_errors_point_at_the_byte() {
        assert_eq!(scan_decimal(b"", 0).unwrap_err(), ParseError::new(0, 0, REASON_EXPECTED_DIGIT));
        assert_eq!(scan_decimal(b"-1", 0).unwrap_err(), ParseError::new(0, 1, REASON_NEGATIVE));
        assert_eq!(scan_decimal(b" 1", 0).unwrap_err(), ParseError::new(0, 1, REASON_WHITESPACE));
        assert_eq!(
            scan_decimal(b"1.s", 0).unwrap_err(),
            ParseError::new(2, 1, REASON_FRACTION_DIGIT)
        );
        assert_eq!(
            scan_decimal(b"1.", 0).unwrap_err(),
            ParseError::new(2, 0, REASON_FRACTION_DIGIT)
        );
        assert_eq!(
            scan_decimal(b"0.1234567890123456789", 0).unwrap_err(),
            ParseError::new(20, 1, REASON_FRACTION_LONG)
        );
        assert_eq!(
            scan_decimal(b"99999999999999999999x", 0).unwrap_err(),
            ParseError::new(0, 20, REASON_NUMBER_LARGE)
        );
    }
}
