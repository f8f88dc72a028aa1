//! Objects, the change log and the write transaction in PostgreSQL: the same tables as on
//! SQLite (objects' data as jsonb). Write transactions run side by side in READ COMMITTED:
//! unique keys are claimed by inserting them (`on conflict do nothing` waits for a concurrent
//! holder and then sees its key), and `lock` takes row locks where the engine asks for them.

use super::events::insert_events;
use super::{execute, fetch, insert_all, insert_rows, query, scalar, sql};
use crate::changes::Change;
use crate::events::Event;
use crate::objects::{Lock, Net, Obj, ObjectTx, Ref, Referrer};
use crate::store::rows::{self, change_args, Columns, OBJECT_SELECT};
use crate::store::sql::{object_find, Arg, Sql};
use crate::store::{Result, TriggerVersions, WriteTx};
use crate::webhooks::{EventRule, Firing, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// The columns of `object_keys`, `object_refs` and `object_changes` with their types (the
/// last in the order of `rows::change_args`).
const KEY_COLUMNS: [(&str, &str); 4] = [("type", "text"), ("rule", "text"), ("value", "text"), ("id", "bigint")];
const REF_COLUMNS: [(&str, &str); 5] = [
    ("type", "text"),
    ("id", "bigint"),
    ("field", "text"),
    ("target_type", "text"),
    ("target_id", "bigint"),
];
const NET_COLUMNS: [(&str, &str); 6] = [
    ("type", "text"),
    ("id", "bigint"),
    ("field", "text"),
    ("lo", "text"),
    ("hi", "text"),
    ("len", "integer"),
];
const CHANGE_COLUMNS: [(&str, &str); 10] = [
    ("time", "bigint"),
    ("user_id", "bigint"),
    ("user_name", "text"),
    ("request_id", "text"),
    ("action", "text"),
    ("object_type", "text"),
    ("object_id", "bigint"),
    ("object_repr", "text"),
    ("prechange_data", "text"),
    ("postchange_data", "text"),
];

fn get_sql(ty: &str, ids: &[i64]) -> Sql {
    let mut q = sql(OBJECT_SELECT);
    q.push(" where o.type = ")
        .bind(ty)
        .push(" and o.id in ")
        .ints(ids.iter().copied())
        .push(" order by o.id");
    q
}

async fn get<C: GenericClient>(c: &C, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
    fetch(c, &get_sql(ty, ids), |r| rows::obj(r)).await
}

/// Enabled records of a kind (in the caller's transaction).
pub(super) async fn enabled<R: rows::Record, C: GenericClient>(c: &C) -> Result<Vec<R>> {
    fetch(
        c,
        &sql(&format!("select * from {} where enabled order by id", R::TABLE)),
        |r| R::read(r),
    )
    .await
}

/// The write transaction.
pub(super) struct PgTx<'c> {
    tx: Transaction<'c>,
    /// Types numbered by a sequence of their own.
    sequenced: Arc<RwLock<HashSet<String>>>,
    /// Whether deliveries were queued (workers are woken with the commit).
    queued: bool,
    /// Change records not written yet: they go with the events' statement (or before the
    /// commit, `flush`), one round trip fewer per write.
    changes: Vec<Vec<Arg>>,
}

impl<'c> PgTx<'c> {
    pub fn new(tx: Transaction<'c>, sequenced: Arc<RwLock<HashSet<String>>>) -> PgTx<'c> {
        PgTx {
            tx,
            sequenced,
            queued: false,
            changes: Vec::new(),
        }
    }

    /// Writes what is still held back (the change records).
    pub async fn flush(&mut self) -> Result<()> {
        if !self.changes.is_empty() {
            let rows = std::mem::take(&mut self.changes);
            insert_rows(&self.tx, "object_changes", &CHANGE_COLUMNS, &rows).await?;
        }
        Ok(())
    }

    /// The transaction, to commit, and whether it queued deliveries.
    pub fn finish(self) -> (Transaction<'c>, bool) {
        (self.tx, self.queued)
    }

    /// Drops an object's keys and references (before they are written anew, or with it).
    async fn clear(&mut self, ty: &str, id: i64) -> Result<()> {
        for table in ["object_keys", "object_refs", "object_nets"] {
            let mut q = sql(&format!("delete from {table} where type = "));
            q.bind(ty).push(" and id = ").bind(id);
            execute(&self.tx, &q).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectTx for PgTx<'_> {
    async fn get(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        get(&self.tx, ty, ids).await
    }

    async fn scan(&mut self, ty: &str) -> Result<Vec<Obj>> {
        let mut q = sql(OBJECT_SELECT);
        q.push(" where o.type = ").bind(ty).push(" order by o.id");
        fetch(&self.tx, &q, |r| rows::obj(r)).await
    }

    async fn find(&mut self, ty: &str, attrs: &[(String, Value)], limit: i64) -> Result<Vec<i64>> {
        let mut q = sql("select o.id from objects o");
        object_find(&mut q, ty, attrs);
        q.push(" order by o.id limit ").bind(limit);
        fetch(&self.tx, &q, |r| r.int("id")).await
    }

    async fn next_id(&mut self, ty: &str) -> Result<i64> {
        let seq = super::migrate::sequence_name(ty);
        let mut sequenced = crate::sync::read(&self.sequenced).contains(ty);
        if !sequenced {
            // Readied by another process (or not at all).
            let mut q = sql("select to_regclass(");
            q.bind(seq.as_str()).push("::text) is not null");
            sequenced = scalar(&self.tx, &q).await?;
        }
        if sequenced {
            // Outside the transaction's locks: an id a rollback leaves unused is not reused
            // (a gap, as in NetBox).
            let mut q = sql("select nextval(");
            q.bind(seq).push("::text::regclass)");
            return scalar(&self.tx, &q).await;
        }
        // The row stays locked until the commit: creations of one type take turns, and an id
        // is never given twice.
        let mut q = sql("insert into object_sequences (type, last_id) values (");
        q.bind(ty)
            .push(", 1) on conflict (type) do update set last_id = object_sequences.last_id + 1 returning last_id");
        scalar(&self.tx, &q).await
    }

    async fn key_owner(&mut self, ty: &str, rule: &str, value: &str) -> Result<Option<i64>> {
        let mut q = sql("select id from object_keys where type = ");
        q.bind(ty)
            .push(" and rule = ")
            .bind(rule)
            .push(" and value = ")
            .bind(value);
        Ok(fetch(&self.tx, &q, |r| r.int("id")).await?.pop())
    }

    async fn save(
        &mut self,
        ty: &str,
        obj: &Obj,
        keys: &[(String, String)],
        refs: &[Ref],
        new: bool,
    ) -> Result<Option<String>> {
        let mut q = sql("insert into objects (type, id, data, created_at, updated_at) values (");
        q.bind(ty)
            .push(", ")
            .bind(obj.id)
            .push(", (")
            .bind(rows::json_arg(&obj.data)?)
            .push("::text)::jsonb, ")
            .bind(obj.created)
            .push(", ")
            .bind(obj.last_updated)
            .push(") on conflict (type, id) do update set data = excluded.data, updated_at = excluded.updated_at");
        if !new {
            self.clear(ty, obj.id).await?;
        }
        // The object, its keys and its references in one statement. A key another object holds
        // is not inserted (after a concurrent holder commits, its key is seen as taken) and is
        // missing from what comes back; the caller then rolls everything back.
        let key_rows: Vec<Vec<Arg>> = keys
            .iter()
            .map(|(rule, value)| vec![Arg::from(ty), Arg::from(rule), Arg::from(value), Arg::Int(obj.id)])
            .collect();
        let ref_rows: Vec<Vec<Arg>> = refs
            .iter()
            .map(|r| {
                vec![
                    Arg::from(ty),
                    Arg::Int(obj.id),
                    Arg::from(&r.field),
                    Arg::from(&r.target_type),
                    Arg::Int(r.target_id),
                ]
            })
            .collect();
        let mut tables = Vec::new();
        if !key_rows.is_empty() {
            tables.push((
                "object_keys",
                &KEY_COLUMNS[..],
                &key_rows[..],
                " on conflict do nothing returning rule",
            ));
        }
        if !ref_rows.is_empty() {
            tables.push(("object_refs", &REF_COLUMNS[..], &ref_rows[..], ""));
        }
        let then = if key_rows.is_empty() {
            "select null::text as rule where false"
        } else {
            "select rule from i0"
        };
        let inserted = insert_all(&self.tx, Some(&q), &tables, then).await?;
        let inserted: Vec<String> = inserted.iter().map(|r| r.text("rule")).collect::<Result<_>>()?;
        if let Some((rule, _)) = keys.iter().find(|(rule, _)| !inserted.contains(rule)) {
            return Ok(Some(rule.clone()));
        }
        Ok(None)
    }

    async fn lock(&mut self, ty: &str, ids: &[i64], mode: Lock) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // In id order, so transactions locking the same objects take them alike. A delete
        // takes the rows `for update`, which waits for every `for key share`.
        let mut q = sql("select o.id from objects o where o.type = ");
        q.bind(ty)
            .push(" and o.id in ")
            .ints(ids.iter().copied())
            .push(match mode {
                Lock::Share => " order by o.id for key share",
                Lock::Update => " order by o.id for update",
            });
        query(&self.tx, &q).await.map(|_| ())
    }

    async fn set_nets(&mut self, ty: &str, id: i64, nets: &[Net]) -> Result<()> {
        let rows: Vec<Vec<Arg>> = nets
            .iter()
            .map(|n| {
                vec![
                    Arg::from(ty),
                    Arg::Int(id),
                    Arg::from(&n.field),
                    Arg::from(&n.lo),
                    Arg::from(&n.hi),
                    Arg::Int(i64::from(n.len)),
                ]
            })
            .collect();
        insert_rows(&self.tx, "object_nets", &NET_COLUMNS, &rows).await
    }

    async fn remove(&mut self, ty: &str, id: i64) -> Result<()> {
        self.clear(ty, id).await?;
        let mut q = sql("delete from objects where type = ");
        q.bind(ty).push(" and id = ").bind(id);
        execute(&self.tx, &q).await.map(|_| ())
    }

    async fn referrers(&mut self, ty: &str, id: i64) -> Result<Vec<Referrer>> {
        let mut q = sql("select type, id, field from object_refs where target_type = ");
        q.bind(ty).push(" and target_id = ").bind(id).push(" order by type, id");
        fetch(&self.tx, &q, |r| {
            Ok(Referrer {
                object_type: r.text("type")?,
                id: r.int("id")?,
                field: r.text("field")?,
            })
        })
        .await
    }

    async fn add_changes(&mut self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.changes.extend(changes.iter().map(|c| change_args(c).into()));
        Ok(())
    }
}

#[async_trait]
impl WriteTx for PgTx<'_> {
    async fn trigger_versions(&mut self) -> Result<TriggerVersions> {
        fetch(&self.tx, &sql(rows::TRIGGER_VERSIONS), |r| rows::trigger_version(r))
            .await
            .map(rows::split_trigger_versions)
    }

    async fn enabled_webhooks(&mut self) -> Result<Vec<Webhook>> {
        enabled(&self.tx).await
    }

    async fn enabled_event_rules(&mut self) -> Result<Vec<EventRule>> {
        enabled(&self.tx).await
    }

    async fn queue_events(
        &mut self,
        events: &[(&Event, &[Firing])],
        batches: &[crate::queue::Batched],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let changes = std::mem::take(&mut self.changes);
        let ids = insert_events(&self.tx, events, batches, now, (&CHANGE_COLUMNS, &changes)).await?;
        self.queued |= !batches.is_empty() || events.iter().any(|(_, webhooks)| !webhooks.is_empty());
        Ok(ids)
    }
}

#[async_trait]
impl crate::store::exec::Tx for PgTx<'_> {
    fn dialect(&self) -> &'static dyn crate::store::sql::Dialect {
        &super::DIALECT
    }

    async fn each_row(&mut self, q: &Sql, each: &mut crate::store::exec::EachRow<'_>) -> Result<()> {
        for row in query(&self.tx, q).await? {
            each(&row)?;
        }
        Ok(())
    }

    async fn exec(&mut self, q: &Sql) -> Result<u64> {
        execute(&self.tx, q).await
    }
}
