//! The inventory: objects of the catalog's types, written through the REST API. Every write
//! records an object change and an event, and the event's deliveries, in one transaction.
//!
//! Objects are stored in NetBox's minimal form (foreign keys as ids, choices as raw values,
//! tags as ids); the REST view and the change snapshots are computed from it.

pub mod engine;
pub mod ipam;
pub mod query;
pub mod values;
pub mod view;

use crate::changes::Change;
use crate::error::StoreError;
use crate::page::Page;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use query::ObjectQuery;
use serde_json::{Map, Value};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj {
    pub id: i64,
    /// Writable fields in their stored form; `tags` is a sorted list of tag ids.
    pub data: Map<String, Value>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

impl Obj {
    /// Tag ids.
    pub fn tag_ids(&self) -> Vec<i64> {
        self.data
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }
}

/// A foreign key (or tag) from one object to another, kept so deletes find dependents.
#[derive(Debug, Clone, PartialEq)]
pub struct Ref {
    pub field: String,
    pub target_type: String,
    pub target_id: i64,
}

/// An object that points at another: its type, id and the field doing so.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub object_type: String,
    pub id: i64,
    pub field: String,
}

/// The storage primitives object writes need, inside one write transaction. Each backend
/// implements them (as part of `store::WriteTx`); the rules live in `engine`.
#[async_trait]
pub trait ObjectTx: Send {
    /// The objects of `ty` with these ids that exist.
    async fn get(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>>;
    /// Every object of `ty`.
    async fn scan(&mut self, ty: &str) -> Result<Vec<Obj>>;
    /// Ids of objects of `ty` whose stored fields equal all of `attrs` (null matches null),
    /// at most `limit`, lowest first.
    async fn find(&mut self, ty: &str, attrs: &[(String, Value)], limit: i64) -> Result<Vec<i64>>;
    /// A new id for an object of `ty` (never reused).
    async fn next_id(&mut self, ty: &str) -> Result<i64>;
    /// Which object of `ty` holds `value` (see `unique_key`) under unique rule `rule`.
    async fn key_owner(&mut self, ty: &str, rule: &str, value: &str) -> Result<Option<i64>>;
    /// Inserts or replaces an object with its unique keys and references; `new` when the
    /// object was never saved (nothing to replace). When another object holds one of the keys
    /// (a concurrent request took it first), returns that key's rule and the request must
    /// fail; what was written is rolled back with it.
    async fn save(
        &mut self,
        ty: &str,
        obj: &Obj,
        keys: &[(String, String)],
        refs: &[Ref],
        new: bool,
    ) -> Result<Option<String>>;
    /// Locks objects for the rest of the transaction: `Share` against deletion (a foreign key
    /// about to point at them), `Update` against any other write (about to change or delete
    /// them, or allocate from them). Backends that run one write transaction at a time need
    /// do nothing.
    async fn lock(&mut self, ty: &str, ids: &[i64], mode: Lock) -> Result<()>;
    /// Writes the network index's rows of an object just saved (its address and prefix fields,
    /// `values::net_span`); saving it again drops them first.
    async fn set_nets(&mut self, ty: &str, id: i64, nets: &[Net]) -> Result<()>;
    /// Deletes an object with its keys and references.
    async fn remove(&mut self, ty: &str, id: i64) -> Result<()>;
    /// Objects that reference `ty` `id`, by type then id.
    async fn referrers(&mut self, ty: &str, id: i64) -> Result<Vec<Referrer>>;
    async fn add_changes(&mut self, changes: &[Change]) -> Result<()>;
}

/// Reading objects outside a write transaction: what lists, details and views need.
#[async_trait]
pub trait ObjectRead: Send + Sync {
    /// One page of the objects of `ty` matching `query`, and how many match in all.
    async fn list_objects(&self, ty: &str, query: &ObjectQuery, limit: i64, offset: i64) -> Result<Page<Obj>>;
    /// The objects of `ty` with these ids that exist.
    async fn get_objects(&self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>>;
}

/// How `ObjectTx::lock` locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Share,
    Update,
}

/// Reads objects by id, in or out of a transaction: what rendering views needs.
#[async_trait]
pub trait Loader: Send {
    async fn load(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>>;
}

/// A loader over a write transaction.
pub struct TxLoader<'a>(pub &'a mut dyn ObjectTx);

#[async_trait]
impl Loader for TxLoader<'_> {
    async fn load(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        self.0.get(ty, ids).await
    }
}

/// A loader over committed data.
pub struct ReadLoader<'a>(pub &'a dyn ObjectRead);

#[async_trait]
impl Loader for ReadLoader<'_> {
    async fn load(&mut self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        self.0.get_objects(ty, ids).await
    }
}

/// An address or prefix field of an object in the network index: the span it covers and its
/// mask length (`values::net_span`).
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    pub field: String,
    pub lo: String,
    pub hi: String,
    pub len: u8,
}

/// How the values of a unique rule are stored in the unique-keys index: a JSON array of the
/// rule's values in the rule's field order (`["ams1"]`, `[3, "MX204"]`). Object writes store
/// keys this way and filters look them up this way.
pub fn unique_key(values: &[&Value]) -> String {
    Value::Array(values.iter().map(|v| (*v).clone()).collect()).to_string()
}

/// Times in change snapshots, as Django's JSON encoder writes them: milliseconds and `Z`.
pub fn django_time(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_subsec_micros() / 1000;
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!("{}.{ms:03}Z", t.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Replaces relative `url`s (`/api/...`) and `display_url`s inside a view with absolute ones
/// under `origin`, as NetBox's REST responses carry them (webhook payloads keep them relative).
pub fn absolutize(value: &mut Value, origin: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if (k == "url" || k == "display_url") && s.starts_with('/') => {
                        *s = format!("{origin}{s}")
                    }
                    _ => absolutize(v, origin),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| absolutize(v, origin)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn django_times() {
        let t = Utc.with_ymd_and_hms(2020, 2, 25, 15, 10, 26).unwrap();
        assert_eq!(django_time(t), "2020-02-25T15:10:26Z");
        let t = t + chrono::Duration::microseconds(10582);
        assert_eq!(django_time(t), "2020-02-25T15:10:26.010Z");
    }
}
