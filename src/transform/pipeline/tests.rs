use super::*;
use crate::transform::orders::orders_pipeline;

fn run_one(p: &mut Pipeline, payload: &str) -> Result<Option<(String, String)>, String> {
    let arena = Bump::new();
    let mut slots = [Slot::Missing; PATHS_MAX];
    let message = Message { payload: payload.as_bytes(), ..Default::default() };
    match p.run(&message, &mut slots, &arena) {
        Outcome::Emit { topic, payload } => {
            Ok(Some((topic.to_owned(), String::from_utf8(payload.to_vec()).unwrap())))
        }
        Outcome::Filtered => Ok(None),
        Outcome::Failed(r) | Outcome::FailedAs(_, r) => Err(r.to_owned()),
        Outcome::Paused { .. } => unreachable!("run resumes every pause"),
    }
}

#[test]
fn orders_pipeline_filters_routes_and_maps() {
    let mut p = orders_pipeline().unwrap();
    let line = r#"{"id":17,"ts":1735689600000,"region":"eu\u002dwest","customer":"c-004211","status":"p\u0061id","amount":123.45,"currency":"EUR","items":2,"channel":"web","tags":["gift"],"address":{"city":"Zürich","zip":"8001"}}"#;
    let (topic, payload) = run_one(&mut p, line).unwrap().unwrap();
    assert_eq!(topic, "orders.eu-west.EUR");
    assert_eq!(
        payload,
        r#"{"id":17,"customer":"c-004211","amount_cents":12345,"region":"eu-west","topic":"orders.eu-west.EUR"}"#
    );
    let low = r#"{"id":1,"region":"us-east","customer":"c-1","status":"paid","amount":100.00,"currency":"USD"}"#;
    assert_eq!(run_one(&mut p, low), Ok(None));
    let pending = r#"{"id":1,"region":"us-east","customer":"c-1","status":"pending","amount":500,"currency":"USD"}"#;
    assert_eq!(run_one(&mut p, pending), Ok(None));
}

#[test]
fn orders_pipeline_rejects_every_kind_of_bad_line_with_a_reason() {
    let mut p = orders_pipeline().unwrap();
    let ok =
        r#""region":"us-east","customer":"c-1","status":"pending","amount":5.5,"currency":"USD""#;
    let cases = [
        (String::new(), "malformed JSON at byte 0: empty payload"),
        ("garbage".into(), "malformed JSON at byte 0: top level is not an object"),
        (format!(r#"{{"id":1,{ok}"#), "malformed JSON at byte 92: unexpected end of input"),
        (format!(r#"{{{ok}}}"#), "missing required field `id`"),
        (format!(r#"{{"id":-1,{ok}}}"#), "field `id` is -1, expected uint (an int >= 0)"),
        (format!(r#"{{"id":18446744073709551616,{ok}}}"#), "field `id`: integer out of i64 range"),
        (format!(r#"{{"id":"17",{ok}}}"#), "field `id` is string, expected uint"),
        (r#"{"id":1,"region":null,"customer":"c","status":"paid","amount":1,"currency":"EUR"}"#.into(), "field `region` is null, expected string"),
        (r#"{"id":1,"region":"r","customer":"c","status":"paid","amount":1e999,"currency":"EUR"}"#.into(), "field `amount`: number out of f64 range"),
        (r#"{"id":1,"region":"r","customer":"c","status":"paid","amount":true,"currency":"EUR"}"#.into(), "field `amount` is bool, expected float"),
        (r#"{"id":1,"region":"r","customer":["c"],"status":"paid","amount":1,"currency":"EUR"}"#.into(), "field `customer` is array, expected string"),
    ];
    for (line, reason) in cases {
        assert_eq!(run_one(&mut p, &line), Err(reason.to_string()), "{line}");
    }
}

#[test]
fn processor_emits_fails_and_filters_in_one_batch() {
    let mut p = orders_pipeline().unwrap();
    let arena = Bump::new();
    let lines = [
        r#"{"id":1,"region":"ap-south","customer":"c-9","status":"paid","amount":250.5,"currency":"INR"}"#,
        "{",
        r#"{"id":3,"region":"ap-south","customer":"c-9","status":"failed","amount":250.5,"currency":"INR"}"#,
    ];
    let input: Vec<Message<'_>> = lines
        .iter()
        .map(|l| Message { key: b"k", payload: l.as_bytes(), ..Default::default() })
        .collect();
    let mut outputs = bumpalo::collections::Vec::new_in(&arena);
    let mut failures = bumpalo::collections::Vec::new_in(&arena);
    let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
    p.process(&input, &mut emit);
    assert_eq!(emit.outputs().len(), 1);
    assert_eq!(emit.outputs()[0].input, 0);
    assert_eq!(emit.outputs()[0].topic, "orders.ap-south.INR");
    assert_eq!(emit.outputs()[0].key, b"k");
    assert_eq!(emit.outputs()[0].payload, br#"{"id":1,"customer":"c-9","amount_cents":25050,"region":"ap-south","topic":"orders.ap-south.INR"}"#);
    assert_eq!(emit.failures().len(), 1);
    assert_eq!(emit.failures()[0].input, 1);
    assert_eq!(emit.failures()[0].category, ErrorCategory::Serialization);
    assert_eq!(emit.failures()[0].reason, "malformed JSON at byte 1: unexpected end of input");
}

#[test]
fn map_keeps_field_order_escapes_names_and_folds_constants() {
    let config = r#"
[[steps]]
type = "map"
fields = { zeta = "a", "quo\"te" = "'x\ny'", alpha = "1 + 2", upper = "upper(name)", missing = "nope" }
"#;
    let mut p = compile_toml(config).unwrap();
    let (topic, payload) = run_one(&mut p, r#"{"a":[1, 2],"name":"zoë"}"#).unwrap().unwrap();
    assert_eq!(topic, "");
    assert_eq!(
        payload,
        r#"{"zeta":[1, 2],"quo\"te":"x\ny","alpha":3,"upper":"ZOË","missing":null}"#
    );
    let shown = p.to_string();
    assert!(shown.contains("alpha = 3 (constant)"), "{shown}");
    assert!(shown.contains("upper = upper(name)"), "{shown}");
}

#[test]
fn display_shows_fields_steps_and_template_parts() {
    let p = orders_pipeline().unwrap();
    let shown = p.to_string();
    let want = r#"pipeline: 4 steps; one scan of each payload reads 6 fields
  field 0: id
  field 1: region
  field 2: customer
  field 3: status
  field 4: amount
  field 5: currency
  step 1 schema: id uint, region string, customer string, status string, amount float, currency string
  step 2 filter: ((status == "paid") && (amount > 100.0))  [3 nodes]
  step 3 route: "orders." + region@1 + "." + currency@5
  step 4 map:
    id = id
    customer = customer
    amount_cents = round((amount * 100))
    region = region
    topic = topic
"#;
    assert_eq!(shown, want);
}

/// Compiles `config` and returns the error's text at its span, message and hint.
fn config_err(config: &str) -> (String, String, Option<String>) {
    let e = compile_toml(config).unwrap_err();
    (config[e.span.clone()].to_owned(), e.message, e.hint)
}

#[test]
fn compile_errors_point_into_the_config_file() {
    let filter = |expr: &str| format!("[[steps]]\ntype = \"filter\"\nexpr = '{expr}'\n");
    assert_eq!(
        config_err(&filter("lowr(region) == \"x\"")),
        ("lowr".into(), "unknown function `lowr`".into(), Some("did you mean `lower`?".into()))
    );
    assert_eq!(
        config_err(&filter("status == ")).1,
        "expected an expression, found the end of the expression"
    );
    assert_eq!(config_err(&filter("a && (b")).1, "expected `)`, found the end of the expression");
    assert_eq!(
        config_err(&filter("amount + 1")),
        (
            "'amount + 1'".into(),
            "a filter expression must be a bool, found number".into(),
            Some("compare it, e.g. `amount > 100`".into())
        )
    );
    // Typed by a schema step: a type mismatch found at compile time.
    let typed = "[[steps]]\ntype = \"schema\"\nfields = { amount = \"float\" }\n[[steps]]\ntype = \"filter\"\nexpr = \"len(amount) > 2\"\n";
    assert_eq!(
        config_err(typed),
        (
            "amount".into(),
            "type mismatch: `len` expects string as argument 1, found number".into(),
            None
        )
    );
    // An expression in an escaped basic string: mapped through the escapes.
    let escaped = "[[steps]]\ntype = \"filter\"\nexpr = \"a == \\\"x\\\" && lowr(b)\"\n";
    assert_eq!(config_err(escaped).0, "lowr");
    // Templates.
    let route = |t: &str| format!("[[steps]]\ntype = \"route\"\ntopic = \"{t}\"\n");
    assert_eq!(
        config_err(&route("orders.${region")),
        ("${".into(), "unclosed `${`".into(), Some("close the field with `}`".into()))
    );
    assert_eq!(config_err(&route("orders.${}")).1, "empty field name in `${}`");
    assert_eq!(
        config_err(&route("orders.${a b}")),
        (" ".into(), "invalid character ` ` in a template field name".into(), None)
    );
    // Steps and schema.
    assert_eq!(
        config_err("[[steps]]\ntype = \"fliter\"\nexpr = 'true'\n"),
        (
            "\"fliter\"".into(),
            "unknown step type `fliter`".into(),
            Some("did you mean `filter`?".into())
        )
    );
    assert_eq!(
        config_err("[[steps]]\ntype = \"schema\"\nfields = { id = \"strng\" }\n"),
        (
            "\"strng\"".into(),
            "unknown field type `strng`".into(),
            Some("did you mean `string`?".into())
        )
    );
    assert_eq!(
        config_err("[[steps]]\ntype = \"filter\"\ntopic = 'x'\n"),
        (
            "'x'".into(),
            "`topic` does not belong in a `filter` step".into(),
            Some("a `filter` step takes `expr`".into())
        )
    );
    assert_eq!(
        config_err("[[steps]]\ntype = \"route\"\n"),
        ("\"route\"".into(), "a `route` step needs `topic`".into(), None)
    );
    assert_eq!(
        config_err(
            "[[steps]]\ntype = \"map\"\nfields = { a = \"x\" }\n[[steps]]\ntype = \"filter\"\nexpr = 'x > 1'\n"
        ),
        ("x".into(), "`x` is read after a `map` step replaced the payload".into(), None)
    );
    // Unknown keys are TOML-level errors with TOML's span.
    let (_, message, _) = config_err("[[steps]]\ntype = \"filter\"\nexprr = 'x'\n");
    assert!(message.contains("unknown field `exprr`"), "{message}");
}

#[test]
fn route_default_replaces_a_topic_that_cannot_be_rendered() {
    let config = "[[steps]]\ntype = \"route\"\ntopic = \"t.${region}\"\ndefault = \"t.unrouted\"\n";
    let mut p = compile_toml(config).unwrap();
    assert_eq!(run_one(&mut p, r#"{"region":"eu"}"#).unwrap().unwrap().0, "t.eu");
    assert_eq!(run_one(&mut p, r#"{"x":1}"#).unwrap().unwrap().0, "t.unrouted");
    assert!(
        p.to_string()
            .contains(r#"route: "t." + region@0; when it cannot be rendered: "t.unrouted""#),
        "{p}"
    );
    let bad = "[[steps]]\ntype = \"filter\"\nexpr = 'true'\ndefault = 'x'\n";
    assert_eq!(
        config_err(bad),
        (
            "'x'".into(),
            "`default` does not belong in a `filter` step".into(),
            Some("a `filter` step takes `expr`".into())
        )
    );
}

#[test]
fn file_span_maps_offsets_inside_every_kind_of_string() {
    let text = r#"expr = 'abc'"#;
    assert_eq!(file_span(text, &(7..12), 1, 1), 9..10);
    let text = r#"expr = """abc""""#;
    assert_eq!(file_span(text, &(7..16), 1, 1), 11..12);
    // Line 3 of a multi-line literal: the error is on that line, not on `'''`.
    let text = "expr = '''\na > 1 &&\nb >>> 2'''";
    let span = file_span(text, &(7..text.len()), 11, 3);
    assert_eq!(&text[span], ">>>");
    // Not a string (a hand-made span): the whole value.
    assert_eq!(file_span("x = 5", &(4..5), 0, 1), 4..5);
}
