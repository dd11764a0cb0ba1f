//! Numbers inside a payload: validation, and conversion to `i64`/`f64` for tracked
//! fields.

use super::string::{ONES, WORD_BYTES};
use super::{JsonError, Slot};

/// Powers of ten exactly representable as `f64` (Clinger's fast path).
static POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
/// Largest mantissa the fast path may use: 2^53, every integer up to it is exact.
const FAST_MANTISSA_MAX: u64 = 1 << 53;

/// Scans a number at `p[start]`; returns its end and, when `want`, its value.
#[inline(always)]
pub(super) fn scan_number(
    p: &[u8],
    start: usize,
    want: bool,
) -> Result<(usize, Slot<'static>), JsonError> {
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
