//! Webhook conditions in NetBox's format (v3.1): a condition
//! `{"attr": "status.value", "value": "active", "op": "eq", "negate": false}` or a set
//! `{"and": [...]}` / `{"or": [...]}`, nested at will. Evaluated on the event's `data` before a
//! delivery is queued: an event that does not match queues nothing.
//!
//! Operators: `eq` (default), `gt`, `gte`, `lt`, `lte`, `in`, `contains`, `regex` (matched at
//! the start, as Python's `re.match`), and `changed` / `unchanged`, which compare the attribute
//! between the event's prechange and postchange snapshots. Dot paths walk into objects; through
//! a list they collect the attribute of every item (`tags.slug` → `["a", "b"]`).

use regex::Regex;
use serde_json::Value;
use std::cmp::Ordering;

/// A parsed condition set, ready to evaluate.
#[derive(Debug, Clone)]
pub enum Conditions {
    All(Vec<Conditions>),
    Any(Vec<Conditions>),
    One(Condition),
}

#[derive(Debug, Clone)]
pub struct Condition {
    path: Vec<String>,
    op: Op,
    negate: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Cmp(Ordering, bool, f64),
    In(Vec<Value>),
    Contains(Value),
    Regex(Regex),
    Changed,
    Unchanged,
}

/// Deepest nesting accepted, so a hostile body cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Conditions {
    /// Parses and checks a condition or condition set; the error says what is wrong and where.
    pub fn parse(value: &Value) -> Result<Conditions, String> {
        parse_at(value, "", 0)
    }

    /// Whether an event with this `data` and these `snapshots` matches.
    pub fn eval(&self, data: &Value, snapshots: &Value) -> bool {
        match self {
            Conditions::All(items) => items.iter().all(|c| c.eval(data, snapshots)),
            Conditions::Any(items) => items.iter().any(|c| c.eval(data, snapshots)),
            Conditions::One(c) => c.eval(data, snapshots) != c.negate,
        }
    }
}

fn parse_at(value: &Value, at: &str, depth: usize) -> Result<Conditions, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: nested more than {MAX_DEPTH} levels deep"));
    }
    let Value::Object(map) = value else {
        return Err(format!("{}expected an object", place(at)));
    };
    for logic in ["and", "or"] {
        if let Some(items) = map.get(logic) {
            if map.len() != 1 {
                return Err(format!(
                    "{}a condition set has exactly one key, \"and\" or \"or\"",
                    place(at)
                ));
            }
            let Value::Array(items) = items else {
                return Err(format!("{}\"{logic}\" must be a list", place(at)));
            };
            if items.is_empty() {
                return Err(format!("{}\"{logic}\" must not be empty", place(at)));
            }
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_at(item, &format!("{at}{logic}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if logic == "and" {
                Conditions::All(parsed)
            } else {
                Conditions::Any(parsed)
            });
        }
    }
    parse_condition(map, at).map(Conditions::One)
}

fn place(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}

fn parse_condition(map: &serde_json::Map<String, Value>, at: &str) -> Result<Condition, String> {
    let p = place(at);
    for key in map.keys() {
        if !matches!(key.as_str(), "attr" | "value" | "op" | "negate") {
            return Err(format!(
                "{p}unknown key \"{key}\" (a condition has attr, value, op and negate)"
            ));
        }
    }
    let attr = match map.get("attr") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(format!(
                "{p}\"attr\" must be a dotted attribute path, e.g. \"status.value\""
            ))
        }
    };
    let op = match map.get("op") {
        None => "eq",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("{p}\"op\" must be a string")),
    };
    let negate = match map.get("negate") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(format!("{p}\"negate\" must be true or false")),
    };
    let needs_value = !matches!(op, "changed" | "unchanged");
    let value = match (map.get("value"), needs_value) {
        (Some(v), _) => v.clone(),
        (None, true) => return Err(format!("{p}\"value\" is required")),
        (None, false) => Value::Null,
    };
    let number = |v: &Value| {
        v.as_f64()
            .ok_or_else(|| format!("{p}op \"{op}\" needs a number as \"value\""))
    };
    let op = match op {
        "eq" => Op::Eq(value),
        "gt" => Op::Cmp(Ordering::Greater, false, number(&value)?),
        "gte" => Op::Cmp(Ordering::Greater, true, number(&value)?),
        "lt" => Op::Cmp(Ordering::Less, false, number(&value)?),
        "lte" => Op::Cmp(Ordering::Less, true, number(&value)?),
        "in" => match value {
            Value::Array(items) => Op::In(items),
            _ => return Err(format!("{p}op \"in\" needs a list as \"value\"")),
        },
        "contains" => Op::Contains(value),
        "regex" => match value.as_str() {
            Some(pattern) => Op::Regex(
                Regex::new(&format!("^(?:{pattern})")).map_err(|e| format!("{p}invalid regular expression: {e}"))?,
            ),
            None => return Err(format!("{p}op \"regex\" needs a string as \"value\"")),
        },
        "changed" => Op::Changed,
        "unchanged" => Op::Unchanged,
        other => {
            return Err(format!(
                "{p}unknown op \"{other}\": use eq, gt, gte, lt, lte, in, contains, regex, changed or unchanged"
            ))
        }
    };
    Ok(Condition {
        path: attr.split('.').map(String::from).collect(),
        op,
        negate,
    })
}

/// The value at a dot path; through a list, the attribute of each item.
fn lookup(data: &Value, path: &[String]) -> Value {
    let mut value = data.clone();
    for key in path {
        value = match value {
            Value::Object(mut map) => map.remove(key).unwrap_or(Value::Null),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(mut m) => m.remove(key).unwrap_or(Value::Null),
                        _ => Value::Null,
                    })
                    .collect(),
            ),
            _ => Value::Null,
        };
    }
    value
}

/// Python's `==` for JSON values: numbers by value (`1 == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b)),
        _ => a == b,
    }
}

impl Condition {
    fn eval(&self, data: &Value, snapshots: &Value) -> bool {
        match &self.op {
            Op::Changed | Op::Unchanged => {
                let before = lookup(&snapshots["prechange"], &self.path);
                let after = lookup(&snapshots["postchange"], &self.path);
                equal(&before, &after) == matches!(self.op, Op::Unchanged)
            }
            op => {
                let value = lookup(data, &self.path);
                match op {
                    Op::Eq(want) => equal(&value, want),
                    Op::Cmp(ord, or_equal, want) => value
                        .as_f64()
                        .and_then(|v| v.partial_cmp(want))
                        .is_some_and(|o| o == *ord || (*or_equal && o == Ordering::Equal)),
                    Op::In(list) => list.iter().any(|item| equal(&value, item)),
                    Op::Contains(want) => match (&value, want) {
                        (Value::Array(items), w) => items.iter().any(|item| equal(item, w)),
                        (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
                        (Value::Object(m), Value::String(w)) => m.contains_key(w),
                        _ => false,
                    },
                    Op::Regex(re) => value.as_str().is_some_and(|s| re.is_match(s)),
                    Op::Changed | Op::Unchanged => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "name": "edge-r1", "mtu": 9000, "status": {"value": "active", "label": "Active"},
            "tags": [{"slug": "core"}, {"slug": "urgent"}], "tenant": null, "description": "Zurich DC"
        })
    }

    fn check(cond: Value) -> bool {
        let snapshots = json!({"prechange": {"status": "planned", "name": "edge-r1"},
                               "postchange": {"status": "active", "name": "edge-r1"}});
        Conditions::parse(&cond).unwrap().eval(&data(), &snapshots)
    }

    #[test]
    fn each_operator() {
        assert!(check(json!({"attr": "status.value", "value": "active"})));
        assert!(!check(json!({"attr": "status.value", "value": "planned", "op": "eq"})));
        assert!(check(json!({"attr": "mtu", "value": 1500, "op": "gt"})));
        assert!(check(json!({"attr": "mtu", "value": 9000, "op": "gte"})));
        assert!(!check(json!({"attr": "mtu", "value": 9000, "op": "lt"})));
        assert!(check(json!({"attr": "mtu", "value": 9000, "op": "lte"})));
        assert!(check(
            json!({"attr": "status.value", "value": ["active", "staged"], "op": "in"})
        ));
        assert!(check(json!({"attr": "tags.slug", "value": "urgent", "op": "contains"})));
        assert!(check(json!({"attr": "description", "value": "Zur", "op": "contains"})));
        assert!(check(json!({"attr": "name", "value": "edge-", "op": "regex"})));
        assert!(
            !check(json!({"attr": "name", "value": "r1", "op": "regex"})),
            "regex matches at the start"
        );
        assert!(check(json!({"attr": "status", "op": "changed"})));
        assert!(check(json!({"attr": "name", "op": "unchanged"})));
        assert!(!check(json!({"attr": "name", "op": "changed"})));
        assert!(check(json!({"attr": "tenant", "value": null})));
        assert!(!check(json!({"attr": "missing.deep", "value": 1, "op": "gt"})));
    }

    #[test]
    fn negation_and_nesting() {
        assert!(check(
            json!({"attr": "status.value", "value": "planned", "negate": true})
        ));
        assert!(check(json!({"and": [
            {"attr": "status.value", "value": "active"},
            {"or": [{"attr": "mtu", "value": 1500}, {"attr": "tags.slug", "value": "core", "op": "contains"}]}
        ]})));
        assert!(!check(json!({"and": [
            {"attr": "status.value", "value": "active"},
            {"attr": "mtu", "value": 1500}
        ]})));
    }

    #[test]
    fn bad_conditions_say_where() {
        for (cond, want) in [
            (json!({"and": {}}), "must be a list"),
            (json!({"and": [], "or": []}), "exactly one key"),
            (
                json!({"or": [{"attr": "x", "value": 1, "op": "near"}]}),
                "or[0]: unknown op",
            ),
            (json!({"attr": "mtu", "value": "big", "op": "gt"}), "needs a number"),
            (json!({"attr": "x", "value": "a", "op": "in"}), "needs a list"),
            (
                json!({"attr": "x", "value": "(", "op": "regex"}),
                "invalid regular expression",
            ),
            (json!({"attr": "x"}), "\"value\" is required"),
            (json!({"value": 1}), "\"attr\""),
            (json!({"attr": "x", "value": 1, "negate": "yes"}), "negate"),
            (json!([1]), "expected an object"),
        ] {
            let err = Conditions::parse(&cond).unwrap_err();
            assert!(err.contains(want), "{cond}: {err}");
        }
    }
}
