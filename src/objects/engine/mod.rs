//! The rules of object writes, over any backend's `ObjectTx`: validation, foreign keys,
//! uniqueness, PROTECT / CASCADE / SET_NULL, change records, and one event per object per
//! request (NetBox's coalescing). `body` reads request bodies; `delete` plans deletes.

mod body;
mod delete;
mod record;

use super::view::Related;
use super::{ipam, Lock, Obj, ObjectTx};
use crate::catalog::{Catalog, ObjectType};
use crate::changes::{Change, ChangeAction};
use crate::error::{StoreError, WriteError};
use crate::events::{netbox_timestamp, Event, EventKind};
use crate::validate::{type_name, FieldErrors};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// One operation of a request.
#[derive(Debug, Clone)]
pub enum Op {
    Create(Value),
    /// `partial`: PATCH (only the given fields); else PUT (required fields must be given).
    Update {
        id: i64,
        body: Value,
        partial: bool,
    },
    Delete(i64),
    /// Creates an IP address (the request's type) at the first free address of a prefix.
    CreateAvailableIp {
        prefix_id: i64,
        body: Value,
    },
}

/// The writes of one API request, on objects of one type.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub object_type: String,
    pub ops: Vec<Op>,
    /// A list body (errors are reported per item).
    pub bulk: bool,
    pub user_id: Option<i64>,
    pub username: String,
    pub request_id: String,
    /// The API request, as events show it (`{"id", "method", "path", "user"}`), if one made
    /// the change.
    pub request: Option<Value>,
    pub now: DateTime<Utc>,
}

/// What a request wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Per operation: the object's REST view after the request (relative `url`s); null for
    /// deletes.
    pub views: Vec<Value>,
    /// One per object touched, in the order first touched.
    pub events: Vec<Event>,
    pub changes: Vec<Change>,
}

/// Why one operation failed.
enum Fail {
    Fields(FieldErrors),
    Missing(i64),
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

/// Why a value given for a field was not taken.
enum Reject {
    /// The message for the field.
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Reject {
        Reject::Store(e)
    }
}

/// The object an event is about, as the request leaves it.
struct Touch {
    ty: String,
    id: i64,
    kind: EventKind,
    pre: Value,
    post: Value,
    /// The view before deletion (for deleted objects).
    last_view: Value,
}

/// One request being applied.
struct Run<'a> {
    catalog: &'a Catalog,
    tx: &'a mut dyn ObjectTx,
    req: &'a WriteRequest,
    changes: Vec<Change>,
    touched: Vec<Touch>,
    index: HashMap<(String, i64), usize>,
    /// Tags and foreign-key targets loaded so far.
    related: Related,
    /// Objects as this request saved them.
    latest: HashMap<(String, i64), Obj>,
    /// Per prefix being allocated from: its addresses in use.
    taken: HashMap<i64, HashSet<std::net::IpAddr>>,
    /// Objects locked against deletion so far (foreign keys point at them).
    shared: HashSet<(String, i64)>,
}

/// Applies `req` inside the caller's transaction; on error the caller rolls back.
pub async fn apply(catalog: &Catalog, tx: &mut dyn ObjectTx, req: &WriteRequest) -> Result<Written, WriteError> {
    let ty = catalog
        .get(&req.object_type)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("unknown object type {}", req.object_type)))?;
    let mut run = Run {
        catalog,
        tx,
        req,
        changes: Vec::new(),
        touched: Vec::new(),
        index: HashMap::new(),
        related: Related::new(),
        latest: HashMap::new(),
        taken: HashMap::new(),
        shared: HashSet::new(),
    };
    let results = run.apply_ops(ty).await?;
    run.finish(ty, &results).await
}

impl Run<'_> {
    /// Runs every operation; per operation, the id of the object it leaves. Field errors of
    /// all operations are gathered before failing.
    async fn apply_ops(&mut self, ty: &ObjectType) -> Result<Vec<Option<i64>>, WriteError> {
        let req = self.req;
        let mut results = Vec::with_capacity(req.ops.len());
        let mut errors = Vec::with_capacity(req.ops.len());
        let mut failed = false;
        for op in &req.ops {
            let outcome = match op {
                Op::Create(body) => self.create(ty, body).await.map(Some),
                Op::Update { id, body, partial } => self.update(ty, *id, body, *partial).await.map(Some),
                Op::Delete(id) => self.delete(ty, *id).await.map(|_| None),
                Op::CreateAvailableIp { prefix_id, body } => self.allocate(ty, *prefix_id, body).await.map(Some),
            };
            let error = match outcome {
                Ok(done) => {
                    results.push(done);
                    FieldErrors::default()
                }
                Err(Fail::Fields(e)) => e,
                Err(Fail::Missing(id)) if req.bulk => {
                    FieldErrors::single("id", format!("Object with ID {id} does not exist."))
                }
                Err(Fail::Missing(_)) => return Err(WriteError::NotFound),
                Err(Fail::Conflict(m)) => return Err(WriteError::Conflict(m)),
                Err(Fail::Store(e)) => return Err(WriteError::Store(e)),
            };
            if !error.is_empty() {
                failed = true;
                results.push(None);
            }
            errors.push(error);
        }
        if failed {
            return Err(WriteError::Invalid { errors, bulk: req.bulk });
        }
        Ok(results)
    }

    /// The views the request answers with, and one event per object touched.
    async fn finish(mut self, ty: &ObjectType, results: &[Option<i64>]) -> Result<Written, WriteError> {
        let views = self.final_views().await?;
        let result_views = results
            .iter()
            .map(|r| {
                r.and_then(|id| views.get(&(ty.name().to_string(), id)))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        let timestamp = netbox_timestamp(self.req.now);
        let events = self
            .touched
            .iter()
            .map(|t| Event {
                id: 0,
                kind: t.kind,
                timestamp: timestamp.clone(),
                object_type: t.ty.clone(),
                username: self.req.username.clone(),
                request_id: self.req.request_id.clone(),
                data: match t.kind {
                    EventKind::Deleted => t.last_view.clone(),
                    _ => views.get(&(t.ty.clone(), t.id)).cloned().unwrap_or(Value::Null),
                },
                snapshots: json!({"prechange": t.pre, "postchange": t.post}),
                request: self.req.request.clone(),
                body: None,
                batch: None,
            })
            .collect();
        Ok(Written {
            views: result_views,
            events,
            changes: self.changes,
        })
    }

    async fn create(&mut self, ty: &ObjectType, body: &Value) -> Result<i64, Fail> {
        let data = self.read_body(ty, body, None, false).await?;
        let id = self.tx.next_id(ty.name()).await?;
        let obj = Obj {
            id,
            data,
            created: self.req.now,
            last_updated: self.req.now,
        };
        self.check_unique(ty, &obj).await?;
        self.store(ty, &obj, true).await?;
        let post = self.snapshot(ty, &obj).await?;
        self.record(ty, &obj, ChangeAction::Create, Value::Null, post.clone())
            .await?;
        self.touch(ty, id, EventKind::Created, Value::Null, post, Value::Null);
        Ok(id)
    }

    /// Creates an address at the first free one of prefix `prefix_id`; `body` gives the rest.
    async fn allocate(&mut self, ty: &ObjectType, prefix_id: i64, body: &Value) -> Result<i64, Fail> {
        // One allocation from a prefix at a time: racing requests never pick the same address.
        self.tx.lock(ipam::PREFIX_TYPE, &[prefix_id], Lock::Update).await?;
        let prefix = self
            .tx
            .get(ipam::PREFIX_TYPE, &[prefix_id])
            .await?
            .pop()
            .ok_or(Fail::Missing(prefix_id))?;
        let network = prefix
            .data
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !self.taken.contains_key(&prefix_id) {
            let addresses = self.tx.scan(ipam::ADDRESS_TYPE).await?;
            self.taken.insert(prefix_id, ipam::taken_in(&network, &addresses));
        }
        let Some(address) = ipam::available(&network, &self.taken[&prefix_id], 1).pop() else {
            return Err(Fail::Conflict(format!(
                "No IP address is available within prefix {network}."
            )));
        };
        let mut fields = match body {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(Fail::Fields(FieldErrors::single(
                    "non_field_errors",
                    format!("Invalid data. Expected a dictionary, but got {}.", type_name(other)),
                )))
            }
        };
        fields.insert("address".into(), Value::from(address.as_str()));
        let id = self.create(ty, &Value::Object(fields)).await?;
        if let (Some(h), Some(set)) = (ipam::host(&address), self.taken.get_mut(&prefix_id)) {
            set.insert(h);
        }
        Ok(id)
    }

    async fn update(&mut self, ty: &ObjectType, id: i64, body: &Value, partial: bool) -> Result<i64, Fail> {
        self.tx.lock(ty.name(), &[id], Lock::Update).await?;
        let existing = self.tx.get(ty.name(), &[id]).await?.pop().ok_or(Fail::Missing(id))?;
        let pre = self.snapshot(ty, &existing).await?;
        let data = self.read_body(ty, body, Some(&existing), partial).await?;
        let obj = Obj {
            id,
            data,
            created: existing.created,
            last_updated: self.req.now,
        };
        self.check_unique(ty, &obj).await?;
        self.store(ty, &obj, false).await?;
        let post = self.snapshot(ty, &obj).await?;
        self.record(ty, &obj, ChangeAction::Update, pre.clone(), post.clone())
            .await?;
        self.touch(ty, id, EventKind::Updated, pre, post, Value::Null);
        Ok(id)
    }
}
