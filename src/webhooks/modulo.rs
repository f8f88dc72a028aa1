//! Python's `%` operator in templates. Jinja2 evaluates `"%s is %s" % (name, status)` as
//! Python does (printf-style formatting of strings, floor modulo of numbers); minijinja knows
//! only a numeric remainder. Before a template is compiled, each `%` operation in its
//! expressions is written as a filter call that does what Python does:
//! `"%s is %s" % (a, b)` becomes `(("%s is %s")|__py_format(a, b))` (a tuple literal gives the
//! arguments), any other `x % y` becomes `((x)|__py_mod(y))`. Operands are found by Jinja2's
//! precedence (`%` binds like `*`, tighter than `~` and `+`, looser than filters and `**`).
//! Only `%` operations are touched: the rest of the text, newlines included, stays as written,
//! so error messages keep their line numbers. What cannot be read is left as it is, for the
//! template engine to report.

/// The filter a tuple-literal right operand becomes the arguments of.
pub const FORMAT_FILTER: &str = "__py_format";
/// The filter for every other `%`.
pub const MOD_FILTER: &str = "__py_mod";

/// `source` with every `%` operation in `{{ }}` and in `set`, `if`, `elif`, `for` and `with`
/// statements written as a filter call.
pub fn rewrite(source: &str) -> String {
    if !source.contains('%') {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len() + 32);
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let kind = from.as_bytes().get(1).copied();
        let close = match kind {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                out.push('{');
                rest = &from[1..];
                continue;
            }
        };
        let Some(end) = find_close(&from[2..], close) else {
            out.push_str(from);
            return out;
        };
        let inner = &from[2..2 + end];
        let whole = &from[..2 + end + 2];
        if kind == Some(b'%') && is_raw(inner) {
            // `{% raw %}` ... `{% endraw %}` is text.
            match from.find("endraw") {
                Some(e) => match from[e..].find("%}") {
                    Some(c) => {
                        out.push_str(&from[..e + c + 2]);
                        rest = &from[e + c + 2..];
                        continue;
                    }
                    None => {
                        out.push_str(from);
                        return out;
                    }
                },
                None => {
                    out.push_str(from);
                    return out;
                }
            }
        }
        let rewritten = match kind {
            Some(b'{') => rewrite_expression(inner),
            Some(b'%') => rewrite_statement(inner),
            _ => None,
        };
        match rewritten {
            Some(text) => {
                out.push_str(&whole[..2]);
                out.push_str(&text);
                out.push_str(close);
            }
            None => out.push_str(whole),
        }
        rest = &from[2 + end + 2..];
    }
    out.push_str(rest);
    out
}

fn is_raw(inner: &str) -> bool {
    inner.trim_matches(|c: char| c.is_whitespace() || c == '-' || c == '+') == "raw"
}

/// Where `close` ends the tag whose inside starts `text` (strings in it skipped).
fn find_close(text: &str, close: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') if close != "#}" => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ if text[i..].starts_with(close) => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `{{ ... }}`'s inside with its `%` operations written as filters; `None` when it has none
/// or cannot be read.
fn rewrite_expression(inner: &str) -> Option<String> {
    let (lead, body, trail) = strip_markers(inner);
    let tokens = tokenize(body)?;
    if !tokens.iter().any(|t| t.is_op("%")) {
        return None;
    }
    let mut p = Parser { tokens: &tokens, at: 0 };
    let text = p.expression()?;
    let space = p.trailing_space();
    (p.at == tokens.len()).then(|| format!("{lead}{text}{space}{trail}"))
}

/// A statement's inside: `set x = E`, `with x = E`, `if E`, `elif E`, `for a, b in E`.
fn rewrite_statement(inner: &str) -> Option<String> {
    let (lead, body, trail) = strip_markers(inner);
    let tokens = tokenize(body)?;
    if !tokens.iter().any(|t| t.is_op("%")) {
        return None;
    }
    let from = match tokens.first()?.text.trim() {
        "if" | "elif" => 1,
        "set" | "with" => tokens.iter().position(|t| t.is_op("="))? + 1,
        "for" => tokens.iter().position(|t| t.is_name("in"))? + 1,
        _ => return None,
    };
    let head: String = tokens[..from].iter().map(|t| t.text).collect();
    let mut p = Parser {
        tokens: &tokens,
        at: from,
    };
    let mut text = p.expression()?;
    // A loop's own `if` filter and `recursive` follow its iterable.
    while p.peek().is_some() {
        if p.peek_name("if") {
            text.push_str(p.next_text());
            text.push_str(&p.expression()?);
        } else if p.peek_name("recursive") {
            text.push_str(p.next_text());
        } else {
            return None;
        }
    }
    let space = p.trailing_space();
    (p.at == tokens.len()).then(|| format!("{lead}{head}{text}{space}{trail}"))
}

/// Whitespace-control markers (`-`, `+`) at either end, kept apart from the expression.
fn strip_markers(inner: &str) -> (&str, &str, &str) {
    let lead = if inner.starts_with(['-', '+']) { &inner[..1] } else { "" };
    let body = &inner[lead.len()..];
    let trail = if body.ends_with('-') { "-" } else { "" };
    (lead, &body[..body.len() - trail.len()], trail)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Name,
    Str,
    Num,
    Op,
}

/// A token with the whitespace before it, so that text is rebuilt as written.
#[derive(Debug)]
struct Token<'a> {
    kind: Kind,
    /// Leading whitespace and the token.
    text: &'a str,
    /// The token alone.
    word: &'a str,
}

impl Token<'_> {
    fn is_op(&self, op: &str) -> bool {
        self.kind == Kind::Op && self.word == op
    }
    fn is_name(&self, name: &str) -> bool {
        self.kind == Kind::Name && self.word == name
    }
}

/// The tokens of an expression, with the whitespace after the last one as an empty `Op`
/// token's text; `None` for what is not a Jinja expression (an unclosed string).
fn tokenize(src: &str) -> Option<Vec<Token<'_>>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            tokens.push(Token {
                kind: Kind::Op,
                text: &src[start..],
                word: "",
            });
            break;
        }
        let word_start = i;
        let c = bytes[i];
        let kind = if c == b'"' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            if i >= bytes.len() {
                return None;
            }
            i += 1;
            Kind::Str
        } else if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                // `1.5` is a number, `x.1` an attribute: a dot only when a digit follows.
                if bytes[i] == b'.' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                i += 1;
            }
            Kind::Num
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80) {
                i += 1;
            }
            Kind::Name
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            i += if ["**", "//", "==", "!=", "<=", ">="].contains(&two) {
                2
            } else {
                1
            };
            Kind::Op
        };
        tokens.push(Token {
            kind,
            text: &src[start..i],
            word: &src[word_start..i],
        });
    }
    Some(tokens)
}

/// A recursive-descent reader of Jinja2's expression grammar that gives back the text of
/// what it read, `%` operations rewritten.
struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
}

const KEYWORDS: [&str; 9] = ["and", "or", "not", "in", "is", "if", "else", "recursive", "for"];

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at).filter(|t| !t.word.is_empty())
    }
    fn peek_op(&self, op: &str) -> bool {
        self.peek().is_some_and(|t| t.is_op(op))
    }
    fn peek_name(&self, name: &str) -> bool {
        self.peek().is_some_and(|t| t.is_name(name))
    }
    fn next_text(&mut self) -> &'a str {
        let t = self.tokens[self.at].text;
        self.at += 1;
        t
    }
    /// The whitespace after the last token, if the end was reached.
    fn trailing_space(&mut self) -> &'a str {
        match self.tokens.get(self.at) {
            Some(t) if t.word.is_empty() => {
                self.at += 1;
                t.text
            }
            _ => "",
        }
    }
    fn expect_op(&mut self, op: &str) -> Option<&'a str> {
        self.peek_op(op).then(|| self.next_text())
    }

    fn expression(&mut self) -> Option<String> {
        let mut text = self.or_expr()?;
        if self.peek_name("if") && !self.in_loop_filter() {
            text.push_str(self.next_text());
            text.push_str(&self.or_expr()?);
            if self.peek_name("else") {
                text.push_str(self.next_text());
                text.push_str(&self.expression()?);
            }
        }
        Some(text)
    }

    /// Whether an `if` here is a `for` loop's filter (`for x in xs if c`): it is when the
    /// statement began with `for` and this `if` is at the top of the expression.
    fn in_loop_filter(&self) -> bool {
        self.tokens.first().is_some_and(|t| t.is_name("for"))
    }

    fn or_expr(&mut self) -> Option<String> {
        let mut text = self.and_expr()?;
        while self.peek_name("or") {
            text.push_str(self.next_text());
            text.push_str(&self.and_expr()?);
        }
        Some(text)
    }

    fn and_expr(&mut self) -> Option<String> {
        let mut text = self.not_expr()?;
        while self.peek_name("and") {
            text.push_str(self.next_text());
            text.push_str(&self.not_expr()?);
        }
        Some(text)
    }

    fn not_expr(&mut self) -> Option<String> {
        if self.peek_name("not") {
            let op = self.next_text();
            return Some(format!("{op}{}", self.not_expr()?));
        }
        self.compare()
    }

    fn compare(&mut self) -> Option<String> {
        let mut text = self.math1()?;
        loop {
            let is_cmp = self
                .peek()
                .is_some_and(|t| t.kind == Kind::Op && ["==", "!=", "<", ">", "<=", ">="].contains(&t.word))
                || self.peek_name("in");
            let not_in = self.peek_name("not") && self.tokens.get(self.at + 1).is_some_and(|t| t.is_name("in"));
            if not_in {
                text.push_str(self.next_text());
            } else if !is_cmp {
                return Some(text);
            }
            text.push_str(self.next_text());
            text.push_str(&self.math1()?);
        }
    }

    fn math1(&mut self) -> Option<String> {
        let mut text = self.concat()?;
        while self.peek_op("+") || self.peek_op("-") {
            text.push_str(self.next_text());
            text.push_str(&self.concat()?);
        }
        Some(text)
    }

    fn concat(&mut self) -> Option<String> {
        let mut text = self.math2()?;
        while self.peek_op("~") {
            text.push_str(self.next_text());
            text.push_str(&self.math2()?);
        }
        Some(text)
    }

    /// `*`, `/`, `//` and `%`, left to right: here `%` is rewritten.
    fn math2(&mut self) -> Option<String> {
        let mut text = self.pow()?;
        loop {
            if self.peek_op("%") {
                let op = self.next_text();
                // Keep the operator's own whitespace (and any newline in it) in place.
                let space = &op[..op.len() - 1];
                let start = self.at;
                let right = self.pow()?;
                let filter = match self.tuple_items(start) {
                    Some(items) => format!("{FORMAT_FILTER}({items})"),
                    None => format!("{MOD_FILTER}({right})"),
                };
                // The left operand's leading whitespace stays outside the parentheses.
                let inner = text.trim_start();
                let lead = &text[..text.len() - inner.len()];
                text = format!("{lead}(({inner}){space}|{filter})");
            } else if self.peek_op("*") || self.peek_op("/") || self.peek_op("//") {
                text.push_str(self.next_text());
                text.push_str(&self.pow()?);
            } else {
                return Some(text);
            }
        }
    }

    /// The items of the right operand read from `start` if it was a tuple literal alone
    /// (`(a, b)`: parentheses with a comma at their top), as the text of call arguments.
    fn tuple_items(&self, start: usize) -> Option<String> {
        let tokens = &self.tokens[start..self.at];
        if !(tokens.first()?.is_op("(") && tokens.last()?.is_op(")")) {
            return None;
        }
        let mut depth = 0usize;
        let mut comma = false;
        for (i, t) in tokens.iter().enumerate() {
            match t.word {
                "(" | "[" | "{" if t.kind == Kind::Op => depth += 1,
                ")" | "]" | "}" if t.kind == Kind::Op => {
                    depth -= 1;
                    // The group closes before the end: `(a, b)|f` or `(a)(b)`, not a tuple alone.
                    if depth == 0 && i != tokens.len() - 1 {
                        return None;
                    }
                }
                "," if t.kind == Kind::Op && depth == 1 => comma = true,
                _ => {}
            }
        }
        if !comma {
            return None;
        }
        let inner: String = tokens[1..tokens.len() - 1].iter().map(|t| t.text).collect();
        Some(inner.trim_end().trim_end_matches(',').to_string())
    }

    fn pow(&mut self) -> Option<String> {
        let mut text = self.unary()?;
        while self.peek_op("**") {
            text.push_str(self.next_text());
            text.push_str(&self.unary()?);
        }
        Some(text)
    }

    fn unary(&mut self) -> Option<String> {
        if self.peek_op("-") || self.peek_op("+") {
            let op = self.next_text();
            return Some(format!("{op}{}", self.unary()?));
        }
        let mut text = self.primary()?;
        self.postfix(&mut text)?;
        Some(text)
    }

    fn primary(&mut self) -> Option<String> {
        let t = self.peek()?;
        match t.kind {
            Kind::Str | Kind::Num => Some(self.next_text().to_string()),
            Kind::Name if !KEYWORDS.contains(&t.word) => Some(self.next_text().to_string()),
            Kind::Op => match t.word {
                "(" => self.group("(", ")"),
                "[" => self.group("[", "]"),
                "{" => self.group("{", "}"),
                _ => None,
            },
            Kind::Name => None,
        }
    }

    /// A bracketed list of expressions (a tuple, list, dict, call's or subscript's arguments),
    /// each item read as an expression: `a`, `k: v`, `name=v`, `*args`, slices.
    fn group(&mut self, open: &str, close: &str) -> Option<String> {
        let mut text = self.expect_op(open)?.to_string();
        loop {
            if let Some(c) = self.expect_op(close) {
                text.push_str(c);
                return Some(text);
            }
            if self.peek_op(",") || self.peek_op(":") || self.peek_op("=") || self.peek_op("*") || self.peek_op("**") {
                text.push_str(self.next_text());
                continue;
            }
            // `name=value` in calls: the name is read as an expression, then `=`.
            text.push_str(&self.expression()?);
        }
    }

    /// Attribute access, subscripts, calls, filters and tests after a primary.
    fn postfix(&mut self, text: &mut String) -> Option<()> {
        loop {
            if self.peek_op(".") {
                text.push_str(self.next_text());
                let t = self.peek()?;
                if !matches!(t.kind, Kind::Name | Kind::Num) {
                    return None;
                }
                text.push_str(self.next_text());
            } else if self.peek_op("[") {
                text.push_str(&self.group("[", "]")?);
            } else if self.peek_op("(") {
                text.push_str(&self.group("(", ")")?);
            } else if self.peek_op("|") {
                text.push_str(self.next_text());
                self.dotted_name(text)?;
                if self.peek_op("(") {
                    text.push_str(&self.group("(", ")")?);
                }
            } else if self.peek_name("is") {
                text.push_str(self.next_text());
                if self.peek_name("not") {
                    text.push_str(self.next_text());
                }
                self.dotted_name(text)?;
                if self.peek_op("(") {
                    text.push_str(&self.group("(", ")")?);
                } else if self.test_argument_follows() {
                    text.push_str(&self.unary()?);
                }
            } else {
                return Some(());
            }
        }
    }

    /// A filter's or test's name (`name`, `ns.name`).
    fn dotted_name(&mut self, text: &mut String) -> Option<()> {
        if self.peek().is_none_or(|t| t.kind != Kind::Name) {
            return None;
        }
        text.push_str(self.next_text());
        while self.peek_op(".") && self.tokens.get(self.at + 1).is_some_and(|t| t.kind == Kind::Name) {
            text.push_str(self.next_text());
            text.push_str(self.next_text());
        }
        Some(())
    }

    /// Whether a test's single argument follows (`x is divisibleby 3`), as Jinja2 decides.
    fn test_argument_follows(&self) -> bool {
        self.peek().is_some_and(|t| match t.kind {
            Kind::Str | Kind::Num => true,
            Kind::Name => !["else", "or", "and", "if", "in", "is", "not", "recursive"].contains(&t.word),
            Kind::Op => ["[", "{"].contains(&t.word),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn percent_operations_become_filters() {
        let cases = [
            (
                r#"{{ "%s is %s" % (a, b.c) }}"#,
                r#"{{ (("%s is %s") |__py_format(a, b.c)) }}"#,
            ),
            (
                r#"{{ "%s" % x|length ~ "!" }}"#,
                r#"{{ (("%s") |__py_mod( x|length)) ~ "!" }}"#,
            ),
            ("{{ a * b % c }}", "{{ ((a * b) |__py_mod( c)) }}"),
            ("{{ -7 % 3 }}", "{{ ((-7) |__py_mod( 3)) }}"),
            ("{{ x % 2 ** 3 }}", "{{ ((x) |__py_mod( 2 ** 3)) }}"),
            (r#"{% set f = "%d" % n %}"#, r#"{% set f = (("%d") |__py_mod( n)) %}"#),
            (
                "{% for x in xs if x % 2 %}{{ x }}{% endfor %}",
                "{% for x in xs if ((x) |__py_mod( 2)) %}{{ x }}{% endfor %}",
            ),
            (r#"{{- "%s" % (a,) -}}"#, r#"{{- (("%s") |__py_format(a)) -}}"#),
            (r#"{{ "%s" % (a) }}"#, r#"{{ (("%s") |__py_mod( (a))) }}"#),
            ("{{ f(a % b, c) }}", "{{ f(((a) |__py_mod( b)), c) }}"),
        ];
        for (source, want) in cases {
            assert_eq!(rewrite(source), want, "{source}");
        }
        // Untouched: no operator, `%` in strings and delimiters, raw blocks, comments, and
        // statements it does not read.
        for same in [
            r#"{{ "100%" }} {% if a %}b{% endif %}"#,
            "{# a % b #}",
            "{% raw %}{{ a % b }}{% endraw %}",
            "{% macro m(a) %}{{ a }}{% endmacro %}",
            "{{ a % }}",
        ] {
            assert_eq!(rewrite(same), same);
        }
        let multi = "{{ a\n% b }}\n{{ c }}";
        assert_eq!(rewrite(multi), "{{ ((a)\n|__py_mod( b)) }}\n{{ c }}", "lines stay");
    }
}
