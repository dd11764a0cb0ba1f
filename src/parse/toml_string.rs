//! Where a byte of a TOML string's value is in the file (cold path, error text).
//!
//! An expression or a template is the *decoded* value of a TOML string; an error in
//! it has an offset into that value. To point at the file, the offset is walked
//! back through the string's syntax: the quotes, escapes (`\n`, `\"`, `\u00e9`), the
//! newline trimmed after an opening `"""` or `'''`, and the line-ending backslash of
//! a multi-line basic string. The input is a string toml already accepted, so an
//! escape it would refuse cannot occur; anything unexpected returns `None`.

/// The byte in `raw` (the string as written, quotes included) where byte `decoded`
/// of its value starts; `decoded` equal to the value's length maps to the closing
/// quote. `None` when `raw` is not a TOML string.
pub fn raw_offset(raw: &str, decoded: usize) -> Option<usize> {
    let (quote, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return None;
    };
    let body = raw.get(quote..raw.len().checked_sub(quote)?)?;
    let bytes = body.as_bytes();
    let mut i = 0;
    if quote == 3 {
        // A newline right after the opening quotes is not part of the value.
        i = if body.starts_with("\r\n") { 2 } else { usize::from(body.starts_with('\n')) };
    }
    let mut out = 0;
    loop {
        // Line-ending backslash (multi-line basic): it and all whitespace after it
        // vanish, so skip it before deciding where byte `decoded` starts.
        if basic
            && quote == 3
            && bytes.get(i) == Some(&b'\\')
            && matches!(bytes.get(i + 1), Some(b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            continue;
        }
        if i >= bytes.len() || out >= decoded {
            break;
        }
        if basic && bytes[i] == b'\\' {
            match *bytes.get(i + 1)? {
                b'u' | b'U' => {
                    let digits = if bytes[i + 1] == b'u' { 4 } else { 8 };
                    let hex = body.get(i + 2..i + 2 + digits)?;
                    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    out += c.len_utf8();
                    i += 2 + digits;
                }
                _ => {
                    out += 1;
                    i += 2;
                }
            }
        } else {
            let len = body[i..].chars().next()?.len_utf8();
            out += len;
            i += len;
        }
    }
    (out >= decoded).then_some(quote + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of the decoded value maps to the raw byte that produced it.
    #[test]
    fn offsets_map_through_quotes_escapes_and_trimmed_newlines() {
        let cases: [(&str, &str, &str); 5] = [
            (r#""a\"b\u00e9c""#, "a\"b\u{e9}c", "c"),
            ("'x\\ny'", "x\\ny", "y"),
            ("'''\nline one\n  bad'''", "line one\n  bad", "bad"),
            ("\"\"\"\r\nfirst \\\n   second\"\"\"", "first second", "second"),
            ("\"\"\"a\\tb\"\"\"", "a\tb", "b"),
        ];
        for (raw, decoded, needle) in cases {
            let at = decoded.find(needle).unwrap();
            let raw_at = raw_offset(raw, at).unwrap();
            assert!(raw[raw_at..].starts_with(needle), "{raw:?} at {at} -> {raw_at}");
            let end = raw_offset(raw, decoded.len()).unwrap();
            assert!(raw[end..].starts_with(&raw[..1]), "the end maps to the closing quote");
        }
        assert_eq!(raw_offset("bare", 0), None);
        assert_eq!(raw_offset("'ab'", 5), None, "past the end");
    }
}
