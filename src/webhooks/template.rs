//! Jinja2 templates rendered as Python's `jinja2.sandbox.SandboxedEnvironment` renders them
//! (NetBox's engine): values print as Python prints them, Python string methods work, and the
//! filters users rely on keep Jinja2's edge cases. Run time is bounded by fuel and output by a
//! size cap.

use super::modulo;
use crate::python::{self, json as pyjson, py_str};
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};
use std::fmt::Write;

/// The name the headers template is compiled under.
pub const HEADERS: &str = "additional_headers";

/// Fuel for one render: enough for loops over thousands of items, not for runaway templates.
pub const FUEL: u64 = 2_000_000;
/// Largest rendered output accepted, in bytes.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;

/// A fresh environment with Jinja2-compatible behaviour.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(false);
    env.set_fuel(Some(FUEL));
    env.set_formatter(python_formatter);
    env.set_unknown_method_callback(unknown_method);
    minijinja_contrib::add_to_environment(&mut env);
    env.add_filter("format", |fmt: &Value, args: Rest<Value>| {
        python::format::format(&py_str(fmt), &args)
    });
    // Python's `%` operator, which `modulo::rewrite` turns `a % b` into.
    env.add_filter(modulo::FORMAT_FILTER, |left: &Value, args: Rest<Value>| {
        match left.as_str() {
            Some(fmt) => python::format::format(fmt, &args).map(Value::from),
            None => python::format::modulo(left, &python::tuple(args.0)),
        }
    });
    env.add_filter(modulo::MOD_FILTER, |left: &Value, right: &Value| {
        python::format::modulo(left, right)
    });
    env.add_filter("wordwrap", wordwrap);
    env.add_filter("dictsort", dictsort);
    env.add_filter("join", join);
    env.add_filter("tojson", tojson);
    env.add_filter("title", title);
    env.add_filter("truncate", truncate);
    env.add_filter("center", center);
    env.add_filter("string", string);
    env.add_filter("wordcount", wordcount);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env
}

/// Compiles `source` as template `name`, Python's `%` operations written as filters first
/// (`modulo::rewrite`). minijinja folds constant expressions as it compiles, so compiling
/// costs what those constants hold: only the sandbox child compiles webhooks' templates.
pub fn add(env: &mut Environment<'static>, name: &'static str, source: &str) -> Result<(), Error> {
    env.add_template_owned(name, modulo::rewrite(source))
}

/// Most bytes of values that constant expressions may fold into, over all of one webhook's
/// templates: a compiled template keeps them for as long as it is kept.
pub const MAX_CONSTANT_BYTES: usize = 1024 * 1024;

/// Bytes counted for a value that is not text (a number, a list's item, ...).
const VALUE_BYTES: usize = 16;

/// What a compiled template holds, about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight {
    /// Bytes of its folded constants (counted up to the limit given).
    pub constants: usize,
    /// Whether they went past that limit.
    pub constants_over: bool,
    /// Its source, its instructions and its constants.
    pub total: usize,
}

/// The refusal of templates whose constants fold past `MAX_CONSTANT_BYTES`.
pub fn constants_refusal() -> String {
    format!(
        "its constant expressions (such as 'y' * 10**6) fold into more than {} KiB of values when it is compiled; \
         build large values from the event's data instead",
        MAX_CONSTANT_BYTES / 1024
    )
}

/// Weighs template `name` of `env` as compiled: its instructions and the constant values they
/// load, those counted up to `limit` bytes (a lazy `[1] * 10**15` counts as the items it
/// would give, so counting stops early).
pub fn weigh(env: &Environment<'_>, name: &str, limit: usize) -> Result<Weight, Error> {
    use minijinja::machinery::{get_compiled_template, Instruction, Instructions};
    let tmpl = env.get_template(name)?;
    let compiled = get_compiled_template(&tmpl);
    let mut budget = limit;
    let mut over = false;
    let mut count = 0usize;
    let mut weigh_all = |instructions: &Instructions<'_>| {
        let mut i = 0;
        while let Some(instr) = instructions.get(i) {
            count += 1;
            if let Instruction::LoadConst(v) = instr {
                over = over || !charge(v, &mut budget);
            }
            i += 1;
        }
    };
    weigh_all(&compiled.instructions);
    for block in compiled.blocks.values() {
        weigh_all(block);
    }
    let constants = limit - budget;
    Ok(Weight {
        constants,
        constants_over: over,
        total: tmpl.source().len() + count * std::mem::size_of::<Instruction<'_>>() + constants,
    })
}

/// Takes `n` bytes from `budget`; false (and `budget` spent) when it has fewer.
fn take(budget: &mut usize, n: usize) -> bool {
    match budget.checked_sub(n) {
        Some(left) => {
            *budget = left;
            true
        }
        None => {
            *budget = 0;
            false
        }
    }
}

/// Takes what `value` holds from `budget`; false (and `budget` spent) when it holds more.
fn charge(value: &Value, budget: &mut usize) -> bool {
    match value.kind() {
        ValueKind::String => take(budget, value.as_str().map_or(0, str::len)),
        ValueKind::Bytes => take(budget, value.as_bytes().map_or(0, <[u8]>::len)),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            let map = value.kind() == ValueKind::Map;
            let Ok(items) = value.try_iter() else {
                return take(budget, VALUE_BYTES);
            };
            for item in items {
                if !take(budget, VALUE_BYTES) || !charge(&item, budget) {
                    return false;
                }
                if map && !charge(&value.get_item(&item).unwrap_or_default(), budget) {
                    return false;
                }
            }
            true
        }
        _ => take(budget, VALUE_BYTES),
    }
}

/// Methods minijinja does not have: Python's, from minijinja-contrib, with `dict.items()`
/// giving tuples as Python's does.
fn unknown_method(state: &State<'_, '_>, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if method == "items" && args.is_empty() && value.kind() == ValueKind::Map {
        return Ok(Value::from(pairs(value)?));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// A mapping's `(key, value)` tuples, in its order.
fn pairs(map: &Value) -> Result<Vec<Value>, Error> {
    Ok(map
        .try_iter()?
        .map(|k| {
            let v = map.get_item(&k).unwrap_or_default();
            python::tuple(vec![k, v])
        })
        .collect())
}

/// A filter's argument by position or by name (Jinja2's filters take either).
fn arg(args: &[Value], kwargs: &Kwargs, i: usize, name: &str) -> Result<Option<Value>, Error> {
    match args.get(i) {
        Some(v) => Ok(Some(v.clone())),
        None => kwargs.get::<Option<Value>>(name),
    }
}

/// Jinja2's `wordwrap(s, width=79, break_long_words=True, wrapstring=None,
/// break_on_hyphens=True)`.
fn wordwrap(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let width = match arg(&args, &kwargs, 0, "width")? {
        Some(v) => usize::try_from(v)?,
        None => 79,
    };
    let break_long = arg(&args, &kwargs, 1, "break_long_words")?.is_none_or(|v| v.is_true());
    let wrapstring = match arg(&args, &kwargs, 2, "wrapstring")? {
        Some(v) if !v.is_none() => py_str(&v),
        _ => "\n".to_string(),
    };
    let hyphens = arg(&args, &kwargs, 3, "break_on_hyphens")?.is_none_or(|v| v.is_true());
    kwargs.assert_all_used()?;
    Ok(python::textwrap::wordwrap(
        &py_str(value),
        width,
        break_long,
        &wrapstring,
        hyphens,
    ))
}

/// Jinja2's `dictsort(value, case_sensitive=False, by='key', reverse=False)`: the mapping's
/// `(key, value)` tuples, sorted (a stable sort, reversed as Python's `sorted` reverses).
fn dictsort(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    if value.kind() != ValueKind::Map {
        return Err(Error::new(ErrorKind::InvalidOperation, "dictsort expects a mapping"));
    }
    let case_sensitive = arg(&args, &kwargs, 0, "case_sensitive")?.is_some_and(|v| v.is_true());
    let by = match arg(&args, &kwargs, 1, "by")? {
        Some(v) => py_str(&v),
        None => "key".to_string(),
    };
    let at = match by.as_str() {
        "key" => 0,
        "value" => 1,
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "You can only sort by either 'key' or 'value'",
            ))
        }
    };
    let reverse = arg(&args, &kwargs, 2, "reverse")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    let sort_key = |pair: &Value| {
        let v = pair.get_item(&Value::from(at)).unwrap_or_default();
        match v.as_str() {
            Some(s) if !case_sensitive => Value::from(s.to_lowercase()),
            _ => v,
        }
    };
    let mut sorted = pairs(value)?;
    sorted.sort_by(|a, b| {
        let order = sort_key(a).cmp(&sort_key(b));
        if reverse {
            order.reverse()
        } else {
            order
        }
    });
    Ok(Value::from(sorted))
}

/// A one-line description of a template error, with its line number when known.
pub fn describe(err: &Error) -> String {
    let mut msg = match err.detail() {
        Some(detail) => format!("{}: {}", kind_text(err.kind()), detail),
        None => kind_text(err.kind()).to_string(),
    };
    if let Some(line) = err.line() {
        let _ = write!(msg, " (line {line})");
    }
    msg
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::OutOfFuel => "template ran too long (fuel exhausted)",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownMethod => "unknown method",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::BadSerialization => "value cannot be serialized",
        _ => "template error",
    }
}

/// A render that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderError {
    pub message: String,
    /// It ran out of fuel or went past the output cap: it would on any event like this one.
    pub exhausted: bool,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Renders a named template of `env`, enforcing the output cap.
pub fn render(env: &Environment<'_>, name: &str, ctx: &Value) -> Result<String, RenderError> {
    let failed = |e: Error| RenderError {
        exhausted: e.kind() == ErrorKind::OutOfFuel,
        message: describe(&e),
    };
    let tmpl = env.get_template(name).map_err(failed)?;
    let out = tmpl.render(ctx).map_err(failed)?;
    if out.len() > MAX_OUTPUT {
        return Err(RenderError {
            message: format!(
                "rendered output is {} bytes, over the {MAX_OUTPUT}-byte limit",
                out.len()
            ),
            exhausted: true,
        });
    }
    Ok(out)
}

/// Writes values as Python's `str()` does: strings as they are, containers as `repr`.
/// In the headers template, a value that would break a line is refused: object data can
/// never add a header.
fn python_formatter(out: &mut Output<'_>, state: &State<'_, '_>, value: &Value) -> Result<(), Error> {
    let text = py_str(value);
    if state.name() == HEADERS && text.contains(['\r', '\n']) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value rendered into a header holds a line break",
        ));
    }
    out.write_str(&text).map_err(Error::from)
}

/// Jinja2's `tojson`: `json.dumps` with sorted keys, then `<`, `>`, `&`, `'` escaped.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let json: serde_json::Value = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::BadSerialization, "cannot serialize to JSON").with_source(e))?;
    let text = pyjson::dumps_with(
        &json,
        pyjson::Dumps {
            sort_keys: true,
            indent,
        },
    );
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => safe.push_str("\\u003c"),
            '>' => safe.push_str("\\u003e"),
            '&' => safe.push_str("\\u0026"),
            '\'' => safe.push_str("\\u0027"),
            c => safe.push(c),
        }
    }
    Ok(Value::from_safe_string(safe))
}

/// Jinja2's `join(d='', attribute=None)`: items as Python's `str()` writes them.
fn join(value: &Value, d: Option<Value>, attribute: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let sep = match d {
        Some(d) => py_str(&d),
        None => kwargs
            .get::<Option<Value>>("d")?
            .map(|d| py_str(&d))
            .unwrap_or_default(),
    };
    let attribute = match attribute {
        Some(a) => Some(a),
        None => kwargs.get("attribute")?,
    };
    kwargs.assert_all_used()?;
    let mut parts = Vec::new();
    for item in value.try_iter()? {
        let item = match &attribute {
            Some(path) => attr_path(&item, path),
            None => item,
        };
        parts.push(py_str(&item));
    }
    Ok(parts.join(&sep))
}

/// Jinja2's attribute paths: `site.name`, `tags.0`.
fn attr_path(value: &Value, path: &str) -> Value {
    path.split('.')
        .fold(value.clone(), |v, part| match part.parse::<i64>() {
            Ok(i) => v.get_item(&Value::from(i)).unwrap_or_default(),
            Err(_) => v.get_attr(part).unwrap_or_default(),
        })
}

/// Jinja2's `title`: words begin after `-`, whitespace, `(`, `{`, `[` or `<`.
fn title(value: &Value) -> String {
    let s = py_str(value);
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c == '-' || c.is_whitespace() || matches!(c, '(' | '{' | '[' | '<') {
            out.push(c);
            start = true;
        } else if start {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`.
fn truncate(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let s = py_str(value);
    let arg = |i: usize, name: &str| arg(&args, &kwargs, i, name);
    let length = match arg(0, "length")? {
        Some(v) => usize::try_from(v)?,
        None => 255,
    };
    let killwords = arg(1, "killwords")?.is_some_and(|v| v.is_true());
    let end = match arg(2, "end")? {
        Some(v) => py_str(&v),
        None => "...".to_string(),
    };
    let leeway = match arg(3, "leeway")? {
        Some(v) => usize::try_from(v)?,
        None => 5,
    };
    kwargs.assert_all_used()?;
    let end_len = end.chars().count();
    if length < end_len {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("truncate length {length} is shorter than the end marker"),
        ));
    }
    if s.chars().count() <= length + leeway {
        return Ok(s);
    }
    let head: String = s.chars().take(length - end_len).collect();
    let head = if killwords {
        head
    } else {
        match head.rfind(' ') {
            Some(pos) => head[..pos].to_string(),
            None => head,
        }
    };
    Ok(head + &end)
}

/// Python's `str.center(width)`, which puts the odd space on the left when width is odd.
fn center(value: &Value, width: Option<usize>) -> String {
    let s = py_str(value);
    let width = width.unwrap_or(80);
    let len = s.chars().count();
    if len >= width {
        return s;
    }
    let marg = width - len;
    let left = marg / 2 + (marg & width & 1);
    let right = marg - left;
    format!("{}{}{}", " ".repeat(left), s, " ".repeat(right))
}

/// Jinja2's `string`: Python's `str()`.
fn string(value: &Value) -> Value {
    if value.kind() == ValueKind::String {
        value.clone()
    } else {
        Value::from(py_str(value))
    }
}

/// Jinja2's `escape` (MarkupSafe): `&`, `<`, `>`, `"` and `'`, the quotes as `&#34;` and `&#39;`.
fn escape(value: &Value) -> Value {
    if value.is_safe() {
        return value.clone();
    }
    let s = py_str(value);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Value::from_safe_string(out)
}

/// Jinja2's `wordcount`: runs of word characters.
fn wordcount(value: &Value) -> usize {
    let s = py_str(value);
    let mut count = 0;
    let mut in_word = false;
    for c in s.chars() {
        let word = c.is_alphanumeric() || c == '_';
        if word && !in_word {
            count += 1;
        }
        in_word = word;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(src: &str, ctx: serde_json::Value) -> String {
        let mut env = environment();
        add(&mut env, "t", src).unwrap();
        render(&env, "t", &Value::from_serialize(&ctx)).unwrap()
    }

    #[test]
    fn python_printing() {
        let ctx = serde_json::json!({"b": true, "n": null, "l": ["a", 1, 2.5], "d": {"k": "it's"}});
        assert_eq!(
            r("{{ b }} {{ n }} {{ l }} {{ d }} {{ missing }}", ctx),
            "True None ['a', 1, 2.5] {'k': \"it's\"} "
        );
    }

    #[test]
    fn jinja_filters() {
        let ctx = serde_json::json!({"s": "hello big wide world", "t": "o'neil-smith (jr)"});
        assert_eq!(r("{{ s|truncate(16) }}", ctx.clone()), "hello big wide world");
        assert_eq!(r("{{ s|truncate(9) }}", ctx.clone()), "hello...");
        assert_eq!(r("{{ s|truncate(9, leeway=0) }}", ctx.clone()), "hello...");
        assert_eq!(r("{{ t|title }}", ctx.clone()), "O'neil-Smith (Jr)");
        assert_eq!(r("[{{ 'ab'|center(5) }}]", ctx.clone()), "[  ab ]");
        assert_eq!(
            r("{{ {'b': 1, 'a': '<'}|tojson }}", ctx),
            "{\"a\": \"\\u003c\", \"b\": 1}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let mut env = environment();
        let err = describe(&add(&mut env, "t", "ok\n{% if %}").unwrap_err());
        assert!(err.contains("syntax error") && err.contains("line 2"), "{err}");
    }
}
