//! The `json_path` fuzz target's invariant (agreement with serde_json).

use bumpalo::Bump;

use super::{FieldTable, PATHS_MAX, Slot, extract};

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
