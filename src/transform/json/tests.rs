use bumpalo::Bump;

use super::*;

fn run<'a>(payload: &'a str, paths: &[&str], arena: &'a Bump) -> Result<Vec<Slot<'a>>, JsonError> {
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
