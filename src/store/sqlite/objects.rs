//! Objects, the change log and the write transaction in SQLite: one `objects` table (data as
//! JSON in the minimal form), unique keys and references in their own indexed tables, so
//! uniqueness checks and dependents are index lookups whatever the type.

use super::events::{insert_batches, insert_deliveries, insert_event};
use super::{map_err, micros, sql, sql_value, Run, CHUNK};
use crate::changes::Change;
use crate::events::Event;
use crate::objects::{Lock, Net, Obj, ObjectTx, Ref, Referrer};
use crate::queue::Batched;
use crate::store::rows::{self, change_args, json_err, Columns, CHANGE_COLUMNS, OBJECT_SELECT};
use crate::store::sql::object_find;
use crate::store::{Result, TriggerVersions, WriteTx};
use crate::webhooks::{EventRule, Firing, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection};
use serde_json::Value;

fn get(conn: &Connection, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = sql(OBJECT_SELECT);
        q.push(" where o.type = ")
            .bind(ty)
            .push(" and o.id in ")
            .list(chunk.iter().copied());
        out.extend(q.rows(conn, |r| rows::obj(r))?);
    }
    Ok(out)
}

/// Enabled records of a kind (in the caller's transaction).
pub(super) fn enabled<R: rows::Record>(conn: &Connection) -> Result<Vec<R>> {
    sql(&format!("select * from {} where enabled = 1 order by id", R::TABLE)).rows(conn, |r| R::read(r))
}

/// The write transaction: a connection inside BEGIN IMMEDIATE on the writer thread.
pub(super) struct SqliteTx<'c> {
    conn: &'c mut Connection,
    /// Whether deliveries were queued (workers are woken after the commit).
    pub queued: bool,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c mut Connection) -> SqliteTx<'c> {
        SqliteTx { conn, queued: false }
    }

    /// Drops an object's keys and references (before they are written anew, or with it).
    fn clear(&mut self, ty: &str, id: i64) -> Result<()> {
        for text in [
            "delete from object_keys where type = ? and id = ?",
            "delete from object_refs where type = ? and id = ?",
            "delete from object_nets where type = ? and id = ?",
        ] {
            self.conn
                .prepare_cached(text)
                .and_then(|mut s| s.execute(params![ty, id]))
                .map_err(map_err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectTx for SqliteTx<'_> {
    async fn get(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        get(self.conn, ty, ids)
    }

    async fn scan(&mut self, ty: &str) -> Result<Vec<Obj>> {
        let mut q = sql(OBJECT_SELECT);
        q.push(" where o.type = ").bind(ty).push(" order by o.id");
        q.rows(self.conn, |r| rows::obj(r))
    }

    async fn find(&mut self, ty: &str, attrs: &[(String, Value)], limit: i64) -> Result<Vec<i64>> {
        let mut q = sql("select o.id from objects o");
        object_find(&mut q, ty, attrs);
        q.push(" order by o.id limit ").bind(limit);
        q.rows(self.conn, |r| r.int("id"))
    }

    async fn next_id(&mut self, ty: &str) -> Result<i64> {
        self.conn
            .prepare_cached(
                "insert into object_sequences (type, last_id) values (?, 1) \
                 on conflict (type) do update set last_id = last_id + 1 returning last_id",
            )
            .and_then(|mut s| s.query_row(params![ty], |r| r.get(0)))
            .map_err(map_err)
    }

    async fn key_owner(&mut self, ty: &str, rule: &str, value: &str) -> Result<Option<i64>> {
        let mut q = sql("select id from object_keys where type = ");
        q.bind(ty)
            .push(" and rule = ")
            .bind(rule)
            .push(" and value = ")
            .bind(value);
        Ok(q.rows(self.conn, |r| r.int("id"))?.pop())
    }

    async fn save(
        &mut self,
        ty: &str,
        obj: &Obj,
        keys: &[(String, String)],
        refs: &[Ref],
        new: bool,
    ) -> Result<Option<String>> {
        let data = serde_json::to_string(&obj.data).map_err(json_err)?;
        self.conn
            .prepare_cached(
                "insert into objects (type, id, data, created_at, updated_at) values (?, ?, ?, ?, ?) \
                 on conflict (type, id) do update set data = excluded.data, updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute(params![ty, obj.id, data, micros(obj.created), micros(obj.last_updated)]))
            .map_err(map_err)?;
        if !new {
            self.clear(ty, obj.id)?;
        }
        let mut insert_key = self
            .conn
            .prepare_cached(
                "insert into object_keys (type, rule, value, id) values (?, ?, ?, ?) on conflict do nothing",
            )
            .map_err(map_err)?;
        for (rule, value) in keys {
            if insert_key.execute(params![ty, rule, value, obj.id]).map_err(map_err)? == 0 {
                return Ok(Some(rule.clone()));
            }
        }
        let mut insert_ref = self
            .conn
            .prepare_cached("insert into object_refs (type, id, field, target_type, target_id) values (?, ?, ?, ?, ?)")
            .map_err(map_err)?;
        for r in refs {
            insert_ref
                .execute(params![ty, obj.id, r.field, r.target_type, r.target_id])
                .map_err(map_err)?;
        }
        Ok(None)
    }

    async fn lock(&mut self, _ty: &str, _ids: &[i64], _mode: Lock) -> Result<()> {
        // One write transaction at a time: nothing can change under this one.
        Ok(())
    }

    async fn set_nets(&mut self, ty: &str, id: i64, nets: &[Net]) -> Result<()> {
        let mut insert = self
            .conn
            .prepare_cached("insert into object_nets (type, id, field, lo, hi, len) values (?, ?, ?, ?, ?, ?)")
            .map_err(map_err)?;
        for n in nets {
            insert
                .execute(params![ty, id, n.field, n.lo, n.hi, n.len])
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn remove(&mut self, ty: &str, id: i64) -> Result<()> {
        self.clear(ty, id)?;
        self.conn
            .prepare_cached("delete from objects where type = ? and id = ?")
            .and_then(|mut s| s.execute(params![ty, id]))
            .map_err(map_err)?;
        Ok(())
    }

    async fn referrers(&mut self, ty: &str, id: i64) -> Result<Vec<Referrer>> {
        let mut q = sql("select type, id, field from object_refs where target_type = ");
        q.bind(ty).push(" and target_id = ").bind(id).push(" order by type, id");
        q.rows(self.conn, |r| {
            Ok(Referrer {
                object_type: r.text("type")?,
                id: r.int("id")?,
                field: r.text("field")?,
            })
        })
    }

    async fn add_changes(&mut self, changes: &[Change]) -> Result<()> {
        let text = format!(
            "insert into object_changes ({}) values ({})",
            CHANGE_COLUMNS.join(", "),
            ["?"; CHANGE_COLUMNS.len()].join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&text).map_err(map_err)?;
        for c in changes {
            stmt.execute(params_from_iter(change_args(c).iter().map(sql_value)))
                .map_err(map_err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl WriteTx for SqliteTx<'_> {
    async fn trigger_versions(&mut self) -> Result<TriggerVersions> {
        sql(rows::TRIGGER_VERSIONS)
            .rows(self.conn, |r| rows::trigger_version(r))
            .map(rows::split_trigger_versions)
    }

    async fn enabled_webhooks(&mut self) -> Result<Vec<Webhook>> {
        enabled(self.conn)
    }

    async fn enabled_event_rules(&mut self) -> Result<Vec<EventRule>> {
        enabled(self.conn)
    }

    async fn queue_events(
        &mut self,
        events: &[(&Event, &[Firing])],
        batches: &[Batched],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(events.len());
        for (event, webhooks) in events {
            let id = insert_event(self.conn, event, now)?;
            if !webhooks.is_empty() {
                insert_deliveries(self.conn, id, event, webhooks, now)?;
                self.queued = true;
            }
            ids.push(id);
        }
        if !batches.is_empty() {
            insert_batches(self.conn, events, batches, &ids, now)?;
            self.queued = true;
        }
        Ok(ids)
    }
}

#[async_trait]
impl crate::store::exec::Tx for SqliteTx<'_> {
    fn dialect(&self) -> &'static dyn crate::store::sql::Dialect {
        &super::DIALECT
    }

    async fn each_row(&mut self, q: &super::Sql, each: &mut crate::store::exec::EachRow<'_>) -> Result<()> {
        q.rows(self.conn, |r| each(r)).map(|_| ())
    }

    async fn exec(&mut self, q: &super::Sql) -> Result<u64> {
        q.execute(self.conn).map(|n| n as u64)
    }
}
