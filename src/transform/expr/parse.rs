//! Lexer and Pratt parser: expression text → an AST in a `Vec`, with byte spans.
//!
//! Grammar, lowest precedence first:
//!
//! ```text
//! expr    = or ( "?" expr ":" expr )?
//! or      = and ( "||" and )*
//! and     = eq ( "&&" eq )*
//! eq      = cmp ( ( "==" | "!=" ) cmp )*
//! cmp     = add ( ( "<" | "<=" | ">" | ">=" ) add )*
//! add     = mul ( ( "+" | "-" ) mul )*
//! mul     = unary ( ( "*" | "/" | "%" ) unary )*
//! unary   = ( "!" | "-" ) unary | primary
//! primary = number | string | true | false | null | path | name "(" args ")" | "(" expr ")"
//! path    = name ( "." name )*          name = [A-Za-z_][A-Za-z0-9_]*
//! ```
//! Strings are `"..."` or `'...'` with the escapes `\" \' \\ \n \t \r \u{XXXX}`.

use super::ExprError;

/// Deepest nesting of parentheses, unary operators and calls. The parser recurses
/// once per level; 64 is far beyond a readable expression.
pub const NESTING_DEPTH_MAX: usize = 64;
/// Deepest expression tree (`a || b || c` is 3 deep: a chain of operators is
/// left-deep). The compiler and the evaluator recurse once per level, so this
/// bounds their stack use (well under 100 KiB at 256); a flat chain of a few hundred
/// conditions is legitimate, so it is larger than the nesting limit.
pub const TREE_DEPTH_MAX: usize = 256;
/// Most AST nodes in one expression; node indices are `u16`.
pub const NODES_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// A literal as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Lit(Lit),
    Path(String),
    Unary(UnOp, usize),
    Binary(BinOp, usize, usize),
    /// `c ? a : b`
    Cond(usize, usize, usize),
    /// `name(args)`; the name's span is `name_span`.
    Call {
        name: String,
        name_span: (usize, usize),
        args: Vec<usize>,
    },
}

/// A parsed expression: `nodes[root]` is the top; children precede parents.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub nodes: Vec<Ast>,
    /// Byte span `(start, end)` of each node in the source.
    pub spans: Vec<(usize, usize)>,
    pub root: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Lit),
    Str(String),
    Name(String),
    Punct(&'static str),
    End,
}

struct Lexer<'s> {
    src: &'s str,
    at: usize,
}

const PUNCT: [&str; 20] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", ",", "?",
    ":", ".",
];

fn err(offset: usize, len: usize, message: impl Into<String>) -> ExprError {
    ExprError { offset, len, message: message.into(), hint: None }
}

impl<'s> Lexer<'s> {
    /// The next token and its span.
    fn next(&mut self) -> Result<(Tok, usize, usize), ExprError> {
        let b = self.src.as_bytes();
        while self.at < b.len() && b[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
        let start = self.at;
        let Some(&c) = b.get(start) else {
            return Ok((Tok::End, start, start));
        };
        if c.is_ascii_digit() {
            return self.number(start);
        }
        if c == b'"' || c == b'\'' {
            return self.string(start, c);
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut i = start;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            self.at = i;
            return Ok((Tok::Name(self.src[start..i].to_owned()), start, i));
        }
        for p in PUNCT {
            if self.src[start..].starts_with(p) {
                self.at = start + p.len();
                return Ok((Tok::Punct(p), start, self.at));
            }
        }
        if c == b'=' {
            return Err(ExprError {
                hint: Some("use `==` to compare".into()),
                ..err(start, 1, "unexpected `=`")
            });
        }
        if c == b'&' || c == b'|' {
            let op = if c == b'&' { "&&" } else { "||" };
            return Err(ExprError {
                hint: Some(format!("use `{op}`")),
                ..err(start, 1, format!("unexpected `{}`", c as char))
            });
        }
        let ch = self.src[start..].chars().next().unwrap_or('?');
        Err(err(start, ch.len_utf8(), format!("unexpected character `{ch}`")))
    }

    fn number(&mut self, start: usize) -> Result<(Tok, usize, usize), ExprError> {
        let b = self.src.as_bytes();
        let mut i = start;
        let mut float = false;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            float = true;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                float = true;
                i = j;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
            return Err(err(start, i + 1 - start, "invalid number"));
        }
        self.at = i;
        let text = &self.src[start..i];
        let lit = if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Lit::Float(f),
                _ => return Err(err(start, i - start, "number out of range")),
            }
        } else {
            match text.parse::<i64>() {
                Ok(v) => Lit::Int(v),
                Err(_) => return Err(err(start, i - start, "integer out of i64 range")),
            }
        };
        Ok((Tok::Num(lit), start, i))
    }

    fn string(&mut self, start: usize, quote: u8) -> Result<(Tok, usize, usize), ExprError> {
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        while let Some((k, c)) = chars.next() {
            let at = start + 1 + k;
            if c as u32 == quote as u32 {
                self.at = at + 1;
                return Ok((Tok::Str(out), start, self.at));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                '"' | '\'' | '\\' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let rest = &self.src[at + 2..];
                    let close = rest.find('}');
                    let code = match (rest.strip_prefix('{'), close) {
                        (Some(_), Some(close)) => u32::from_str_radix(&rest[1..close], 16).ok(),
                        _ => None,
                    };
                    let Some(ch) = code.and_then(char::from_u32) else {
                        return Err(ExprError {
                            hint: Some("write a code point as `\\u{e9}`".into()),
                            ..err(at, 2, "invalid unicode escape")
                        });
                    };
                    out.push(ch);
                    // Skip the `{...}` the chars iterator has not consumed.
                    let skip = close.map_or(0, |c| c + 1);
                    for _ in 0..rest[..skip].chars().count() {
                        chars.next();
                    }
                }
                _ => {
                    return Err(err(at, 1 + e.len_utf8(), format!("invalid escape `\\{e}`")));
                }
            }
        }
        Err(err(start, self.src.len() - start, "unterminated string"))
    }
}

/// Parses `src` into an AST.
pub fn parse(src: &str) -> Result<Parsed, ExprError> {
    let mut p = Parser {
        lexer: Lexer { src, at: 0 },
        tok: Tok::End,
        start: 0,
        end: 0,
        out: Parsed { nodes: Vec::new(), spans: Vec::new(), root: 0 },
        depth: 0,
        depths: Vec::new(),
    };
    p.advance()?;
    if p.tok == Tok::End {
        return Err(err(0, 0, "empty expression"));
    }
    let root = p.expr()?;
    if p.tok != Tok::End {
        return Err(p.unexpected("an operator or the end of the expression"));
    }
    p.out.root = root;
    Ok(p.out)
}

struct Parser<'s> {
    lexer: Lexer<'s>,
    tok: Tok,
    start: usize,
    end: usize,
    out: Parsed,
    depth: usize,
    /// Tree depth of each node in `out.nodes` (a leaf is 1).
    depths: Vec<u16>,
}

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), ExprError> {
        let (tok, start, end) = self.lexer.next()?;
        self.tok = tok;
        self.start = start;
        self.end = end;
        Ok(())
    }

    fn push(&mut self, node: Ast, span: (usize, usize)) -> Result<usize, ExprError> {
        if self.out.nodes.len() >= NODES_MAX {
            return Err(err(span.0, span.1 - span.0, "expression too large"));
        }
        // Tree depth, not only parenthesis depth: `a + a + ... + a` is left-deep, and
        // the compiler and the evaluator recurse once per level.
        let children: &[usize] = match &node {
            Ast::Lit(_) | Ast::Path(_) => &[],
            Ast::Unary(_, a) => std::slice::from_ref(a),
            Ast::Binary(_, a, b) => &[*a, *b],
            Ast::Cond(c, a, b) => &[*c, *a, *b],
            Ast::Call { args, .. } => args,
        };
        let depth = 1 + children.iter().map(|&c| self.depths[c] as usize).max().unwrap_or(0);
        if depth > TREE_DEPTH_MAX {
            return Err(err(
                span.0,
                span.1 - span.0,
                "expression too long: a chain of more than 256 operators (split it into steps)",
            ));
        }
        self.depths.push(depth as u16);
        self.out.nodes.push(node);
        self.out.spans.push(span);
        Ok(self.out.nodes.len() - 1)
    }

    fn span_of(&self, node: usize) -> (usize, usize) {
        self.out.spans[node]
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::End => "the end of the expression".into(),
            _ => format!("`{}`", &self.lexer.src[self.start..self.end]),
        }
    }

    fn unexpected(&self, wanted: &str) -> ExprError {
        err(
            self.start,
            self.end - self.start,
            format!("expected {wanted}, found {}", self.describe()),
        )
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.tok, Tok::Punct(q) if q == p)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > NESTING_DEPTH_MAX {
            return Err(err(self.start, 1, "expression nested deeper than 64 levels"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<usize, ExprError> {
        self.enter()?;
        let cond = self.binary(0)?;
        let node = if self.is("?") {
            self.advance()?;
            let a = self.expr()?;
            if !self.is(":") {
                return Err(self.unexpected("`:` of the conditional `c ? a : b`"));
            }
            self.advance()?;
            let b = self.expr()?;
            let span = (self.span_of(cond).0, self.span_of(b).1);
            self.push(Ast::Cond(cond, a, b), span)?
        } else {
            cond
        };
        self.depth -= 1;
        Ok(node)
    }

    /// Binary operators by precedence level (0 = `||`).
    fn binary(&mut self, level: usize) -> Result<usize, ExprError> {
        const LEVELS: [&[(&str, BinOp)]; 6] = [
            &[("||", BinOp::Or)],
            &[("&&", BinOp::And)],
            &[("==", BinOp::Eq), ("!=", BinOp::Ne)],
            &[("<", BinOp::Lt), ("<=", BinOp::Le), (">", BinOp::Gt), (">=", BinOp::Ge)],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Tok::Punct(p) = self.tok {
            let Some(&(_, op)) = LEVELS[level].iter().find(|(s, _)| *s == p) else { break };
            self.advance()?;
            let right = self.binary(level + 1)?;
            let span = (self.span_of(left).0, self.span_of(right).1);
            left = self.push(Ast::Binary(op, left, right), span)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<usize, ExprError> {
        let op = if self.is("!") {
            UnOp::Not
        } else if self.is("-") {
            UnOp::Neg
        } else {
            return self.primary();
        };
        let start = self.start;
        self.enter()?;
        self.advance()?;
        let inner = self.unary()?;
        self.depth -= 1;
        let span = (start, self.span_of(inner).1);
        self.push(Ast::Unary(op, inner), span)
    }

    fn primary(&mut self) -> Result<usize, ExprError> {
        let (start, end) = (self.start, self.end);
        match std::mem::replace(&mut self.tok, Tok::End) {
            Tok::Num(lit) => {
                self.advance()?;
                self.push(Ast::Lit(lit), (start, end))
            }
            Tok::Str(s) => {
                self.advance()?;
                self.push(Ast::Lit(Lit::Str(s)), (start, end))
            }
            Tok::Name(name) => {
                self.advance()?;
                match name.as_str() {
                    "true" => return self.push(Ast::Lit(Lit::Bool(true)), (start, end)),
                    "false" => return self.push(Ast::Lit(Lit::Bool(false)), (start, end)),
                    "null" => return self.push(Ast::Lit(Lit::Null), (start, end)),
                    _ => {}
                }
                if self.is("(") {
                    return self.call(name, (start, end));
                }
                let mut path = name;
                let mut path_end = end;
                while self.is(".") {
                    self.advance()?;
                    let Tok::Name(seg) = &self.tok else {
                        return Err(self.unexpected("a field name after `.`"));
                    };
                    path.push('.');
                    path.push_str(seg);
                    path_end = self.end;
                    self.advance()?;
                }
                self.push(Ast::Path(path), (start, path_end))
            }
            Tok::Punct("(") => {
                self.advance()?;
                let inner = self.expr()?;
                if !self.is(")") {
                    let mut e = self.unexpected("`)`");
                    e.hint = Some(format!("the `(` at byte {start} is not closed"));
                    return Err(e);
                }
                let close = self.end;
                self.advance()?;
                // The node's span takes in its parentheses, so messages quote them.
                self.out.spans[inner] = (start, close);
                Ok(inner)
            }
            tok => {
                self.tok = tok;
                Err(self.unexpected("an expression"))
            }
        }
    }

    fn call(&mut self, name: String, name_span: (usize, usize)) -> Result<usize, ExprError> {
        self.enter()?;
        self.advance()?; // `(`
        let mut args = Vec::new();
        if !self.is(")") {
            loop {
                args.push(self.expr()?);
                if self.is(",") {
                    self.advance()?;
                    continue;
                }
                if self.is(")") {
                    break;
                }
                return Err(self.unexpected("`,` or `)` in the arguments"));
            }
        }
        let end = self.end;
        self.advance()?;
        self.depth -= 1;
        self.push(Ast::Call { name, name_span, args }, (name_span.0, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(src: &str) -> String {
        fn go(p: &Parsed, n: usize) -> String {
            match &p.nodes[n] {
                Ast::Lit(l) => format!("{l:?}"),
                Ast::Path(s) => s.clone(),
                Ast::Unary(op, a) => format!("({op:?} {})", go(p, *a)),
                Ast::Binary(op, a, b) => format!("({} {} {})", go(p, *a), op.symbol(), go(p, *b)),
                Ast::Cond(c, a, b) => format!("({} ? {} : {})", go(p, *c), go(p, *a), go(p, *b)),
                Ast::Call { name, args, .. } => {
                    let a: Vec<String> = args.iter().map(|&x| go(p, x)).collect();
                    format!("{name}({})", a.join(", "))
                }
            }
        }
        let p = parse(src).unwrap();
        go(&p, p.root)
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(shape("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(
            shape("status == 'paid' && amount > 100.0 || x"),
            "(((status == Str(\"paid\")) && (amount > Float(100.0))) || x)"
        );
        assert_eq!(shape("!a && -b < 3"), "((Not a) && ((Neg b) < Int(3)))");
        assert_eq!(shape("c ? 1 : d ? 2 : 3"), "(c ? Int(1) : (d ? Int(2) : Int(3)))");
        assert_eq!(shape("round(amount * 100)"), "round((amount * Int(100)))");
        assert_eq!(shape("address.city"), "address.city");
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            shape(r#""a\"b" + 'c\'d' + "\u{e9}\n""#),
            "((Str(\"a\\\"b\") + Str(\"c'd\")) + Str(\"é\\n\"))"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let cases = [
            ("a +", 3, "expected an expression, found the end of the expression"),
            ("(a + b", 6, "expected `)`, found the end of the expression"),
            ("a b", 2, "expected an operator or the end of the expression, found `b`"),
            ("'abc", 0, "unterminated string"),
            ("a # b", 2, "unexpected character `#`"),
            ("a = b", 2, "unexpected `=`"),
            ("f(a b)", 4, "expected `,` or `)` in the arguments, found `b`"),
            ("", 0, "empty expression"),
            ("1.5x", 0, "invalid number"),
            ("99999999999999999999", 0, "integer out of i64 range"),
            ("a.", 2, "expected a field name after `.`, found the end of the expression"),
            (
                "c ? a",
                5,
                "expected `:` of the conditional `c ? a : b`, found the end of the expression",
            ),
        ];
        for (src, offset, message) in cases {
            let e = parse(src).unwrap_err();
            assert_eq!((e.offset, e.message.as_str()), (offset, message), "{src}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(parse(&deep).unwrap_err().message, "expression nested deeper than 64 levels");
        // Found by the expression fuzzer: a long operator chain is deep too.
        let chain = vec!["a"; 5000].join(" + ");
        assert!(parse(&chain).unwrap_err().message.starts_with("expression too long"));
        // A flat chain of a hundred conditions is not deep nesting.
        assert!(parse(&vec!["a == 1"; 100].join(" || ")).is_ok());
        assert!(parse(&vec!["a"; 256].join(" + ")).is_ok());
        assert!(parse(&vec!["a"; 257].join(" + ")).is_err());
    }
}
