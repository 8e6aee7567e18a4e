//! CEL syntax: a lexer and a precedence-climbing parser producing [`Expr`], with the standard
//! macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`) expanded into
//! [`Expr::Comprehension`]. Nesting, length and node counts are bounded (hostile input).

use std::sync::Arc;

use super::value::Value;

/// Longest expression accepted (bytes).
pub const MAX_EXPRESSION_LEN: usize = 100 * 1024;
/// Deepest nesting of the parse (cel-go's default recursion limit).
pub const MAX_NESTING: usize = 250;
/// Most nodes in one expression.
pub const MAX_NODES: usize = 100_000;
/// Deepest parse tree accepted (long `a + b + c ...` chains nest without parser recursion,
/// so the tree depth is checked on its own; every later walk relies on this bound).
pub const MAX_AST_DEPTH: usize = 500;

/// The comprehension macros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Macro {
    /// `l.all(x, p)`.
    All,
    /// `l.exists(x, p)`.
    Exists,
    /// `l.exists_one(x, p)`.
    ExistsOne,
    /// `l.map(x, f)` / `l.map(x, p, f)`.
    Map,
    /// `l.filter(x, p)`.
    Filter,
}

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A variable.
    Ident(Arc<str>),
    /// `operand.field`; `test` for `has(operand.field)`, `optional` for `operand.?field`.
    Select {
        /// The value selected from.
        operand: Box<Expr>,
        /// The field name.
        field: Arc<str>,
        /// `has()` form.
        test: bool,
        /// `.?` form.
        optional: bool,
        /// Byte offset of the `.` in the source (for type-check messages).
        pos: u32,
    },
    /// A function or operator call (`_+_`, `_[_]`, `size`...), with a receiver for
    /// member calls.
    Call {
        /// The function name.
        func: Arc<str>,
        /// The receiver of a member call.
        target: Option<Box<Expr>>,
        /// Arguments.
        args: Vec<Expr>,
        /// Byte offset of the operator or call in the source (for type-check messages).
        pos: u32,
    },
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{k: v}`.
    Map(Vec<(Expr, Expr)>),
    /// A macro over a list or map.
    Comprehension {
        /// Which macro.
        kind: Macro,
        /// The iteration variable.
        var: Arc<str>,
        /// The range.
        range: Box<Expr>,
        /// Predicate or transform.
        body: Box<Expr>,
        /// The filter of the 3-argument `map`.
        filter: Option<Box<Expr>>,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Ident(String),
    Punct(&'static str),
    Eof,
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", ".?", "[?", "<", ">", "+", "-", "*", "/", "%", "!", "?",
    ":", ".", ",", "(", ")", "[", "]", "{", "}",
];

#[derive(Clone)]
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Where the last token returned by `next` starts.
    start: usize,
}

fn err<T>(msg: impl Into<String>) -> Result<T, String> {
    Err(msg.into())
}

impl<'a> Lexer<'a> {
    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Result<Tok, String> {
        self.skip_ws();
        self.start = self.pos;
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else {
            return Ok(Tok::Eof);
        };
        if c.is_ascii_digit() || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            return self.number();
        }
        if c == '"' || c == '\'' {
            return self.string(false, false).map(Tok::Str);
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let lower = rest.as_bytes().get(1).copied();
            let quote_next = matches!(lower, Some(b'"') | Some(b'\''));
            if (c == 'r' || c == 'R') && quote_next {
                self.pos += 1;
                return self.string(true, false).map(Tok::Str);
            }
            if (c == 'b' || c == 'B') && quote_next {
                self.pos += 1;
                return self.string(false, true).map(|s| Tok::Bytes(s.into_bytes()));
            }
            if (c == 'b' || c == 'B')
                && matches!(lower, Some(b'r') | Some(b'R'))
                && matches!(rest.as_bytes().get(2), Some(b'"') | Some(b'\''))
            {
                self.pos += 2;
                return self.string(true, true).map(|s| Tok::Bytes(s.into_bytes()));
            }
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            self.pos += end;
            return Ok(Tok::Ident(rest[..end].to_string()));
        }
        for p in PUNCTS {
            if rest.starts_with(p) {
                self.pos += p.len();
                return Ok(Tok::Punct(p));
            }
        }
        err(format!("Syntax error: token recognition error at: '{c}'"))
    }

    fn number(&mut self) -> Result<Tok, String> {
        let rest = &self.src[self.pos..];
        if rest.starts_with("0x") || rest.starts_with("0X") {
            let digits_end = rest[2..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .map(|i| i + 2)
                .unwrap_or(rest.len());
            let digits = &rest[2..digits_end];
            self.pos += digits_end;
            if self.src[self.pos..].starts_with(['u', 'U']) {
                self.pos += 1;
                return u64::from_str_radix(digits, 16)
                    .map(Tok::Uint)
                    .map_err(|_| "invalid uint literal".into());
            }
            return i64::from_str_radix(digits, 16)
                .map(Tok::Int)
                .map_err(|_| "invalid int literal".into());
        }
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut is_float = false;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_digit() {
                is_float = true;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                i = j;
            }
        }
        let text = &rest[..i];
        self.pos += i;
        if is_float {
            return text
                .parse::<f64>()
                .map(Tok::Double)
                .map_err(|_| "invalid double literal".into());
        }
        if self.src[self.pos..].starts_with(['u', 'U']) {
            self.pos += 1;
            return text
                .parse::<u64>()
                .map(Tok::Uint)
                .map_err(|_| "invalid uint literal".into());
        }
        // `-9223372036854775808` is handled by the parser folding unary minus.
        match text.parse::<i64>() {
            Ok(n) => Ok(Tok::Int(n)),
            Err(_) if text == "9223372036854775808" => Ok(Tok::Uint(9_223_372_036_854_775_808)),
            Err(_) => err("invalid int literal"),
        }
    }

    fn string(&mut self, raw: bool, bytes: bool) -> Result<String, String> {
        let rest = &self.src[self.pos..];
        let q = &rest[..1];
        let triple = rest.starts_with(&q.repeat(3));
        let delim = if triple { q.repeat(3) } else { q.to_string() };
        self.pos += delim.len();
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            if rest.is_empty() {
                return err("Syntax error: unterminated string literal");
            }
            if rest.starts_with(&delim) {
                self.pos += delim.len();
                return Ok(out);
            }
            let c = rest.chars().next().unwrap_or_default();
            if !triple && (c == '\n' || c == '\r') {
                return err("Syntax error: newline in string literal");
            }
            if c == '\\' && !raw {
                self.pos += 1;
                self.escape(&mut out, bytes)?;
                continue;
            }
            out.push(c);
            self.pos += c.len_utf8();
        }
    }

    fn escape(&mut self, out: &mut String, bytes: bool) -> Result<(), String> {
        let Some(c) = self.peek_char() else {
            return err("Syntax error: bad escape");
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            '`' => Some('`'),
            '?' => Some('?'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        let take = |this: &mut Self, n: usize, radix: u32| -> Result<u32, String> {
            let s = this
                .src
                .get(this.pos..this.pos + n)
                .ok_or("Syntax error: bad escape")?;
            this.pos += n;
            u32::from_str_radix(s, radix).map_err(|_| "Syntax error: bad escape".to_string())
        };
        let code = match c {
            'x' | 'X' => take(self, 2, 16)?,
            'u' if !bytes => take(self, 4, 16)?,
            'U' if !bytes => take(self, 8, 16)?,
            '0'..='3' => {
                self.pos -= 1;
                take(self, 3, 8)?
            }
            _ => return err("Syntax error: bad escape"),
        };
        if bytes && code > 0x7f {
            // byte escapes above ASCII: keep as the Latin-1 char (a faithful byte model is not
            // needed for validation rules).
        }
        out.push(char::from_u32(code).ok_or("Syntax error: bad escape")?);
        Ok(())
    }
}

/// Parses `src` into an expression.
pub fn parse(src: &str) -> Result<Expr, String> {
    if src.len() > MAX_EXPRESSION_LEN {
        return err(format!(
            "expression size {} exceeds limit {MAX_EXPRESSION_LEN}",
            src.len()
        ));
    }
    let mut lx = Lexer {
        src,
        pos: 0,
        start: 0,
    };
    let first = lx.next()?;
    let tok_pos = lx.start as u32;
    let mut p = Parser {
        lx,
        tok: first,
        tok_pos,
        depth: 0,
        nodes: 0,
    };
    let e = p.expr()?;
    if p.tok != Tok::Eof {
        return err(format!("Syntax error: mismatched input {:?}", p.tok_text()));
    }
    if ast_depth(&e) > MAX_AST_DEPTH {
        return err(format!("expression nesting exceeds limit {MAX_AST_DEPTH}"));
    }
    Ok(e)
}

/// The depth of a parse tree, computed without recursion.
fn ast_depth(root: &Expr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Lit(_) | Expr::Ident(_) => {}
            Expr::Select { operand, .. } => stack.push((operand, d + 1)),
            Expr::Call { target, args, .. } => {
                if let Some(t) = target {
                    stack.push((t, d + 1));
                }
                stack.extend(args.iter().map(|a| (a, d + 1)));
            }
            Expr::List(items) => stack.extend(items.iter().map(|a| (a, d + 1))),
            Expr::Map(entries) => {
                for (k, v) in entries {
                    stack.push((k, d + 1));
                    stack.push((v, d + 1));
                }
            }
            Expr::Comprehension {
                range,
                body,
                filter,
                ..
            } => {
                stack.push((range, d + 1));
                stack.push((body, d + 1));
                if let Some(f) = filter {
                    stack.push((f, d + 1));
                }
            }
        }
    }
    max
}

struct Parser<'a> {
    lx: Lexer<'a>,
    tok: Tok,
    /// Where the current token starts.
    tok_pos: u32,
    depth: usize,
    nodes: usize,
}

impl Parser<'_> {
    fn tok_text(&self) -> String {
        match &self.tok {
            Tok::Punct(p) => p.to_string(),
            Tok::Ident(i) => i.clone(),
            Tok::Eof => "<EOF>".into(),
            other => format!("{other:?}"),
        }
    }

    fn bump(&mut self) -> Result<Tok, String> {
        let next = self.lx.next()?;
        self.tok_pos = self.lx.start as u32;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    fn is(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(q) if *q == p)
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.is(p) {
            self.bump()?;
            Ok(())
        } else {
            err(format!(
                "Syntax error: missing '{p}' at '{}'",
                self.tok_text()
            ))
        }
    }

    fn node(&mut self) -> Result<(), String> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err("expression has too many nodes");
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return err(format!(
                "expression recursion limit exceeded: {MAX_NESTING}"
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let cond = self.or()?;
        let r = if self.is("?") {
            let at = self.tok_pos;
            self.bump()?;
            let a = self.or()?;
            self.expect(":")?;
            let b = self.expr()?;
            self.node()?;
            call("_?_:_", None, vec![cond, a, b], at)
        } else {
            cond
        };
        self.depth -= 1;
        Ok(r)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.is("||") {
            let at = self.tok_pos;
            self.bump()?;
            let r = self.and()?;
            self.node()?;
            l = call("_||_", None, vec![l, r], at);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.rel()?;
        while self.is("&&") {
            let at = self.tok_pos;
            self.bump()?;
            let r = self.rel()?;
            self.node()?;
            l = call("_&&_", None, vec![l, r], at);
        }
        Ok(l)
    }

    fn rel(&mut self) -> Result<Expr, String> {
        let mut l = self.add()?;
        loop {
            let op = match &self.tok {
                Tok::Punct(p @ ("<" | "<=" | ">" | ">=" | "==" | "!=")) => format!("_{p}_"),
                Tok::Ident(i) if i == "in" => "@in".to_string(),
                _ => return Ok(l),
            };
            let at = self.tok_pos;
            self.bump()?;
            let r = self.add()?;
            self.node()?;
            l = call(&op, None, vec![l, r], at);
        }
    }

    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.mul()?;
        while let Tok::Punct(p @ ("+" | "-")) = self.tok {
            let at = self.tok_pos;
            self.bump()?;
            let r = self.mul()?;
            self.node()?;
            l = call(&format!("_{p}_"), None, vec![l, r], at);
        }
        Ok(l)
    }

    fn mul(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while let Tok::Punct(p @ ("*" | "/" | "%")) = self.tok {
            let at = self.tok_pos;
            self.bump()?;
            let r = self.unary()?;
            self.node()?;
            l = call(&format!("_{p}_"), None, vec![l, r], at);
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let at = self.tok_pos;
        let r = if self.is("!") {
            self.bump()?;
            let e = self.unary()?;
            self.node()?;
            call("!_", None, vec![e], at)
        } else if self.is("-") {
            self.bump()?;
            match self.tok {
                Tok::Int(n) => {
                    self.bump()?;
                    self.member_tail(Expr::Lit(Value::Int(-n)))?
                }
                Tok::Uint(9_223_372_036_854_775_808) => {
                    self.bump()?;
                    self.member_tail(Expr::Lit(Value::Int(i64::MIN)))?
                }
                Tok::Double(d) => {
                    self.bump()?;
                    self.member_tail(Expr::Lit(Value::Double(-d)))?
                }
                _ => {
                    let e = self.unary()?;
                    self.node()?;
                    call("-_", None, vec![e], at)
                }
            }
        } else {
            let p = self.primary()?;
            self.member_tail(p)?
        };
        self.depth -= 1;
        Ok(r)
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut out = Vec::new();
        if self.is(close) {
            self.bump()?;
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if self.is(",") {
                self.bump()?;
                if self.is(close) {
                    self.bump()?;
                    return Ok(out);
                }
                continue;
            }
            self.expect(close)?;
            return Ok(out);
        }
    }

    fn member_tail(&mut self, mut e: Expr) -> Result<Expr, String> {
        loop {
            self.node()?;
            if self.is(".") || self.is(".?") {
                let optional = self.is(".?");
                let at = self.tok_pos;
                self.bump()?;
                let Tok::Ident(name) = self.bump()? else {
                    return err("Syntax error: expected field name after '.'");
                };
                if self.is("(") && !optional {
                    let open = self.tok_pos;
                    self.bump()?;
                    let args = self.args(")")?;
                    e = member_call(e, &name, args, open)?;
                } else {
                    e = Expr::Select {
                        operand: Box::new(e),
                        field: name.into(),
                        test: false,
                        optional,
                        pos: at,
                    };
                }
            } else if self.is("[") || self.is("[?") {
                let optional = self.is("[?");
                let at = self.tok_pos;
                self.bump()?;
                let idx = self.expr()?;
                self.expect("]")?;
                let f = if optional { "_[?_]" } else { "_[_]" };
                e = call(f, None, vec![e, idx], at);
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.node()?;
        let at = self.tok_pos;
        match self.bump()? {
            Tok::Int(n) => Ok(Expr::Lit(Value::Int(n))),
            Tok::Uint(n) => Ok(Expr::Lit(Value::Uint(n))),
            Tok::Double(d) => Ok(Expr::Lit(Value::Double(d))),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s.into()))),
            Tok::Bytes(b) => Ok(Expr::Lit(Value::Bytes(b.into()))),
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => Ok(Expr::List(self.args("]")?)),
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                if self.is("}") {
                    self.bump()?;
                    return Ok(Expr::Map(entries));
                }
                loop {
                    let k = self.expr()?;
                    self.expect(":")?;
                    let v = self.expr()?;
                    entries.push((k, v));
                    if self.is(",") {
                        self.bump()?;
                        if self.is("}") {
                            self.bump()?;
                            break;
                        }
                        continue;
                    }
                    self.expect("}")?;
                    break;
                }
                Ok(Expr::Map(entries))
            }
            Tok::Punct(".") => match self.bump()? {
                Tok::Ident(i) => Ok(Expr::Ident(i.into())),
                _ => err("Syntax error: expected identifier after '.'"),
            },
            Tok::Ident(i) => match i.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ if self.is("(") => {
                    let open = self.tok_pos;
                    self.bump()?;
                    let args = self.args(")")?;
                    global_call(&i, args, open)
                }
                _ => {
                    // `optional.of(x)`, `optional.none()`: namespaced functions.
                    if i == "optional" && self.is(".") {
                        self.bump()?;
                        let Tok::Ident(f) = self.bump()? else {
                            return err("Syntax error: expected function after 'optional.'");
                        };
                        self.expect("(")?;
                        let args = self.args(")")?;
                        return Ok(call(&format!("optional.{f}"), None, args, at));
                    }
                    if self.is("{") || (self.is(".") && self.message_ahead()) {
                        return self.message(i, at);
                    }
                    Ok(Expr::Ident(i.into()))
                }
            },
            Tok::Eof => err("Syntax error: mismatched input '<EOF>'"),
            other => err(format!("Syntax error: extraneous input {other:?}")),
        }
    }
}

impl Parser<'_> {
    /// With the current token `.`: whether `.ident(.ident)* {` follows (a qualified message
    /// type name, `Object.spec{...}`), looking ahead on a copy of the lexer.
    fn message_ahead(&self) -> bool {
        let mut lx = self.lx.clone();
        loop {
            match lx.next() {
                Ok(Tok::Ident(_)) => {}
                _ => return false,
            }
            match lx.next() {
                Ok(Tok::Punct(".")) => {}
                Ok(Tok::Punct("{")) => return true,
                _ => return false,
            }
        }
    }

    /// Message construction `Type.name{field: value, ...}` (cel-go `CreateStruct`), after the
    /// first identifier: `@object(type name, {field: value})`; the type is checked against the
    /// declarations, the fields are string keys of the resulting map.
    fn message(&mut self, first: String, at: u32) -> Result<Expr, String> {
        let mut name = first;
        while self.is(".") {
            self.bump()?;
            let Tok::Ident(part) = self.bump()? else {
                return err("Syntax error: expected identifier in a message type name");
            };
            name.push('.');
            name.push_str(&part);
        }
        self.expect("{")?;
        self.enter()?;
        let mut entries = Vec::new();
        while !self.is("}") {
            self.node()?;
            let Tok::Ident(field) = self.bump()? else {
                return err(format!(
                    "Syntax error: expected a field name in the initializer of {name}"
                ));
            };
            self.expect(":")?;
            let v = self.expr()?;
            entries.push((Expr::Lit(Value::String(field.into())), v));
            if self.is(",") {
                self.bump()?;
            } else if !self.is("}") {
                return err("Syntax error: missing '}' at the end of a message initializer");
            }
        }
        self.bump()?;
        self.depth -= 1;
        Ok(call(
            "@object",
            None,
            vec![Expr::Lit(Value::String(name.into())), Expr::Map(entries)],
            at,
        ))
    }
}

fn call(f: &str, target: Option<Expr>, args: Vec<Expr>, pos: u32) -> Expr {
    Expr::Call {
        func: f.into(),
        target: target.map(Box::new),
        args,
        pos,
    }
}

fn global_call(name: &str, mut args: Vec<Expr>, pos: u32) -> Result<Expr, String> {
    if name == "has" {
        if args.len() != 1 {
            return err("has() macro requires exactly one argument");
        }
        return match args.pop() {
            Some(Expr::Select {
                operand,
                field,
                optional: false,
                pos,
                ..
            }) => Ok(Expr::Select {
                operand,
                field,
                test: true,
                optional: false,
                pos,
            }),
            _ => err("invalid argument to has() macro"),
        };
    }
    Ok(call(name, None, args, pos))
}

fn member_call(target: Expr, name: &str, mut args: Vec<Expr>, pos: u32) -> Result<Expr, String> {
    let kind = match name {
        "all" => Some(Macro::All),
        "exists" => Some(Macro::Exists),
        "exists_one" | "existsOne" => Some(Macro::ExistsOne),
        "map" => Some(Macro::Map),
        "filter" => Some(Macro::Filter),
        _ => None,
    };
    if let Some(kind) = kind {
        let arity_ok = match kind {
            Macro::Map => args.len() == 2 || args.len() == 3,
            _ => args.len() == 2,
        };
        if arity_ok {
            let Expr::Ident(var) = args.remove(0) else {
                return err(format!(
                    "{name}() variable name must be a simple identifier"
                ));
            };
            let (filter, body) = if args.len() == 2 {
                let f = args.remove(0);
                (Some(Box::new(f)), args.remove(0))
            } else {
                (None, args.remove(0))
            };
            return Ok(Expr::Comprehension {
                kind,
                var,
                range: Box::new(target),
                body: Box::new(body),
                filter,
            });
        }
    }
    Ok(call(name, Some(target), args, pos))
}

impl Expr {
    /// The fields selected directly from the variable `var` (`var.f`), in order of appearance
    /// (duplicates kept out); `var` shadowed by a macro variable is not counted.
    pub fn selected_fields(&self, var: &str, out: &mut Vec<String>) {
        match self {
            Expr::Lit(_) | Expr::Ident(_) => {}
            Expr::Select { operand, field, .. } => {
                if let Expr::Ident(i) = &**operand
                    && &**i == var
                {
                    if !out.iter().any(|f| f == &**field) {
                        out.push(field.to_string());
                    }
                } else {
                    operand.selected_fields(var, out);
                }
            }
            Expr::Call { target, args, .. } => {
                if let Some(t) = target {
                    t.selected_fields(var, out);
                }
                args.iter().for_each(|a| a.selected_fields(var, out));
            }
            Expr::List(items) => items.iter().for_each(|a| a.selected_fields(var, out)),
            Expr::Map(entries) => entries.iter().for_each(|(k, v)| {
                k.selected_fields(var, out);
                v.selected_fields(var, out);
            }),
            Expr::Comprehension {
                var: v,
                range,
                body,
                filter,
                ..
            } => {
                range.selected_fields(var, out);
                if &**v != var {
                    body.selected_fields(var, out);
                    if let Some(f) = filter {
                        f.selected_fields(var, out);
                    }
                }
            }
        }
    }

    /// Whether the expression mentions the variable `name` (not shadowed by a macro variable).
    pub fn references(&self, name: &str) -> bool {
        match self {
            Expr::Lit(_) => false,
            Expr::Ident(i) => &**i == name,
            Expr::Select { operand, .. } => operand.references(name),
            Expr::Call { target, args, .. } => {
                target.as_ref().is_some_and(|t| t.references(name))
                    || args.iter().any(|a| a.references(name))
            }
            Expr::List(items) => items.iter().any(|a| a.references(name)),
            Expr::Map(entries) => entries
                .iter()
                .any(|(k, v)| k.references(name) || v.references(name)),
            Expr::Comprehension {
                var,
                range,
                body,
                filter,
                ..
            } => {
                range.references(name)
                    || (&**var != name
                        && (body.references(name)
                            || filter.as_ref().is_some_and(|f| f.references(name))))
            }
        }
    }
}
