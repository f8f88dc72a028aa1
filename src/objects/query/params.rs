//! Reading one query parameter of a list (`name__ic=`, `site_id=3`, `site=ams1`, `tag=`,
//! `family=6`, ...) into conditions, as NetBox reads it.

use super::{Cmp, Col, Cond, NetTest, ObjectQuery};
use crate::catalog::{Catalog, Field, FieldKind, ObjectType};
use crate::error::Error;
use crate::objects::{values, ObjectRead};
use serde_json::Value;

/// Why a parameter gave no conditions.
pub(super) enum Skip {
    /// It is not a filter of this type (refused).
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

/// A parameter's name without its lookup, and the lookup.
pub(super) struct Filter<'a> {
    pub name: &'a str,
    pub cmp: Cmp,
    pub negate: bool,
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

pub(super) struct Parser<'a> {
    pub catalog: &'a Catalog,
    pub reader: &'a dyn ObjectRead,
    pub ty: &'a ObjectType,
}

impl Parser<'_> {
    /// The conditions of one parameter.
    pub async fn param(&self, f: &Filter<'_>, given: &[&str]) -> Result<Vec<Cond>, Skip> {
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
        // `tag=core&tag=edge` (slugs) or `tag_id=1`: all of them; `tag__n=` / `tag_id__n=`:
        // none of them.
        if matches!(f.name, "tag" | "tag_id") && ty.tags && matches!(f.cmp, Cmp::In | Cmp::NotIn) {
            let ids: Vec<Value> = if f.name == "tag" {
                self.slugs_to_ids(crate::objects::view::TAG_TYPE, given)
                    .await?
                    .into_iter()
                    .map(Value::from)
                    .collect()
            } else {
                ints(given)?
            };
            let negate = f.cmp == Cmp::NotIn;
            return Ok(ids
                .into_iter()
                .map(|id| Cond {
                    col: Col::Tag,
                    cmp: Cmp::In,
                    negate,
                    values: vec![id],
                })
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
                    .map(Value::Bool)
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
                // `address=192.0.2.10` matches it with any mask (through the network index); a
                // value that is no address matches nothing.
                let hosts = given
                    .iter()
                    .filter_map(|v| v.trim().parse::<std::net::IpAddr>().ok())
                    .map(values::net_key)
                    .collect();
                return Ok(vec![Cond::net(&field.name, NetTest::Starts(hosts))]);
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
pub(super) fn parse_time(v: &str) -> Option<i64> {
    let v = v.trim();
    let parsed = crate::events::parse_timestamp(v)
        .or_else(|| crate::events::parse_timestamp(&v.replace(' ', "+")))
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
