//! A deliberately simple reference evaluator (owned values, walks the parsed AST, no
//! folding, no fused nodes) and the `expression` fuzz invariant that checks the
//! compiled form against it.

use bumpalo::Bump;

use super::parse::{Ast, BinOp, Lit, Parsed, UnOp};
use super::{Env, Expr};
use crate::message::Message;
use crate::transform::json::{FieldTable, PATHS_MAX, Slot, extract};
use crate::transform::value::{Type, Value};

/// An owned value.
#[derive(Clone, Debug, PartialEq)]
pub enum RVal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl RVal {
    fn num(&self) -> Option<f64> {
        match self {
            RVal::Int(i) => Some(*i as f64),
            RVal::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Same value; floats compare by bits (NaN equals NaN).
    pub fn same(&self, v: &Value<'_>) -> bool {
        match (self, v) {
            (RVal::Null, Value::Null) => true,
            (RVal::Bool(a), Value::Bool(b)) => a == b,
            (RVal::Int(a), Value::Int(b)) => a == b,
            (RVal::Float(a), Value::Float(b)) => {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            }
            (RVal::Str(a), Value::Str(b) | Value::Json(b)) => a == b,
            _ => false,
        }
    }
}

type Fields<'f> = &'f dyn Fn(&str) -> RVal;

/// The reference evaluator failed (any runtime error; the reason is not compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// Evaluates `parsed` with field values from `fields` (metadata reads as null).
pub fn eval(parsed: &Parsed, fields: Fields<'_>) -> Result<RVal, Failed> {
    go(parsed, parsed.root, fields)
}

fn go(p: &Parsed, n: usize, fields: Fields<'_>) -> Result<RVal, Failed> {
    use RVal::*;
    Ok(match &p.nodes[n] {
        Ast::Lit(Lit::Null) => Null,
        Ast::Lit(Lit::Bool(b)) => Bool(*b),
        Ast::Lit(Lit::Int(i)) => Int(*i),
        Ast::Lit(Lit::Float(f)) => Float(*f),
        Ast::Lit(Lit::Str(s)) => Str(s.clone()),
        Ast::Path(path) => fields(path),
        Ast::Unary(UnOp::Not, a) => match go(p, *a, fields)? {
            Bool(b) => Bool(!b),
            _ => return Err(Failed),
        },
        Ast::Unary(UnOp::Neg, a) => match go(p, *a, fields)? {
            Int(i) => Int(i.checked_neg().ok_or(Failed)?),
            Float(f) => Float(-f),
            _ => return Err(Failed),
        },
        Ast::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
            let Bool(x) = go(p, *a, fields)? else { return Err(Failed) };
            if x == (*op == BinOp::Or) {
                return Ok(Bool(x));
            }
            let Bool(y) = go(p, *b, fields)? else { return Err(Failed) };
            Bool(y)
        }
        Ast::Binary(op, a, b) => {
            let x = go(p, *a, fields)?;
            let y = go(p, *b, fields)?;
            binary(*op, x, y)?
        }
        Ast::Cond(c, a, b) => cond(p, *c, *a, *b, fields)?,
        Ast::Call { name, args, .. } => {
            if name == "if" && args.len() == 3 {
                return cond(p, args[0], args[1], args[2], fields);
            }
            let mut v = Vec::new();
            for &a in args {
                v.push(go(p, a, fields)?);
            }
            call(name, &v)?
        }
    })
}

fn cond(p: &Parsed, c: usize, a: usize, b: usize, fields: Fields<'_>) -> Result<RVal, Failed> {
    match go(p, c, fields)? {
        RVal::Bool(true) => go(p, a, fields),
        RVal::Bool(false) => go(p, b, fields),
        _ => Err(Failed),
    }
}

fn binary(op: BinOp, x: RVal, y: RVal) -> Result<RVal, Failed> {
    use RVal::*;
    let eq = match (&x, &y) {
        (Int(a), Int(b)) => a == b,
        (Null, Null) => true,
        (Bool(a), Bool(b)) => a == b,
        (Str(a), Str(b)) => a == b,
        _ => match (x.num(), y.num()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    };
    let ord = || -> Result<Option<std::cmp::Ordering>, Failed> {
        match (&x, &y) {
            (Int(a), Int(b)) => Ok(Some(a.cmp(b))),
            (Str(a), Str(b)) => Ok(Some(a.as_bytes().cmp(b.as_bytes()))),
            _ => match (x.num(), y.num()) {
                (Some(a), Some(b)) => Ok(a.partial_cmp(&b)),
                _ => Err(Failed),
            },
        }
    };
    use std::cmp::Ordering::*;
    Ok(match op {
        BinOp::Eq => Bool(eq),
        BinOp::Ne => Bool(!eq),
        BinOp::Lt => Bool(ord()? == Some(Less)),
        BinOp::Le => Bool(matches!(ord()?, Some(Less | Equal))),
        BinOp::Gt => Bool(ord()? == Some(Greater)),
        BinOp::Ge => Bool(matches!(ord()?, Some(Greater | Equal))),
        BinOp::Add => match (&x, &y) {
            (Int(a), Int(b)) => Int(a.checked_add(*b).ok_or(Failed)?),
            (Str(a), Str(b)) => Str(format!("{a}{b}")),
            _ => Float(x.num().ok_or(Failed)? + y.num().ok_or(Failed)?),
        },
        BinOp::Sub => match (&x, &y) {
            (Int(a), Int(b)) => Int(a.checked_sub(*b).ok_or(Failed)?),
            _ => Float(x.num().ok_or(Failed)? - y.num().ok_or(Failed)?),
        },
        BinOp::Mul => match (&x, &y) {
            (Int(a), Int(b)) => Int(a.checked_mul(*b).ok_or(Failed)?),
            _ => Float(x.num().ok_or(Failed)? * y.num().ok_or(Failed)?),
        },
        BinOp::Div => {
            let (a, b) = (x.num().ok_or(Failed)?, y.num().ok_or(Failed)?);
            if b == 0.0 {
                return Err(Failed);
            }
            Float(a / b)
        }
        BinOp::Rem => match (&x, &y) {
            (Int(a), Int(b)) => Int(a.checked_rem(*b).ok_or(Failed)?),
            _ => {
                let (a, b) = (x.num().ok_or(Failed)?, y.num().ok_or(Failed)?);
                if b == 0.0 {
                    return Err(Failed);
                }
                Float(a % b)
            }
        },
        BinOp::And | BinOp::Or => return Err(Failed),
    })
}

fn round_to_int(f: f64) -> Result<RVal, Failed> {
    // 2^63, exact as f64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&f) { Ok(RVal::Int(f as i64)) } else { Err(Failed) }
}

fn call(name: &str, a: &[RVal]) -> Result<RVal, Failed> {
    use RVal::*;
    let s = |i: usize| match &a[i] {
        Str(s) => Ok(s.as_str()),
        _ => Err(Failed),
    };
    Ok(match (name, a.len()) {
        ("contains", 2) => Bool(s(0)?.contains(s(1)?)),
        ("starts_with", 2) => Bool(s(0)?.starts_with(s(1)?)),
        ("ends_with", 2) => Bool(s(0)?.ends_with(s(1)?)),
        ("lower", 1) => Str(s(0)?.to_lowercase()),
        ("upper", 1) => Str(s(0)?.to_uppercase()),
        ("len", 1) => Int(s(0)?.chars().count() as i64),
        ("int", 1) => match &a[0] {
            Int(i) => Int(*i),
            Float(f) => round_to_int(f.trunc())?,
            Bool(b) => Int(*b as i64),
            Str(t) => Int(t.trim().parse().map_err(|_| Failed)?),
            Null => return Err(Failed),
        },
        ("float", 1) => match &a[0] {
            Int(i) => Float(*i as f64),
            Float(f) => Float(*f),
            Str(t) => match t.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Float(f),
                _ => return Err(Failed),
            },
            _ => return Err(Failed),
        },
        ("string", 1) => match &a[0] {
            Str(t) => Str(t.clone()),
            Null => Str("null".into()),
            Bool(b) => Str(b.to_string()),
            Int(i) => Str(i.to_string()),
            Float(f) if f.is_finite() => Str(serde_json::to_string(f).map_err(|_| Failed)?),
            Float(_) => return Err(Failed),
        },
        ("round" | "floor" | "ceil", 1) => match &a[0] {
            Int(i) => Int(*i),
            Float(f) => round_to_int(match name {
                "round" => f.round(),
                "floor" => f.floor(),
                _ => f.ceil(),
            })?,
            _ => return Err(Failed),
        },
        ("abs", 1) => match &a[0] {
            Int(i) => Int(i.checked_abs().ok_or(Failed)?),
            Float(f) => Float(f.abs()),
            _ => return Err(Failed),
        },
        ("min" | "max", 2) => match (&a[0], &a[1]) {
            (Int(x), Int(y)) => Int(if name == "min" { *x.min(y) } else { *x.max(y) }),
            (x, y) => {
                let (x, y) = (x.num().ok_or(Failed)?, y.num().ok_or(Failed)?);
                Float(if name == "min" { x.min(y) } else { x.max(y) })
            }
        },
        ("coalesce", 2) => {
            if a[0] == Null {
                a[1].clone()
            } else {
                a[0].clone()
            }
        }
        _ => return Err(Failed),
    })
}

/// Fuzz invariant for `fuzz/fuzz_targets/expression.rs`. `data` is an expression, a
/// newline, and a JSON object giving the fields. Compiling never panics; when it
/// succeeds, the compiled expression's value equals the reference evaluator's, and
/// both fail on the same inputs.
#[doc(hidden)]
pub fn fuzz_check_expression(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(src) = std::str::from_utf8(&data[..split]) else { return };
    let payload = data.get(split + 1..).unwrap_or(b"");
    let mut table = FieldTable::new();
    let mut resolve =
        |path: &str| table.add(path).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
    let Ok(expr) = Expr::compile(src, &mut resolve) else { return };
    let Ok(parsed) = super::parse::parse(src) else {
        panic!("compiled but does not parse: {src:?}");
    };
    let arena = Bump::new();
    let mut slots = [Slot::Missing; PATHS_MAX];
    if extract(payload, &table, &mut slots, &arena).is_err() {
        extract(b"{}", &table, &mut slots, &arena).expect("empty object");
    }
    // Metadata reads as null in the reference; give the message none it could read
    // differently: an empty key reads as "" in the compiled form, so skip those.
    if ["key", "topic", "partition", "offset", "timestamp", "header."]
        .iter()
        .any(|w| src.contains(w))
    {
        return;
    }
    let message = Message::default();
    let env = Env { slots: &slots, message: &message, topic: "", arena: &arena };
    let ours = expr.eval(&env);
    let fields = |path: &str| {
        let path = path.strip_prefix("payload.").unwrap_or(path);
        match table.slot_of(path).map(|s| slots[s as usize]) {
            Some(Slot::Int(i)) => RVal::Int(i),
            Some(Slot::Float(f)) => RVal::Float(f),
            Some(Slot::Bool(b)) => RVal::Bool(b),
            Some(Slot::Str(s) | Slot::Json(s)) => RVal::Str(s.to_owned()),
            _ => RVal::Null,
        }
    };
    // A field holding an out-of-range number fails when read in the compiled form.
    if slots[..table.len()].iter().any(|s| matches!(s, Slot::BadNumber(_) | Slot::Json(_))) {
        return;
    }
    let theirs = eval(&parsed, &fields);
    match (&ours, &theirs) {
        (Ok(v), Ok(r)) => assert!(r.same(v), "{src:?}: compiled {v:?} vs reference {r:?}"),
        (Err(_), Err(Failed)) => {}
        _ => panic!("{src:?}: compiled {ours:?} vs reference {theirs:?}"),
    }
}
