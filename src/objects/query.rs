//! List queries over objects, NetBox's way: `?name=a&name=b` (any of), lookups such as
//! `name__ic=` or `vid__gte=`, foreign keys by id (`site_id=3`) or slug (`site=ams1`),
//! `tag=` (all of), `q=` and `ordering=`. Parsed here, run by each backend.

use super::values;
use crate::catalog::{Catalog, FieldKind, ObjectType};
use crate::store::Store;
use crate::validate::FieldErrors;
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
const RESERVED: [&str; 9] = [
    "limit", "offset", "brief", "ordering", "q", "format", "fields", "exclude", "omit",
];

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

/// Parses `params` for objects of `ty`. Unknown parameters are ignored, as NetBox does; a bad
/// value of a known one is an error naming it.
pub async fn parse(
    catalog: &Catalog,
    store: &dyn Store,
    ty: &ObjectType,
    params: &[(String, String)],
) -> Result<ObjectQuery, FieldErrors> {
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
        let (name, cmp) = lookup(param);
        let Some((cmp, negate)) = cmp else { continue };
        match parse_one(catalog, store, ty, name, cmp, negate, &given).await {
            Ok(conds) => query.conds.extend(conds),
            Err(Some(message)) => errors.add(param, message),
            Err(None) => {}
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
    for item in ordering {
        let (desc, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item.as_str()),
        };
        let col = match name {
            "id" => Col::Id,
            "created" => Col::Created,
            "last_updated" => Col::LastUpdated,
            f if ty
                .field(f)
                .is_some_and(|f| matches!(f.kind, FieldKind::Address | FieldKind::Prefix)) =>
            {
                Col::IpKey(f.into())
            }
            f if ty.field(f).is_some_and(|f| f.kind != FieldKind::Family) => Col::Field(f.into()),
            _ => {
                errors.add(
                    "ordering",
                    format!("Cannot order by \"{name}\": not a field of {}.", ty.verbose_name),
                );
                continue;
            }
        };
        query.order.push((col, desc));
    }
    if !query.order.iter().any(|(c, _)| *c == Col::Id) {
        query.order.push((Col::Id, false));
    }
    errors.finish(query)
}

/// The conditions of one parameter; `Err(None)` when it is not a filter of this type.
#[allow(clippy::too_many_arguments)]
async fn parse_one(
    catalog: &Catalog,
    store: &dyn Store,
    ty: &ObjectType,
    name: &str,
    cmp: Cmp,
    negate: bool,
    given: &[&str],
) -> Result<Vec<Cond>, Option<String>> {
    let cond = |col: Col, cmp: Cmp, values: Vec<Value>| Cond {
        col,
        cmp,
        negate,
        values,
    };
    if cmp == Cmp::IsNull {
        let empty = given.iter().all(|v| crate::validate::parse_bool(v) == Some(true));
        let col = match name {
            "id" => return Err(None),
            f if ty.field(f).is_some() => Col::Field(f.into()),
            _ => return Err(None),
        };
        return Ok(vec![cond(col, if empty { Cmp::IsNull } else { Cmp::NotNull }, vec![])]);
    }
    let ints = |given: &[&str]| -> Result<Vec<Value>, Option<String>> {
        given
            .iter()
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| Some(format!("\"{v}\" is not a valid integer.")))
            })
            .collect()
    };
    if name == "id" {
        return Ok(vec![cond(Col::Id, cmp, ints(given)?)]);
    }
    if name == "created" || name == "last_updated" {
        let col = if name == "created" {
            Col::Created
        } else {
            Col::LastUpdated
        };
        let times = given
            .iter()
            .map(|v| {
                parse_time(v)
                    .map(Value::from)
                    .ok_or_else(|| Some(format!("\"{v}\" is not a date or an ISO 8601 time.")))
            })
            .collect::<Result<_, _>>()?;
        return Ok(vec![cond(col, cmp, times)]);
    }
    if name == "tag" && ty.tags && cmp == Cmp::In {
        let ids = slugs_to_ids(catalog, store, super::view::TAG_TYPE, given).await?;
        return Ok(ids
            .into_iter()
            .map(|id| cond(Col::Tag, Cmp::In, vec![Value::from(id)]))
            .collect());
    }
    // `site_id=3` (or `null`), `site=ams1`.
    let (field, by_id) = match ty.field(name) {
        Some(f) => (f, false),
        None => match name.strip_suffix("_id").and_then(|n| ty.field(n)) {
            Some(f) if f.kind == FieldKind::Fk => (f, true),
            _ => return Err(None),
        },
    };
    if field.kind == FieldKind::Fk {
        let null = given.contains(&"null");
        let rest: Vec<&str> = given.iter().copied().filter(|v| *v != "null").collect();
        let mut ids = if by_id {
            ints(&rest)?
        } else {
            let to = field.to.as_deref().unwrap_or_default();
            slugs_to_ids(catalog, store, to, &rest)
                .await?
                .into_iter()
                .map(Value::from)
                .collect()
        };
        if !matches!(cmp, Cmp::In | Cmp::NotIn) {
            return Err(Some("Foreign keys can only be filtered by value.".into()));
        }
        let col = Col::Field(field.name.clone());
        let mut conds = Vec::new();
        if null {
            conds.push(cond(
                col.clone(),
                if cmp == Cmp::In { Cmp::IsNull } else { Cmp::NotNull },
                vec![],
            ));
            if cmp == Cmp::In && !ids.is_empty() {
                // "null or one of these" cannot be one AND-ed condition: keep it simple.
                return Err(Some("Combine \"null\" with other values in separate requests.".into()));
            }
        }
        if !ids.is_empty() {
            // Equality goes through the references index, not a scan of the type's rows.
            let col = match (cmp, &field.to) {
                (Cmp::In, Some(to)) => Col::Ref(field.name.clone(), to.clone()),
                _ => col,
            };
            conds.push(cond(col, cmp, std::mem::take(&mut ids)));
        }
        return Ok(conds);
    }
    let col = Col::Field(field.name.clone());
    let values: Vec<Value> = match field.kind {
        FieldKind::Integer => ints(given)?,
        FieldKind::Decimal => given
            .iter()
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| Some(format!("\"{v}\" is not a valid number.")))
            })
            .collect::<Result<_, _>>()?,
        FieldKind::Boolean => given
            .iter()
            .map(|v| {
                crate::validate::parse_bool(v)
                    .map(|b| Value::from(b as i64))
                    .ok_or_else(|| Some(format!("\"{v}\" is not a valid boolean.")))
            })
            .collect::<Result<_, _>>()?,
        FieldKind::Choice if matches!(cmp, Cmp::In | Cmp::NotIn) => given
            .iter()
            .map(|v| match catalog.choice_label(field, v) {
                Some(_) => Ok(Value::from(*v)),
                None => Err(Some(format!(
                    "Select a valid choice. {v} is not one of the available choices."
                ))),
            })
            .collect::<Result<_, _>>()?,
        FieldKind::Mac if matches!(cmp, Cmp::In | Cmp::NotIn) => given
            .iter()
            .map(|v| values::parse_mac(v).map(Value::from).map_err(Some))
            .collect::<Result<_, _>>()?,
        FieldKind::Family => {
            let want = ints(given)?;
            let source = field.from.clone().unwrap_or_default();
            // IPv6 addresses are the ones with a colon.
            let v6 = want.iter().any(|v| v.as_i64() == Some(6));
            let v4 = want.iter().any(|v| v.as_i64() == Some(4));
            if v4 == v6 {
                return Ok(if v4 {
                    vec![]
                } else {
                    vec![cond(Col::Id, Cmp::In, vec![])]
                });
            }
            let c = Cond {
                col: Col::Field(source),
                cmp: Cmp::IContains,
                negate: v4,
                values: vec![Value::from(":")],
            };
            return Ok(vec![c]);
        }
        FieldKind::Address if cmp == Cmp::In && given.iter().all(|v| !v.contains('/')) => {
            // `address=192.0.2.10` matches it with any mask.
            let hosts = given.iter().map(|v| Value::from(format!("{}/", v.trim()))).collect();
            return Ok(vec![cond(col, Cmp::IStartsWith, hosts)]);
        }
        FieldKind::String if cmp == Cmp::In && ty.unique.iter().any(|r| r.len() == 1 && r[0] == field.name) => {
            // `name=` / `slug=` on a type where they are unique: one index lookup each.
            let values = given.iter().map(|v| Value::from(v.trim())).collect();
            return Ok(vec![cond(Col::Key(field.name.clone()), Cmp::In, values)]);
        }
        _ => given.iter().map(|v| Value::from(*v)).collect(),
    };
    Ok(vec![cond(col, cmp, values)])
}

/// The ids of objects of `to` named by slug (or name, for types without slugs); each must exist.
async fn slugs_to_ids(
    catalog: &Catalog,
    store: &dyn Store,
    to: &str,
    given: &[&str],
) -> Result<Vec<i64>, Option<String>> {
    if given.is_empty() {
        return Ok(Vec::new());
    }
    let target = catalog.get(to).ok_or(None)?;
    let key = if target.field("slug").is_some() { "slug" } else { "name" };
    let values: Vec<Value> = given.iter().map(|v| Value::from(*v)).collect();
    let (_, found) = store
        .list_objects(to, &ObjectQuery::field_in(key, values), given.len() as i64 * 4 + 10, 0)
        .await
        .map_err(|e| Some(format!("lookup failed: {e}")))?;
    for v in given {
        if !found.iter().any(|o| o.data.get(key).and_then(Value::as_str) == Some(v)) {
            return Err(Some(format!(
                "Select a valid choice. {v} is not one of the available choices."
            )));
        }
    }
    Ok(found.iter().map(|o| o.id).collect())
}

/// A time given in a query (`2026-11-29`, `2026-11-29T10:00:00Z`, with an offset whose `+`
/// arrived as a space), as microseconds since the Unix epoch.
fn parse_time(v: &str) -> Option<i64> {
    let v = v.trim();
    let parsed = crate::events::ingest::parse_timestamp(v)
        .or_else(|| crate::events::ingest::parse_timestamp(&v.replace(' ', "+")))
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })?;
    Some(parsed.timestamp_micros())
}

#[cfg(test)]
mod tests {
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
