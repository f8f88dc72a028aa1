//! Objects and object changes in SQLite: one `objects` table (data as JSON in the minimal
//! form), unique keys and references in their own indexed tables, so uniqueness checks and
//! dependents are index lookups whatever the type.

use super::{col, from_micros, micros, other, Sql, CHUNK};
use crate::objects::query::{Cmp, Col, Cond, ObjectQuery};
use crate::objects::{Change, ChangeFilter, Obj, ObjectTx, Ref, Referrer};
use crate::store::{Result, StoreError};
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, Row};
use serde_json::{Map, Value};

pub(super) const OBJECT_SELECT: &str = "select o.id, o.data, o.created_at, o.updated_at from objects o";

pub(super) fn obj_from_row(row: &Row<'_>) -> Result<Obj> {
    let data: String = col(row, "data")?;
    let data: Map<String, Value> = serde_json::from_str(&data).map_err(super::json_err)?;
    Ok(Obj {
        id: col(row, "id")?,
        data,
        created: from_micros(col(row, "created_at")?),
        last_updated: from_micros(col(row, "updated_at")?),
    })
}

fn path(field: &str) -> String {
    format!("$.{field}")
}

fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Null => SqlValue::Null,
        other => SqlValue::Text(other.to_string()),
    }
}

fn push_value(qb: &mut Sql, v: &Value) {
    qb.bind(sql_value(v));
}

fn push_col(qb: &mut Sql, col: &Col) {
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
            qb.push("json_extract(o.data, ").bind(path(f)).push(")");
        }
        Col::Ref(f, _) | Col::Key(f) => {
            qb.push("json_extract(o.data, ").bind(path(f)).push(")");
        }
        Col::IpKey(f) => {
            qb.push("herald_ip_key(json_extract(o.data, ").bind(path(f)).push("))");
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

fn push_cond(qb: &mut Sql, ty: &str, c: &Cond) {
    if c.col == Col::Tag {
        qb.push(
            " and exists (select 1 from object_refs r where r.type = o.type and r.id = o.id and r.field = 'tags' and r.target_id in ",
        );
        let ids: Vec<i64> = c.values.iter().filter_map(Value::as_i64).collect();
        qb.ids(&ids);
        qb.push(")");
        return;
    }
    match (&c.col, c.cmp) {
        (Col::Ref(field, target), Cmp::In) => {
            let ids: Vec<i64> = c.values.iter().filter_map(Value::as_i64).collect();
            qb.push(" and o.id in (select r.id from object_refs r where r.target_type = ")
                .bind(target.clone())
                .push(" and r.target_id in ");
            qb.ids(&ids);
            qb.push(" and r.type = ")
                .bind(ty.to_string())
                .push(" and r.field = ")
                .bind(field.clone())
                .push(")");
            return;
        }
        (Col::Key(field), Cmp::In) => {
            let keys: Vec<String> = c
                .values
                .iter()
                .map(|v| Value::Array(vec![v.clone()]).to_string())
                .collect();
            qb.push(" and o.id in (select k.id from object_keys k where k.type = ")
                .bind(ty.to_string())
                .push(" and k.rule = ")
                .bind(field.clone())
                .push(" and k.value in ");
            qb.list(&keys);
            qb.push(")");
            return;
        }
        _ => {}
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
                qb.push(", '') like ").bind(like_pattern(c.cmp, v)).push(" escape '\\'");
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
fn push_where(qb: &mut Sql, ty: &str, q: &ObjectQuery) {
    qb.push(" where o.type = ").bind(ty.to_string());
    for c in &q.conds {
        push_cond(qb, ty, c);
    }
    if let Some((text, fields)) = &q.search {
        qb.push(" and (0");
        for f in fields {
            qb.push(" or ");
            if f == "id" {
                qb.push("cast(o.id as text) = ").bind(text.clone());
                continue;
            }
            qb.push("coalesce(json_extract(o.data, ")
                .bind(path(f))
                .push("), '') like ")
                .bind(like_pattern(Cmp::IContains, &Value::String(text.clone())))
                .push(" escape '\\'");
        }
        qb.push(")");
    }
}

pub(super) fn list(conn: &Connection, ty: &str, q: &ObjectQuery, limit: i64, offset: i64) -> Result<(i64, Vec<Obj>)> {
    let mut count = Sql::new("select count(*) from objects o");
    push_where(&mut count, ty, q);
    let total: i64 = count.scalar(conn)?;
    let mut qb = Sql::new(OBJECT_SELECT);
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
    qb.push(" limit ").bind(limit).push(" offset ").bind(offset);
    Ok((total, qb.rows(conn, obj_from_row)?))
}

pub(super) fn get(conn: &Connection, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if let [id] = ids {
        let mut stmt = conn
            .prepare_cached(
                "select o.id, o.data, o.created_at, o.updated_at from objects o where o.type = ? and o.id = ?",
            )
            .map_err(other)?;
        let mut rows = stmt.query(params![ty, id]).map_err(other)?;
        return match rows.next().map_err(other)? {
            Some(row) => Ok(vec![obj_from_row(row)?]),
            None => Ok(Vec::new()),
        };
    }
    let mut qb = Sql::new(OBJECT_SELECT);
    qb.push(" where o.type = ").bind(ty.to_string()).push(" and o.id in ");
    qb.ids(ids);
    qb.rows(conn, obj_from_row)
}

const CHANGE_SELECT: &str = "select id, time, user_id, user_name, request_id, action, object_type, object_id, \
     object_repr, prechange_data, postchange_data from object_changes c";

fn change_from_row(row: &Row<'_>) -> Result<Change> {
    let json = |name: &str| -> Result<Value> {
        let text: Option<String> = col(row, name)?;
        match text {
            Some(t) => serde_json::from_str(&t).map_err(super::json_err),
            None => Ok(Value::Null),
        }
    };
    Ok(Change {
        id: col(row, "id")?,
        time: from_micros(col(row, "time")?),
        user_id: col(row, "user_id")?,
        user_name: col(row, "user_name")?,
        request_id: col(row, "request_id")?,
        action: col(row, "action")?,
        object_type: col(row, "object_type")?,
        object_id: col(row, "object_id")?,
        object_repr: col(row, "object_repr")?,
        prechange_data: json("prechange_data")?,
        postchange_data: json("postchange_data")?,
    })
}

fn push_change_filter(qb: &mut Sql, f: &ChangeFilter) {
    qb.push(" where 1 = 1");
    for (column, ids) in [
        ("c.id", &f.id),
        ("c.object_id", &f.object_id),
        ("c.user_id", &f.user_id),
    ] {
        if !ids.is_empty() {
            qb.push(&format!(" and {column} in "));
            qb.ids(ids);
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
        qb.push(&format!(" and {column} in "));
        qb.list(values);
    }
}

pub(super) fn changes(conn: &Connection, f: &ChangeFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Change>)> {
    let mut count = Sql::new("select count(*) from object_changes c");
    push_change_filter(&mut count, f);
    let total: i64 = count.scalar(conn)?;
    let mut qb = Sql::new(CHANGE_SELECT);
    push_change_filter(&mut qb, f);
    qb.push(" order by c.id desc limit ")
        .bind(limit)
        .push(" offset ")
        .bind(offset);
    Ok((total, qb.rows(conn, change_from_row)?))
}

/// Object writes inside the store's write transaction.
pub(super) struct SqliteObjectTx<'c> {
    pub conn: &'c mut Connection,
}

#[async_trait]
impl ObjectTx for SqliteObjectTx<'_> {
    async fn get(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            out.extend(get(self.conn, ty, chunk)?);
        }
        Ok(out)
    }

    async fn scan(&mut self, ty: &str) -> Result<Vec<Obj>> {
        let mut qb = Sql::new(OBJECT_SELECT);
        qb.push(" where o.type = ").bind(ty.to_string()).push(" order by o.id");
        qb.rows(self.conn, obj_from_row)
    }

    async fn find(&mut self, ty: &str, attrs: &[(String, Value)], limit: i64) -> Result<Vec<i64>> {
        let mut qb = Sql::new("select o.id from objects o where o.type = ");
        qb.bind(ty.to_string());
        for (field, value) in attrs {
            qb.push(" and json_extract(o.data, ").bind(path(field)).push(")");
            if value.is_null() {
                qb.push(" is null");
            } else {
                qb.push(" = ");
                push_value(&mut qb, value);
            }
        }
        qb.push(" order by o.id limit ").bind(limit);
        qb.rows(self.conn, |r| col(r, "id"))
    }

    async fn next_id(&mut self, ty: &str) -> Result<i64> {
        self.conn
            .prepare_cached(
                "insert into object_sequences (type, last_id) values (?, 1) \
                 on conflict (type) do update set last_id = last_id + 1 returning last_id",
            )
            .and_then(|mut s| s.query_row(params![ty], |r| r.get(0)))
            .map_err(other)
    }

    async fn key_owner(&mut self, ty: &str, rule: &str, value: &str) -> Result<Option<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("select id from object_keys where type = ? and rule = ? and value = ?")
            .map_err(other)?;
        let mut rows = stmt.query(params![ty, rule, value]).map_err(other)?;
        match rows.next().map_err(other)? {
            Some(row) => Ok(Some(row.get(0).map_err(other)?)),
            None => Ok(None),
        }
    }

    async fn save(&mut self, ty: &str, obj: &Obj, keys: &[(String, String)], refs: &[Ref], new: bool) -> Result<()> {
        let data = serde_json::to_string(&obj.data).map_err(|e| StoreError::Other(e.into()))?;
        self.conn
            .prepare_cached(
                "insert into objects (type, id, data, created_at, updated_at) values (?, ?, ?, ?, ?) \
                 on conflict (type, id) do update set data = excluded.data, updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute(params![ty, obj.id, data, micros(obj.created), micros(obj.last_updated)]))
            .map_err(other)?;
        if !new {
            self.clear(ty, obj.id)?;
        }
        let mut insert_key = self
            .conn
            .prepare_cached("insert into object_keys (type, rule, value, id) values (?, ?, ?, ?)")
            .map_err(other)?;
        for (rule, value) in keys {
            insert_key.execute(params![ty, rule, value, obj.id]).map_err(other)?;
        }
        let mut insert_ref = self
            .conn
            .prepare_cached("insert into object_refs (type, id, field, target_type, target_id) values (?, ?, ?, ?, ?)")
            .map_err(other)?;
        for r in refs {
            insert_ref
                .execute(params![ty, obj.id, r.field, r.target_type, r.target_id])
                .map_err(other)?;
        }
        Ok(())
    }

    async fn remove(&mut self, ty: &str, id: i64) -> Result<()> {
        self.clear(ty, id)?;
        self.conn
            .prepare_cached("delete from objects where type = ? and id = ?")
            .and_then(|mut s| s.execute(params![ty, id]))
            .map_err(other)?;
        Ok(())
    }

    async fn referrers(&mut self, ty: &str, id: i64) -> Result<Vec<Referrer>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "select type, id, field from object_refs where target_type = ? and target_id = ? order by type, id",
            )
            .map_err(other)?;
        let rows = stmt
            .query_map(params![ty, id], |r| {
                Ok(Referrer {
                    object_type: r.get(0)?,
                    id: r.get(1)?,
                    field: r.get(2)?,
                })
            })
            .map_err(other)?;
        rows.map(|r| r.map_err(other)).collect()
    }

    async fn add_changes(&mut self, changes: &[Change]) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "insert into object_changes (time, user_id, user_name, request_id, action, object_type, object_id, \
                 object_repr, prechange_data, postchange_data) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(other)?;
        for c in changes {
            let enc = |v: &Value| (!v.is_null()).then(|| v.to_string());
            stmt.execute(params![
                micros(c.time),
                c.user_id,
                c.user_name,
                c.request_id,
                c.action,
                c.object_type,
                c.object_id,
                c.object_repr,
                enc(&c.prechange_data),
                enc(&c.postchange_data),
            ])
            .map_err(other)?;
        }
        Ok(())
    }
}

impl SqliteObjectTx<'_> {
    /// Drops an object's keys and references (before they are written anew, or with it).
    fn clear(&mut self, ty: &str, id: i64) -> Result<()> {
        for sql in [
            "delete from object_keys where type = ? and id = ?",
            "delete from object_refs where type = ? and id = ?",
        ] {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![ty, id]))
                .map_err(other)?;
        }
        Ok(())
    }
}
