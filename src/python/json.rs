//! JSON written the way Python's `json.dumps` writes it, so bodies match NetBox's byte for byte:
//! `", "` and `": "` separators, non-ASCII escaped as `\uXXXX` (surrogate pairs above the BMP),
//! floats as Python's `repr`.

use super::float_repr;
use serde_json::Value;
use std::fmt::Write;

/// Options of `json.dumps` that Herald uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dumps {
    /// Sort object keys (Jinja2's `tojson` does).
    pub sort_keys: bool,
    /// Pretty-print with this many spaces; Python then separates items with `","`.
    pub indent: Option<usize>,
}

/// `json.dumps(value)` with Python's defaults.
pub fn dumps(value: &Value) -> String {
    dumps_with(value, Dumps::default())
}

/// `json.dumps(value, sort_keys=.., indent=..)`.
pub fn dumps_with(value: &Value, opts: Dumps) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value, opts, 0);
    out
}

/// Appends `json.dumps(value)` to `out`.
pub fn write_value_into(out: &mut String, value: &Value) {
    write_value(out, value, Dumps::default(), 0);
}

fn newline(out: &mut String, opts: Dumps, depth: usize) {
    if let Some(indent) = opts.indent {
        out.push('\n');
        for _ in 0..indent * depth {
            out.push(' ');
        }
    }
}

fn write_value(out: &mut String, value: &Value, opts: Dumps, depth: usize) {
    let item_sep = if opts.indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.push_str(&float_repr(f));
            } else {
                let _ = write!(out, "{n}");
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, opts, depth + 1);
                write_value(out, item, opts, depth + 1);
            }
            newline(out, opts, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, opts, depth + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, v, opts, depth + 1);
            }
            newline(out, opts, depth);
            out.push('}');
        }
    }
}

/// A JSON string literal with `ensure_ascii=True`.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (' '..='~').contains(&c) => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators_and_ascii() {
        let v = json!({"b": [1, 2.5, null, true], "a": "é\u{1F600}<"});
        assert_eq!(dumps(&v), r#"{"b": [1, 2.5, null, true], "a": "\u00e9\ud83d\ude00<"}"#);
        assert_eq!(
            dumps_with(
                &v,
                Dumps {
                    sort_keys: true,
                    indent: None
                }
            ),
            r#"{"a": "\u00e9\ud83d\ude00<", "b": [1, 2.5, null, true]}"#
        );
    }

    #[test]
    fn indent_uses_python_item_separator() {
        let v = json!({"a": [1, {}], "b": []});
        assert_eq!(
            dumps_with(
                &v,
                Dumps {
                    sort_keys: false,
                    indent: Some(2)
                }
            ),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}"
        );
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(123456.789), "123456.789");
        assert_eq!(float_repr(-0.0001), "-0.0001");
    }
}
