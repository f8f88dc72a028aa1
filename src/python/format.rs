//! Python's printf-style `%` formatting, as Jinja2's `format` filter applies it:
//! `"%s is %05.1f"|format(name, value)`.

use super::{float_repr, py_repr, py_str};
use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};
use std::fmt::Write;

fn type_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// One `%` conversion's flags, width and precision.
#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
}

impl Spec {
    fn pad(&self, body: String, numeric: bool) -> String {
        let len = body.chars().count();
        if len >= self.width {
            return body;
        }
        let fill = self.width - len;
        if self.left {
            format!("{body}{}", " ".repeat(fill))
        } else if self.zero && numeric {
            let (sign, digits) = match body.chars().next() {
                Some(c @ ('-' | '+' | ' ')) => (c.to_string(), body[1..].to_string()),
                _ => (String::new(), body),
            };
            format!("{sign}{}{digits}", "0".repeat(fill))
        } else {
            format!("{}{body}", " ".repeat(fill))
        }
    }

    fn sign(&self, negative: bool) -> &'static str {
        if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        }
    }
}

fn as_f64(v: &Value, conv: char) -> Result<f64, Error> {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => {
            f64::try_from(v.clone()).map_err(|_| type_error(format!("%{conv} format: a real number is required")))
        }
        _ => Err(type_error(format!(
            "%{conv} format: a real number is required, not {}",
            v.kind()
        ))),
    }
}

fn as_int(v: &Value, conv: char) -> Result<i128, Error> {
    if let Ok(i) = i128::try_from(v.clone()) {
        return Ok(i);
    }
    as_f64(v, conv).map(|f| f.trunc() as i128)
}

/// Python's `%e`: mantissa with `precision` digits, exponent signed with at least two digits.
fn exp_format(f: f64, precision: usize, upper: bool) -> String {
    let s = format!("{:.*e}", precision, f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    format!("{mantissa}{e}{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn convert(conv: char, spec: &Spec, arg: &Value) -> Result<String, Error> {
    Ok(match conv {
        's' | 'r' | 'a' => {
            let mut s = if conv == 's' { py_str(arg) } else { py_repr(arg) };
            if let Some(p) = spec.precision {
                s = s.chars().take(p).collect();
            }
            spec.pad(s, false)
        }
        'd' | 'i' | 'u' => {
            let n = as_int(arg, conv)?;
            spec.pad(format!("{}{}", spec.sign(n < 0), n.unsigned_abs()), true)
        }
        'x' | 'X' | 'o' => {
            let n = as_int(arg, conv)?;
            let digits = match conv {
                'x' => format!("{:x}", n.unsigned_abs()),
                'X' => format!("{:X}", n.unsigned_abs()),
                _ => format!("{:o}", n.unsigned_abs()),
            };
            let prefix = match (spec.alt, conv) {
                (false, _) => "",
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, _) => "0o",
            };
            spec.pad(format!("{}{prefix}{digits}", spec.sign(n < 0)), true)
        }
        'f' | 'F' => {
            let f = as_f64(arg, conv)?;
            let p = spec.precision.unwrap_or(6);
            let body = if f.is_finite() {
                format!("{:.*}", p, f.abs())
            } else {
                float_repr(f.abs()).to_lowercase().replace("infinity", "inf")
            };
            spec.pad(format!("{}{body}", spec.sign(f.is_sign_negative())), true)
        }
        'e' | 'E' => {
            let f = as_f64(arg, conv)?;
            let body = exp_format(f, spec.precision.unwrap_or(6), conv == 'E');
            spec.pad(format!("{}{body}", spec.sign(f < 0.0)), true)
        }
        'c' => {
            let s = match arg.as_str() {
                Some(s) if s.chars().count() == 1 => s.to_string(),
                _ => {
                    let n = as_int(arg, conv)?;
                    u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .map(String::from)
                        .ok_or_else(|| type_error("%c arg not in range"))?
                }
            };
            spec.pad(s, false)
        }
        other => return Err(type_error(format!("unsupported format character '{other}'"))),
    })
}

/// `fmt % args`, or `fmt % mapping` when keyword arguments were given (Jinja2's
/// `format(value, *args, **kwargs)` does `value % (kwargs or args)`).
pub fn format(fmt: &str, args: &[Value]) -> Result<String, Error> {
    match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => format_with(fmt, rest, Some(last)),
        _ => format_with(fmt, args, None),
    }
}

/// Python's `left % right`: printf-style formatting when `left` is a string (a tuple on the
/// right gives the arguments, a mapping serves `%(key)s`), floor modulo when both are
/// numbers.
pub fn modulo(left: &Value, right: &Value) -> Result<Value, Error> {
    if let Some(fmt) = left.as_str() {
        let text = if let Some(t) = right.downcast_object_ref::<super::Tuple>() {
            format_with(fmt, &t.0, None)?
        } else if right.kind() == ValueKind::Map {
            format_with(fmt, std::slice::from_ref(right), Some(right))?
        } else {
            format_with(fmt, std::slice::from_ref(right), None)?
        };
        return Ok(Value::from(text));
    }
    let number = |v: &Value| matches!(v.kind(), ValueKind::Number | ValueKind::Bool);
    if !(number(left) && number(right)) {
        return Err(type_error(format!(
            "unsupported operand type(s) for %: '{}' and '{}'",
            left.kind(),
            right.kind()
        )));
    }
    let int = |v: &Value| {
        if v.kind() == ValueKind::Bool {
            Some(i64::from(v.is_true()))
        } else {
            v.as_i64()
        }
    };
    if let (Some(a), Some(b)) = (int(left), int(right)) {
        if b == 0 {
            return Err(type_error("integer modulo by zero"));
        }
        // Python's result takes the divisor's sign.
        let r = a.wrapping_rem(b);
        return Ok(Value::from(if r != 0 && (r < 0) != (b < 0) { r + b } else { r }));
    }
    let (a, b) = (as_f64(left, 'f')?, as_f64(right, 'f')?);
    if b == 0.0 {
        return Err(type_error("float modulo"));
    }
    let r = a % b;
    Ok(Value::from(if r != 0.0 && (r < 0.0) != (b < 0.0) { r + b } else { r }))
}

/// `fmt % args`; `mapping` serves `%(key)s` (and, as in Python, leaves positional arguments
/// unchecked for count).
fn format_with(fmt: &str, args: &[Value], mapping: Option<&Value>) -> Result<String, Error> {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut key = None;
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut name = String::new();
            for c in chars.by_ref() {
                if c == ')' {
                    break;
                }
                name.push(c);
            }
            key = Some(name);
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                _ => break,
            }
            chars.next();
        }
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            spec.width = spec.width * 10 + d as usize;
            chars.next();
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                chars.next();
            }
            spec.precision = Some(p);
        }
        let conv = chars.next().ok_or_else(|| type_error("incomplete format"))?;
        if conv == '%' && key.is_none() {
            out.push('%');
            continue;
        }
        let arg = match (&key, mapping) {
            (Some(k), Some(map)) => map
                .get_attr(k)
                .ok()
                .filter(|v| !v.is_undefined())
                .ok_or_else(|| type_error(format!("format key '{k}' not found")))?,
            (Some(_), None) => return Err(type_error("format requires a mapping")),
            (None, _) => {
                let a = args
                    .get(next)
                    .cloned()
                    .ok_or_else(|| type_error("not enough arguments for format string"))?;
                next += 1;
                a
            }
        };
        let _ = write!(out, "{}", convert(conv, &spec, &arg)?);
    }
    if mapping.is_none() && next < args.len() {
        return Err(type_error("not all arguments converted during string formatting"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[Value]) -> String {
        format(fmt, args).unwrap()
    }

    #[test]
    fn like_python() {
        assert_eq!(f("%s-%r", &[Value::from("a"), Value::from("b")]), "a-'b'");
        assert_eq!(
            f("%05d|%-4d|%+d", &[Value::from(42), Value::from(7), Value::from(3)]),
            "00042|7   |+3"
        );
        assert_eq!(
            f("%.2f %08.3f", &[Value::from(1.005), Value::from(-12.3456)]),
            "1.00 -012.346"
        );
        assert_eq!(
            f("%x %#X %o", &[Value::from(255), Value::from(255), Value::from(8)]),
            "ff 0XFF 10"
        );
        assert_eq!(f("%e", &[Value::from(12345.678)]), "1.234568e+04");
        assert_eq!(f("100%% %.3s", &[Value::from("abcdef")]), "100% abc");
        let kwargs = Value::from(minijinja::value::Kwargs::from_iter([("a", Value::from(1))]));
        assert_eq!(f("%(a)03d", &[kwargs]), "001");
        assert!(format("%(a)s", &[Value::from_serialize(serde_json::json!({"a": 1}))]).is_err());
        assert!(format("%s %s", &[Value::from(1)]).is_err());
        assert!(format("%s", &[Value::from(1), Value::from(2)]).is_err());
    }
}
