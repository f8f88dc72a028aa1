//! Request bodies parsed within bounds: at most so many JSON values in all, and at most so many
//! items in a top-level list, so that what a body costs in memory is known before it is read
//! into objects.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;

/// How much a body may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// JSON values in all (every object, list, string, number, boolean and null counts one).
    pub values: usize,
    /// Items of a list body.
    pub items: usize,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// Not JSON; serde's description.
    Syntax(String),
    /// A list body longer than the bound.
    TooManyItems(usize),
    /// More values than the bound.
    TooManyValues(usize),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Syntax(e) => write!(f, "JSON parse error - {e}"),
            BodyError::TooManyItems(n) => write!(f, "A list body may hold at most {n} items."),
            BodyError::TooManyValues(n) => write!(f, "The body holds more than {n} JSON values."),
        }
    }
}

/// Which bound broke, kept beside serde's error.
#[derive(Clone, Copy, PartialEq)]
enum Broke {
    None,
    Items,
    Values,
}

struct Budget {
    left: Cell<usize>,
    bounds: Bounds,
    broke: Cell<Broke>,
}

impl Budget {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => {
                self.broke.set(Broke::Values);
                Err(E::custom("too many values"))
            }
        }
    }
}

/// Parses `bytes` as one JSON value within `bounds`.
pub fn parse(bytes: &[u8], bounds: Bounds) -> Result<Value, BodyError> {
    let budget = Budget {
        left: Cell::new(bounds.values),
        bounds,
        broke: Cell::new(Broke::None),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        budget: &budget,
        top: true,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match budget.broke.get() {
        Broke::Items => BodyError::TooManyItems(bounds.items),
        Broke::Values => BodyError::TooManyValues(bounds.values),
        Broke::None => BodyError::Syntax(e.to_string()),
    })
}

/// One value being read, counted against the budget.
#[derive(Clone, Copy)]
struct Node<'b> {
    budget: &'b Budget,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.take()?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.take()?;
        let inner = Node {
            budget: self.budget,
            top: false,
        };
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            if self.top && items.len() >= self.budget.bounds.items {
                self.budget.broke.set(Broke::Items);
                return Err(de::Error::custom("too many items"));
            }
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.take()?;
        let inner = Node {
            budget: self.budget,
            top: false,
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const B: Bounds = Bounds { values: 10, items: 3 };

    #[test]
    fn bodies_within_bounds_parse_as_serde_json_does() {
        let text = r#"{"a": [1, -2, 2.5, "x", null, true], "b": {}}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text.as_bytes(), B).unwrap(), want);
        assert_eq!(parse(b"[{}, {}, {}]", B).unwrap(), json!([{}, {}, {}]));
        assert_eq!(parse(b"18446744073709551615", B).unwrap(), json!(u64::MAX));
    }

    #[test]
    fn bounds_and_syntax_are_told_apart() {
        assert_eq!(parse(b"[{}, {}, {}, {}]", B), Err(BodyError::TooManyItems(3)));
        assert_eq!(
            parse(b"[[1, 2, 3, 4, 5, 6]]", B),
            Ok(json!([[1, 2, 3, 4, 5, 6]])),
            "nested lists are not items"
        );
        assert_eq!(
            parse(b"{\"a\": [1,1,1,1,1,1,1,1,1,1]}", B),
            Err(BodyError::TooManyValues(10))
        );
        assert!(matches!(parse(b"{\"a\": ", B), Err(BodyError::Syntax(_))));
        assert!(matches!(parse(b"{} {}", B), Err(BodyError::Syntax(_))), "trailing data");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(
            parse(
                deep.as_bytes(),
                Bounds {
                    values: 1000,
                    items: 10
                }
            ),
            Err(BodyError::Syntax(_))
        ));
    }
}
