//! The semantics of every operator and function, on [`Value`]s. Used by the evaluator
//! per message and by the compiler to fold constants, so both agree by construction.
//!
//! - `+ - * %` on two ints stay int (overflow is an error); with a float they are
//!   float. `/` always gives a float; dividing by zero is an error.
//! - `+` on two strings concatenates (into the arena).
//! - `==`/`!=` compare any two values: ints and floats numerically, strings by bytes,
//!   values of different types are unequal. `< <= > >=` need two numbers or two strings.
//! - `&&`, `||`, `!` and conditions need bools (no truthiness).
//! - `round`, `floor`, `ceil` give an int (an error outside the `i64` range).

use bumpalo::Bump;

use super::parse::{BinOp, UnOp};
use crate::transform::value::{Type, Value};

/// A built-in function. `if(c, a, b)` is a special form (lazy), not listed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Contains,
    StartsWith,
    EndsWith,
    Lower,
    Upper,
    Len,
    Int,
    Float,
    String,
    Round,
    Floor,
    Ceil,
    Abs,
    Min,
    Max,
    Coalesce,
}

/// A function's name, arity, accepted argument types and its runtime type error.
pub struct FuncInfo {
    pub func: Func,
    pub name: &'static str,
    pub params: &'static [Type],
    /// The reason a message fails when an argument has the wrong type at run time.
    pub type_error: &'static str,
}

/// Most arguments any function takes (the evaluator's argument array).
pub const ARGS_MAX: usize = 3;

const S: Type = Type::STR;
const N: Type = Type::NUMBER;

/// Every function, by name. `if` is listed among the names for "did you mean" only.
pub static FUNCS: [FuncInfo; 16] = [
    FuncInfo {
        func: Func::Contains,
        name: "contains",
        params: &[S, S],
        type_error: "contains() needs two strings",
    },
    FuncInfo {
        func: Func::StartsWith,
        name: "starts_with",
        params: &[S, S],
        type_error: "starts_with() needs two strings",
    },
    FuncInfo {
        func: Func::EndsWith,
        name: "ends_with",
        params: &[S, S],
        type_error: "ends_with() needs two strings",
    },
    FuncInfo {
        func: Func::Lower,
        name: "lower",
        params: &[S],
        type_error: "lower() needs a string",
    },
    FuncInfo {
        func: Func::Upper,
        name: "upper",
        params: &[S],
        type_error: "upper() needs a string",
    },
    FuncInfo { func: Func::Len, name: "len", params: &[S], type_error: "len() needs a string" },
    FuncInfo {
        func: Func::Int,
        name: "int",
        params: &[Type(4 | 8 | 16 | 2)],
        type_error: "int() needs a number, a numeric string or a bool",
    },
    FuncInfo {
        func: Func::Float,
        name: "float",
        params: &[Type(4 | 8 | 16)],
        type_error: "float() needs a number or a numeric string",
    },
    FuncInfo { func: Func::String, name: "string", params: &[Type::ANY], type_error: "" },
    FuncInfo {
        func: Func::Round,
        name: "round",
        params: &[N],
        type_error: "round() needs a number",
    },
    FuncInfo {
        func: Func::Floor,
        name: "floor",
        params: &[N],
        type_error: "floor() needs a number",
    },
    FuncInfo { func: Func::Ceil, name: "ceil", params: &[N], type_error: "ceil() needs a number" },
    FuncInfo { func: Func::Abs, name: "abs", params: &[N], type_error: "abs() needs a number" },
    FuncInfo {
        func: Func::Min,
        name: "min",
        params: &[N, N],
        type_error: "min() needs two numbers",
    },
    FuncInfo {
        func: Func::Max,
        name: "max",
        params: &[N, N],
        type_error: "max() needs two numbers",
    },
    FuncInfo {
        func: Func::Coalesce,
        name: "coalesce",
        params: &[Type::ANY, Type::ANY],
        type_error: "",
    },
];

impl Func {
    pub fn info(self) -> &'static FuncInfo {
        FUNCS.iter().find(|f| f.func == self).unwrap_or(&FUNCS[0])
    }

    /// The result type for arguments of types `args` (already checked to overlap the
    /// parameter types).
    pub fn result(self, args: &[Type]) -> Type {
        match self {
            Func::Contains | Func::StartsWith | Func::EndsWith => Type::BOOL,
            Func::Lower | Func::Upper | Func::String => Type::STR,
            Func::Len | Func::Int | Func::Round | Func::Floor | Func::Ceil => Type::INT,
            Func::Float => Type::FLOAT,
            Func::Abs => args[0].intersect(Type::NUMBER),
            Func::Min | Func::Max => numeric_result(args[0], args[1]),
            Func::Coalesce => Type(args[0].0 & !Type::NULL.0).union(args[1]),
        }
    }
}

/// Result type of `+ - * % min max` on numbers: int only when both are surely ints.
pub fn numeric_result(a: Type, b: Type) -> Type {
    let (a, b) = (a.intersect(Type::NUMBER), b.intersect(Type::NUMBER));
    let mut t = Type::NONE;
    if a.overlaps(Type::INT) && b.overlaps(Type::INT) {
        t = t.union(Type::INT);
    }
    if a.overlaps(Type::FLOAT) || b.overlaps(Type::FLOAT) {
        t = t.union(Type::FLOAT);
    }
    t
}

#[inline]
fn as_f64(v: Value<'_>) -> Option<f64> {
    match v {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

/// `a == b` as the language defines it.
#[inline]
pub fn equal(a: Value<'_>, b: Value<'_>) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Json(x), Value::Json(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            as_f64(a) == as_f64(b)
        }
        _ => false,
    }
}

/// Orders two values for `< <= > >=`; `None` when they cannot be ordered (NaN).
#[inline]
fn order(a: Value<'_>, b: Value<'_>) -> Result<Option<std::cmp::Ordering>, &'static str> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            as_f64(a).zip(as_f64(b)).and_then(|(x, y)| x.partial_cmp(&y))
        }
        _ => return Err("ordering needs two numbers or two strings"),
    })
}

/// A binary operator other than `&&`/`||` (those short-circuit in the evaluator).
#[inline]
pub fn binary<'v>(
    op: BinOp,
    a: Value<'v>,
    b: Value<'v>,
    arena: &'v Bump,
) -> Result<Value<'v>, &'static str> {
    use std::cmp::Ordering::*;
    Ok(match op {
        BinOp::Eq => Value::Bool(equal(a, b)),
        BinOp::Ne => Value::Bool(!equal(a, b)),
        BinOp::Lt => Value::Bool(order(a, b)? == Some(Less)),
        BinOp::Le => Value::Bool(matches!(order(a, b)?, Some(Less | Equal))),
        BinOp::Gt => Value::Bool(order(a, b)? == Some(Greater)),
        BinOp::Ge => Value::Bool(matches!(order(a, b)?, Some(Greater | Equal))),
        BinOp::Add => match (a, b) {
            (Value::Int(x), Value::Int(y)) => {
                Value::Int(x.checked_add(y).ok_or("integer overflow in `+`")?)
            }
            (Value::Str(x), Value::Str(y)) => {
                let mut s =
                    bumpalo::collections::String::with_capacity_in(x.len() + y.len(), arena);
                s.push_str(x);
                s.push_str(y);
                Value::Str(s.into_bump_str())
            }
            _ => Value::Float(
                as_f64(a)
                    .zip(as_f64(b))
                    .map(|(x, y)| x + y)
                    .ok_or("`+` needs two numbers or two strings")?,
            ),
        },
        BinOp::Sub => match (a, b) {
            (Value::Int(x), Value::Int(y)) => {
                Value::Int(x.checked_sub(y).ok_or("integer overflow in `-`")?)
            }
            _ => Value::Float(
                as_f64(a).zip(as_f64(b)).map(|(x, y)| x - y).ok_or("`-` needs two numbers")?,
            ),
        },
        BinOp::Mul => match (a, b) {
            (Value::Int(x), Value::Int(y)) => {
                Value::Int(x.checked_mul(y).ok_or("integer overflow in `*`")?)
            }
            _ => Value::Float(
                as_f64(a).zip(as_f64(b)).map(|(x, y)| x * y).ok_or("`*` needs two numbers")?,
            ),
        },
        BinOp::Div => {
            let (x, y) = as_f64(a).zip(as_f64(b)).ok_or("`/` needs two numbers")?;
            if y == 0.0 {
                return Err("division by zero");
            }
            Value::Float(x / y)
        }
        BinOp::Rem => match (a, b) {
            (Value::Int(_), Value::Int(0)) => return Err("division by zero"),
            (Value::Int(x), Value::Int(y)) => {
                Value::Int(x.checked_rem(y).ok_or("integer overflow in `%`")?)
            }
            _ => {
                let (x, y) = as_f64(a).zip(as_f64(b)).ok_or("`%` needs two numbers")?;
                if y == 0.0 {
                    return Err("division by zero");
                }
                Value::Float(x % y)
            }
        },
        BinOp::And | BinOp::Or => {
            let (Value::Bool(x), Value::Bool(y)) = (a, b) else {
                return Err("`&&` and `||` need bools");
            };
            Value::Bool(if op == BinOp::And { x && y } else { x || y })
        }
    })
}

#[inline]
pub fn unary<'v>(op: UnOp, a: Value<'v>) -> Result<Value<'v>, &'static str> {
    Ok(match (op, a) {
        (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
        (UnOp::Not, _) => return Err("`!` needs a bool"),
        (UnOp::Neg, Value::Int(i)) => Value::Int(i.checked_neg().ok_or("integer overflow in `-`")?),
        (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
        (UnOp::Neg, _) => return Err("`-` needs a number"),
    })
}

/// Converts a float to int after rounding; an error outside the `i64` range.
#[inline]
fn to_int(f: f64, reason: &'static str) -> Result<Value<'static>, &'static str> {
    // 2^63 as f64 is exact; the range check excludes NaN too.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&f) { Ok(Value::Int(f as i64)) } else { Err(reason) }
}

/// Case mapping into the arena; borrows the input when nothing changes (ASCII).
fn map_case<'v>(s: &'v str, upper: bool, arena: &'v Bump) -> &'v str {
    if s.is_ascii() {
        let changes =
            s.bytes().any(|b| if upper { b.is_ascii_lowercase() } else { b.is_ascii_uppercase() });
        if !changes {
            return s;
        }
        let out = arena.alloc_str(s);
        // SAFETY: ASCII case mapping keeps every byte ASCII, so `out` stays UTF-8.
        let bytes = unsafe { out.as_bytes_mut() };
        if upper {
            bytes.make_ascii_uppercase();
        } else {
            bytes.make_ascii_lowercase();
        }
        return out;
    }
    let mut out = bumpalo::collections::String::with_capacity_in(s.len(), arena);
    for c in s.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out.into_bump_str()
}

/// Calls a function on evaluated arguments.
pub fn call<'v>(f: Func, args: &[Value<'v>], arena: &'v Bump) -> Result<Value<'v>, &'static str> {
    let info = f.info();
    debug_assert_eq!(args.len(), info.params.len());
    for (arg, param) in args.iter().zip(info.params) {
        if !arg.ty().overlaps(*param) {
            return Err(info.type_error);
        }
    }
    let str_arg = |i: usize| match args[i] {
        Value::Str(s) => s,
        _ => "",
    };
    Ok(match f {
        Func::Contains => Value::Bool(str_arg(0).contains(str_arg(1))),
        Func::StartsWith => Value::Bool(str_arg(0).starts_with(str_arg(1))),
        Func::EndsWith => Value::Bool(str_arg(0).ends_with(str_arg(1))),
        Func::Lower => Value::Str(map_case(str_arg(0), false, arena)),
        Func::Upper => Value::Str(map_case(str_arg(0), true, arena)),
        Func::Len => Value::Int(str_arg(0).chars().count() as i64),
        Func::Int => match args[0] {
            Value::Int(i) => Value::Int(i),
            Value::Float(x) => to_int(x.trunc(), "int(): number out of i64 range")?,
            Value::Bool(b) => Value::Int(b as i64),
            Value::Str(s) => {
                Value::Int(s.trim().parse().map_err(|_| "int(): string is not an integer")?)
            }
            _ => return Err(info.type_error),
        },
        Func::Float => match args[0] {
            Value::Int(i) => Value::Float(i as f64),
            Value::Float(x) => Value::Float(x),
            Value::Str(s) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Value::Float(x),
                _ => return Err("float(): string is not a finite number"),
            },
            _ => return Err(info.type_error),
        },
        Func::String => match args[0] {
            Value::Str(s) | Value::Json(s) => Value::Str(s),
            Value::Null => Value::Str("null"),
            Value::Bool(b) => Value::Str(if b { "true" } else { "false" }),
            Value::Int(i) => Value::Str(arena.alloc_str(itoa::Buffer::new().format(i))),
            Value::Float(x) => {
                if !x.is_finite() {
                    return Err("string(): number is not finite");
                }
                Value::Str(arena.alloc_str(zmij::Buffer::new().format_finite(x)))
            }
        },
        Func::Round | Func::Floor | Func::Ceil => match args[0] {
            Value::Int(i) => Value::Int(i),
            Value::Float(x) => {
                let r = match f {
                    Func::Round => x.round(),
                    Func::Floor => x.floor(),
                    _ => x.ceil(),
                };
                to_int(r, "rounded number out of i64 range")?
            }
            _ => return Err(info.type_error),
        },
        Func::Abs => match args[0] {
            Value::Int(i) => Value::Int(i.checked_abs().ok_or("integer overflow in abs()")?),
            Value::Float(x) => Value::Float(x.abs()),
            _ => return Err(info.type_error),
        },
        Func::Min | Func::Max => match (args[0], args[1]) {
            (Value::Int(x), Value::Int(y)) => {
                Value::Int(if f == Func::Min { x.min(y) } else { x.max(y) })
            }
            (a, b) => {
                let (x, y) = as_f64(a).zip(as_f64(b)).ok_or(info.type_error)?;
                Value::Float(if f == Func::Min { x.min(y) } else { x.max(y) })
            }
        },
        Func::Coalesce => {
            if args[0] == Value::Null {
                args[1]
            } else {
                args[0]
            }
        }
    })
}
