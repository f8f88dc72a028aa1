//! One specification per list of what it may be filtered by. The REST query string, JSON
//! bodies (bulk retry and delete), the admin pages, the command line and `/api/schema/` all
//! read a list's filters through its `Spec`, so they cannot drift apart; a name the list does
//! not know is refused, naming it, rather than ignored (it would widen the list to all).

use super::{Error, Result};
use crate::events::parse_timestamp;
use crate::validate::parse_bool;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// NetBox's text lookups, as suffixes of a parameter's name (`TextLookup` reads them).
pub const TEXT_LOOKUPS: [&str; 10] = [
    "", "__n", "__ic", "__nic", "__ie", "__nie", "__isw", "__nisw", "__iew", "__niew",
];

/// What a parameter's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Whole numbers (`1,2` lists too).
    Ints,
    /// Text, compared exactly.
    Texts,
    /// Text with NetBox's lookups: `name`, `name__ic`, `name__nisw`, ...
    Lookups,
    /// Some of these values (`a,b` lists too).
    Choice(&'static [&'static str]),
    /// A time: ISO 8601 with a zone, or a browser's date-time field (taken as UTC).
    Time,
    /// A boolean, as Django REST framework reads one.
    Bool,
}

impl Kind {
    /// The JSON schema of one value.
    pub fn schema(self) -> Value {
        match self {
            Kind::Ints => serde_json::json!({"type": "integer"}),
            Kind::Bool => serde_json::json!({"type": "boolean"}),
            Kind::Choice(values) => serde_json::json!({"type": "string", "enum": values}),
            Kind::Time => serde_json::json!({"type": "string", "format": "date-time"}),
            Kind::Texts | Kind::Lookups => serde_json::json!({"type": "string"}),
        }
    }
}

/// One parameter of a list.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
}

/// What a list may be filtered by.
#[derive(Debug)]
pub struct Spec {
    /// The list, as messages name it: `deliveries`, `webhooks`.
    pub list: &'static str,
    pub params: &'static [Param],
}

/// Filter values by name, from any source, in order; empty values left out.
#[derive(Debug, Clone, Default)]
pub struct Given(Vec<(String, String)>);

impl Given {
    /// Pairs as a query string, a form or flags give them (names repeated for more values).
    pub fn pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Given {
        Given(pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect())
    }

    /// A JSON object's keys, each a value or a list of values (null: none).
    pub fn json(body: &Value) -> Result<Given> {
        let Value::Object(map) = body else {
            return Err(Error::field("non_field_errors", "Expected a filter object."));
        };
        let mut pairs = Vec::new();
        for (k, v) in map {
            let items = match v {
                Value::Null => continue,
                Value::Array(items) => items.as_slice(),
                one => std::slice::from_ref(one),
            };
            for item in items {
                let text = match item {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(Error::field(k, "Expected a value or a list of values.")),
                };
                pairs.push((k.clone(), text));
            }
        }
        Ok(Given::pairs(pairs))
    }

    /// The names given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.trim())
    }
}

impl Spec {
    /// Every name it takes (text lookups spelled out): what the API accepts and
    /// `/api/schema/` lists.
    pub fn names(&self) -> Vec<String> {
        self.params
            .iter()
            .flat_map(|p| match p.kind {
                Kind::Lookups => TEXT_LOOKUPS.iter().map(|s| format!("{}{s}", p.name)).collect(),
                _ => vec![p.name.to_string()],
            })
            .collect()
    }

    /// Every parameter with its kind, text lookups spelled out (each then `Texts`): what
    /// `/api/schema/` lists.
    pub fn parameters(&self) -> Vec<(String, Kind)> {
        self.params
            .iter()
            .flat_map(|p| match p.kind {
                Kind::Lookups => TEXT_LOOKUPS
                    .iter()
                    .map(|s| (format!("{}{s}", p.name), Kind::Texts))
                    .collect(),
                kind => vec![(p.name.to_string(), kind)],
            })
            .collect()
    }

    /// Reads `given` for this list: every name must be one of its own or of `also` (paging,
    /// which the caller reads), else a field error naming it.
    pub fn read<'a>(&'static self, given: &'a Given, also: &[&str]) -> Result<Read<'a>> {
        let names = self.names();
        if let Some(k) = given
            .names()
            .find(|k| !also.contains(k) && !names.iter().any(|n| n == k))
        {
            let known = if names.is_empty() {
                "it has no filters".to_string()
            } else {
                format!(
                    "its filters are {}",
                    self.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                )
            };
            return Err(Error::field(
                k,
                format!(
                    "Herald does not filter {} by \"{k}\"; nothing was done ({known}).",
                    self.list
                ),
            ));
        }
        Ok(Read { spec: self, given })
    }
}

/// A list's filter values, each read as its kind.
pub struct Read<'a> {
    spec: &'static Spec,
    given: &'a Given,
}

impl Read<'_> {
    fn kind(&self, name: &str) -> Kind {
        self.spec
            .params
            .iter()
            .find(|p| p.name == name)
            .map_or(Kind::Texts, |p| p.kind)
    }

    /// The values of a list parameter (`a,b` split for numbers and choices).
    fn listed(&self, name: &str) -> Vec<String> {
        let split = matches!(self.kind(name), Kind::Ints | Kind::Choice(_));
        self.given
            .values(name)
            .flat_map(|v| {
                if split {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                } else {
                    vec![v.to_string()]
                }
            })
            .collect()
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        self.listed(name)
            .iter()
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Error::field(name, format!("\"{v}\" is not a whole number.")))
            })
            .collect()
    }

    pub fn texts(&self, name: &str) -> Vec<String> {
        self.listed(name)
    }

    /// The values of a choice parameter, each one of its choices.
    pub fn choices(&self, name: &str) -> Result<Vec<String>> {
        let Kind::Choice(choices) = self.kind(name) else {
            return Ok(self.texts(name));
        };
        self.listed(name)
            .into_iter()
            .map(|v| {
                if choices.contains(&v.as_str()) {
                    Ok(v)
                } else {
                    Err(Error::field(
                        name,
                        format!("\"{v}\" is an unknown {name}: use {}.", choices.join(", ")),
                    ))
                }
            })
            .collect()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.given.values(name).next() {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| Error::field(name, format!("\"{v}\" is not a valid boolean."))),
        }
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        match self.given.values(name).next() {
            None => Ok(None),
            Some(v) => parse_timestamp(v)
                .or_else(|| {
                    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
                        .ok()
                        .map(|t| t.and_utc())
                })
                .map(Some)
                .ok_or_else(|| {
                    Error::field(
                        name,
                        format!("\"{v}\" is not a date and time: use ISO 8601 with a time zone."),
                    )
                }),
        }
    }

    /// The first value of a single text parameter (`q`).
    pub fn text(&self, name: &str) -> Option<String> {
        self.given.values(name).next().map(String::from)
    }

    /// The text conditions on `field` with NetBox's lookups, one per value given.
    pub fn lookups(&self, field: &str) -> Vec<super::TextFilter> {
        let mut out = Vec::new();
        for (k, v) in &self.given.0 {
            let Some(rest) = k.strip_prefix(field) else {
                continue;
            };
            let Some(suffix) = rest.strip_prefix("__").or(rest.is_empty().then_some("")) else {
                continue;
            };
            if let Some((lookup, negate)) = super::TextLookup::parse(suffix) {
                out.push(super::TextFilter {
                    lookup,
                    negate,
                    values: vec![v.clone()],
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static SPEC: Spec = Spec {
        list: "things",
        params: &[
            Param {
                name: "id",
                kind: Kind::Ints,
            },
            Param {
                name: "name",
                kind: Kind::Lookups,
            },
            Param {
                name: "status",
                kind: Kind::Choice(&["on", "off"]),
            },
            Param {
                name: "since",
                kind: Kind::Time,
            },
            Param {
                name: "enabled",
                kind: Kind::Bool,
            },
        ],
    };

    fn pairs(p: &[(&str, &str)]) -> Given {
        Given::pairs(p.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn every_source_reads_alike() {
        let q = pairs(&[
            ("id", "1,2"),
            ("id", "3"),
            ("name__ic", "a,b"),
            ("status", "on"),
            ("limit", "5"),
            ("enabled", ""),
        ]);
        let r = SPEC.read(&q, &["limit"]).unwrap();
        assert_eq!(r.ints("id").unwrap(), [1, 2, 3]);
        assert_eq!(r.lookups("name")[0].values, ["a,b"], "text keeps its commas");
        assert_eq!(r.choices("status").unwrap(), ["on"]);
        assert_eq!(r.bool("enabled").unwrap(), None, "empty values are not given");
        let j = Given::json(&json!({"id": [1, 2, 3], "status": "on", "since": null})).unwrap();
        let r = SPEC.read(&j, &[]).unwrap();
        assert_eq!(r.ints("id").unwrap(), [1, 2, 3]);
        assert_eq!(r.time("since").unwrap(), None);
    }

    #[test]
    fn what_cannot_be_read_names_its_parameter() {
        let err = |g: Given| match SPEC.read(&g, &[]).and_then(|r| {
            r.ints("id")?;
            r.choices("status")?;
            r.time("since")?;
            r.bool("enabled")?;
            Ok(())
        }) {
            Err(Error::Validation(v)) => v.as_object().unwrap().keys().next().unwrap().clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(err(pairs(&[("colour", "red")])), "colour");
        assert_eq!(err(pairs(&[("id", "x")])), "id");
        assert_eq!(err(pairs(&[("status", "maybe")])), "status");
        assert_eq!(err(pairs(&[("since", "yesterday")])), "since");
        assert_eq!(err(pairs(&[("enabled", "perhaps")])), "enabled");
        assert!(Given::json(&json!({"id": {"nested": 1}})).is_err());
        assert!(Given::json(&json!([1])).is_err());
        let field = pairs(&[("since", "2026-12-07T10:30")]);
        let r = SPEC.read(&field, &[]).unwrap();
        assert!(r.time("since").unwrap().is_some(), "a browser's date-time field");
        assert_eq!(SPEC.names().len(), 4 + TEXT_LOOKUPS.len());
    }
}
