//! Expressions for filters and map fields, compiled once and evaluated per message
//! without heap allocation.
//!
//! `compile` parses the text ([`parse`]), resolves names (payload fields get a slot
//! in the pipeline's [`crate::transform::json::FieldTable`]; `key`, `topic`,
//! `partition`, `offset`, `timestamp`, `header.NAME` are message metadata;
//! `payload.NAME` reads a payload field whose name is one of those words), checks
//! types where they are known (`len(5)` is a compile error), folds constant parts
//! (`2 * 50` becomes `100`, `lower("EU")` becomes `"eu"`) and lays the result out as
//! a tree in a `Vec` of 8-byte nodes. A comparison between a field and a constant
//! (`amount > 100.0`) becomes one node.
//!
//! Evaluation walks that tree recursively (depth bounded by
//! [`parse::TREE_DEPTH_MAX`]); values are `Copy` and borrow the payload, the
//! program's constants or the arena (strings made by `lower`, `upper`, `+`,
//! `string`). The semantics of each operator live in [`ops`].

pub mod ops;
pub mod parse;
pub mod reference;

use std::fmt;

use bumpalo::Bump;

use crate::message::Message;
use crate::transform::json::Slot;
use crate::transform::value::{Type, Value};
use ops::{ARGS_MAX, FUNCS, Func};
use parse::{Ast, BinOp, Lit, Parsed, UnOp};

/// A compile error inside one expression or template: byte offset and length in its
/// text, a message, and sometimes a hint ("did you mean `lower`?").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// Message metadata an expression or template can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    /// The message key (a string; a key that is not UTF-8 is an error when read).
    Key,
    /// The topic set by the latest `route` step ("" before any).
    Topic,
    Partition,
    /// The source position (Kafka offset, file byte offset, sequence number).
    Offset,
    /// The message timestamp, epoch milliseconds.
    Timestamp,
}

impl MetaKind {
    pub fn name(self) -> &'static str {
        match self {
            MetaKind::Key => "key",
            MetaKind::Topic => "topic",
            MetaKind::Partition => "partition",
            MetaKind::Offset => "offset",
            MetaKind::Timestamp => "timestamp",
        }
    }

    pub fn ty(self) -> Type {
        match self {
            MetaKind::Key | MetaKind::Topic => Type::STR,
            _ => Type::INT,
        }
    }
}

/// What a name in an expression or a template refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name<'s> {
    Meta(MetaKind),
    /// `header.NAME`
    Header(&'s str),
    /// A dotted payload path.
    Field(&'s str),
}

/// Classifies a dotted name: metadata words first, then `payload.` escapes.
pub fn classify(path: &str) -> Name<'_> {
    match path {
        "key" => Name::Meta(MetaKind::Key),
        "topic" => Name::Meta(MetaKind::Topic),
        "partition" => Name::Meta(MetaKind::Partition),
        "offset" => Name::Meta(MetaKind::Offset),
        "timestamp" => Name::Meta(MetaKind::Timestamp),
        _ => {
            if let Some(h) = path.strip_prefix("header.") {
                Name::Header(h)
            } else if let Some(p) = path.strip_prefix("payload.") {
                Name::Field(p)
            } else {
                Name::Field(path)
            }
        }
    }
}

/// The message-level inputs of an evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Env<'v> {
    /// Slots filled by [`crate::transform::json::extract`] for this message.
    pub slots: &'v [Slot<'v>],
    pub message: &'v Message<'v>,
    /// The topic chosen so far ("" before any route step).
    pub topic: &'v str,
    /// Where new strings go (the worker's arena).
    pub arena: &'v Bump,
}

/// Reads a metadata value.
#[inline]
pub fn meta_value<'v>(kind: MetaKind, env: &Env<'v>) -> Result<Value<'v>, &'static str> {
    let m = &env.message.meta;
    Ok(match kind {
        MetaKind::Key => Value::Str(
            std::str::from_utf8(env.message.key).map_err(|_| "message key is not UTF-8")?,
        ),
        MetaKind::Topic => Value::Str(env.topic),
        MetaKind::Partition => Value::Int(m.partition as i64),
        MetaKind::Offset => {
            Value::Int(i64::try_from(m.position).map_err(|_| "offset out of i64 range")?)
        }
        MetaKind::Timestamp => Value::Int(m.timestamp_ms),
    })
}

/// Reads a header as a string (`null` when absent or null).
#[inline]
pub fn header_value<'v>(name: &str, env: &Env<'v>) -> Result<Value<'v>, &'static str> {
    match env.message.headers.get(name.as_bytes()) {
        Some(Some(v)) => {
            Ok(Value::Str(std::str::from_utf8(v).map_err(|_| "header value is not UTF-8")?))
        }
        _ => Ok(Value::Null),
    }
}

/// A constant of a compiled expression (owned, folded at compile time).
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

impl Const {
    #[inline]
    pub fn value(&self) -> Value<'_> {
        match self {
            Const::Null => Value::Null,
            Const::Bool(b) => Value::Bool(*b),
            Const::Int(i) => Value::Int(*i),
            Const::Float(f) => Value::Float(*f),
            Const::Str(s) => Value::Str(s),
        }
    }

    fn from_value(v: Value<'_>) -> Const {
        match v {
            Value::Null => Const::Null,
            Value::Bool(b) => Const::Bool(b),
            Value::Int(i) => Const::Int(i),
            Value::Float(f) => Const::Float(f),
            Value::Str(s) | Value::Json(s) => Const::Str(s.into()),
        }
    }

    fn from_lit(l: &Lit) -> Const {
        match l {
            Lit::Null => Const::Null,
            Lit::Bool(b) => Const::Bool(*b),
            Lit::Int(i) => Const::Int(*i),
            Lit::Float(f) => Const::Float(*f),
            Lit::Str(s) => Const::Str(s.as_str().into()),
        }
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Const::Null => f.write_str("null"),
            Const::Bool(b) => write!(f, "{b}"),
            Const::Int(i) => write!(f, "{i}"),
            Const::Float(x) => f.write_str(zmij::Buffer::new().format(*x)),
            Const::Str(s) => write!(f, "{:?}", &**s),
        }
    }
}

/// One node of a compiled expression; children are indices into the node vector.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Node {
    Const(u16),
    Field(u16),
    Meta(MetaKind),
    /// Header whose name is the string constant `consts[i]`.
    Header(u16),
    Unary(UnOp, u16),
    /// Any binary operator; `&&` and `||` short-circuit.
    Binary(BinOp, u16, u16),
    /// `c ? a : b` / `if(c, a, b)`, lazy.
    Cond(u16, u16, u16),
    /// Function with arguments `args[first..first + count]`.
    Call(Func, u16, u8),
    /// `slots[slot] OP consts[c]` for a comparison operator: one node instead of three.
    FieldCmp(BinOp, u16, u16),
}

/// A runtime failure: the node that failed and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalError {
    node: u16,
    pub reason: &'static str,
}

/// A compiled expression.
#[derive(Clone, Debug)]
pub struct Expr {
    source: String,
    nodes: Vec<Node>,
    /// Source span of each node, for runtime error messages.
    spans: Vec<(u32, u32)>,
    args: Vec<u16>,
    consts: Vec<Const>,
    /// Payload paths of the `Field` slots, for display.
    slot_names: Vec<(u16, String)>,
    root: u16,
    ty: Type,
}

/// Resolves a payload path to its slot and known type.
pub type Resolver<'r> = dyn FnMut(&str) -> Result<(u16, Type), String> + 'r;

impl Expr {
    /// Compiles `source`; `resolve` assigns payload paths their slots and types.
    pub fn compile(source: &str, resolve: &mut Resolver<'_>) -> Result<Expr, ExprError> {
        let parsed = parse::parse(source)?;
        let mut c = Compiler {
            parsed: &parsed,
            resolve,
            out: Expr {
                source: source.to_owned(),
                nodes: Vec::new(),
                spans: Vec::new(),
                args: Vec::new(),
                consts: Vec::new(),
                slot_names: Vec::new(),
                root: 0,
                ty: Type::ANY,
            },
        };
        let top = c.lower(parsed.root)?;
        let root = c.materialize(top);
        c.out.root = root;
        c.out.ty = top.ty;
        Ok(c.out)
    }

    /// The possible result types.
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The folded value when the whole expression is constant.
    pub fn constant(&self) -> Option<&Const> {
        match self.nodes[self.root as usize] {
            Node::Const(i) => Some(&self.consts[i as usize]),
            _ => None,
        }
    }

    /// Number of nodes after folding (for the benches and `validate`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The source span `(offset, len)` of the sub-expression that failed.
    pub fn error_span(&self, e: &EvalError) -> (usize, usize) {
        let (a, b) = self.spans.get(e.node as usize).copied().unwrap_or((0, 0));
        (a as usize, (b - a) as usize)
    }

    /// The source text of the sub-expression that failed.
    pub fn error_text(&self, e: &EvalError) -> &str {
        let (at, len) = self.error_span(e);
        self.source.get(at..at + len).unwrap_or("")
    }

    /// Evaluates against one message.
    #[inline]
    pub fn eval<'v>(&'v self, env: &Env<'v>) -> Result<Value<'v>, EvalError> {
        self.eval_node(self.root, env)
    }

    /// Evaluates a condition: must produce a bool.
    #[inline]
    pub fn eval_bool(&self, env: &Env<'_>) -> Result<bool, EvalError> {
        match self.eval_node(self.root, env)? {
            Value::Bool(b) => Ok(b),
            _ => Err(EvalError { node: self.root, reason: "the condition is not a bool" }),
        }
    }

    #[inline]
    fn eval_node<'v>(&'v self, n: u16, env: &Env<'v>) -> Result<Value<'v>, EvalError> {
        let fail = |reason| EvalError { node: n, reason };
        match self.nodes[n as usize] {
            Node::FieldCmp(op, slot, c) => {
                let a = Value::from_slot(env.slots[slot as usize]).map_err(fail)?;
                ops::binary(op, a, self.consts[c as usize].value(), env.arena).map_err(fail)
            }
            Node::Const(i) => Ok(self.consts[i as usize].value()),
            Node::Field(slot) => Value::from_slot(env.slots[slot as usize]).map_err(fail),
            Node::Meta(kind) => meta_value(kind, env).map_err(fail),
            Node::Header(i) => {
                let name = match &self.consts[i as usize] {
                    Const::Str(s) => &**s,
                    _ => "",
                };
                header_value(name, env).map_err(fail)
            }
            Node::Unary(op, a) => ops::unary(op, self.eval_node(a, env)?).map_err(fail),
            Node::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let want = op == BinOp::Or;
                match self.eval_node(a, env)? {
                    Value::Bool(x) if x == want => Ok(Value::Bool(want)),
                    Value::Bool(_) => match self.eval_node(b, env)? {
                        v @ Value::Bool(_) => Ok(v),
                        _ => Err(fail("`&&` and `||` need bools")),
                    },
                    _ => Err(fail("`&&` and `||` need bools")),
                }
            }
            Node::Binary(op, a, b) => {
                let x = self.eval_node(a, env)?;
                let y = self.eval_node(b, env)?;
                ops::binary(op, x, y, env.arena).map_err(fail)
            }
            Node::Cond(c, a, b) => match self.eval_node(c, env)? {
                Value::Bool(true) => self.eval_node(a, env),
                Value::Bool(false) => self.eval_node(b, env),
                _ => Err(fail("the condition of `?:` / if() is not a bool")),
            },
            Node::Call(f, first, count) => {
                let mut args = [Value::Null; ARGS_MAX];
                let count = count as usize;
                for (k, arg) in args[..count].iter_mut().enumerate() {
                    *arg = self.eval_node(self.args[first as usize + k], env)?;
                }
                ops::call(f, &args[..count], env.arena).map_err(fail)
            }
        }
    }

    fn fmt_node(&self, n: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot_name = |s: u16| {
            self.slot_names.iter().find(|(k, _)| *k == s).map_or("?", |(_, name)| name.as_str())
        };
        match self.nodes[n as usize] {
            Node::Const(i) => write!(f, "{}", self.consts[i as usize]),
            Node::Field(s) => write!(f, "{}", slot_name(s)),
            Node::Meta(k) => f.write_str(k.name()),
            Node::Header(i) => {
                write!(f, "header.{}", self.consts[i as usize].value().as_str_or(""))
            }
            Node::Unary(op, a) => {
                f.write_str(if op == UnOp::Not { "!" } else { "-" })?;
                self.fmt_node(a, f)
            }
            Node::Binary(op, a, b) => {
                f.write_str("(")?;
                self.fmt_node(a, f)?;
                write!(f, " {} ", op.symbol())?;
                self.fmt_node(b, f)?;
                f.write_str(")")
            }
            Node::FieldCmp(op, s, c) => {
                write!(f, "({} {} {})", slot_name(s), op.symbol(), self.consts[c as usize])
            }
            Node::Cond(c, a, b) => {
                f.write_str("(")?;
                self.fmt_node(c, f)?;
                f.write_str(" ? ")?;
                self.fmt_node(a, f)?;
                f.write_str(" : ")?;
                self.fmt_node(b, f)?;
                f.write_str(")")
            }
            Node::Call(func, first, count) => {
                write!(f, "{}(", func.info().name)?;
                for k in 0..count as usize {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    self.fmt_node(self.args[first as usize + k], f)?;
                }
                f.write_str(")")
            }
        }
    }
}

impl Value<'_> {
    fn as_str_or<'s>(&'s self, default: &'s str) -> &'s str {
        match self {
            Value::Str(s) => s,
            _ => default,
        }
    }
}

/// Shows the compiled (folded) form: `((status == "paid") && (amount > 100.0))`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_node(self.root, f)
    }
}

/// A lowered sub-expression: either a constant (not yet placed) or a placed node.
#[derive(Clone, Copy, Debug)]
struct Lowered {
    ty: Type,
    /// `Some(i)`: the constant `consts[i]`, not yet given a node.
    konst: Option<u16>,
    node: u16,
    /// Source span of the sub-expression.
    span: (usize, usize),
}

struct Compiler<'p, 'r, 'x> {
    parsed: &'p Parsed,
    resolve: &'r mut Resolver<'x>,
    out: Expr,
}

pub use crate::parse::suggest::did_you_mean;

fn err(span: (usize, usize), message: impl Into<String>) -> ExprError {
    ExprError { offset: span.0, len: span.1 - span.0, message: message.into(), hint: None }
}

impl Compiler<'_, '_, '_> {
    fn add_const(&mut self, c: Const) -> u16 {
        // Floats compare by bits so that 0.0 and -0.0 stay distinct.
        let same = |k: &Const| match (k, &c) {
            (Const::Float(x), Const::Float(y)) => x.to_bits() == y.to_bits(),
            _ => *k == c,
        };
        if let Some(i) = self.out.consts.iter().position(same) {
            return i as u16;
        }
        self.out.consts.push(c);
        (self.out.consts.len() - 1) as u16
    }

    fn place(&mut self, node: Node, span: (usize, usize)) -> u16 {
        self.out.nodes.push(node);
        self.out.spans.push((span.0 as u32, span.1 as u32));
        (self.out.nodes.len() - 1) as u16
    }

    /// Gives a lowered constant its node.
    fn materialize(&mut self, l: Lowered) -> u16 {
        match l.konst {
            Some(i) => self.place(Node::Const(i), l.span),
            None => l.node,
        }
    }

    fn constant(&mut self, v: Value<'_>, span: (usize, usize)) -> Lowered {
        let c = Const::from_value(v);
        let ty = v.ty();
        let i = self.add_const(c);
        Lowered { ty, konst: Some(i), node: 0, span }
    }

    fn placed(&mut self, node: Node, ty: Type, span: (usize, usize)) -> Lowered {
        let n = self.place(node, span);
        Lowered { ty, konst: None, node: n, span }
    }

    /// The constant of a lowered sub-expression, cloned so folding can borrow it
    /// while the compiler adds the result.
    fn const_of(&self, l: &Lowered) -> Option<Const> {
        l.konst.map(|i| self.out.consts[i as usize].clone())
    }

    fn fold_failed(span: (usize, usize), reason: &str) -> ExprError {
        err(span, format!("this constant expression always fails: {reason}"))
    }

    fn lower(&mut self, at: usize) -> Result<Lowered, ExprError> {
        let span = self.parsed.spans[at];
        match &self.parsed.nodes[at] {
            Ast::Lit(l) => {
                let c = Const::from_lit(l);
                let ty = c.value().ty();
                let i = self.add_const(c);
                Ok(Lowered { ty, konst: Some(i), node: 0, span })
            }
            Ast::Path(path) => match classify(path) {
                Name::Meta(kind) => Ok(self.placed(Node::Meta(kind), kind.ty(), span)),
                Name::Header(h) => {
                    let i = self.add_const(Const::Str(h.into()));
                    Ok(self.placed(Node::Header(i), Type::STR.union(Type::NULL), span))
                }
                Name::Field(p) => {
                    let (slot, ty) = (self.resolve)(p).map_err(|m| err(span, m))?;
                    if !self.out.slot_names.iter().any(|(s, _)| *s == slot) {
                        self.out.slot_names.push((slot, p.to_owned()));
                    }
                    Ok(self.placed(Node::Field(slot), ty, span))
                }
            },
            Ast::Unary(op, a) => {
                let a = self.lower(*a)?;
                let (want, what) = match op {
                    UnOp::Not => (Type::BOOL, "`!` needs a bool"),
                    UnOp::Neg => (Type::NUMBER, "`-` needs a number"),
                };
                if !a.ty.overlaps(want) {
                    return Err(err(
                        a.span,
                        format!("type mismatch: {what}, found {}", a.ty.name()),
                    ));
                }
                let ty = if *op == UnOp::Not { Type::BOOL } else { a.ty.intersect(Type::NUMBER) };
                if let Some(c) = self.const_of(&a) {
                    let r = ops::unary(*op, c.value()).map_err(|r| Self::fold_failed(span, r))?;
                    let r = Const::from_value(r);
                    return Ok(self.constant(r.value(), span));
                }
                Ok(self.placed(Node::Unary(*op, a.node), ty, span))
            }
            Ast::Binary(op, a, b) => self.binary(*op, *a, *b, span),
            Ast::Cond(c, a, b) => self.cond(*c, *a, *b, span),
            Ast::Call { name, name_span, args } => {
                if name == "if" {
                    if args.len() != 3 {
                        return Err(err(
                            *name_span,
                            format!(
                                "`if` takes 3 arguments (condition, then, else), found {}",
                                args.len()
                            ),
                        ));
                    }
                    return self.cond(args[0], args[1], args[2], span);
                }
                let Some(info) = FUNCS.iter().find(|f| f.name == name) else {
                    let names = FUNCS.iter().map(|f| f.name).chain(["if"]);
                    let mut e = err(*name_span, format!("unknown function `{name}`"));
                    e.hint = did_you_mean(name, names);
                    return Err(e);
                };
                if args.len() != info.params.len() {
                    let plural = if info.params.len() == 1 { "" } else { "s" };
                    return Err(err(
                        *name_span,
                        format!(
                            "`{name}` takes {} argument{plural}, found {}",
                            info.params.len(),
                            args.len()
                        ),
                    ));
                }
                let mut lowered = [None::<Lowered>; ARGS_MAX];
                for (k, &arg) in args.iter().enumerate() {
                    let l = self.lower(arg)?;
                    if !l.ty.overlaps(info.params[k]) {
                        return Err(err(
                            l.span,
                            format!(
                                "type mismatch: `{name}` expects {} as argument {}, found {}",
                                info.params[k].name(),
                                k + 1,
                                l.ty.name()
                            ),
                        ));
                    }
                    lowered[k] = Some(l);
                }
                let lowered: Vec<Lowered> = lowered.iter().flatten().copied().collect();
                let types: Vec<Type> = lowered.iter().map(|l| l.ty).collect();
                let ty = info.func.result(&types);
                if lowered.iter().all(|l| l.konst.is_some()) {
                    let consts: Vec<Const> =
                        lowered.iter().filter_map(|l| self.const_of(l)).collect();
                    let values: Vec<Value<'_>> = consts.iter().map(Const::value).collect();
                    let arena = Bump::new();
                    let folded = ops::call(info.func, &values, &arena).map(Const::from_value);
                    let c = folded.map_err(|r| Self::fold_failed(span, r))?;
                    let ty = c.value().ty();
                    let i = self.add_const(c);
                    return Ok(Lowered { ty, konst: Some(i), node: 0, span });
                }
                let first = self.out.args.len() as u16;
                let nodes: Vec<u16> = lowered.iter().map(|l| self.materialize(*l)).collect();
                self.out.args.extend_from_slice(&nodes);
                Ok(self.placed(Node::Call(info.func, first, lowered.len() as u8), ty, span))
            }
        }
    }

    fn cond(
        &mut self,
        c: usize,
        a: usize,
        b: usize,
        span: (usize, usize),
    ) -> Result<Lowered, ExprError> {
        let c = self.lower(c)?;
        if !c.ty.overlaps(Type::BOOL) {
            return Err(err(
                c.span,
                format!("type mismatch: a condition must be a bool, found {}", c.ty.name()),
            ));
        }
        let a = self.lower(a)?;
        let b = self.lower(b)?;
        if let Some(k) = self.const_of(&c) {
            return match k.value() {
                Value::Bool(true) => Ok(a),
                Value::Bool(false) => Ok(b),
                _ => Err(Self::fold_failed(c.span, "the condition is not a bool")),
            };
        }
        let (a_node, b_node) = (self.materialize(a), self.materialize(b));
        Ok(self.placed(Node::Cond(c.node, a_node, b_node), a.ty.union(b.ty), span))
    }

    fn binary(
        &mut self,
        op: BinOp,
        a: usize,
        b: usize,
        span: (usize, usize),
    ) -> Result<Lowered, ExprError> {
        let a = self.lower(a)?;
        let b = self.lower(b)?;
        let mismatch = |what: &str| {
            err(span, format!("type mismatch: {what}, found {} and {}", a.ty.name(), b.ty.name()))
        };
        let num = |t: Type| t.overlaps(Type::NUMBER);
        let ty = match op {
            BinOp::And | BinOp::Or => {
                for side in [&a, &b] {
                    if !side.ty.overlaps(Type::BOOL) {
                        return Err(err(
                            side.span,
                            format!(
                                "type mismatch: `{}` needs bools, found {}",
                                op.symbol(),
                                side.ty.name()
                            ),
                        ));
                    }
                }
                Type::BOOL
            }
            BinOp::Eq | BinOp::Ne => {
                // Values of surely different types are never equal: that is a mistake
                // when neither side can be null.
                let norm =
                    |t: Type| if t.overlaps(Type::NUMBER) { t.union(Type::NUMBER) } else { t };
                if !a.ty.overlaps(Type::NULL)
                    && !b.ty.overlaps(Type::NULL)
                    && !norm(a.ty).overlaps(norm(b.ty))
                {
                    return Err(mismatch(&format!(
                        "`{}` compares values that can never be equal",
                        op.symbol()
                    )));
                }
                Type::BOOL
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let strs = a.ty.overlaps(Type::STR) && b.ty.overlaps(Type::STR);
                if !(strs || num(a.ty) && num(b.ty)) {
                    return Err(mismatch(&format!(
                        "`{}` needs two numbers or two strings",
                        op.symbol()
                    )));
                }
                Type::BOOL
            }
            BinOp::Add => {
                let strs = a.ty.overlaps(Type::STR) && b.ty.overlaps(Type::STR);
                let nums = num(a.ty) && num(b.ty);
                if !nums && !strs {
                    return Err(mismatch("`+` needs two numbers or two strings"));
                }
                let mut t = if nums { ops::numeric_result(a.ty, b.ty) } else { Type::NONE };
                if strs {
                    t = t.union(Type::STR);
                }
                t
            }
            BinOp::Sub | BinOp::Mul | BinOp::Rem => {
                if !(num(a.ty) && num(b.ty)) {
                    return Err(mismatch(&format!("`{}` needs two numbers", op.symbol())));
                }
                ops::numeric_result(a.ty, b.ty)
            }
            BinOp::Div => {
                if !(num(a.ty) && num(b.ty)) {
                    return Err(mismatch("`/` needs two numbers"));
                }
                Type::FLOAT
            }
        };
        // Folding. `&&`/`||` fold on a constant left side even when the right side is
        // not constant (short-circuit), and keep the right side's check otherwise.
        let (ka, kb) = (self.const_of(&a), self.const_of(&b));
        let (ca, cb) = (ka.as_ref().map(Const::value), kb.as_ref().map(Const::value));
        if let (BinOp::And | BinOp::Or, Some(va)) = (op, ca) {
            let Value::Bool(x) = va else {
                return Err(Self::fold_failed(a.span, "`&&` and `||` need bools"));
            };
            let short = op == BinOp::Or;
            if x == short {
                return Ok(self.constant(Value::Bool(short), span));
            }
            if b.ty.within(Type::BOOL) {
                return Ok(b);
            }
        }
        // `a && true` and `a || false` are `a` when `a` is surely a bool.
        if let (BinOp::And | BinOp::Or, Some(Value::Bool(y))) = (op, cb) {
            if y != (op == BinOp::Or) && a.ty.within(Type::BOOL) {
                return Ok(a);
            }
        }
        if let (Some(va), Some(vb)) = (ca, cb) {
            let arena = Bump::new();
            let folded = ops::binary(op, va, vb, &arena).map(Const::from_value);
            let c = folded.map_err(|r| Self::fold_failed(span, r))?;
            let ty = c.value().ty();
            let i = self.add_const(c);
            return Ok(Lowered { ty, konst: Some(i), node: 0, span });
        }
        let is_cmp =
            matches!(op, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge);
        if is_cmp {
            let field_of = |l: &Lowered, me: &Self| match l.konst {
                None => match me.out.nodes[l.node as usize] {
                    Node::Field(s) => Some(s),
                    _ => None,
                },
                Some(_) => None,
            };
            if let (Some(slot), Some(c)) = (field_of(&a, self), b.konst) {
                self.drop_last_if(a.node);
                return Ok(self.placed(Node::FieldCmp(op, slot, c), ty, span));
            }
            if let (Some(c), Some(slot)) = (a.konst, field_of(&b, self)) {
                let flipped = match op {
                    BinOp::Lt => BinOp::Gt,
                    BinOp::Le => BinOp::Ge,
                    BinOp::Gt => BinOp::Lt,
                    BinOp::Ge => BinOp::Le,
                    other => other,
                };
                self.drop_last_if(b.node);
                return Ok(self.placed(Node::FieldCmp(flipped, slot, c), ty, span));
            }
        }
        let (na, nb) = (self.materialize(a), self.materialize(b));
        Ok(self.placed(Node::Binary(op, na, nb), ty, span))
    }

    /// Removes the node just placed when it is being fused into its parent.
    fn drop_last_if(&mut self, node: u16) {
        if node as usize + 1 == self.out.nodes.len() {
            self.out.nodes.pop();
            self.out.spans.pop();
        }
    }
}

#[cfg(test)]
mod tests;
