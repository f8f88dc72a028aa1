//! List queries over objects, NetBox's way: `?name=a&name=b` (any of), lookups such as
//! `name__ic=` or `vid__gte=`, foreign keys by id (`site_id=3`) or slug (`site=ams1`),
//! `tag=` (all of), `q=` and `ordering=`. Parsed here, run by each backend.

mod computed;
mod params;

use super::ObjectRead;
use crate::catalog::{Catalog, FieldKind, ObjectType};
use crate::error::Error;
use crate::validate::FieldErrors;
use params::{Filter, Parser, Skip};
use serde_json::Value;

/// What a condition tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Col {
    Id,
    Field(String),
    /// Carries the tag whose id is the condition's value.
    Tag,
    /// Values are microseconds since the Unix epoch.
    Created,
    LastUpdated,
    /// A foreign key (field, target type) compared through the references index: `In` only.
    Ref(String, String),
    /// A field that is unique on its own, compared through the unique-keys index: `In` only.
    Key(String),
    /// An address or prefix field, ordered as IP addresses order (10.0.0.2 before 10.0.0.10),
    /// by `values::ip_sort_key`.
    IpKey(String),
    /// An address or prefix field, tested through the network index (`object_nets`).
    Net(String, NetTest),
}

/// What a condition on the network index tests (keys as `values::net_key` writes them).
#[derive(Debug, Clone, PartialEq)]
pub enum NetTest {
    /// Spans starting at any of these keys: an address with any mask (`address=`).
    Starts(Vec<String>),
    /// Spans inside any of these (first, last, strictly: not the span itself): `parent=`,
    /// `within=`, `within_include=`.
    Inside(Vec<(String, String, bool)>),
    /// Spans starting at this key with this mask length, any of them: the prefixes holding a
    /// network (`contains=`).
    Exactly(Vec<(String, u8)>),
    /// Mask lengths compared to the values (`In`, `NotIn`, `Gt`, ...).
    Len(Cmp, Vec<u8>),
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    /// Equal to any of the values.
    In,
    NotIn,
    /// Case-insensitive contains / equals / starts with / ends with any of the values.
    IContains,
    IExact,
    IStartsWith,
    IEndsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    IsNull,
    NotNull,
}

/// One condition; the conditions of a query must all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub col: Col,
    pub cmp: Cmp,
    /// Negates text lookups (`__nic`, `__nie`, ...).
    pub negate: bool,
    pub values: Vec<Value>,
}

/// A parsed list query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectQuery {
    pub conds: Vec<Cond>,
    /// `q=`: the text, and the fields it is looked for in.
    pub search: Option<(String, Vec<String>)>,
    /// Columns to order by, `true` for descending; always ends with the id.
    pub order: Vec<(Col, bool)>,
}

impl Cond {
    /// A condition on the network index.
    pub fn net(field: &str, test: NetTest) -> Cond {
        Cond {
            col: Col::Net(field.into(), test),
            cmp: Cmp::In,
            negate: false,
            values: Vec::new(),
        }
    }
}

impl ObjectQuery {
    /// Objects whose `field` is any of `values`, in id order.
    pub fn field_in(field: &str, values: Vec<Value>) -> ObjectQuery {
        ObjectQuery {
            conds: vec![Cond {
                col: Col::Field(field.into()),
                cmp: Cmp::In,
                negate: false,
                values,
            }],
            search: None,
            order: vec![(Col::Id, false)],
        }
    }
}

/// Parameters that are not filters.
pub const RESERVED: [&str; 6] = ["limit", "offset", "brief", "ordering", "q", "format"];

fn lookup(name: &str) -> (&str, Option<(Cmp, bool)>) {
    let Some((base, suffix)) = name.rsplit_once("__") else {
        return (name, Some((Cmp::In, false)));
    };
    let found = match suffix {
        "n" => (Cmp::NotIn, false),
        "ic" => (Cmp::IContains, false),
        "nic" => (Cmp::IContains, true),
        "ie" => (Cmp::IExact, false),
        "nie" => (Cmp::IExact, true),
        "isw" => (Cmp::IStartsWith, false),
        "nisw" => (Cmp::IStartsWith, true),
        "iew" => (Cmp::IEndsWith, false),
        "niew" => (Cmp::IEndsWith, true),
        "gt" => (Cmp::Gt, false),
        "gte" => (Cmp::Gte, false),
        "lt" => (Cmp::Lt, false),
        "lte" => (Cmp::Lte, false),
        "empty" => (Cmp::IsNull, false),
        _ => return (base, None),
    };
    (base, Some(found))
}

/// Parses `params` for objects of `ty`. A parameter that is not a filter Herald implements is
/// a 400 naming it (NetBox would ignore it and answer every object: a script deleting what
/// its filter returns would delete everything); so is a bad value of a known one. `reader`
/// resolves slugs (`site=ams1`).
pub async fn parse(
    catalog: &Catalog,
    reader: &dyn ObjectRead,
    ty: &ObjectType,
    params: &[(String, String)],
) -> Result<ObjectQuery, Error> {
    let parser = Parser { catalog, reader, ty };
    let mut query = ObjectQuery::default();
    let mut errors = FieldErrors::default();
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in params {
        if !names.contains(&k.as_str()) && !RESERVED.contains(&k.as_str()) {
            names.push(k);
        }
    }
    for param in names {
        let given: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == param)
            .map(|(_, v)| v.as_str())
            .collect();
        let not_a_filter = || {
            format!(
                "Herald does not filter {} by \"{param}\"; nothing was listed. Remove it, or see the README for the filters there are.",
                ty.plural()
            )
        };
        let found = match computed::regex_lookup(param) {
            Some((field, ci)) => parser.regex(field, ci, &given).await,
            None => {
                let (name, cmp) = lookup(param);
                let Some((cmp, negate)) = cmp else {
                    errors.add(param, not_a_filter());
                    continue;
                };
                let filter = Filter { name, cmp, negate };
                match parser.computed(&filter, &given).await {
                    Ok(Some(conds)) => Ok(conds),
                    Ok(None) => parser.param(&filter, &given).await,
                    Err(e) => Err(e),
                }
            }
        };
        match found {
            Ok(conds) => query.conds.extend(conds),
            Err(Skip::Invalid(message)) => errors.add(param, message),
            Err(Skip::NotAFilter) => errors.add(param, not_a_filter()),
            Err(Skip::Failed(e)) => return Err(e),
        }
    }
    if let Some(q) = params.iter().find(|(k, _)| k == "q").map(|(_, v)| v.trim()) {
        if !q.is_empty() {
            query.search = Some((q.to_string(), ty.search.clone()));
        }
    }
    let ordering: Vec<String> = match params.iter().find(|(k, _)| k == "ordering") {
        Some((_, v)) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        None => ty.ordering.clone(),
    };
    query.order = order(ty, &ordering, &mut errors);
    Ok(errors.finish(query)?)
}

/// The columns of `ordering` (`-name`, `id`), always ending with the id.
fn order(ty: &ObjectType, ordering: &[String], errors: &mut FieldErrors) -> Vec<(Col, bool)> {
    let mut order = Vec::new();
    for item in ordering {
        let (desc, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item.as_str()),
        };
        let col = match (name, ty.field(name).map(|f| f.kind)) {
            ("id", _) => Col::Id,
            ("created", _) => Col::Created,
            ("last_updated", _) => Col::LastUpdated,
            (f, Some(FieldKind::Address | FieldKind::Prefix)) => Col::IpKey(f.into()),
            (f, Some(kind)) if kind != FieldKind::Family => Col::Field(f.into()),
            _ => {
                errors.add(
                    "ordering",
                    format!("Cannot order by \"{name}\": not a field of {}.", ty.verbose_name),
                );
                continue;
            }
        };
        order.push((col, desc));
    }
    if !order.iter().any(|(c, _)| *c == Col::Id) {
        order.push((Col::Id, false));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::params::parse_time;
    use super::*;

    #[test]
    fn times_in_queries() {
        let want = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00+00:00")
            .unwrap()
            .timestamp_micros();
        assert_eq!(parse_time("2026-11-29T10:00:00Z"), Some(want));
        assert_eq!(parse_time("2026-11-29T10:00:00 00:00"), Some(want));
        assert_eq!(parse_time("2026-11-29T10:00:00"), Some(want));
        assert_eq!(parse_time("2026-11-29"), Some(want - 10 * 3_600_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(lookup("vid__gte"), ("vid", Some((Cmp::Gte, false))));
        assert_eq!(lookup("name__nic"), ("name", Some((Cmp::IContains, true))));
        assert_eq!(lookup("name__regex").1, None);
    }
}
