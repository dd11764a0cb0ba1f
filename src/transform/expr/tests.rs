use super::*;
use crate::transform::json::{FieldTable, PATHS_MAX, extract};

/// Compiles `src` with fields typed by `types` (others untyped) and evaluates it
/// against `payload`.
fn run_typed(src: &str, payload: &str, types: &[(&str, Type)]) -> Result<String, String> {
    let mut table = FieldTable::new();
    let mut resolve = |p: &str| {
        let ty = types.iter().find(|(n, _)| *n == p).map_or(Type::ANY, |(_, t)| *t);
        table.add(p).map(|s| (s, ty)).map_err(|e| e.to_string())
    };
    let expr = Expr::compile(src, &mut resolve).map_err(|e| format!("compile: {e}"))?;
    let arena = Bump::new();
    let mut slots = [Slot::Missing; PATHS_MAX];
    extract(payload.as_bytes(), &table, &mut slots, &arena).unwrap();
    let message = Message { key: b"k1", ..Default::default() };
    let env = Env { slots: &slots, message: &message, topic: "t", arena: &arena };
    match expr.eval(&env) {
        Ok(v) => Ok(format!("{v:?}")),
        Err(e) => Err(format!("{} at `{}`", e.reason, expr.error_text(&e))),
    }
}

fn run(src: &str, payload: &str) -> Result<String, String> {
    run_typed(src, payload, &[])
}

const ORDER: &str =
    r#"{"id":7,"status":"paid","amount":123.45,"region":"eu-west","name":"Zoë","n":null,"t":true}"#;

#[test]
fn evaluates_the_language() {
    let cases = [
        ("status == 'paid' && amount > 100.0", "Bool(true)"),
        ("status != \"paid\" || amount <= 100", "Bool(false)"),
        ("round(amount * 100)", "Int(12345)"),
        ("floor(amount)", "Int(123)"),
        ("ceil(amount)", "Int(124)"),
        ("id + 1", "Int(8)"),
        ("id * 2.5", "Float(17.5)"),
        ("id / 2", "Float(3.5)"),
        ("id % 4", "Int(3)"),
        ("-id", "Int(-7)"),
        ("!t", "Bool(false)"),
        ("upper(region)", "Str(\"EU-WEST\")"),
        ("lower(name)", "Str(\"zoë\")"),
        ("upper(name)", "Str(\"ZOË\")"),
        ("len(name)", "Int(3)"),
        ("contains(region, 'west')", "Bool(true)"),
        ("starts_with(region, 'eu')", "Bool(true)"),
        ("ends_with(region, 'east')", "Bool(false)"),
        ("region + '/' + status", "Str(\"eu-west/paid\")"),
        ("int('42') + int(2.9) + int(true)", "Int(45)"),
        ("float(id)", "Float(7.0)"),
        ("string(amount)", "Str(\"123.45\")"),
        ("string(id)", "Str(\"7\")"),
        ("amount > 100 ? 'big' : 'small'", "Str(\"big\")"),
        ("if(id > 10, 'big', 'small')", "Str(\"small\")"),
        ("missing == null", "Bool(true)"),
        ("n == null && missing == n", "Bool(true)"),
        ("coalesce(missing, 'dflt')", "Str(\"dflt\")"),
        ("min(id, 3) + max(1.5, 2)", "Float(5.0)"),
        ("abs(-2)", "Int(2)"),
        ("key + ':' + topic", "Str(\"k1:t\")"),
        ("id == 7.0", "Bool(true)"),
        ("'b' > 'a'", "Bool(true)"),
        ("false && missing > 1", "Bool(false)"),
    ];
    for (src, want) in cases {
        assert_eq!(run(src, ORDER).as_deref(), Ok(want), "{src}");
    }
}

#[test]
fn runtime_errors_name_the_failing_part() {
    let cases = [
        ("amount > 'x' || true", "ordering needs two numbers or two strings at `amount > 'x'`"),
        ("len(id)", "len() needs a string at `len(id)`"),
        ("id / (id - 7)", "division by zero at `id / (id - 7)`"),
        ("missing > 1", "ordering needs two numbers or two strings at `missing > 1`"),
        ("int(region)", "int(): string is not an integer at `int(region)`"),
        ("id * 9223372036854775807", "integer overflow in `*` at `id * 9223372036854775807`"),
        ("status && true", "`&&` and `||` need bools at `status && true`"),
    ];
    for (src, want) in cases {
        assert_eq!(run(src, ORDER), Err(want.to_string()), "{src}");
    }
}

#[test]
fn constants_fold_at_compile_time() {
    let mut resolve = |p: &str| -> Result<(u16, Type), String> { Err(format!("no field {p}")) };
    let e = Expr::compile("2 * 50 + 1", &mut resolve).unwrap();
    assert_eq!(e.constant(), Some(&Const::Int(101)));
    let e = Expr::compile("upper('eu') + '-' + lower('WEST')", &mut resolve).unwrap();
    assert_eq!(e.constant(), Some(&Const::Str("EU-west".into())));
    let e = Expr::compile("len('abc') > 2 ? 'y' : 'n'", &mut resolve).unwrap();
    assert_eq!(e.constant(), Some(&Const::Str("y".into())));
    let mut table = FieldTable::new();
    let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
    let e = Expr::compile("amount > 50 * 2 && true", &mut resolve).unwrap();
    assert_eq!(e.to_string(), "(amount > 100)");
    assert_eq!(e.node_count(), 1, "field-constant comparison is one node");
    let e = Expr::compile("status == 'paid' && amount > 100.0", &mut resolve).unwrap();
    assert_eq!(e.to_string(), "((status == \"paid\") && (amount > 100.0))");
    assert_eq!(e.node_count(), 3);
}

fn compile_err(src: &str, types: &[(&str, Type)]) -> (usize, usize, String, Option<String>) {
    let mut table = FieldTable::new();
    let mut resolve = |p: &str| {
        let ty = types.iter().find(|(n, _)| *n == p).map_or(Type::ANY, |(_, t)| *t);
        table.add(p).map(|s| (s, ty)).map_err(|e| e.to_string())
    };
    let e = Expr::compile(src, &mut resolve).unwrap_err();
    (e.offset, e.len, e.message, e.hint)
}

#[test]
fn compile_errors_have_text_position_and_hint() {
    assert_eq!(
        compile_err("lowr(region)", &[]),
        (0, 4, "unknown function `lowr`".into(), Some("did you mean `lower`?".into()))
    );
    assert_eq!(
        compile_err("x + startswith(a, 'b')", &[]),
        (4, 10, "unknown function `startswith`".into(), Some("did you mean `starts_with`?".into()))
    );
    assert_eq!(compile_err("frobnicate(1)", &[]).3, None);
    assert_eq!(
        compile_err("len(5)", &[]),
        (4, 1, "type mismatch: `len` expects string as argument 1, found int".into(), None)
    );
    assert_eq!(
        compile_err("len(amount)", &[("amount", Type::FLOAT)]),
        (4, 6, "type mismatch: `len` expects string as argument 1, found float".into(), None)
    );
    assert_eq!(
        compile_err("status == 1", &[("status", Type::STR)]),
        (
            0,
            11,
            "type mismatch: `==` compares values that can never be equal, found string and int"
                .into(),
            None
        )
    );
    assert_eq!(
        compile_err("amount > 'x'", &[("amount", Type::FLOAT)]),
        (
            0,
            12,
            "type mismatch: `>` needs two numbers or two strings, found float and string".into(),
            None
        )
    );
    assert_eq!(
        compile_err("1 && x", &[]),
        (0, 1, "type mismatch: `&&` needs bools, found int".into(), None)
    );
    assert_eq!(
        compile_err("contains('a')", &[]),
        (0, 8, "`contains` takes 2 arguments, found 1".into(), None)
    );
    assert_eq!(
        compile_err("round()", &[]),
        (0, 5, "`round` takes 1 argument, found 0".into(), None)
    );
    assert_eq!(
        compile_err("1 / 0", &[]),
        (0, 5, "this constant expression always fails: division by zero".into(), None)
    );
    assert_eq!(
        compile_err("int('x')", &[]).2,
        "this constant expression always fails: int(): string is not an integer"
    );
    assert_eq!(
        compile_err("if(1, 2, 3)", &[]).2,
        "type mismatch: a condition must be a bool, found int"
    );
}
