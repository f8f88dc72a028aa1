//! List queries over objects, NetBox's way: `?name=a&name=b` (any of), lookups such as
//! `name__ic=` or `vid__gte=`, foreign keys by id (`site_id=3`) or slug (`site=ams1`),
//! `tag=` (all of), `q=` and `ordering=`. Parsed here, run by each backend.

use super::{values, ObjectRead};
use crate::catalog::{Catalog, Field, FieldKind, ObjectType};
use crate::error::Error;
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

/// Why a parameter gave no conditions.
enum Skip {
    /// It is not a filter of this type (ignored, as NetBox does).
    NotAFilter,
    /// Its value is bad: the message for the parameter.
    Invalid(String),
    /// Reading what it names failed.
    Failed(Error),
}

impl From<String> for Skip {
    fn from(m: String) -> Skip {
        Skip::Invalid(m)
    }
}

/// Parses `params` for objects of `ty`. Unknown parameters are ignored, as NetBox does; a bad
/// value of a known one is a 400 naming it. `reader` resolves slugs (`site=ams1`).
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
        let (name, cmp) = lookup(param);
        let Some((cmp, negate)) = cmp else { continue };
        let filter = Filter { name, cmp, negate };
        match parser.param(&filter, &given).await {
            Ok(conds) => query.conds.extend(conds),
            Err(Skip::Invalid(message)) => errors.add(param, message),
            Err(Skip::NotAFilter) => {}
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

/// A parameter's name without its lookup, and the lookup.
struct Filter<'a> {
    name: &'a str,
    cmp: Cmp,
    negate: bool,
}

impl Filter<'_> {
    fn cond(&self, col: Col, cmp: Cmp, values: Vec<Value>) -> Cond {
        Cond {
            col,
            cmp,
            negate: self.negate,
            values,
        }
    }
}

fn ints(given: &[&str]) -> Result<Vec<Value>, String> {
    given
        .iter()
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("\"{v}\" is not a valid integer."))
        })
        .collect()
}

struct Parser<'a> {
    catalog: &'a Catalog,
    reader: &'a dyn ObjectRead,
    ty: &'a ObjectType,
}

impl Parser<'_> {
    /// The conditions of one parameter.
    async fn param(&self, f: &Filter<'_>, given: &[&str]) -> Result<Vec<Cond>, Skip> {
        let ty = self.ty;
        if f.cmp == Cmp::IsNull {
            let empty = given.iter().all(|v| crate::validate::parse_bool(v) == Some(true));
            if f.name == "id" || ty.field(f.name).is_none() {
                return Err(Skip::NotAFilter);
            }
            let cmp = if empty { Cmp::IsNull } else { Cmp::NotNull };
            return Ok(vec![f.cond(Col::Field(f.name.into()), cmp, vec![])]);
        }
        if f.name == "id" {
            return Ok(vec![f.cond(Col::Id, f.cmp, ints(given)?)]);
        }
        if f.name == "created" || f.name == "last_updated" {
            let col = if f.name == "created" {
                Col::Created
            } else {
                Col::LastUpdated
            };
            let times = given
                .iter()
                .map(|v| {
                    parse_time(v)
                        .map(Value::from)
                        .ok_or_else(|| format!("\"{v}\" is not a date or an ISO 8601 time."))
                })
                .collect::<Result<Vec<Value>, String>>()?;
            return Ok(vec![f.cond(col, f.cmp, times)]);
        }
        if f.name == "tag" && ty.tags && f.cmp == Cmp::In {
            let ids = self.slugs_to_ids(super::view::TAG_TYPE, given).await?;
            return Ok(ids
                .into_iter()
                .map(|id| f.cond(Col::Tag, Cmp::In, vec![Value::from(id)]))
                .collect());
        }
        // `site_id=3` (or `null`), `site=ams1`.
        let (field, by_id) = match ty.field(f.name) {
            Some(field) => (field, false),
            None => match f.name.strip_suffix("_id").and_then(|n| ty.field(n)) {
                Some(field) if field.kind == FieldKind::Fk => (field, true),
                _ => return Err(Skip::NotAFilter),
            },
        };
        if field.kind == FieldKind::Fk {
            return self.foreign_key(f, field, by_id, given).await;
        }
        Ok(self.scalar(f, field, given)?)
    }

    /// A foreign key by id (`site_id=3`, `null`) or by slug (`site=ams1`): equality only.
    async fn foreign_key(&self, f: &Filter<'_>, field: &Field, by_id: bool, given: &[&str]) -> Result<Vec<Cond>, Skip> {
        if !matches!(f.cmp, Cmp::In | Cmp::NotIn) {
            return Err(Skip::Invalid("Foreign keys can only be filtered by value.".into()));
        }
        let null = given.contains(&"null");
        let rest: Vec<&str> = given.iter().copied().filter(|v| *v != "null").collect();
        let to = field.to.as_deref().unwrap_or_default();
        let ids: Vec<Value> = if by_id {
            ints(&rest)?
        } else {
            self.slugs_to_ids(to, &rest)
                .await?
                .into_iter()
                .map(Value::from)
                .collect()
        };
        let mut conds = Vec::new();
        if null {
            if f.cmp == Cmp::In && !ids.is_empty() {
                // "null or one of these" cannot be one AND-ed condition: keep it simple.
                return Err(Skip::Invalid(
                    "Combine \"null\" with other values in separate requests.".into(),
                ));
            }
            let cmp = if f.cmp == Cmp::In { Cmp::IsNull } else { Cmp::NotNull };
            conds.push(f.cond(Col::Field(field.name.clone()), cmp, vec![]));
        }
        if !ids.is_empty() {
            // Equality goes through the references index, not a scan of the type's rows.
            let col = match f.cmp {
                Cmp::In => Col::Ref(field.name.clone(), to.to_string()),
                _ => Col::Field(field.name.clone()),
            };
            conds.push(f.cond(col, f.cmp, ids));
        }
        Ok(conds)
    }

    /// Any other field: values read as the field's kind.
    fn scalar(&self, f: &Filter<'_>, field: &Field, given: &[&str]) -> Result<Vec<Cond>, String> {
        let each = |read: &dyn Fn(&str) -> Result<Value, String>| -> Result<Vec<Value>, String> {
            given.iter().map(|v| read(v)).collect()
        };
        let equality = matches!(f.cmp, Cmp::In | Cmp::NotIn);
        let values: Vec<Value> = match field.kind {
            FieldKind::Integer => ints(given)?,
            FieldKind::Decimal => each(&|v| {
                v.trim()
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| format!("\"{v}\" is not a valid number."))
            })?,
            FieldKind::Boolean => each(&|v| {
                crate::validate::parse_bool(v)
                    .map(|b| Value::from(b as i64))
                    .ok_or_else(|| format!("\"{v}\" is not a valid boolean."))
            })?,
            FieldKind::Choice if equality => each(&|v| match self.catalog.choice_label(field, v) {
                Some(_) => Ok(Value::from(v)),
                None => Err(format!(
                    "Select a valid choice. {v} is not one of the available choices."
                )),
            })?,
            FieldKind::Mac if equality => each(&|v| values::parse_mac(v).map(Value::from))?,
            FieldKind::Family => return family(f, field, given),
            FieldKind::Address if f.cmp == Cmp::In && given.iter().all(|v| !v.contains('/')) => {
                // `address=192.0.2.10` matches it with any mask.
                let hosts = given.iter().map(|v| Value::from(format!("{}/", v.trim()))).collect();
                return Ok(vec![f.cond(Col::Field(field.name.clone()), Cmp::IStartsWith, hosts)]);
            }
            FieldKind::String
                if f.cmp == Cmp::In && self.ty.unique.iter().any(|r| r.len() == 1 && r[0] == field.name) =>
            {
                // `name=` / `slug=` on a type where they are unique: one index lookup each.
                let values = given.iter().map(|v| Value::from(v.trim())).collect();
                return Ok(vec![f.cond(Col::Key(field.name.clone()), Cmp::In, values)]);
            }
            _ => given.iter().map(|v| Value::from(*v)).collect(),
        };
        Ok(vec![f.cond(Col::Field(field.name.clone()), f.cmp, values)])
    }

    /// The ids of objects of `to` named by slug (or name, for types without slugs); each must
    /// exist (else the message for the parameter).
    async fn slugs_to_ids(&self, to: &str, given: &[&str]) -> Result<Vec<i64>, Skip> {
        if given.is_empty() {
            return Ok(Vec::new());
        }
        let Some(target) = self.catalog.get(to) else {
            return Ok(Vec::new());
        };
        let key = if target.field("slug").is_some() { "slug" } else { "name" };
        let values: Vec<Value> = given.iter().map(|v| Value::from(*v)).collect();
        let limit = given.len() as i64 * 4 + 10;
        let found = self
            .reader
            .list_objects(to, &ObjectQuery::field_in(key, values), limit, 0)
            .await
            .map_err(|e| Skip::Failed(e.into()))?
            .items;
        for v in given {
            if !found.iter().any(|o| o.data.get(key).and_then(Value::as_str) == Some(v)) {
                return Err(Skip::Invalid(format!(
                    "Select a valid choice. {v} is not one of the available choices."
                )));
            }
        }
        Ok(found.iter().map(|o| o.id).collect())
    }
}

/// `family=4` / `family=6`: IPv6 addresses are the ones with a colon.
fn family(f: &Filter<'_>, field: &Field, given: &[&str]) -> Result<Vec<Cond>, String> {
    let want = ints(given)?;
    let source = field.from.clone().unwrap_or_default();
    let v6 = want.iter().any(|v| v.as_i64() == Some(6));
    let v4 = want.iter().any(|v| v.as_i64() == Some(4));
    if v4 == v6 {
        // Both: no condition; neither: nothing matches.
        return Ok(if v4 {
            vec![]
        } else {
            vec![f.cond(Col::Id, Cmp::In, vec![])]
        });
    }
    Ok(vec![Cond {
        col: Col::Field(source),
        cmp: Cmp::IContains,
        negate: v4,
        values: vec![Value::from(":")],
    }])
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
