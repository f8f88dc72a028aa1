//! Objects and object changes in SQLite: one `objects` table (data as JSON in the minimal
//! form), unique keys and references in their own indexed tables, so uniqueness checks and
//! dependents are index lookups whatever the type.

use super::{from_micros, micros, other, push_ids, CHUNK};
use crate::objects::query::{Cmp, Col, Cond, ObjectQuery};
use crate::objects::{Change, ChangeFilter, Obj, ObjectTx, Ref, Referrer};
use crate::store::{Result, StoreError};
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

pub(super) const OBJECT_SELECT: &str = "select o.id, o.data, o.created_at, o.updated_at from objects o";

pub(super) fn obj_from_row(row: &SqliteRow) -> Result<Obj> {
    let data: String = row.try_get("data").map_err(other)?;
    let data: Map<String, Value> = serde_json::from_str(&data).map_err(super::json_err)?;
    Ok(Obj {
        id: row.try_get("id").map_err(other)?,
        data,
        created: from_micros(row.try_get("created_at").map_err(other)?),
        last_updated: from_micros(row.try_get("updated_at").map_err(other)?),
    })
}

fn path(field: &str) -> String {
    format!("$.{field}")
}

fn push_value(qb: &mut QueryBuilder<'_, Sqlite>, v: &Value) {
    match v {
        Value::Bool(b) => qb.push_bind(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => qb.push_bind(i),
            None => qb.push_bind(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => qb.push_bind(s.clone()),
        Value::Null => qb.push_bind(None::<i64>),
        other => qb.push_bind(other.to_string()),
    };
}

fn push_col(qb: &mut QueryBuilder<'_, Sqlite>, col: &Col) {
    match col {
        Col::Id => {
            qb.push("o.id");
        }
        Col::Created => {
            qb.push("o.created_at");
        }
        Col::LastUpdated => {
            qb.push("o.updated_at");
        }
        Col::Field(f) => {
            qb.push("json_extract(o.data, ").push_bind(path(f)).push(")");
        }
        Col::Tag => {
            qb.push("null");
        }
    }
}

fn like_pattern(cmp: Cmp, v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    match cmp {
        Cmp::IContains => format!("%{escaped}%"),
        Cmp::IStartsWith => format!("{escaped}%"),
        Cmp::IEndsWith => format!("%{escaped}"),
        _ => escaped,
    }
}

fn push_cond(qb: &mut QueryBuilder<'_, Sqlite>, c: &Cond) {
    if c.col == Col::Tag {
        qb.push(
            " and exists (select 1 from object_refs r where r.type = o.type and r.id = o.id and r.field = 'tags' and r.target_id in ",
        );
        let ids: Vec<i64> = c.values.iter().filter_map(Value::as_i64).collect();
        push_ids(qb, &ids);
        qb.push(")");
        return;
    }
    qb.push(" and ");
    match c.cmp {
        Cmp::In | Cmp::NotIn => {
            if c.values.is_empty() {
                qb.push(if c.cmp == Cmp::In { "0" } else { "1" });
                return;
            }
            if c.cmp == Cmp::NotIn {
                qb.push("(");
                push_col(qb, &c.col);
                qb.push(" is null or ");
            }
            push_col(qb, &c.col);
            qb.push(if c.cmp == Cmp::In { " in (" } else { " not in (" });
            for (i, v) in c.values.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                push_value(qb, v);
            }
            qb.push(")");
            if c.cmp == Cmp::NotIn {
                qb.push(")");
            }
        }
        Cmp::IContains | Cmp::IExact | Cmp::IStartsWith | Cmp::IEndsWith => {
            qb.push(if c.negate { "not (" } else { "(" });
            for (i, v) in c.values.iter().enumerate() {
                if i > 0 {
                    qb.push(" or ");
                }
                qb.push("coalesce(");
                push_col(qb, &c.col);
                qb.push(", '') like ")
                    .push_bind(like_pattern(c.cmp, v))
                    .push(" escape '\\'");
            }
            if c.values.is_empty() {
                qb.push("1");
            }
            qb.push(")");
        }
        Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte => {
            let op = match c.cmp {
                Cmp::Gt => " > ",
                Cmp::Gte => " >= ",
                Cmp::Lt => " < ",
                _ => " <= ",
            };
            qb.push("(1");
            for v in &c.values {
                qb.push(" and ");
                push_col(qb, &c.col);
                qb.push(op);
                push_value(qb, v);
            }
            qb.push(")");
        }
        Cmp::IsNull | Cmp::NotNull => {
            qb.push(if c.cmp == Cmp::IsNull {
                "coalesce("
            } else {
                "not coalesce("
            });
            push_col(qb, &c.col);
            qb.push(", '') = ''");
        }
    }
}

/// Appends the where clause of `q` over `objects o` of type `ty`.
fn push_where(qb: &mut QueryBuilder<'_, Sqlite>, ty: &str, q: &ObjectQuery) {
    qb.push(" where o.type = ").push_bind(ty.to_string());
    for c in &q.conds {
        push_cond(qb, c);
    }
    if let Some((text, fields)) = &q.search {
        qb.push(" and (0");
        for f in fields {
            qb.push(" or ");
            if f == "id" {
                qb.push("cast(o.id as text) = ").push_bind(text.clone());
                continue;
            }
            qb.push("coalesce(json_extract(o.data, ")
                .push_bind(path(f))
                .push("), '') like ")
                .push_bind(like_pattern(Cmp::IContains, &Value::String(text.clone())))
                .push(" escape '\\'");
        }
        qb.push(")");
    }
}

pub(super) async fn list(
    pool: &sqlx::SqlitePool,
    ty: &str,
    q: &ObjectQuery,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<Obj>)> {
    let mut count = QueryBuilder::new("select count(*) from objects o");
    push_where(&mut count, ty, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await.map_err(other)?;
    let mut qb = QueryBuilder::new(OBJECT_SELECT);
    push_where(&mut qb, ty, q);
    qb.push(" order by ");
    for (i, (col, desc)) in q.order.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        push_col(&mut qb, col);
        qb.push(if *desc { " desc" } else { " asc" });
    }
    if q.order.is_empty() {
        qb.push("o.id");
    }
    qb.push(" limit ").push_bind(limit).push(" offset ").push_bind(offset);
    let rows = qb.build().fetch_all(pool).await.map_err(other)?;
    Ok((total, rows.iter().map(obj_from_row).collect::<Result<_>>()?))
}

pub(super) async fn get<'e, E: sqlx::Executor<'e, Database = Sqlite>>(
    exec: E,
    ty: &str,
    ids: &[i64],
) -> Result<Vec<Obj>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = QueryBuilder::new(OBJECT_SELECT);
    qb.push(" where o.type = ")
        .push_bind(ty.to_string())
        .push(" and o.id in ");
    push_ids(&mut qb, ids);
    let rows = qb.build().fetch_all(exec).await.map_err(other)?;
    rows.iter().map(obj_from_row).collect()
}

const CHANGE_SELECT: &str = "select id, time, user_id, user_name, request_id, action, object_type, object_id, \
     object_repr, prechange_data, postchange_data from object_changes c";

fn change_from_row(row: &SqliteRow) -> Result<Change> {
    let json = |name: &str| -> Result<Value> {
        let text: Option<String> = row.try_get(name).map_err(other)?;
        match text {
            Some(t) => serde_json::from_str(&t).map_err(super::json_err),
            None => Ok(Value::Null),
        }
    };
    Ok(Change {
        id: row.try_get("id").map_err(other)?,
        time: from_micros(row.try_get("time").map_err(other)?),
        user_id: row.try_get("user_id").map_err(other)?,
        user_name: row.try_get("user_name").map_err(other)?,
        request_id: row.try_get("request_id").map_err(other)?,
        action: row.try_get("action").map_err(other)?,
        object_type: row.try_get("object_type").map_err(other)?,
        object_id: row.try_get("object_id").map_err(other)?,
        object_repr: row.try_get("object_repr").map_err(other)?,
        prechange_data: json("prechange_data")?,
        postchange_data: json("postchange_data")?,
    })
}

fn push_change_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &ChangeFilter) {
    qb.push(" where 1 = 1");
    for (column, ids) in [
        ("c.id", &f.id),
        ("c.object_id", &f.object_id),
        ("c.user_id", &f.user_id),
    ] {
        if !ids.is_empty() {
            qb.push(format!(" and {column} in "));
            push_ids(qb, ids);
        }
    }
    for (column, values) in [
        ("c.request_id", &f.request_id),
        ("c.action", &f.action),
        ("c.object_type", &f.object_type),
        ("c.user_name", &f.user_name),
    ] {
        if values.is_empty() {
            continue;
        }
        qb.push(format!(" and {column} in ("));
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v.clone());
        }
        qb.push(")");
    }
}

pub(super) async fn changes(
    pool: &sqlx::SqlitePool,
    f: &ChangeFilter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<Change>)> {
    let mut count = QueryBuilder::new("select count(*) from object_changes c");
    push_change_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await.map_err(other)?;
    let mut qb = QueryBuilder::new(CHANGE_SELECT);
    push_change_filter(&mut qb, f);
    qb.push(" order by c.id desc limit ")
        .push_bind(limit)
        .push(" offset ")
        .push_bind(offset);
    let rows = qb.build().fetch_all(pool).await.map_err(other)?;
    Ok((total, rows.iter().map(change_from_row).collect::<Result<_>>()?))
}

/// Object writes inside the store's write transaction.
pub(super) struct SqliteObjectTx<'t> {
    pub tx: &'t mut sqlx::Transaction<'static, Sqlite>,
}

#[async_trait]
impl ObjectTx for SqliteObjectTx<'_> {
    async fn get(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        get(&mut **self.tx, ty, ids).await
    }

    async fn find(&mut self, ty: &str, attrs: &[(String, Value)], limit: i64) -> Result<Vec<i64>> {
        let mut qb = QueryBuilder::new("select o.id from objects o where o.type = ");
        qb.push_bind(ty.to_string());
        for (field, value) in attrs {
            qb.push(" and json_extract(o.data, ").push_bind(path(field)).push(")");
            if value.is_null() {
                qb.push(" is null");
            } else {
                qb.push(" = ");
                push_value(&mut qb, value);
            }
        }
        qb.push(" order by o.id limit ").push_bind(limit);
        qb.build_query_scalar().fetch_all(&mut **self.tx).await.map_err(other)
    }

    async fn next_id(&mut self, ty: &str) -> Result<i64> {
        sqlx::query_scalar(
            "insert into object_sequences (type, last_id) values (?, 1) \
             on conflict (type) do update set last_id = last_id + 1 returning last_id",
        )
        .bind(ty)
        .fetch_one(&mut **self.tx)
        .await
        .map_err(other)
    }

    async fn key_owner(&mut self, ty: &str, rule: &str, value: &str) -> Result<Option<i64>> {
        sqlx::query_scalar("select id from object_keys where type = ? and rule = ? and value = ?")
            .bind(ty)
            .bind(rule)
            .bind(value)
            .fetch_optional(&mut **self.tx)
            .await
            .map_err(other)
    }

    async fn save(&mut self, ty: &str, obj: &Obj, keys: &[(String, String)], refs: &[Ref], new: bool) -> Result<()> {
        let data = serde_json::to_string(&obj.data).map_err(|e| StoreError::Other(e.into()))?;
        sqlx::query(
            "insert into objects (type, id, data, created_at, updated_at) values (?, ?, ?, ?, ?) \
             on conflict (type, id) do update set data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(ty)
        .bind(obj.id)
        .bind(data)
        .bind(micros(obj.created))
        .bind(micros(obj.last_updated))
        .execute(&mut **self.tx)
        .await
        .map_err(other)?;
        if !new {
            self.clear(ty, obj.id).await?;
        }
        if !keys.is_empty() {
            let mut qb = QueryBuilder::new("insert into object_keys (type, rule, value, id) ");
            qb.push_values(keys, |mut b, (rule, value)| {
                b.push_bind(ty.to_string())
                    .push_bind(rule.clone())
                    .push_bind(value.clone())
                    .push_bind(obj.id);
            });
            qb.build().execute(&mut **self.tx).await.map_err(other)?;
        }
        if !refs.is_empty() {
            let mut qb = QueryBuilder::new("insert into object_refs (type, id, field, target_type, target_id) ");
            qb.push_values(refs, |mut b, r| {
                b.push_bind(ty.to_string())
                    .push_bind(obj.id)
                    .push_bind(r.field.clone())
                    .push_bind(r.target_type.clone())
                    .push_bind(r.target_id);
            });
            qb.build().execute(&mut **self.tx).await.map_err(other)?;
        }
        Ok(())
    }

    async fn remove(&mut self, ty: &str, id: i64) -> Result<()> {
        self.clear(ty, id).await?;
        sqlx::query("delete from objects where type = ? and id = ?")
            .bind(ty)
            .bind(id)
            .execute(&mut **self.tx)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn referrers(&mut self, ty: &str, id: i64) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "select type, id, field from object_refs where target_type = ? and target_id = ? order by type, id",
        )
        .bind(ty)
        .bind(id)
        .fetch_all(&mut **self.tx)
        .await
        .map_err(other)?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    object_type: r.try_get("type").map_err(other)?,
                    id: r.try_get("id").map_err(other)?,
                    field: r.try_get("field").map_err(other)?,
                })
            })
            .collect()
    }

    async fn add_changes(&mut self, changes: &[Change]) -> Result<()> {
        for chunk in changes.chunks(CHUNK / 2) {
            let mut encoded = Vec::with_capacity(chunk.len());
            for c in chunk {
                let enc = |v: &Value| (!v.is_null()).then(|| v.to_string());
                encoded.push((enc(&c.prechange_data), enc(&c.postchange_data)));
            }
            let mut qb = QueryBuilder::new(
                "insert into object_changes (time, user_id, user_name, request_id, action, object_type, object_id, \
                 object_repr, prechange_data, postchange_data) ",
            );
            qb.push_values(chunk.iter().zip(encoded), |mut b, (c, (pre, post))| {
                b.push_bind(micros(c.time))
                    .push_bind(c.user_id)
                    .push_bind(c.user_name.clone())
                    .push_bind(c.request_id.clone())
                    .push_bind(c.action.clone())
                    .push_bind(c.object_type.clone())
                    .push_bind(c.object_id)
                    .push_bind(c.object_repr.clone())
                    .push_bind(pre)
                    .push_bind(post);
            });
            qb.build().execute(&mut **self.tx).await.map_err(other)?;
        }
        Ok(())
    }
}

impl SqliteObjectTx<'_> {
    /// Drops an object's keys and references (before they are written anew, or with it).
    async fn clear(&mut self, ty: &str, id: i64) -> Result<()> {
        for table in ["object_keys", "object_refs"] {
            sqlx::query(&format!("delete from {table} where type = ? and id = ?"))
                .bind(ty)
                .bind(id)
                .execute(&mut **self.tx)
                .await
                .map_err(other)?;
        }
        Ok(())
    }
}
