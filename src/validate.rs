//! Reading request bodies field by field, collecting NetBox-style errors
//! (`{"field": ["message", ...]}`) instead of stopping at the first.

use serde_json::{Map, Value};

/// Errors keyed by field name, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors(pub Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let entry = self
            .0
            .entry(field.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.into()));
        }
    }

    /// Adds every message of `other`.
    pub fn merge(&mut self, other: FieldErrors) {
        for (field, messages) in other.0 {
            if let Value::Array(list) = messages {
                for m in list {
                    if let Value::String(m) = m {
                        self.add(&field, m);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn single(field: &str, message: impl Into<String>) -> FieldErrors {
        let mut e = FieldErrors::default();
        e.add(field, message);
        e
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// `Ok(v)` when no error was recorded.
    pub fn finish<T>(self, v: T) -> Result<T, FieldErrors> {
        if self.is_empty() {
            Ok(v)
        } else {
            Err(self)
        }
    }
}

/// A JSON object being read; every wrong-typed field is recorded in `errors`.
/// Keys NetBox shows on every object and ignores in a body: read back and sent again, they
/// change nothing.
pub const READ_ONLY_KEYS: [&str; 6] = ["id", "url", "display", "display_url", "created", "last_updated"];

/// An error for each key of `body` that is neither in `known` nor read-only: a field Herald
/// does not store must not be accepted and dropped. `what` names the objects, in the plural.
pub fn refuse_unknown_keys(body: &Value, known: impl Fn(&str) -> bool, what: &str, errors: &mut FieldErrors) {
    let Value::Object(map) = body else { return };
    for k in map.keys() {
        if !known(k) && !READ_ONLY_KEYS.contains(&k.as_str()) {
            errors.add(
                k,
                format!("Herald does not store this field of {what}; nothing was saved. Remove it from the request."),
            );
        }
    }
}

pub struct Reader<'a> {
    obj: &'a Map<String, Value>,
    pub errors: FieldErrors,
}

impl FieldErrors {
    /// NetBox's rules for a `name` (not blank, at most 150 characters) and a `description`
    /// (at most 200), unless the field has an error already.
    pub fn check_name_and_description(&mut self, name: &str, description: &str) {
        if !self.0.contains_key("name") {
            if name.is_empty() {
                self.add("name", "This field may not be blank.");
            } else if name.chars().count() > 150 {
                self.add("name", "Ensure this field has no more than 150 characters.");
            }
        }
        if description.chars().count() > 200 {
            self.add("description", "Ensure this field has no more than 200 characters.");
        }
    }
}

impl<'a> Reader<'a> {
    /// `custom_fields`, which Herald has none of: `{}` (or null) as NetBox clients send it
    /// passes; anything else is refused, naming the field.
    pub fn empty_custom_fields(&mut self) {
        match self.raw("custom_fields") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(_) => self.errors.add(
                "custom_fields",
                "Herald does not store custom fields: send {} or leave it out.",
            ),
        }
    }

    /// Fails with a `non_field_errors` message when `value` is not an object.
    pub fn new(value: &'a Value) -> Result<Reader<'a>, FieldErrors> {
        match value {
            Value::Object(obj) => Ok(Reader {
                obj,
                errors: FieldErrors::default(),
            }),
            _ => Err(FieldErrors::single(
                "non_field_errors",
                "Invalid data. Expected a dictionary.",
            )),
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.obj.contains_key(field)
    }

    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    /// A string; `null` is an error (see `nullable_string`).
    pub fn string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => {
                self.errors.add(field, "This field may not be null.");
                None
            }
            _ => {
                self.errors.add(field, "Not a valid string.");
                None
            }
        }
    }

    /// A string or null (`Some(None)` for null).
    pub fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.obj.get(field)? {
            Value::Null => Some(None),
            _ => self.string(field).map(Some),
        }
    }

    /// A boolean; accepts JSON booleans and the strings Django REST framework accepts.
    pub fn bool(&mut self, field: &str) -> Option<bool> {
        match self.obj.get(field)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match parse_bool(s) {
                Some(b) => Some(b),
                None => {
                    self.errors.add(field, "Must be a valid boolean.");
                    None
                }
            },
            Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => Some(n.as_u64() == Some(1)),
            _ => {
                self.errors.add(field, "Must be a valid boolean.");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.obj.get(field)?;
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            None => {
                self.errors.add(field, "A valid integer is required.");
                None
            }
            Some(n) if n < min => {
                self.errors
                    .add(field, format!("Ensure this value is greater than or equal to {min}."));
                None
            }
            Some(n) if n > max => {
                self.errors
                    .add(field, format!("Ensure this value is less than or equal to {max}."));
                None
            }
            Some(n) => Some(n),
        }
    }

    /// A list of strings taken as a set (NetBox's many-to-many fields): each kept once, in
    /// the order first given.
    pub fn string_set(&mut self, field: &str) -> Option<Vec<String>> {
        match self.obj.get(field)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len().min(256));
                let mut seen = std::collections::HashSet::new();
                for item in items {
                    match item {
                        Value::String(s) => {
                            if seen.insert(s.as_str()) {
                                out.push(s.clone());
                            }
                        }
                        _ => {
                            self.errors.add(field, "Expected a list of strings.");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.errors.add(
                    field,
                    format!(
                        "Expected a list of items but got type \"{}\".",
                        type_name(self.obj.get(field)?)
                    ),
                );
                None
            }
        }
    }
}

/// The strings Django REST framework takes as booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Python's name for a JSON value's type, as DRF messages use it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_error() {
        let v = json!({"a": 1, "b": "x", "c": 5000, "d": ["ok", 2]});
        let mut r = Reader::new(&v).unwrap();
        assert_eq!(r.string("a"), None);
        assert_eq!(r.bool("b"), None);
        assert_eq!(r.int("c", 1, 3600), None);
        assert_eq!(r.string_set("d"), None);
        assert_eq!(r.string("missing"), None);
        let errs = r.errors.into_value();
        assert_eq!(
            errs.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert!(Reader::new(&json!([1])).is_err());
    }

    #[test]
    fn sets_keep_each_string_once() {
        let many: Vec<&str> = std::iter::repeat_n("dcim.site", 100_000)
            .chain(["ipam.vrf", "dcim.site"])
            .collect();
        let v = json!({ "t": many });
        let mut r = Reader::new(&v).unwrap();
        assert_eq!(
            r.string_set("t"),
            Some(vec!["dcim.site".to_string(), "ipam.vrf".to_string()])
        );
    }
}
